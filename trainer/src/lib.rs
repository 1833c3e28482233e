//! omnirl's trainer crate: the policy model on libtorch, the learners, the distributed
//! runtime, checkpoints, the stage runner and the CLI. Recipes, the dry run and the plans are
//! the `trainer-config` crate (`trainer/config/`, no libtorch), re-exported here under the same
//! module names.

pub use trainer_config::{plan, problem, recipe};

pub mod algo;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod demo;
pub mod dist;
pub mod dry_run;
pub mod learner;
pub mod metrics;
pub mod model;
pub mod run;
pub mod run_report;
pub mod synth;
