//! The `omnirl` command line: one subcommand per file.

pub mod score;
pub mod validate;
