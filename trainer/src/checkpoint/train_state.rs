//! Training checkpoints and resumption: everything a run needs to continue bit for bit.
//!
//! A checkpoint is a directory `<run>/checkpoints/step-NNNNNNNN/` holding
//! * `model/`: the weights as a Hugging Face checkpoint (`config.json` + safetensors, written by
//!   the policy's `save_hf`, so `from_pretrained` loads it and no conversion step exists);
//! * `optimizer.safetensors`: AdamW moments and fp32 master weights (`checkpoint.save_optimizer`;
//!   without it a resume restarts the moments from zero but keeps the LR schedule position);
//! * `train_state.json`: the [`TrainState`] (stage, optimizer step, data cursor, the loop's RNG,
//!   the seed libtorch is reseeded from, optimizer counters, free-form `extra`) plus the list of
//!   files with their sizes. It is written last and is the completeness marker.
//!
//! Writing is atomic (`checkpoint::atomic`: temporary sibling directory, `fsync` of every file and
//! directory, one rename, `fsync` of the parent), older checkpoints beyond `keep_last` are deleted
//! only after the new one is published, and [`resume_dir`] finds the newest complete one, so a run
//! killed at any moment resumes from the last complete checkpoint.
//!
//! RNG: tch cannot read libtorch's generator state back, so the loop calls
//! [`TrainState::seed_torch`] before every step, which seeds libtorch from `(seed, step)`; the data
//! order and the loop's own randomness live in the cursor and [`SplitMix64`], both saved. With
//! that, on CPU, training 4 steps equals 2 + checkpoint + restore in a fresh model and optimizer +
//! 2, tensor for tensor (`trainer/tests/checkpoint_resume.rs`).
//!
//! A data-parallel run builds one checkpoint from several ranks ([`TrainState::begin`], each
//! rank's files, [`TrainState::finish`]): ZeRO-1 shards sit beside the weights and are listed in
//! the manifest; [`TrainState::restore`] loads the replicated state and each rank then reads its
//! own shard (`Zero1::load_shard`, called by the runner's `run::resume`). Left out: asynchronous
//! writes (a step waits for its checkpoint).

use super::atomic::{self, FileEntry, MANIFEST_FILE};
use super::tensor_io::{TensorIoError, read_safetensors, write_safetensors};
use crate::learner::optim::{AdamW, OptimizerCounters, OptimizerStateError};
use crate::learner::{DataCursor, PolicyError, SplitMix64, TrainablePolicy};
use crate::recipe::resolved::Checkpointing;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of `train_state.json`.
pub const STATE_FORMAT: u32 = 1;
/// Subdirectory of a run holding its checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const MODEL_DIR: &str = "model";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

#[derive(Debug, thiserror::Error)]
pub enum TrainStateError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("saving or loading the model: {0}")]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Tensors(#[from] TensorIoError),
    #[error("{path}: {source}")]
    Optimizer {
        path: String,
        #[source]
        source: OptimizerStateError,
    },
    #[error("{path}: {message}")]
    Manifest { path: String, message: String },
    #[error("no complete checkpoint under {0}")]
    NoCheckpoint(String),
    #[error("{0} is not a complete checkpoint (missing or damaged files)")]
    Incomplete(String),
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> TrainStateError + '_ {
    move |e| TrainStateError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// The run's progress and random state at a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Stage name (`sft`, `rl`, ...).
    pub stage: String,
    /// Optimizer steps (training steps) completed.
    pub step: u64,
    pub cursor: DataCursor,
    /// The loop's own generator.
    pub rng: SplitMix64,
    /// Base seed libtorch is reseeded from at each step.
    pub seed: u64,
    /// Filled by [`save`](Self::save).
    #[serde(default)]
    pub optimizer: OptimizerCounters,
    /// Whether the checkpoint holds the optimizer moments.
    #[serde(default)]
    pub optimizer_saved: bool,
    /// Anything else the loop wants back (running metrics, recipe digest, ...).
    #[serde(default)]
    pub extra: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    state: TrainState,
    files: Vec<FileEntry>,
}

fn read_manifest(path: &Path) -> Result<Manifest, TrainStateError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let m: Manifest = serde_json::from_str(&text)
        .map_err(|e| TrainStateError::Manifest { path: path.display().to_string(), message: e.to_string() })?;
    if m.format != STATE_FORMAT {
        let message = format!("format {} is not supported (expected {STATE_FORMAT})", m.format);
        return Err(TrainStateError::Manifest { path: path.display().to_string(), message });
    }
    Ok(m)
}

fn manifest_files(path: &Path) -> Option<Vec<FileEntry>> {
    read_manifest(path).ok().map(|m| m.files)
}

/// The libtorch seed for `step` of a run seeded with `seed` (non-negative).
pub fn torch_seed(seed: u64, step: u64) -> i64 {
    ((seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 1) as i64
}

/// `<run_dir>/checkpoints`.
pub fn checkpoints_root(run_dir: &Path) -> PathBuf {
    run_dir.join(CHECKPOINTS_DIR)
}

/// The newest complete checkpoint under `root`.
pub fn latest_checkpoint(root: &Path) -> Option<(u64, PathBuf)> {
    atomic::complete_checkpoints(root, &manifest_files).pop()
}

/// Complete checkpoints under `root`, oldest first.
pub fn list_checkpoints(root: &Path) -> Vec<(u64, PathBuf)> {
    atomic::complete_checkpoints(root, &manifest_files)
}

/// The checkpoint `omnirl train RECIPE --resume [DIR]` continues from.
/// * `explicit = None` (`--resume` alone): the newest complete checkpoint of `run_dir`, or `None`
///   when the run has none yet (a fresh start).
/// * `explicit = Some(dir)`: `dir` itself when it is a checkpoint (an error if incomplete), else
///   the newest complete checkpoint in `dir/checkpoints` or `dir`; an error when there is none.
pub fn resume_dir(run_dir: &Path, explicit: Option<PathBuf>) -> Result<Option<PathBuf>, TrainStateError> {
    let Some(dir) = explicit else { return Ok(latest_checkpoint(&checkpoints_root(run_dir)).map(|(_, p)| p)) };
    if dir.join(MANIFEST_FILE).is_file() {
        return if atomic::is_complete(&dir, &manifest_files) {
            Ok(Some(dir))
        } else {
            Err(TrainStateError::Incomplete(dir.display().to_string()))
        };
    }
    for root in [checkpoints_root(&dir), dir.clone()] {
        if let Some((_, p)) = latest_checkpoint(&root) {
            return Ok(Some(p));
        }
    }
    Err(TrainStateError::NoCheckpoint(dir.display().to_string()))
}

impl TrainState {
    /// The state at the start of a run.
    pub fn new(stage: impl Into<String>, seed: u64, cursor: DataCursor) -> Self {
        TrainState {
            stage: stage.into(),
            step: 0,
            cursor,
            rng: SplitMix64::new(seed),
            seed,
            optimizer: OptimizerCounters::default(),
            optimizer_saved: false,
            extra: serde_json::Value::Null,
        }
    }

    /// Seeds libtorch for the step about to run (`step + 1`); call before every training step.
    pub fn seed_torch(&self) {
        tch::manual_seed(torch_seed(self.seed, self.step + 1));
    }

    /// Writes checkpoint `step-<self.step>` under `root` (normally [`checkpoints_root`]) atomically,
    /// then keeps the newest `keep_last`. Returns the published directory. (One process; a
    /// data-parallel run calls [`begin`](Self::begin), the writes of every rank, then
    /// [`finish`](Self::finish).)
    pub fn save<P: TrainablePolicy>(
        &self,
        root: &Path,
        policy: &P,
        optimizer: &AdamW,
        cfg: &Checkpointing,
    ) -> Result<PathBuf, TrainStateError> {
        let tmp = self.begin(root)?;
        let written = self.write_main(&tmp, policy, optimizer, cfg.save_optimizer);
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        self.finish(&tmp, root, optimizer.counters(), cfg)
    }

    /// Clears leftovers of killed saves in `root` and creates the temporary directory this
    /// step's checkpoint is built in.
    pub fn begin(&self, root: &Path) -> Result<PathBuf, TrainStateError> {
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        atomic::remove_leftovers(root).map_err(io_err(root))?;
        atomic::temp_dir_for(root, self.step).map_err(io_err(root))
    }

    /// The main rank's files: the weights (`model/`) and, with `save_optimizer`, the state of
    /// `optimizer` (a replicated AdamW; a sharded one holds nothing here and its ranks write
    /// their own shards).
    pub fn write_main<P: TrainablePolicy>(
        &self,
        dir: &Path,
        policy: &P,
        optimizer: &AdamW,
        save_optimizer: bool,
    ) -> Result<(), TrainStateError> {
        policy.save_hf(&dir.join(MODEL_DIR))?;
        if save_optimizer && optimizer.numel() > 0 {
            write_safetensors(&dir.join(OPTIMIZER_FILE), &optimizer.state_tensors())?;
        }
        Ok(())
    }

    /// Writes the manifest (every file of `tmp` with its size, so shards written by other ranks
    /// count; the optimizer's `counters`), publishes `tmp` as `step-<self.step>` and prunes
    /// beyond `keep_last`.
    pub fn finish(
        &self,
        tmp: &Path,
        root: &Path,
        counters: OptimizerCounters,
        cfg: &Checkpointing,
    ) -> Result<PathBuf, TrainStateError> {
        let mut state = self.clone();
        state.optimizer = counters;
        state.optimizer_saved = cfg.save_optimizer;
        let files = atomic::list_files(tmp).map_err(io_err(tmp))?;
        let manifest = Manifest { format: STATE_FORMAT, state, files };
        let path = tmp.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(&manifest)
            .map_err(|e| TrainStateError::Manifest { path: path.display().to_string(), message: e.to_string() })?;
        std::fs::write(&path, text).map_err(io_err(&path))?;
        let dest = atomic::publish(tmp, root, self.step).map_err(io_err(root))?;
        atomic::prune(root, cfg.keep_last as usize, &manifest_files).map_err(io_err(root))?;
        Ok(dest)
    }

    /// Reads the state of the checkpoint in `dir` without touching model or optimizer.
    pub fn read(dir: &Path) -> Result<TrainState, TrainStateError> {
        Ok(read_manifest(&dir.join(MANIFEST_FILE))?.state)
    }

    /// Loads checkpoint `dir` into `policy` (weights in place) and `optimizer` (moments, master
    /// weights, counters) and returns its state. The optimizer must have been built over the same
    /// trainable tensors.
    pub fn restore<P: TrainablePolicy>(
        dir: &Path,
        policy: &mut P,
        optimizer: &mut AdamW,
    ) -> Result<TrainState, TrainStateError> {
        if !atomic::is_complete(dir, &manifest_files) {
            return Err(TrainStateError::Incomplete(dir.display().to_string()));
        }
        let state = Self::read(dir)?;
        policy.load_hf(&dir.join(MODEL_DIR))?;
        // A sharded optimizer (no tensors here) reads its ranks' shards itself.
        if state.optimizer_saved && optimizer.numel() > 0 {
            let path = dir.join(OPTIMIZER_FILE);
            let mut loaded = std::collections::HashSet::new();
            let mut failure = None;
            read_safetensors(&path, |name, t| {
                match optimizer.load_state_tensor(name, &t) {
                    Ok(true) => {
                        loaded.insert(name.to_owned());
                    }
                    Ok(false) => {}
                    Err(e) => failure = failure.take().or(Some(e)),
                }
                Ok(())
            })?;
            let optimizer_err = |source| TrainStateError::Optimizer { path: path.display().to_string(), source };
            if let Some(e) = failure {
                return Err(optimizer_err(e));
            }
            if let Some(missing) = optimizer.state_names().into_iter().find(|n| !loaded.contains(n)) {
                return Err(optimizer_err(OptimizerStateError::Missing(missing)));
            }
        } else {
            // Fresh moments; masters from the restored weights (not the pre-restore ones).
            optimizer.reset_state().map_err(|e| TrainStateError::Optimizer {
                path: dir.display().to_string(),
                source: OptimizerStateError::Torch(e),
            })?;
        }
        optimizer.set_counters(state.optimizer);
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_seeds_are_distinct_and_non_negative() {
        let seeds: Vec<i64> = (0..100).map(|s| torch_seed(42, s)).collect();
        assert!(seeds.iter().all(|&s| s >= 0));
        let mut sorted = seeds.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), seeds.len());
    }
}
