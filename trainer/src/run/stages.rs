//! What each stage does with the model.
//!
//! * [`Model`]: a loaded thinker with its tokenizer; [`Model::rollout`] lends the thinker to the
//!   rollout driver as a [`ThinkerPolicy`] and takes it back (same tensors, so the learner's
//!   optimizer keeps pointing at them).
//! * [`sft`]: rows from expert trajectories ([`ExpertPolicy`]) rolled out through the same
//!   episode machinery and prompt as RL, so SFT targets match the RL prompt format token for
//!   token; then `SftLearner` steps over shuffled rows for the stage's epochs (or `max_steps`).
//! * [`rl`]: per step, `prompts_per_step` prompts x `group_size` episodes from the policy, one
//!   row per stored turn, one `RlLearner` step (spec §6.7), metrics, checkpoints.
//! * [`evaluate`]: one episode per sample with the stage's validation sampling; per-type figures,
//!   and optionally `results.jsonl` / `summary.json` / `summary.csv` (spec §10).
//!
//! Checkpoints are written to a temporary directory and renamed into place. Left out: validation
//! during RL (`val_every`; the runner evaluates between stages), optimizer-state checkpoints.

use super::episodes::{TypeFigures, driver, figures, sampling, video_opener};
use super::world::World;
use super::{RunError, write_atomic};
use crate::dist::data_parallel::{DataParallelSync, group_expected_tokens, shard_groups};
use crate::learner::cursor::SplitMix64;
use crate::learner::rows::{RlRow, SftRow};
use crate::learner::sft::SftOptions;
use crate::learner::thinker::{TrainableParts, TrainableThinker, turn_media};
use crate::learner::{AdamWConfig, RlLearner, SftLearner, TrainablePolicy};
use crate::metrics::{MetricsLogger, Progress, Scalars, rollout_scalars};
use crate::model::logprobs::TrainOptions;
use crate::model::policy::ThinkerPolicy;
use crate::model::thinker::MediaInput;
use crate::model::weights::LoadOptions;
use crate::recipe::Stage;
use rollout::driver::{Driver, RolloutBatch};
use rollout::episode::{EpisodeSpec, PromptEncoder};
use rollout::policy::{ExpertPolicy, Policy};
use rollout::trajectory::Trajectory;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tch::{Device, Kind};

/// A loaded thinker and the tokenizer its prompts use.
pub struct Model {
    tt: Option<TrainableThinker>,
    pub encoder: Arc<dyn PromptEncoder>,
    pub vocab_limit: Option<usize>,
    /// The `tokenizer.json` the model was loaded with, copied into every saved checkpoint.
    tokenizer_file: Option<std::path::PathBuf>,
}

impl Model {
    /// Loads `dir` with `parts` trainable, in f32 on `device`.
    pub fn load(
        dir: &Path,
        parts: TrainableParts,
        device: Device,
        encoder: Arc<dyn PromptEncoder>,
        vocab_limit: Option<usize>,
    ) -> Result<Model, RunError> {
        let opts = LoadOptions { dtype: Some(Kind::Float), device };
        let tt = TrainableThinker::load(dir, opts, parts, TrainOptions::default())
            .map_err(|e| RunError::Model(format!("{}: {e}", dir.display())))?;
        let tokenizer_file = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
        Ok(Model { tt: Some(tt), encoder, vocab_limit, tokenizer_file })
    }

    /// The thinker (for scoring and inspection).
    pub fn thinker(&self) -> Result<&TrainableThinker, RunError> {
        self.tt.as_ref().ok_or_else(|| RunError::Model("the thinker was lost in a rollout".into()))
    }

    /// Rolls `specs` out with the thinker as the policy.
    pub fn rollout(
        &mut self,
        driver: &Driver,
        specs: &[Arc<EpisodeSpec>],
        opener: Arc<rollout::driver::MediaOpener>,
    ) -> Result<RolloutBatch, RunError> {
        let TrainableThinker { thinker, train, max_shard_bytes } =
            self.tt.take().ok_or_else(|| RunError::Model("the thinker was lost in a rollout".into()))?;
        let mut policy = ThinkerPolicy { thinker, vocab_limit: self.vocab_limit };
        let out = tch::no_grad(|| driver.run(&mut policy, specs, opener));
        self.tt = Some(TrainableThinker { thinker: policy.thinker, train, max_shard_bytes });
        out.map_err(|e| RunError::Rollout(e.to_string()))
    }

    /// Saves the weights to `dir` (through a temporary sibling and a rename).
    pub fn save(&self, dir: &Path) -> Result<(), RunError> {
        let tmp = self.write_staged(dir)?;
        publish(&tmp, dir)
    }

    /// Writes the weights (and tokenizer) into a fresh [`staging_dir`] of `dir` and returns it.
    pub fn write_staged(&self, dir: &Path) -> Result<std::path::PathBuf, RunError> {
        let tmp = staging_dir(dir);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(RunError::io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(RunError::io(&tmp))?;
        self.thinker()?.save_hf(&tmp).map_err(|e| RunError::Model(format!("saving {}: {e}", dir.display())))?;
        if let Some(tok) = &self.tokenizer_file {
            let to = tmp.join("tokenizer.json");
            std::fs::copy(tok, &to).map_err(RunError::io(&to))?;
        }
        Ok(tmp)
    }
}

/// The temporary sibling a checkpoint of `dir` is built in before [`publish`] renames it.
pub fn staging_dir(dir: &Path) -> std::path::PathBuf {
    dir.with_extension("tmp-save")
}

/// Puts the complete directory `tmp` in place of `dir`. The previous `dir` is moved aside first
/// and removed only after the rename, so a crash leaves either checkpoint whole.
pub fn publish(tmp: &Path, dir: &Path) -> Result<(), RunError> {
    let old = dir.with_extension("tmp-old");
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(RunError::io(&old))?;
    }
    // Durable before it becomes visible, as `checkpoint::atomic` publishes step directories.
    crate::checkpoint::atomic::sync_tree(tmp).map_err(RunError::io(tmp))?;
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(RunError::io(dir))?;
    }
    std::fs::rename(tmp, dir).map_err(RunError::io(dir))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::checkpoint::atomic::sync_dir(parent).map_err(RunError::io(parent))?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(RunError::io(&old))?;
    }
    Ok(())
}

/// A checkpoint of a data-parallel run: rank 0 writes the weights into a temporary directory,
/// every rank adds its ZeRO-1 optimizer shard (when sharded), then rank 0 puts it in place.
/// Every rank must call it; all return once `dir` is complete.
pub fn save_checkpoint(model: &Model, world: &World, sync: &DataParallelSync<'_>, dir: &Path) -> Result<(), RunError> {
    let tmp = staging_dir(dir);
    if world.is_main() {
        model.write_staged(dir)?;
    }
    if let Some(z) = &sync.zero1 {
        world.barrier()?;
        z.save_shard(&tmp, world.rank(), world.size())
            .map_err(|e| RunError::Io { path: tmp.display().to_string(), message: e.to_string() })?;
    }
    world.barrier()?;
    if world.is_main() {
        publish(&tmp, dir)?;
    }
    world.barrier()
}

/// Where a training stage runs: this rank, the stage's directory, the run's seed, and whether
/// to draw progress bars (rank 0 only draws them).
#[derive(Debug, Clone, Copy)]
pub struct StagePlace<'a> {
    pub world: &'a World,
    pub stage_dir: &'a Path,
    pub seed: u64,
    pub progress: bool,
}

/// What a training stage did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageReport {
    pub name: String,
    pub kind: String,
    pub steps: u64,
    pub wall_s: f64,
    /// Last logged scalars.
    pub last: BTreeMap<String, f64>,
}

fn rows_of<T, F: FnMut(&Trajectory) -> Result<Vec<T>, RunError>>(
    batch: &RolloutBatch,
    mut f: F,
) -> Result<Vec<T>, RunError> {
    let mut out = Vec::new();
    for t in &batch.trajectories {
        out.extend(f(t)?);
    }
    Ok(out)
}

fn patch_dim(model: &Model) -> Result<usize, RunError> {
    Ok(model.thinker()?.thinker.vision.patch_dim as usize)
}

/// The SFT rows of the expert's successful trajectories on `specs` (one row per stored turn).
pub fn expert_rows(
    model: &Model,
    env_stage: &Stage,
    specs: &[Arc<EpisodeSpec>],
    seed: u64,
) -> Result<Vec<SftRow<MediaInput>>, RunError> {
    let end_ids = model.encoder.stop_ids();
    let sampling = sampling(&Default::default(), env_stage.rollout.max_response_length, false, seed);
    let drv = driver(env_stage, model.encoder.clone(), 1, sampling, seed)?;
    let mut expert = ExpertPolicy::new(drv.settings.limits.clone(), Some(model.encoder.clone()));
    let batch = drv
        .run(&mut expert as &mut dyn Policy, specs, video_opener(&env_stage.preprocess))
        .map_err(|e| RunError::Rollout(e.to_string()))?;
    let pd = patch_dim(model)?;
    rows_of(&batch, |t| {
        if t.dropped.is_some() || !t.won {
            return Ok(Vec::new());
        }
        t.turns
            .iter()
            .map(|turn| {
                let m = turn_media(turn, pd).map_err(|e| RunError::Model(e.to_string()))?;
                Ok(SftRow::new(&turn.prompt_ids, &turn.response_ids, &end_ids, m))
            })
            .collect()
    })
}

/// The texts of the expert's trajectories on `specs` under `env_stage`'s environment: every text
/// part of every context message, and every response (the corpus a run's tokenizer is trained
/// on). Rolled out with the byte-level [`rollout::episode::ByteTokenizer`], which needs no
/// training itself.
pub fn expert_corpus(env_stage: &Stage, specs: &[Arc<EpisodeSpec>], seed: u64) -> Result<Vec<String>, RunError> {
    let encoder: Arc<dyn PromptEncoder> = Arc::new(rollout::episode::ByteTokenizer);
    let sampling = sampling(&Default::default(), env_stage.rollout.max_response_length, false, seed);
    let mut drv = driver(env_stage, encoder.clone(), 1, sampling, seed)?;
    drv.config.record_messages = true;
    let mut expert = ExpertPolicy::new(drv.settings.limits.clone(), Some(encoder));
    let batch = drv
        .run(&mut expert as &mut dyn Policy, specs, video_opener(&env_stage.preprocess))
        .map_err(|e| RunError::Rollout(e.to_string()))?;
    let mut corpus = Vec::new();
    for turn in batch.trajectories.iter().flat_map(|t| &t.turns) {
        for m in turn.messages.iter().flatten() {
            let text: String = m.parts.iter().filter_map(|p| p.text()).collect();
            corpus.push(format!("{}\n{text}", m.role.as_str()));
        }
        corpus.push(format!("assistant\n{}", turn.response));
    }
    Ok(corpus)
}

/// The SFT stage on expert trajectories of `specs`, rolled out with `env_stage`'s environment,
/// prompt and preprocessing (the RL stage's, so SFT and RL prompts match).
pub fn sft(
    model: &mut Model,
    at: &StagePlace<'_>,
    stage: &Stage,
    env_stage: &Stage,
    specs: &[Arc<EpisodeSpec>],
) -> Result<StageReport, RunError> {
    let StagePlace { world, stage_dir, seed, progress } = *at;
    let t0 = std::time::Instant::now();
    let rows = expert_rows(model, env_stage, specs, seed)?;
    if rows.is_empty() {
        return Err(RunError::Data("the expert produced no successful trajectory to train on".into()));
    }
    let options = SftOptions::from_schedule(&stage.schedule);
    // One step takes per-device rows on every rank: the global batch grows with the world.
    let per_step = options.rows_per_step() * world.size() as usize;
    let per_epoch = rows.len().div_ceil(per_step) as u64;
    let total = stage.schedule.max_steps.unwrap_or(per_epoch * u64::from(stage.schedule.epochs.unwrap_or(1).max(1)));
    let (optimizer, mut sync) = world.optimizer(model.thinker()?, AdamWConfig::from_recipe(&stage.optimizer, total))?;
    let mut learner = SftLearner { options, progress: false, optimizer };
    let mut logger = open_logger(world, stage_dir, stage)?;
    let bar = Progress::new(total, "sft", progress && world.is_main());
    let mut rng = SplitMix64::new(seed);
    let mut order: Vec<usize> = Vec::new();
    let mut report = StageReport { name: stage.display_name(), kind: "sft".into(), ..Default::default() };
    for step in 1..=total {
        let mut picked = Vec::with_capacity(per_step);
        while picked.len() < per_step.min(rows.len()) {
            if order.is_empty() {
                order = (0..rows.len()).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
            }
            if let Some(i) = order.pop() {
                picked.push(rows[i].clone());
            }
        }
        // This rank's contiguous share of the global batch.
        let (r, w) = (world.rank() as usize, world.size() as usize);
        let mine = &picked[r * picked.len() / w..(r + 1) * picked.len() / w];
        let stats = learner.step_synced(model.thinker()?, mine, &mut sync)?;
        let scalars = world.mean_scalars(stats.scalars())?;
        if let Some(l) = logger.as_mut() {
            l.log(step, step == total, &scalars).map_err(RunError::io(stage_dir))?;
        }
        bar.set_message(format!("loss {:.3}", stats.loss));
        bar.inc(1);
        report.last = scalars.0.into_iter().collect();
        report.steps = step;
    }
    bar.finish();
    report.wall_s = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// The RL stage on `specs`.
pub fn rl(
    model: &mut Model,
    at: &StagePlace<'_>,
    stage: &Stage,
    specs: &[Arc<EpisodeSpec>],
) -> Result<StageReport, RunError> {
    let StagePlace { world, stage_dir, seed, progress } = *at;
    let t0 = std::time::Instant::now();
    let end_ids = model.encoder.stop_ids();
    let r = &stage.rollout;
    let prompts = (r.prompts_per_step.max(1) as usize).min(specs.len().max(1));
    let group = r.group_size.unwrap_or(8).max(1) as usize;
    let per_epoch = specs.len().div_ceil(prompts) as u64;
    let total = stage.schedule.max_steps.unwrap_or(per_epoch * u64::from(stage.schedule.epochs.unwrap_or(1).max(1)));
    let train_sampling = r.sampling.clone().unwrap_or_default();
    let (optimizer, mut sync) = world.optimizer(model.thinker()?, AdamWConfig::from_recipe(&stage.optimizer, total))?;
    let mut learner = RlLearner::with_optimizer(&stage.algorithm, optimizer);
    let mut logger = open_logger(world, stage_dir, stage)?;
    let opener = video_opener(&stage.preprocess);
    let bar = Progress::new(total, "rl", progress && world.is_main());
    let mut rng = SplitMix64::new(seed ^ 0x5eed);
    let mut order: Vec<usize> = Vec::new();
    let pd = patch_dim(model)?;
    let mut report = StageReport { name: stage.display_name(), kind: "rl".into(), ..Default::default() };
    for step in 1..=total {
        let mut batch_specs = Vec::with_capacity(prompts);
        while batch_specs.len() < prompts {
            if order.is_empty() {
                order = (0..specs.len()).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
            }
            match order.pop() {
                Some(i) => batch_specs.push(specs[i].clone()),
                None => break,
            }
        }
        let s = sampling(&train_sampling, r.max_response_length, true, seed.wrapping_add(step));
        let mut drv = driver(stage, model.encoder.clone(), group, s, seed.wrapping_add(step))?;
        // Whole groups per rank, balanced by expected tokens; the global sample indices keep
        // each episode's ids and sampling seed those of one process.
        let (mine, samples) = shard_prompts(&batch_specs, world, group, r.max_response_length)?;
        drv.config.global_samples = samples;
        let batch = model.rollout(&drv, &mine, opener.clone())?;
        let rows: Vec<RlRow<MediaInput>> =
            rows_of(&batch, |t| Ok(RlRow::from_trajectory(t, &end_ids, |turn| turn_media(turn, pd))?))?;
        let mut scalars = rollout_scalars(&batch.trajectories);
        let reward_sum: f64 = batch.trajectories.iter().map(|t| t.episode_reward).sum();
        let mut totals = [rows.len() as f64, reward_sum, batch.trajectories.len() as f64];
        world.sum(&mut totals)?;
        if totals[0] > 0.0 {
            let stats = learner.step_synced(model.thinker()?, &rows, &mut sync)?;
            scalars.extend(stats.scalars().0);
        }
        scalars.push("rollout/wall_s", batch.stats.wall_s);
        let scalars = world.mean_scalars(scalars)?;
        if let Some(l) = logger.as_mut() {
            l.log(step, step == total, &scalars).map_err(RunError::io(stage_dir))?;
        }
        let reward = totals[1] / totals[2].max(1.0);
        bar.set_message(format!("reward {reward:.3}"));
        bar.inc(1);
        if let Some(every) = stage.checkpoint.save_every
            && every > 0
            && step % every == 0
            && step < total
        {
            save_checkpoint(model, world, &sync, &stage_dir.join("checkpoint-latest"))?;
        }
        report.last = scalars.0.into_iter().collect();
        report.steps = step;
    }
    bar.finish();
    report.wall_s = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// The metrics logger of a stage, on rank 0 only.
fn open_logger(world: &World, stage_dir: &Path, stage: &Stage) -> Result<Option<MetricsLogger>, RunError> {
    if !world.is_main() {
        return Ok(None);
    }
    MetricsLogger::open(stage_dir, &stage.logging, None).map(Some).map_err(RunError::io(stage_dir))
}

/// This rank's prompts of a step (whole groups, `shard_groups` balanced by an expected-token
/// estimate: question length plus a full response) and their indices in the global batch.
fn shard_prompts(
    batch: &[Arc<EpisodeSpec>],
    world: &World,
    group: usize,
    max_response: u32,
) -> Result<(Vec<Arc<EpisodeSpec>>, Vec<usize>), RunError> {
    if world.size() <= 1 {
        return Ok((batch.to_vec(), (0..batch.len()).collect()));
    }
    let tokens: Vec<u64> =
        batch.iter().map(|s| group_expected_tokens(s.question.len() / 3, f64::from(max_response), group)).collect();
    let plan = shard_groups(&tokens, world.size()).map_err(|e| RunError::Dist(e.to_string()))?;
    let mine = plan.groups.get(world.rank() as usize).cloned().unwrap_or_default();
    Ok((mine.iter().map(|&i| batch[i].clone()).collect(), mine))
}

/// One evaluation pass: figures per question type, and the trajectories.
pub struct Evaluation {
    pub figures: BTreeMap<String, TypeFigures>,
    pub trajectories: Vec<Trajectory>,
    pub wall_s: f64,
}

/// Evaluates `model` on `specs` with `stage`'s validation sampling (one episode per sample).
pub fn evaluate(
    model: &mut Model,
    stage: &Stage,
    specs: &[Arc<EpisodeSpec>],
    seed: u64,
) -> Result<Evaluation, RunError> {
    let t0 = std::time::Instant::now();
    let s = sampling(&stage.rollout.val_sampling, stage.rollout.max_response_length, false, seed);
    let drv = driver(stage, model.encoder.clone(), 1, s, seed)?;
    let batch = model.rollout(&drv, specs, video_opener(&stage.preprocess))?;
    Ok(Evaluation {
        figures: figures(&batch.trajectories),
        trajectories: batch.trajectories,
        wall_s: t0.elapsed().as_secs_f64(),
    })
}

fn prediction(t: &Trajectory) -> Value {
    let Some(last) = t.turns.last() else { return Value::Null };
    if last.outcome.action_name() != "answer" {
        return Value::Null;
    }
    let text = last.response.trim();
    let (a, b) = (text.find('{'), text.rfind('}'));
    let parsed = match (a, b) {
        (Some(a), Some(b)) if a < b => serde_json::from_str::<Value>(&text[a..=b]).ok(),
        _ => None,
    };
    parsed.and_then(|v| v.get("action").and_then(|x| x.get("content")).cloned()).unwrap_or(Value::Null)
}

/// One `results.jsonl` line (spec §10); `steps` holds one record per stored turn
/// (`run::trace`: response fields, action, error, delivered media), for `omnirl report`.
pub fn result_line(t: &Trajectory) -> Value {
    let frames: usize = t.turns.iter().map(|x| x.outcome.delivered.n_frames).sum();
    let audio: f64 = t.turns.iter().map(|x| x.outcome.delivered.audio_seconds()).sum();
    let clip: f64 = t.turns.iter().filter_map(|x| x.outcome.delivered.clip_range).map(|(s, e)| (e - s).max(0.0)).sum();
    let errors: Vec<&str> = t.turns.iter().filter_map(|x| x.outcome.error_code.map(|c| c.as_str())).collect();
    let actions: Vec<&str> = t.turns.iter().map(|x| x.outcome.action_name()).collect();
    json!({
        "question_id": t.spec.question_id,
        "video": t.spec.video,
        "question_type": t.spec.question_type,
        "type": t.spec.qtype.as_str(),
        "data_source": t.spec.data_source,
        "question": t.spec.question,
        "answer": t.spec.answer,
        "prediction": prediction(t),
        "reward": t.episode_reward,
        "correct": t.won,
        "turns": t.turns.len(),
        "actions": actions,
        "error_codes": errors,
        "runtime_error": t.dropped.as_ref().map(|d| d.to_string()),
        "last_response": t.turns.last().map(|x| x.response.clone()),
        "frames_used": frames,
        "audio_seconds": audio,
        "clip_seconds": clip,
        "steps": super::trace::stored_steps(t),
    })
}

/// Writes `results.jsonl`, `summary.json` and `summary.csv` of an evaluation into `dir`.
pub fn write_eval_outputs(dir: &Path, ev: &Evaluation) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(RunError::io(dir))?;
    let mut lines = String::new();
    for t in &ev.trajectories {
        lines.push_str(&result_line(t).to_string());
        lines.push('\n');
    }
    write_atomic(&dir.join("results.jsonl"), lines.as_bytes())?;
    let mut by_source: BTreeMap<String, Vec<Trajectory>> = BTreeMap::new();
    for t in &ev.trajectories {
        by_source.entry(t.spec.data_source.clone().unwrap_or_else(|| "unknown".into())).or_default().push(t.clone());
    }
    let sources: BTreeMap<String, BTreeMap<String, TypeFigures>> =
        by_source.iter().map(|(k, v)| (k.clone(), figures(v))).collect();
    let n = ev.trajectories.len().max(1) as f64;
    let runtime_errors = ev.trajectories.iter().filter(|t| t.dropped.is_some()).count() as f64 / n;
    let lines_of = |f: &dyn Fn(&Trajectory) -> f64| ev.trajectories.iter().map(f).sum::<f64>() / n;
    // Turns, frames, seconds of media and runtime errors, overall, per type and per source.
    let all_use = super::consumption::consumption(&ev.trajectories);
    let type_use = super::consumption::by_type(&ev.trajectories);
    let source_use: BTreeMap<String, BTreeMap<String, super::consumption::Consumption>> =
        by_source.iter().map(|(k, v)| (k.clone(), super::consumption::by_type(v))).collect();
    let summary = json!({
        "samples": ev.trajectories.len(),
        "per_type": ev.figures,
        "per_source": sources,
        "mean_turns": lines_of(&|t| t.turns.len() as f64),
        "mean_frames": lines_of(&|t| t.turns.iter().map(|x| x.outcome.delivered.n_frames as f64).sum()),
        "mean_audio_seconds": lines_of(&|t| t.turns.iter().map(|x| x.outcome.delivered.audio_seconds()).sum()),
        "runtime_error_rate": runtime_errors,
        "wall_s": ev.wall_s,
        "mean_clip_seconds": all_use.mean_clip_seconds,
        "mean_media_seconds": all_use.mean_media_seconds,
        "total_frames": all_use.total_frames,
        "total_media_seconds": all_use.total_media_seconds,
        "runtime_errors": all_use.runtime_errors,
        "consumption": {"all": all_use, "per_type": type_use, "per_source": source_use},
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| RunError::Data(e.to_string()))?;
    write_atomic(&dir.join("summary.json"), text.as_bytes())?;
    let mut csv = String::from(concat!(
        "group,type,episodes,accuracy,mean_reward,mean_turns,no_answer_rate,",
        "mean_frames,mean_media_seconds,runtime_error_rate\n"
    ));
    let mut row = |group: &str, ty: &str, f: &TypeFigures, c: Option<&super::consumption::Consumption>| {
        let c = c.cloned().unwrap_or_default();
        csv.push_str(&format!(
            "{group},{ty},{},{:.4},{:.4},{:.3},{:.4},{:.3},{:.3},{:.4}\n",
            f.episodes,
            f.accuracy,
            f.mean_reward,
            f.mean_turns,
            f.no_answer_rate,
            c.mean_frames,
            c.mean_media_seconds,
            c.runtime_error_rate
        ));
    };
    for (ty, f) in &ev.figures {
        row("all", ty, f, type_use.get(ty));
    }
    for (src, figs) in &sources {
        for (ty, f) in figs {
            row(&format!("source:{src}"), ty, f, source_use.get(src).and_then(|u| u.get(ty)));
        }
    }
    write_atomic(&dir.join("summary.csv"), csv.as_bytes())?;
    Ok(())
}

/// Scalars of an evaluation, for the metrics sinks.
pub fn eval_scalars(prefix: &str, figs: &BTreeMap<String, TypeFigures>) -> Scalars {
    let mut s = Scalars::default();
    for (ty, f) in figs {
        s.push(format!("{prefix}/{ty}/accuracy"), f.accuracy);
        s.push(format!("{prefix}/{ty}/mean_reward"), f.mean_reward);
    }
    s
}
