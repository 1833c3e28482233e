//! `omnirl logprobs --model DIR --ids 1,2,3,... [--json]`: the teacher-forced log-prob and entropy
//! of every token after the first (N-1 values for N ids), through the training forward
//! (`model::logprobs::score`: raw vocabulary, fp32 log-softmax, chunked `lm_head`).
//!
//! Output: `--json` prints exactly `{"logprobs": [...], "entropies": [...]}`; text mode prints one
//! `id<TAB>logprob<TAB>entropy` line per scored token. `--dtype` / `--device` as for `generate`.
//!
//! Left out: media inputs (text-only sequences; the library call takes media).

use crate::cli::generate::load_options;
use crate::model::logprobs::score;
use crate::model::thinker::{MediaInput, Thinker};
use anyhow::{Context as _, bail};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use tch::Device;

#[derive(Debug, Args)]
pub struct LogprobsArgs {
    /// Checkpoint directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Token ids, comma separated (at least two).
    #[arg(long, value_delimiter = ',', required = true)]
    pub ids: Vec<u32>,
    /// Compute dtype: f32, bf16 or f16 (default: as stored).
    #[arg(long)]
    pub dtype: Option<String>,
    /// cpu, cuda or cuda:N (default: cuda when available).
    #[arg(long)]
    pub device: Option<String>,
    /// Positions per lm_head chunk.
    #[arg(long, default_value_t = 1024)]
    pub chunk: usize,
    /// Print `{"logprobs": [...], "entropies": [...]}`.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &LogprobsArgs) -> anyhow::Result<ExitCode> {
    if args.ids.len() < 2 {
        bail!("--ids needs at least two tokens (the first is only context)");
    }
    let opts = load_options(args.dtype.as_deref(), args.device.as_deref())?;
    let th = Thinker::load(&args.model, opts).with_context(|| format!("loading {}", args.model.display()))?;
    let s = score(&th, &args.ids, &MediaInput::default(), 1, args.chunk)?;
    let lp = Vec::<f32>::try_from(&s.logprobs.to_device(Device::Cpu))?;
    let ent = Vec::<f32>::try_from(&s.entropies.to_device(Device::Cpu))?;
    if args.json {
        println!("{}", serde_json::json!({"logprobs": lp, "entropies": ent}));
    } else {
        for ((id, l), e) in args.ids[1..].iter().zip(&lp).zip(&ent) {
            println!("{id}\t{l}\t{e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
