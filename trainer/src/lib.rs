//! omnirl's trainer crate: the policy model on libtorch, the learners, the distributed
//! runtime, checkpoints, recipes and the plan (`omnirl validate`), and the CLI.

pub mod algo;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod dist;
pub mod dry_run;
pub mod learner;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod problem;
pub mod recipe;
pub mod run;
pub mod run_report;
pub mod synth;
