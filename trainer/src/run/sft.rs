//! The SFT stage, top to bottom: the rows (SFT files, or the scripted expert's successful
//! trajectories), the data order (`DataCursor`: `data.shuffle`, `data.data_seed`, a short last
//! batch per epoch, as the reference's trainer), then per step: the next global batch of
//! `per_device_batch_size x gradient_accumulation_steps x world` items, this rank's share of it
//! built ahead on the worker pool (`sft_rows`), one `SftLearner` step, metrics, and a step
//! checkpoint every `save_every` steps (and on a stop signal). Given a step checkpoint
//! (`--resume`), it restores the weights, optimizer, data cursor and row counts, and continues
//! with the next step.
//!
//! The number of steps is planned from the item count (`max_steps` caps it); rows dropped for
//! their length leave their step shorter, and a step whose rows were all dropped is skipped.
//! The stage reports how many rows it read and dropped, and `data/wait_s` logs how long the
//! learner waited for its rows each step.
//!
//! Expert rows are played through the stage's own environment, prompt and preprocessing on the
//! RL-format prompts in `data.train_files`, so their prompts match an rl stage with the same
//! settings token for token; only successful trajectories are kept.

use super::RunError;
use super::episodes::{driver, media_cache, rl_specs, sampling, video_opener};
use super::model::Model;
use super::resume::restore_step;
use super::sft_rows::{PREFETCH_BATCHES, Prepared, RowBuilder, RowSource, SftFiles, Walk, produce};
use super::stage::{StagePlace, StageReport, after_step, open_logger};
use crate::checkpoint::train_state::TrainState;
use crate::dry_run::batch::total_steps;
use crate::learner::cursor::DataCursor;
use crate::learner::rows::SftRow;
use crate::learner::sft::SftOptions;
use crate::learner::thinker::turn_media;
use crate::learner::{AdamWConfig, SftLearner};
use crate::metrics::Progress;
use crate::model::thinker::MediaInput;
use crate::recipe::PreprocessConfig;
use crate::recipe::resolved::{Episodes, Logging, SftData, SftSource, SftStage};
use rollout::episode::{EpisodeSpec, PromptEncoder};
use rollout::policy::{ExpertPolicy, Policy};
use rollout::sft::MediaBudgets;
use std::sync::Arc;
use std::time::Instant;

/// The expert's trajectories on `specs` under `episodes` (one driver run).
fn expert_batch(
    episodes: &Episodes,
    preprocess: &PreprocessConfig,
    encoder: Arc<dyn PromptEncoder>,
    specs: &[Arc<EpisodeSpec>],
    seed: u64,
    record_messages: bool,
) -> Result<rollout::driver::RolloutBatch, RunError> {
    let s = sampling(&Default::default(), episodes.max_response_length, false, seed);
    let mut drv = driver(episodes, encoder.clone(), 1, s, seed)?;
    drv.config.record_messages = record_messages;
    let mut expert = ExpertPolicy::new(drv.settings.limits.clone(), Some(encoder));
    drv.run(&mut expert as &mut dyn Policy, specs, video_opener(preprocess, media_cache(episodes)))
        .map_err(|e| RunError::Rollout(e.to_string()))
}

/// The SFT rows of the expert's successful trajectories on `specs` (one row per stored turn).
pub fn expert_rows(
    model: &Model,
    episodes: &Episodes,
    preprocess: &PreprocessConfig,
    specs: &[Arc<EpisodeSpec>],
    seed: u64,
) -> Result<Vec<SftRow<MediaInput>>, RunError> {
    let end_ids = model.encoder.stop_ids();
    let batch = expert_batch(episodes, preprocess, model.encoder.clone(), specs, seed, false)?;
    let pd = model.patch_dim()?;
    let mut rows = Vec::new();
    for t in batch.trajectories.iter().filter(|t| t.dropped.is_none() && t.won) {
        for turn in &t.turns {
            let m = turn_media(turn, pd).map_err(|e| RunError::Model(e.to_string()))?;
            rows.push(SftRow::new(&turn.prompt_ids, &turn.response_ids, &end_ids, m));
        }
    }
    Ok(rows)
}

/// The texts of the expert's trajectories on `specs`: every text part of every context message
/// and every response (the corpus a run's tokenizer is trained on). Rolled out with the
/// byte-level `rollout::episode::ByteTokenizer`, which needs no training itself.
pub fn expert_corpus(
    episodes: &Episodes,
    preprocess: &PreprocessConfig,
    specs: &[Arc<EpisodeSpec>],
    seed: u64,
) -> Result<Vec<String>, RunError> {
    let encoder: Arc<dyn PromptEncoder> = Arc::new(rollout::episode::ByteTokenizer);
    let batch = expert_batch(episodes, preprocess, encoder, specs, seed, true)?;
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

/// The items of an sft stage.
fn row_source(model: &Model, data: &SftData, preprocess: &PreprocessConfig, seed: u64) -> Result<RowSource, RunError> {
    let root = data.media_root.as_deref();
    Ok(match &data.source {
        SftSource::Files(files) => RowSource::Files(SftFiles::index(files, root, data.max_samples)?),
        SftSource::Expert { prompts, episodes } => {
            let specs = rl_specs(prompts, root, data.max_samples)?;
            RowSource::Rows(expert_rows(model, episodes, preprocess, &specs, seed)?)
        }
    })
}

/// Runs the SFT stage (see the module doc).
pub fn sft(model: &mut Model, at: &StagePlace<'_>, stage: &SftStage) -> Result<StageReport, RunError> {
    let SftStage { name, model: _, data, preprocess, optimizer, schedule, checkpoint, logging } = stage;
    let StagePlace { world, stage_dir, seed, progress, resume: _ } = *at;
    let Logging { sinks, log_every, progress_bars } = logging;
    let t0 = Instant::now();
    let source = row_source(model, data, preprocess, seed)?;
    if source.is_empty() {
        let what = match data.source {
            SftSource::Files(_) => "the training files hold no lines",
            SftSource::Expert { .. } => "the expert produced no successful trajectory to train on",
        };
        return Err(RunError::Data(format!("stage `{name}`: {what}")));
    }
    let options = SftOptions::from_schedule(schedule);
    let per_step = options.rows_per_step() * world.size() as usize;
    let cursor = DataCursor::new(source.len(), data.data_seed, data.shuffle, false);
    let total = total_steps(cursor.batches_per_epoch(per_step) as u64, schedule.epochs, schedule.max_steps);
    let (adamw, mut sync) = world.optimizer(model.thinker(), AdamWConfig::from_recipe(optimizer, total))?;
    let mut learner = SftLearner { options, progress: false, optimizer: adamw };
    let mut state = TrainState::new(name.clone(), seed, cursor);
    if let Some(dir) = at.resume {
        state = restore_step(model, world, &mut sync, &mut learner.optimizer, dir, name)?;
    }
    let mut logger = open_logger(world, stage_dir, sinks, *log_every, at.resume.map(|_| state.step))?;
    let builder = RowBuilder {
        encoder: model.encoder.clone(),
        budgets: MediaBudgets { image: preprocess.image_sizing(), video: preprocess.video_sampling() },
        patch_dim: model.patch_dim()?,
        max_seq_length: schedule.max_seq_length as usize,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(data.num_workers.max(1) as usize)
        .thread_name(|i| format!("sft-rows-{i}"))
        .build()
        .map_err(|e| RunError::Data(format!("data workers: {e}")))?;
    let walk = Walk {
        cursor: state.cursor.clone(),
        per_step,
        steps: total.saturating_sub(state.step),
        rank: world.rank() as usize,
        world: world.size() as usize,
    };
    let bar = Progress::new(total, "sft", progress && *progress_bars && world.is_main());
    bar.set_position(state.step);
    let mut report = StageReport { name: name.clone(), kind: "sft".into(), ..StageReport::default() };
    // Rows read and dropped so far (carried through step checkpoints).
    let counted = |key: &str| state.extra.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let (mut rows_seen, mut dropped) = (counted("rows"), counted("dropped_rows"));
    std::thread::scope(|scope| -> Result<(), RunError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Prepared, RunError>>(PREFETCH_BATCHES);
        let (src, b, p) = (&source, &builder, &pool);
        scope.spawn(move || produce(src, b, walk, p, &tx));
        for step in state.step + 1..=total {
            let waited = Instant::now();
            let prepared = rx.recv().map_err(|_| RunError::Data("the row workers stopped".into()))??;
            let wait_s = waited.elapsed().as_secs_f64();
            let mut counts = [prepared.rows.len() as f64, prepared.dropped as f64];
            world.sum(&mut counts)?;
            rows_seen += (counts[0] + counts[1]) as u64;
            dropped += counts[1] as u64;
            state.step = step;
            state.cursor = prepared.cursor;
            state.extra = serde_json::json!({ "rows": rows_seen, "dropped_rows": dropped });
            report.steps = step;
            bar.inc(1);
            if counts[0] > 0.0 {
                let stats = learner.step(model.thinker(), &prepared.rows, &mut sync)?;
                let mut scalars = world.mean_scalars(stats.scalars())?;
                scalars.push("data/wait_s", wait_s);
                scalars.push("data/build_s", prepared.build_s);
                scalars.push("data/dropped_rows", dropped as f64);
                if let Some(l) = logger.as_mut() {
                    l.log(step, step == total, &scalars).map_err(RunError::io(stage_dir))?;
                }
                bar.set_message(format!("loss {:.3}", stats.loss));
                report.last = scalars.0.into_iter().collect();
            }
            after_step(model, at, &sync, &learner.optimizer, &state, checkpoint, total)?;
        }
        Ok(())
    })?;
    bar.finish();
    report.rows = Some(rows_seen);
    report.dropped_rows = Some(dropped);
    report.wall_s = t0.elapsed().as_secs_f64();
    Ok(report)
}
