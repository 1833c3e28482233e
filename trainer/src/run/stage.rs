//! What every stage of a run shares: where it runs ([`StagePlace`]), what it reports
//! ([`StageReport`]), its metric sinks ([`open_logger`]) and its step checkpoints
//! ([`save_step`], [`after_step`]).
//!
//! A step checkpoint is `<stage>/checkpoints/step-NNNNNNNN/` (`checkpoint::train_state`): the
//! weights (`model/`, with the tokenizer), the optimizer state when `checkpoint.save_optimizer`
//! (the replicated AdamW's, or every rank's ZeRO-1 shard), and `train_state.json` written last
//! (step, data cursor, RNG state, optimizer counters, the list of files). It is built in a
//! temporary directory, published with one rename, and older ones beyond `keep_last` are
//! deleted after that; every rank takes part and returns once it is complete.

use super::RunError;
use super::interrupt;
use super::model::Model;
use super::world::World;
use crate::checkpoint::train_state::{CHECKPOINTS_DIR, MODEL_DIR, TrainState};
use crate::dist::data_parallel::DataParallelSync;
use crate::learner::AdamW;
use crate::metrics::MetricsLogger;
use crate::recipe::resolved::{Checkpointing, MetricSinks};
use std::collections::BTreeMap;
use std::path::Path;

/// Where a stage runs: this rank, the stage's directory, the run's seed, whether to draw
/// progress bars (a terminal, rank 0), and the step checkpoint to continue from (`--resume`).
#[derive(Debug, Clone, Copy)]
pub struct StagePlace<'a> {
    pub world: &'a World,
    pub stage_dir: &'a Path,
    pub seed: u64,
    pub progress: bool,
    pub resume: Option<&'a Path>,
}

/// What a stage did (a `summary.json` entry).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct StageReport {
    pub name: String,
    pub kind: String,
    pub steps: u64,
    pub wall_s: f64,
    /// Last logged scalars.
    pub last: BTreeMap<String, f64>,
    /// SFT: rows read, and rows dropped for exceeding `schedule.max_seq_length`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_rows: Option<u64>,
}

/// The metric sinks of a stage, on rank 0 only; continuing after `resumed_step`, the lines and
/// events of later steps (written before an interruption) are dropped.
pub fn open_logger(
    world: &World,
    stage_dir: &Path,
    sinks: &MetricSinks,
    log_every: u64,
    resumed_step: Option<u64>,
) -> Result<Option<MetricsLogger>, RunError> {
    if !world.is_main() {
        return Ok(None);
    }
    MetricsLogger::open(stage_dir, sinks, log_every, resumed_step).map(Some).map_err(RunError::io(stage_dir))
}

/// What a training loop does after step `state.step` of `total`: the periodic step checkpoint,
/// and when any rank received a stop signal (`run::interrupt`), a checkpoint of this step (if it
/// is not the periodic one) and [`RunError::Interrupted`]. The last step saves nothing: the
/// stage's result follows. Every rank must call it.
pub fn after_step(
    model: &Model,
    at: &StagePlace<'_>,
    sync: &DataParallelSync<'_>,
    optimizer: &AdamW,
    state: &TrainState,
    cfg: &Checkpointing,
    total: u64,
) -> Result<(), RunError> {
    let (world, stage_dir, step) = (at.world, at.stage_dir, state.step);
    if step >= total {
        return Ok(());
    }
    let periodic = cfg.save_every > 0 && step % cfg.save_every == 0;
    if periodic {
        save_step(model, world, sync, optimizer, state, stage_dir, cfg)?;
    }
    if interrupt::agreed(world)? {
        if !periodic {
            save_step(model, world, sync, optimizer, state, stage_dir, cfg)?;
        }
        return Err(interrupt::interrupted(&state.stage, step));
    }
    Ok(())
}

/// Publishes the step checkpoint of `state` (see the module doc). Every rank must call it.
pub fn save_step(
    model: &Model,
    world: &World,
    sync: &DataParallelSync<'_>,
    optimizer: &AdamW,
    state: &TrainState,
    stage_dir: &Path,
    cfg: &Checkpointing,
) -> Result<(), RunError> {
    let root = stage_dir.join(CHECKPOINTS_DIR);
    let fail = |e: &dyn std::fmt::Display| RunError::Io { path: root.display().to_string(), message: e.to_string() };
    let mut tmp = root.clone();
    if world.is_main() {
        tmp = state.begin(&root).map_err(|e| fail(&e))?;
        state.write_main(&tmp, model.thinker(), optimizer, cfg.save_optimizer).map_err(|e| fail(&e))?;
        model.copy_tokenizer(&tmp.join(MODEL_DIR))?;
    }
    let tmp = world.agree_path(&tmp)?;
    world.barrier()?;
    if let Some(z) = sync.zero1.as_ref().filter(|_| cfg.save_optimizer) {
        z.save_shard(&tmp, world.rank(), world.size()).map_err(|e| fail(&e))?;
    }
    world.barrier()?;
    if world.is_main() {
        let counters = sync.zero1.as_ref().map_or_else(|| optimizer.counters(), |z| z.optimizer.counters());
        state.finish(&tmp, &root, counters, cfg).map_err(|e| fail(&e))?;
    }
    world.barrier()
}
