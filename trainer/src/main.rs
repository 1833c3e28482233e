//! The `omnirl` binary: parses the command line and hands over to `trainer::cli`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use trainer::cli;

#[derive(Debug, Parser)]
#[command(name = "omnirl", version, about = "Train omni-modal active-perception video agents with SFT and RL")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Dry run: check a recipe, its data and model, and print the plan, before any GPU is touched.
    Validate(cli::validate::ValidateArgs),
    /// Score predictions against ground truth, one JSON line per input line.
    Score(cli::score::ScoreArgs),
}

fn main() -> ExitCode {
    let parsed = Cli::parse();
    let result = match &parsed.command {
        Command::Validate(args) => cli::validate::run(args),
        Command::Score(args) => cli::score::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("omnirl: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
