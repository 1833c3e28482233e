//! `omnirl score --input FILE.jsonl`: scores predictions line by line (issue 3).

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// JSONL file with `question_type`, `prediction` and `answer` on each line.
    #[arg(long)]
    pub input: PathBuf,
}

pub fn run(_args: &ScoreArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("omnirl score is not implemented yet")
}
