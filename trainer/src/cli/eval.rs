//! `omnirl eval RECIPE [--set k=v]... | --model DIR --data FILE` with `[--media-root DIR]
//! [--out DIR] [--max-steps N[,N...]]... [--max-samples N] [--greedy] [--max-response-tokens N]
//! [--seed N]`: evaluates a checkpoint (docs/reference.md#evaluation), one episode per sample,
//! and writes `results.jsonl`, `summary.json` and `summary.csv` to `--out` (default `eval-out/`).
//!
//! * Plain form: `--model` and `--data` (eval-format JSONL) with the evaluation defaults of an
//!   `eval` stage (docs/reference.md#generation: temperature 1, top-k 20, top-p 0.95), 1024
//!   response tokens, seed 42.
//! * Recipe form: the recipe is validated first, exactly as `omnirl validate` does it (with the
//!   `--set` and environment overrides); on any error the problems are printed and the exit
//!   status is 1. The stage evaluated is the recipe's last eval stage with `val_files`, else its
//!   last rl stage with `val_files`; its files, media root, `max_samples`, environment,
//!   preprocessing, validation sampling and response length apply, the recipe's seed and device
//!   too; `--data`, `--media-root`, `--max-samples`, `--max-response-tokens`, `--greedy`,
//!   `--seed` override them. The model, in order: `--model DIR`; else the result the stage
//!   evaluates under `omnirl train` (an eval stage: its `model.from_stage`, else the last
//!   training stage before it; an rl stage: its own result), taken as `<stage>/final` from the
//!   run directory RECIPE lies in when it is a run's own `recipe.yaml` with that result, else from
//!   the newest run directory of the recipe under `output_dir` that has it; else, when no training
//!   stage is involved, the stage's `model.path` (under `model.base_path`).
//!
//! Several `--max-steps` values (repeated, or a comma list) run a test-time-scaling sweep: one
//! sub-directory `max_steps_N/` each with the three files, plus `sweep.csv` and `sweep.json`
//! (one row per value: samples, accuracy, mean reward, turns, frames, seconds of media, runtime
//! error rate). One value writes into `max_steps_N/` without the sweep table.
//!
//! Left out: evaluating several stages of a recipe in one call (the last eligible one is taken).

use crate::dry_run;
use crate::run::episodes::eval_specs;
use crate::run::eval::{EvalSetup, evaluate, write_eval_outputs};
use crate::run::eval_plan::{EvalPlan, SweepTable};
use crate::run::judge::FfJudge;
use crate::run::model::{Loading, Model, encoder_for};
use crate::run::train::describe;
use crate::run::write_atomic;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Recipe YAML: evaluate its eval stage (or its last rl stage's validation files).
    pub recipe: Option<PathBuf>,
    /// Override a recipe key (with RECIPE; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "recipe")]
    pub sets: Vec<String>,
    /// Checkpoint directory (config.json + safetensors; tokenizer.json when it has one).
    #[arg(long, required_unless_present = "recipe")]
    pub model: Option<PathBuf>,
    /// Eval-format JSONL file.
    #[arg(long, required_unless_present = "recipe")]
    pub data: Option<PathBuf>,
    /// Directory relative video paths resolve against.
    #[arg(long)]
    pub media_root: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "eval-out")]
    pub out: PathBuf,
    /// Turn budget; several values (repeated or comma-separated) run a sweep.
    #[arg(long = "max-steps", value_delimiter = ',')]
    pub max_steps: Vec<u32>,
    /// Evaluate at most this many samples.
    #[arg(long)]
    pub max_samples: Option<usize>,
    /// Greedy decoding instead of the evaluation sampling.
    #[arg(long)]
    pub greedy: bool,
    /// Most response tokens per turn (default 1024, or the recipe stage's).
    #[arg(long)]
    pub max_response_tokens: Option<u32>,
    /// Sampling seed (default 42, or the recipe's).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `Ok(None)`: the recipe has errors (already printed).
fn recipe_plan(args: &EvalArgs, path: &Path) -> anyhow::Result<Option<EvalPlan>> {
    let env = |k: &str| std::env::var(k).ok();
    let dry = dry_run::run(path, &args.sets, &env);
    for p in &dry.problems {
        eprintln!("{p}");
    }
    let Some(recipe) = dry.resolved_recipe.as_ref().filter(|_| dry.ok) else {
        eprintln!("{}: {} error(s), {} warning(s): not evaluating", dry.recipe_file, dry.errors, dry.warnings);
        return Ok(None);
    };
    let plan = EvalPlan::from_recipe(recipe, path, args.model.as_deref())?;
    let stage = plan.stage_name.as_deref().unwrap_or_default();
    eprintln!("omnirl eval: stage `{stage}` of {}, model {}", path.display(), plan.model.display());
    Ok(Some(plan))
}

pub fn run(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let mut plan = match (&args.recipe, &args.model, &args.data) {
        (Some(path), ..) => match recipe_plan(args, path)? {
            Some(p) => p,
            None => return Ok(ExitCode::from(1)),
        },
        (None, Some(model), Some(data)) => EvalPlan::plain(model, data)?,
        _ => anyhow::bail!("give a RECIPE, or both --model DIR and --data FILE"),
    };
    plan.override_data(args.data.as_deref(), args.media_root.as_deref(), args.max_samples);
    if let Some(n) = args.max_response_tokens {
        plan.stage.episodes.max_response_length = n;
    }
    if args.greedy {
        plan.stage.sampling.top_k = Some(1);
    }
    let seed = args.seed.unwrap_or(plan.seed);
    let stage = &plan.stage;
    let specs = eval_specs(&stage.data.files, stage.data.media_root.as_deref(), stage.data.max_samples)?;
    let (encoder, limit) = encoder_for(&plan.model, stage.model.tokenizer.as_deref())?;
    let how = Loading::eval(plan.device, stage.model.dtype);
    if let Some(note) = how.cpu_fallback() {
        eprintln!("omnirl eval: {note}");
    }
    let mut model = Model::load(&plan.model, &how, encoder, limit)?;
    let judge = stage.judge.as_ref().map(FfJudge::new).transpose()?;
    let budgets: Vec<Option<u32>> =
        if args.max_steps.is_empty() { vec![None] } else { args.max_steps.iter().map(|&n| Some(n)).collect() };
    let mut sweep = SweepTable::default();
    for &budget in &budgets {
        let mut episodes = stage.episodes.clone();
        let dir = match budget {
            Some(n) => {
                episodes.settings.limits.max_steps = n;
                args.out.join(format!("max_steps_{n}"))
            }
            None => args.out.clone(),
        };
        let setup = EvalSetup {
            episodes: &episodes,
            preprocess: &stage.preprocess,
            sampling: &stage.sampling,
            batch: stage.prompts_per_step as usize,
            judge: judge.as_ref(),
        };
        let ev = evaluate(&mut model, &setup, &specs, seed)?;
        write_eval_outputs(&dir, &ev)?;
        eprintln!("{}", describe(&dir.display().to_string(), &ev.figures));
        sweep.add(budget, &dir, &ev);
    }
    if budgets.len() > 1 {
        write_atomic(&args.out.join("sweep.csv"), sweep.csv().as_bytes())?;
        let text = serde_json::to_string_pretty(&sweep.json())?;
        write_atomic(&args.out.join("sweep.json"), text.as_bytes())?;
    }
    print!("{}", sweep.csv());
    Ok(ExitCode::SUCCESS)
}
