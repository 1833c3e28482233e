//! `omnirl train`'s runner: a validated recipe's stages, in order, in one run directory.
//!
//! Layout of `<output_dir>/<name>[-N]/` (or the `--resume` directory):
//! `recipe.yaml` (the resolved recipe), `init/` (the random initialisation, when `init: random`),
//! `<stage>/final/` (each training stage's result, a Hugging Face checkpoint),
//! `<stage>/checkpoint-latest/`, `<stage>/metrics.jsonl` and `<stage>/tensorboard/`,
//! `<eval stage>/{results.jsonl, summary.json, summary.csv}`, and `summary.json` with the
//! per-type figures on the held-out set before the first training stage and after each one.
//!
//! Resume is per stage: a stage whose `final/` exists is skipped and the next starts from it.
//! The model of a stage is its `from_stage`'s result, else the previous training stage's result,
//! else its own `path` (or the random initialisation). The tokenizer is the model's
//! `tokenizer.json` when there is one, else the small byte tokenizer over its special ids. A
//! random initialisation whose config puts the special ids at 0-10 gets a BPE trained on the
//! expert's trajectories over the rl stage's prompts (`run::bpe`), saved as `init/tokenizer.json`
//! and carried into every checkpoint of the run.
//! Under data parallelism (`run::world`) every rank runs this same sequence; rank 0 writes the
//! files and the others wait at barriers before reading them.
//! Left out: resuming in the middle of a stage (the replicated optimizer state is not
//! checkpointed; ZeRO-1 shards are written but not read back).

use super::bpe::{config_wants_trained_bpe, train_bpe};
use super::episodes::{eval_specs, rl_specs};
use super::stages::{Evaluation, Model, StagePlace, StageReport, evaluate, expert_corpus, rl, sft, write_eval_outputs};
use super::tokenizer::SmallTokenizer;
use super::world::World;
use super::{RunError, write_atomic};
use crate::checkpoint::{RandomCheckpointOptions, write_random_checkpoint_with};
use crate::learner::thinker::TrainableParts;
use crate::model::{FloatDtype, KeyLayout, OmniThinkerConfig};
use crate::recipe::sections::ModelInit;
use crate::recipe::{Recipe, Stage, StageKind};
use rollout::episode::{EpisodeSpec, PromptEncoder};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue in this run directory.
    pub resume: Option<PathBuf>,
    /// Draw progress bars (on a terminal).
    pub progress: bool,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub summary: Value,
}

fn fresh_run_dir(recipe: &Recipe) -> PathBuf {
    let base = recipe.output_dir.join(&recipe.name);
    if !base.exists() {
        return base;
    }
    (2u32..).map(|n| recipe.output_dir.join(format!("{}-{n}", recipe.name))).find(|p| !p.exists()).unwrap_or(base)
}

/// The tokenizer of the model in `dir`.
pub fn encoder_for(dir: &Path, stage: &Stage) -> Result<(Arc<dyn PromptEncoder>, Option<usize>), RunError> {
    let tok = stage.model.tokenizer.clone().unwrap_or_else(|| dir.join("tokenizer.json"));
    if tok.is_file() {
        let t = crate::model::chat_tokenizer_for_model(dir, &tok).map_err(RunError::Model)?;
        let limit = t.vocab_size();
        return Ok((Arc::new(t), Some(limit)));
    }
    let cfg_path = dir.join("config.json");
    let cfg =
        OmniThinkerConfig::from_file(&cfg_path).map_err(|e| RunError::Model(format!("{}: {e}", cfg_path.display())))?;
    let t = SmallTokenizer::from_config(&cfg).ok_or_else(|| {
        RunError::Model(format!(
            "{}: no tokenizer.json, and the config's special ids do not fit a byte tokenizer",
            dir.display()
        ))
    })?;
    let limit = t.vocab_limit();
    Ok((Arc::new(t), Some(limit)))
}

/// The model directory a stage starts from.
fn stage_input(
    recipe: &Recipe,
    world: &World,
    stage: &Stage,
    run_dir: &Path,
    results: &BTreeMap<String, PathBuf>,
    previous: Option<&PathBuf>,
) -> Result<PathBuf, RunError> {
    if let Some(from) = &stage.model.from_stage {
        return results.get(from).cloned().ok_or_else(|| RunError::Config(format!("stage `{from}` has no result")));
    }
    if let Some(p) = previous {
        return Ok(p.clone());
    }
    match stage.model.init {
        ModelInit::Random => {
            let dir = run_dir.join("init");
            // Rank 0 writes the initialisation; the others load it after the barrier.
            if world.is_main() && !dir.join("config.json").is_file() {
                let cfg_path = stage
                    .model
                    .config
                    .clone()
                    .ok_or_else(|| RunError::Config("init: random needs model.config".into()))?;
                let cfg = OmniThinkerConfig::from_file(&cfg_path)
                    .map_err(|e| RunError::Model(format!("{}: {e}", cfg_path.display())))?;
                let tmp = run_dir.join("init.tmp-write");
                let opts = RandomCheckpointOptions {
                    layout: KeyLayout::ThinkerPrefixed,
                    dtype: FloatDtype::F32,
                    seed: Some(recipe.seed as i64),
                    write_config: true,
                };
                write_random_checkpoint_with(&cfg, &tmp, 1, &opts).map_err(|e| RunError::Model(e.to_string()))?;
                if stage.model.tokenizer.is_none() && config_wants_trained_bpe(&cfg) {
                    let json = run_tokenizer(recipe, stage, cfg.text().vocab_size)?;
                    let file = tmp.join("tokenizer.json");
                    std::fs::write(&file, json).map_err(RunError::io(&file))?;
                }
                std::fs::rename(&tmp, &dir).map_err(RunError::io(&dir))?;
            }
            world.barrier()?;
            Ok(dir)
        }
        ModelInit::Pretrained => {
            let p = stage.model.path.clone().ok_or_else(|| RunError::Config("the stage has no model.path".into()))?;
            Ok(match &stage.model.base_path {
                Some(b) if p.is_relative() => b.join(p),
                _ => p,
            })
        }
    }
}

/// A BPE tokenizer trained on the expert's trajectories over the first rl stage's training
/// prompts (else `stage`'s), with `vocab_size` entries.
fn run_tokenizer(recipe: &Recipe, stage: &Stage, vocab_size: usize) -> Result<String, RunError> {
    let env = recipe.stages.iter().find(|s| s.kind == Some(StageKind::Rl)).unwrap_or(stage);
    let specs = limited(rl_specs(&env.data.train_files, env.data.media_root.as_deref())?, env.data.max_samples);
    let corpus = expert_corpus(env, &specs, recipe.seed)?;
    train_bpe(&corpus, vocab_size)
}

fn limited(mut v: Vec<Arc<EpisodeSpec>>, max: Option<usize>) -> Vec<Arc<EpisodeSpec>> {
    if let Some(m) = max {
        v.truncate(m);
    }
    v
}

/// The held-out set the before/after figures use: the eval stage's, else the first rl stage's
/// validation files.
fn figure_stage(recipe: &Recipe) -> Option<&Stage> {
    let with_val = |k: StageKind| recipe.stages.iter().find(|s| s.kind == Some(k) && !s.data.val_files.is_empty());
    with_val(StageKind::Eval).or_else(|| with_val(StageKind::Rl))
}

/// Runs every stage of `recipe` (already validated) on this rank of `world`; `say` receives
/// progress lines (on rank 0 only).
pub fn run_recipe(
    recipe: &Recipe,
    resolved_yaml: &str,
    opts: &RunOptions,
    world: &World,
    say: &mut dyn FnMut(&str),
) -> Result<RunSummary, RunError> {
    let t0 = std::time::Instant::now();
    let main = world.is_main();
    let mut quiet = |_: &str| {};
    let say: &mut dyn FnMut(&str) = if main { say } else { &mut quiet };
    let run_dir = world.agree_path(&opts.resume.clone().unwrap_or_else(|| fresh_run_dir(recipe)))?;
    if main {
        std::fs::create_dir_all(&run_dir).map_err(RunError::io(&run_dir))?;
        let recipe_file = run_dir.join("recipe.yaml");
        if !recipe_file.exists() {
            write_atomic(&recipe_file, resolved_yaml.as_bytes())?;
        }
    }
    world.barrier()?;
    say(&format!("run directory: {}", run_dir.display()));
    if world.size() > 1 {
        say(&format!("{} ranks over {}", world.size(), world.comm().backend()));
    }
    tch::manual_seed(recipe.seed as i64);
    let dev = world.device(recipe);
    let fig_stage = figure_stage(recipe);
    let fig_specs = match fig_stage {
        Some(s) => limited(eval_specs(&s.data.val_files, s.data.media_root.as_deref())?, s.data.max_samples),
        None => Vec::new(),
    };
    let rl_train = recipe.stages.iter().find(|s| s.kind == Some(StageKind::Rl));
    // On resume, the figures measured before the interruption are kept.
    let mut figures: BTreeMap<String, Value> = std::fs::read_to_string(run_dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| serde_json::from_value(v["figures"].clone()).ok())
        .unwrap_or_default();
    let mut reports: Vec<StageReport> = Vec::new();
    let mut results: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut previous: Option<PathBuf> = None;
    // The figures' evaluation of the latest result, reused by an eval stage on the same data.
    let mut last_eval: Option<(PathBuf, Evaluation)> = None;
    for stage in &recipe.stages {
        let name = stage.display_name();
        let stage_dir = run_dir.join(&name);
        if main {
            std::fs::create_dir_all(&stage_dir).map_err(RunError::io(&stage_dir))?;
        }
        let input = stage_input(recipe, world, stage, &run_dir, &results, previous.as_ref())?;
        let (encoder, vocab_limit) = encoder_for(&input, stage)?;
        let kind = stage.kind.unwrap_or(StageKind::Rl);
        let final_dir = stage_dir.join("final");
        match kind {
            StageKind::Sft | StageKind::Rl => {
                if final_dir.join("config.json").is_file() {
                    say(&format!("stage `{name}`: already done, resuming after it"));
                    results.insert(name.clone(), final_dir.clone());
                    previous = Some(final_dir);
                    continue;
                }
                let parts = match kind {
                    StageKind::Sft => TrainableParts::from_freeze(
                        stage.model.freeze_vision_encoder.unwrap_or(true),
                        stage.model.freeze_audio_encoder.unwrap_or(true),
                    ),
                    _ => TrainableParts::rl(),
                };
                let mut model = Model::load(&input, parts, dev, encoder, vocab_limit)?;
                world.broadcast_weights(model.thinker()?)?;
                if figures.is_empty()
                    && let Some(fs) = fig_stage
                {
                    say(&format!("evaluating before `{name}` on {} held-out samples", fig_specs.len()));
                    let ev = evaluate(&mut model, fs, &fig_specs, recipe.seed)?;
                    say(&describe(&format!("before_{name}"), &ev.figures));
                    figures.insert(format!("before_{name}"), serde_json::to_value(&ev.figures).unwrap_or(Value::Null));
                }
                let source = rl_train.unwrap_or(stage);
                let specs = limited(
                    rl_specs(&source.data.train_files, source.data.media_root.as_deref())?,
                    stage.data.max_samples,
                );
                say(&format!("stage `{name}` ({}): {} prompts", kind.as_str(), specs.len()));
                let at = StagePlace { world, stage_dir: &stage_dir, seed: recipe.seed, progress: opts.progress };
                let report = match kind {
                    StageKind::Sft => sft(&mut model, &at, stage, source, &specs)?,
                    _ => rl(&mut model, &at, stage, &specs)?,
                };
                say(&format!("stage `{name}`: {} steps in {:.1} s", report.steps, report.wall_s));
                if main {
                    model.save(&final_dir)?;
                }
                world.barrier()?;
                reports.push(report);
                if let Some(fs) = fig_stage {
                    let ev = evaluate(&mut model, fs, &fig_specs, recipe.seed)?;
                    say(&describe(&format!("after_{name}"), &ev.figures));
                    figures.insert(format!("after_{name}"), serde_json::to_value(&ev.figures).unwrap_or(Value::Null));
                    last_eval = Some((final_dir.clone(), ev));
                }
                results.insert(name.clone(), final_dir.clone());
                previous = Some(final_dir);
                if main {
                    write_summary(recipe, &run_dir, t0, &reports, &figures, false)?;
                }
            }
            StageKind::Eval => {
                let same = fig_stage.is_some_and(|f| std::ptr::eq(f, stage));
                let ev = match last_eval.take() {
                    Some((dir, ev)) if same && dir == input => {
                        say(&format!("stage `{name}` (eval): reusing the figures' evaluation of this model"));
                        ev
                    }
                    _ => {
                        let mut model = Model::load(&input, TrainableParts::rl(), dev, encoder, vocab_limit)?;
                        let files = &stage.data.val_files;
                        let specs =
                            limited(eval_specs(files, stage.data.media_root.as_deref())?, stage.data.max_samples);
                        say(&format!("stage `{name}` (eval): {} samples", specs.len()));
                        evaluate(&mut model, stage, &specs, recipe.seed)?
                    }
                };
                if main {
                    write_eval_outputs(&stage_dir, &ev)?;
                }
                say(&describe(&name, &ev.figures));
                reports.push(StageReport {
                    name: name.clone(),
                    kind: "eval".into(),
                    steps: 0,
                    wall_s: ev.wall_s,
                    last: BTreeMap::new(),
                });
            }
        }
    }
    let summary = if main { write_summary(recipe, &run_dir, t0, &reports, &figures, true)? } else { Value::Null };
    world.barrier()?;
    Ok(RunSummary { run_dir, summary })
}

/// Writes `summary.json` (also after each stage, with `complete: false`).
fn write_summary(
    recipe: &Recipe,
    run_dir: &Path,
    t0: std::time::Instant,
    reports: &[StageReport],
    figures: &BTreeMap<String, Value>,
    complete: bool,
) -> Result<Value, RunError> {
    let summary = json!({
        "recipe": recipe.name,
        "run_dir": run_dir.display().to_string(),
        "complete": complete,
        "wall_s": t0.elapsed().as_secs_f64(),
        "stages": reports,
        "figures": figures,
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| RunError::Data(e.to_string()))?;
    write_atomic(&run_dir.join("summary.json"), text.as_bytes())?;
    Ok(summary)
}

/// One line per question type: accuracy and mean reward.
pub fn describe(label: &str, figs: &BTreeMap<String, super::episodes::TypeFigures>) -> String {
    let parts: Vec<String> = figs
        .iter()
        .map(|(k, f)| format!("{k} acc {:.2} reward {:.3} (n={})", f.accuracy, f.mean_reward, f.episodes))
        .collect();
    format!("{label}: {}", parts.join("; "))
}
