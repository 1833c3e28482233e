//! `omnirl validate`'s dry run: `trainer_config::dry_run` (re-exported here), with the SFT
//! row-length estimate ([`sft_lengths`]), which needs this crate's tokenizer loading and SFT
//! file reading.

pub mod sft_lengths;

pub use trainer_config::dry_run::*;

/// Runs the whole dry run with the SFT row-length estimate (`trainer_config::dry_run::run_with`).
pub fn run(recipe_path: &std::path::Path, sets: &[String], env: &dyn Fn(&str) -> Option<String>) -> DryRun {
    run_with(recipe_path, sets, env, Some(&sft_lengths::row_lengths))
}
