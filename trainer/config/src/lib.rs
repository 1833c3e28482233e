//! omnirl's configuration, without libtorch: recipe YAML and its typed, checked, resolved form
//! ([`recipe`]), the dry run behind `omnirl validate` ([`dry_run`]) and its plans ([`plan`]),
//! the problems they report ([`problem`]), and what they need to know about models, checkpoints
//! and ranks without loading any tensor ([`model`], [`checkpoint`], [`dist`]). The `trainer`
//! crate re-exports these modules under the same names; this crate builds and tests without
//! libtorch (docs/architecture.md).

pub mod checkpoint;
pub mod dist;
pub mod dry_run;
pub mod model;
pub mod plan;
pub mod problem;
pub mod recipe;
