//! `omnirl score --input FILE.jsonl`: scores predictions line by line, one JSON line on stdout
//! per input line, in input order, and a summary on stderr. The pipeline (chunked reading,
//! parallel scoring, FF judge batches, malformed-line reports) is `rewards::score_file`; this
//! file opens the input, builds the judge, prints the messages and picks the exit status: 0
//! whatever the lines hold (a closed stdout pipe included), 2 when the input file cannot be
//! read (the message names the file).
//!
//! The judge reads its key from `DASHSCOPE_API_KEY` (else `OSS_ACCESS_KEY`) in the environment
//! or a `.env` file in the working directory or above, plus `DASHSCOPE_BASE_URL` and the
//! `OMNIRL_JUDGE_*` settings (see `rewards::judge`).
//!
//! Left out: reading stdin (`--input -`) and an output-file option; redirect stdout instead.

use anyhow::Context as _;
use clap::Args;
use rewards::judge::{Judge, JudgeConfig};
use rewards::score_file::{ScoreFileError, score_stream_with_judge};
use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// JSONL file with `question_type`, `prediction` and `answer` on each line.
    #[arg(long)]
    pub input: PathBuf,
}

pub fn run(args: &ScoreArgs) -> anyhow::Result<ExitCode> {
    let path = &args.input;
    let file = File::open(path).with_context(|| format!("cannot read input file {}", path.display()))?;
    let judge = free_form_judge();
    let name = path.display().to_string();
    let input = BufReader::with_capacity(1 << 20, file);
    match score_stream_with_judge(input, &name, io::stdout(), judge, |msg| eprintln!("{msg}")) {
        Ok(stats) => {
            eprint!("{}", stats.summary_text(&name));
            Ok(ExitCode::SUCCESS)
        }
        // A closed pipe (`omnirl score ... | head`) ends the run quietly.
        Err(ScoreFileError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(ScoreFileError::Write(e)) => anyhow::bail!("cannot write to stdout: {e}"),
        Err(e) => Err(e.into()),
    }
}

/// The FF judge when a key is configured; without one, FF answers score 0.0 (the library
/// warns once).
fn free_form_judge() -> Option<Arc<Judge>> {
    let config = JudgeConfig::from_env();
    config.api_key.as_ref()?; // no key, no judge
    match Judge::new(config) {
        Ok(j) => Some(Arc::new(j)),
        Err(e) => {
            eprintln!("warning: FF judge unavailable ({e}); FF answers score 0.0");
            None
        }
    }
}
