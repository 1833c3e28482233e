//! The `omnirl` command line: one subcommand per file.

pub mod advantage;
pub mod eval;
pub mod generate;
pub mod logprobs;
pub mod media;
pub mod replay;
pub mod score;
pub mod train;
pub mod validate;
