//! The `omnirl` command line: one subcommand per file.

pub mod advantage;
pub mod bench;
pub mod eval;
pub mod generate;
pub mod infer;
pub mod logprobs;
pub mod media;
pub mod replay;
pub mod report;
pub mod score;
pub mod synth;
pub mod train;
pub mod validate;
