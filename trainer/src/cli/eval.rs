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
//!   newest run directory of the recipe under `output_dir` that has it; else, when no training
//!   stage is involved, the stage's `model.path` (under `model.base_path`).
//!
//! Several `--max-steps` values (repeated, or a comma list) run a test-time-scaling sweep: one
//! sub-directory `max_steps_N/` each with the three files, plus `sweep.csv` and `sweep.json`
//! (one row per value: samples, accuracy, mean reward, turns, frames, seconds of media, runtime
//! error rate). One value writes into `max_steps_N/` without the sweep table.
//!
//! Left out: evaluating several stages of a recipe in one call (the last eligible one is taken).

use crate::dry_run;
use crate::recipe::resolved::{EvalStage, ModelSource, ResolvedRecipe, ResolvedStage, default_stage};
use crate::recipe::{DeviceKind, Dtype, StageKind};
use crate::run::consumption::consumption;
use crate::run::episodes::eval_specs;
use crate::run::eval::{EvalSetup, evaluate, write_eval_outputs};
use crate::run::judge::FfJudge;
use crate::run::model::{Loading, Model, encoder_for};
use crate::run::resume::newest_run;
use crate::run::train::describe;
use crate::run::write_atomic;
use clap::Args;
use serde_json::{Value, json};
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

/// What to evaluate, and how.
struct Plan {
    stage: EvalStage,
    model: PathBuf,
    seed: u64,
    device: tch::Device,
}

fn plain_plan(args: &EvalArgs) -> anyhow::Result<Plan> {
    let (Some(model), Some(data)) = (&args.model, &args.data) else {
        anyhow::bail!("give a RECIPE, or both --model DIR and --data FILE");
    };
    let ResolvedStage::Eval(mut stage) = default_stage(StageKind::Eval, model, 42)? else {
        anyhow::bail!("not an eval stage");
    };
    stage.model.dtype = Dtype::F32;
    stage.episodes.max_response_length = 1024;
    stage.data.files = vec![data.clone()];
    stage.data.media_root = args.media_root.clone();
    stage.data.max_samples = args.max_samples;
    Ok(Plan { stage, model: model.clone(), seed: 42, device: tch::Device::cuda_if_available() })
}

/// The newest run directory of `recipe` holding `<stage>/final/config.json`.
fn newest_result(recipe: &ResolvedRecipe, stage: &str) -> Option<PathBuf> {
    let result = |run: &Path| run.join(stage).join("final");
    newest_run(&recipe.output_dir, &recipe.name, |run| result(run).join("config.json").is_file()).map(|r| result(&r))
}

/// The model `stage` evaluates (see the module docs): for an rl stage's validation, its own
/// result; for an eval stage, the result of the stage it starts from, else its checkpoint.
fn recipe_model(recipe: &ResolvedRecipe, stage: &ResolvedStage) -> anyhow::Result<PathBuf> {
    let source = match stage {
        ResolvedStage::Eval(e) => match &e.model.source {
            ModelSource::Stage(from) => Some(from.clone()),
            ModelSource::Checkpoint(dir) => return Ok(dir.clone()),
            ModelSource::Random(_) => None,
        },
        other => Some(other.name().to_string()),
    };
    let Some(name) = source else {
        anyhow::bail!("stage `{}` names no model path: pass --model DIR", stage.name());
    };
    newest_result(recipe, &name).ok_or_else(|| {
        anyhow::anyhow!(
            "no run of `{}` under {} has a result of stage `{name}` ({name}/final): run `omnirl train` \
             first, or pass --model DIR",
            recipe.name,
            recipe.output_dir.display()
        )
    })
}

/// `Ok(None)`: the recipe has errors (already printed).
fn recipe_plan(args: &EvalArgs, path: &Path) -> anyhow::Result<Option<Plan>> {
    let env = |k: &str| std::env::var(k).ok();
    let dry = dry_run::run(path, &args.sets, &env);
    for p in &dry.problems {
        eprintln!("{p}");
    }
    let Some(recipe) = dry.resolved_recipe.clone().filter(|_| dry.ok) else {
        eprintln!("{}: {} error(s), {} warning(s): not evaluating", dry.recipe_file, dry.errors, dry.warnings);
        return Ok(None);
    };
    let evaluable = |s: &&ResolvedStage| match s {
        ResolvedStage::Eval(e) => !e.data.files.is_empty(),
        ResolvedStage::Rl(r) => !r.data.val_files.is_empty(),
        ResolvedStage::Sft(_) => false,
    };
    let of = |k: StageKind| recipe.stages.iter().rev().filter(|s| s.kind() == k).find(evaluable);
    let Some(chosen) = of(StageKind::Eval).or_else(|| of(StageKind::Rl)) else {
        anyhow::bail!("{}: no eval stage and no rl stage with val_files to evaluate", path.display());
    };
    let model = match &args.model {
        Some(m) => m.clone(),
        None => recipe_model(&recipe, chosen)?,
    };
    let device = match recipe.distributed.device {
        DeviceKind::Cpu => tch::Device::Cpu,
        _ => tch::Device::cuda_if_available(),
    };
    eprintln!("omnirl eval: stage `{}` of {}, model {}", chosen.name(), path.display(), model.display());
    let mut stage = match chosen {
        ResolvedStage::Eval(e) => e.clone(),
        ResolvedStage::Rl(r) => r.validation(),
        ResolvedStage::Sft(_) => anyhow::bail!("an sft stage is not evaluated"),
    };
    if let Some(d) = &args.data {
        stage.data.files = vec![d.clone()];
    }
    if let Some(root) = &args.media_root {
        stage.data.media_root = Some(root.clone());
    }
    if let Some(m) = args.max_samples {
        stage.data.max_samples = Some(m);
    }
    Ok(Some(Plan { stage, model, seed: recipe.seed, device }))
}

pub fn run(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let mut plan = match &args.recipe {
        Some(path) => match recipe_plan(args, path)? {
            Some(p) => p,
            None => return Ok(ExitCode::from(1)),
        },
        None => plain_plan(args)?,
    };
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
    let mut sweep = String::from(
        "max_steps,samples,accuracy,mean_reward,mean_turns,mean_frames,mean_media_seconds,runtime_error_rate\n",
    );
    let mut rows: Vec<Value> = Vec::new();
    for budget in &budgets {
        let mut episodes = stage.episodes.clone();
        let dir = match budget {
            Some(n) => {
                episodes.settings.limits.max_steps = *n;
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
        if let Some(all) = ev.figures.get("all") {
            let n = budget.map_or_else(|| "default".to_string(), |n| n.to_string());
            let c = consumption(ev.trajectories.iter());
            sweep.push_str(&format!(
                "{n},{},{:.4},{:.4},{:.3},{:.3},{:.3},{:.4}\n",
                all.episodes,
                all.accuracy,
                all.mean_reward,
                all.mean_turns,
                c.mean_frames,
                c.mean_media_seconds,
                c.runtime_error_rate
            ));
            rows.push(json!({
                "max_steps": budget,
                "dir": dir.display().to_string(),
                "samples": all.episodes,
                "accuracy": all.accuracy,
                "mean_reward": all.mean_reward,
                "mean_turns": all.mean_turns,
                "mean_frames": c.mean_frames,
                "mean_media_seconds": c.mean_media_seconds,
                "runtime_error_rate": c.runtime_error_rate,
                "per_type": ev.figures,
            }));
        }
    }
    if budgets.len() > 1 {
        write_atomic(&args.out.join("sweep.csv"), sweep.as_bytes())?;
        let text = serde_json::to_string_pretty(&json!({ "sweep": rows }))?;
        write_atomic(&args.out.join("sweep.json"), text.as_bytes())?;
    }
    print!("{sweep}");
    Ok(ExitCode::SUCCESS)
}
