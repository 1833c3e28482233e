//! omnirl's trainer crate: the policy model on libtorch, the learners, the distributed
//! runtime, checkpoints, recipes and the plan (`omnirl validate`), and the CLI.

pub mod cli;
pub mod report;
