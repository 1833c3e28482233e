//! `omnirl advantage --estimator grpo|taura|grpo-no-std --input ROWS.jsonl`: what a rollout dump
//! would teach. One JSON line on stdout per input line (one stored turn `{"uid", "traj_uid",
//! "reward", "entropy", ...}`), in input order, with its `"advantage"`, and a summary on stderr.
//! The pipeline (parsing, groups, both passes over the file, malformed-line reports) is
//! `algo::advantage_file`; this file parses the estimator, prints the messages and picks the exit
//! status: 0 whatever the lines hold (a closed stdout pipe included), 2 when the file cannot be
//! read (the message names the file) or stdout cannot be written.
//!
//! Left out: stdin input (`--input -`) and an output-file option; redirect stdout instead.

use crate::algo::advantage::{AdvantageEstimator, DEFAULT_EPSILON};
use crate::algo::advantage_file::{AdvantageFileError, write_advantages};
use anyhow::Context as _;
use clap::Args;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct AdvantageArgs {
    /// Advantage estimator.
    #[arg(long, value_parser = ["grpo", "taura", "grpo-no-std"])]
    pub estimator: String,
    /// JSONL file, one line per turn: `uid`, `traj_uid`, `reward` (episode reward), `entropy`.
    #[arg(long)]
    pub input: PathBuf,
    /// Added to the group standard deviation (the reference's 1e-6).
    #[arg(long, default_value_t = DEFAULT_EPSILON)]
    pub epsilon: f64,
}

pub fn run(args: &AdvantageArgs) -> anyhow::Result<ExitCode> {
    let estimator = AdvantageEstimator::parse(&args.estimator, args.epsilon)
        .with_context(|| format!("unknown estimator `{}`", args.estimator))?;
    let path = &args.input;
    match write_advantages(path, estimator, io::stdout(), |msg| eprintln!("{msg}")) {
        Ok(summary) => {
            eprint!("{}", summary.summary_text(&path.display().to_string()));
            Ok(ExitCode::SUCCESS)
        }
        // A closed pipe (`omnirl advantage ... | head`) ends the run quietly.
        Err(AdvantageFileError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(AdvantageFileError::Write(e)) => anyhow::bail!("cannot write to stdout: {e}"),
        Err(e) => Err(e.into()),
    }
}
