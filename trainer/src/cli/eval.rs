//! `omnirl eval --model DIR --data FILE [--media-root DIR] [--out DIR] [--max-steps N]...
//! [--recipe-like overrides]`: evaluates a checkpoint on an eval-format JSONL file (spec §10),
//! one episode per sample, and writes `results.jsonl`, `summary.json` and `summary.csv` to
//! `--out` (default `eval-out/`). Several `--max-steps` values run a test-time-scaling sweep,
//! one sub-directory `max_steps_N/` each, plus `sweep.csv` (accuracy and mean reward per value).
//!
//! Settings are the evaluation defaults of an `eval` stage (spec §11.5: temperature 1, top-k 20,
//! top-p 0.95) unless `--greedy`. Left out: the `omnirl eval RECIPE` form (a recipe's eval stage
//! writes the same files under `omnirl train`).

use crate::learner::thinker::TrainableParts;
use crate::recipe::{Stage, StageKind};
use crate::run::episodes::eval_specs;
use crate::run::stages::{Model, evaluate, write_eval_outputs};
use crate::run::train::{describe, encoder_for};
use crate::run::write_atomic;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Checkpoint directory (config.json + safetensors; tokenizer.json when it has one).
    #[arg(long)]
    pub model: PathBuf,
    /// Eval-format JSONL file.
    #[arg(long)]
    pub data: PathBuf,
    /// Directory relative video paths resolve against.
    #[arg(long)]
    pub media_root: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "eval-out")]
    pub out: PathBuf,
    /// Turn budget; repeat for a sweep.
    #[arg(long = "max-steps")]
    pub max_steps: Vec<u32>,
    /// Evaluate at most this many samples.
    #[arg(long)]
    pub max_samples: Option<usize>,
    /// Greedy decoding instead of the evaluation sampling.
    #[arg(long)]
    pub greedy: bool,
    /// Most response tokens per turn.
    #[arg(long, default_value_t = 1024)]
    pub max_response_tokens: u32,
}

pub fn run(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let mut stage = Stage { kind: Some(StageKind::Eval), ..Stage::default() };
    stage.resolve_defaults();
    stage.rollout.max_response_length = args.max_response_tokens;
    if args.greedy {
        stage.rollout.val_sampling.top_k = Some(1);
    }
    let mut specs = eval_specs(std::slice::from_ref(&args.data), args.media_root.as_deref())?;
    if let Some(m) = args.max_samples {
        specs.truncate(m);
    }
    let (encoder, limit) = encoder_for(&args.model, &stage)?;
    let device = if tch::Cuda::is_available() { tch::Device::Cuda(0) } else { tch::Device::Cpu };
    let mut model = Model::load(&args.model, TrainableParts::rl(), device, encoder, limit)?;
    let budgets: Vec<Option<u32>> =
        if args.max_steps.is_empty() { vec![None] } else { args.max_steps.iter().map(|&n| Some(n)).collect() };
    let mut sweep = String::from("max_steps,samples,accuracy,mean_reward,mean_turns\n");
    for budget in &budgets {
        let mut st = stage.clone();
        let dir = match budget {
            Some(n) => {
                st.environment.max_steps = Some(*n);
                args.out.join(format!("max_steps_{n}"))
            }
            None => args.out.clone(),
        };
        let ev = evaluate(&mut model, &st, &specs, 42)?;
        write_eval_outputs(&dir, &ev)?;
        eprintln!("{}", describe(&dir.display().to_string(), &ev.figures));
        if let Some(all) = ev.figures.get("all") {
            let n = budget.map_or_else(|| "default".to_string(), |n| n.to_string());
            sweep.push_str(&format!(
                "{n},{},{:.4},{:.4},{:.3}\n",
                all.episodes, all.accuracy, all.mean_reward, all.mean_turns
            ));
        }
    }
    if budgets.len() > 1 {
        write_atomic(&args.out.join("sweep.csv"), sweep.as_bytes())?;
    }
    print!("{sweep}");
    Ok(ExitCode::SUCCESS)
}
