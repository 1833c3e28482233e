//! ZeRO-1: AdamW state sharded across ranks, one owner per parameter tensor.
//!
//! After the gradient all-reduce every rank holds the full gradient. [`Zero1`] partitions the
//! parameter tensors over ranks (balanced by element count, whole tensors, deterministic), keeps
//! AdamW moments (and fp32 masters) only for the tensors this rank owns, and after each update
//! broadcasts every tensor from its owner. Gradient clipping and the non-finite skip use the
//! *global* norm computed exactly as `AdamW::step` does, so the result equals the replicated
//! optimizer's (same floating-point operations per tensor). Optimizer memory per rank is about
//! 1/world of the replicated state; each rank saves and restores its own shard
//! ([`Zero1::save_shard`] / [`Zero1::load_shard`]: `optimizer-rank<r>-of-<w>.safetensors` plus a
//! JSON sidecar with the counters and the ownership, both written atomically).
//!
//! The run writes every rank's shard into its step checkpoints (`run::stage::save_step`). Left
//! out: splitting single tensors across ranks (a tensor larger than 1/world of the model stays
//! with one owner), gradient sharding (ZeRO-2), and re-sharding a checkpoint for a different
//! world size.

use super::comm::Communicator;
use super::data_parallel::DataParallelError;
use crate::checkpoint::tensor_io::{TensorIoError, read_safetensors, write_safetensors};
use crate::learner::optim::OptimizerStateError;
use crate::learner::{AdamW, AdamWConfig, OptimizerCounters, StepReport};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum ShardIoError {
    #[error(transparent)]
    Tensors(#[from] TensorIoError),
    #[error(transparent)]
    State(#[from] OptimizerStateError),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path}: {message}")]
    Layout { path: String, message: String },
}

#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct ShardMeta {
    rank: u32,
    world: u32,
    owners: Vec<u32>,
    counters: OptimizerCounters,
}

/// How every shard file's name starts.
pub const SHARD_PREFIX: &str = "optimizer-rank";

/// The tensors and metadata files of `rank`'s shard of a `world`-rank optimizer in `dir`.
pub fn shard_paths(dir: &Path, rank: u32, world: u32) -> (PathBuf, PathBuf) {
    let stem = format!("{SHARD_PREFIX}{rank:05}-of-{world:05}");
    (dir.join(format!("{stem}.safetensors")), dir.join(format!("{stem}.json")))
}

/// AdamW over this rank's share of the parameters.
#[derive(Debug)]
pub struct Zero1 {
    /// The owned tensors' optimizer (clipping disabled: done here on the global norm).
    pub optimizer: AdamW,
    /// Every parameter (all ranks list the same ones, in the same order).
    params: Vec<(String, Tensor)>,
    /// Owner rank of each parameter.
    owners: Vec<u32>,
    grad_clip: f64,
}

pub use trainer_config::dist::shard::partition;

impl Zero1 {
    pub fn new(
        params: Vec<(String, Tensor)>,
        config: AdamWConfig,
        rank: u32,
        world: u32,
    ) -> Result<Zero1, DataParallelError> {
        let owners = partition(&params.iter().map(|(_, t)| t.numel()).collect::<Vec<_>>(), world)?;
        let owned: Vec<(String, Tensor)> = params
            .iter()
            .zip(&owners)
            .filter(|(_, o)| **o == rank)
            .map(|((n, t), _)| (n.clone(), t.shallow_clone()))
            .collect();
        let optimizer = AdamW::new(owned, AdamWConfig { grad_clip: 0.0, ..config })?;
        Ok(Zero1 { optimizer, params, owners, grad_clip: config.grad_clip })
    }

    pub fn owners(&self) -> &[u32] {
        &self.owners
    }

    /// Zero every parameter's gradient (not only the owned ones: backward fills them all).
    pub fn zero_grad(&self) -> Result<(), tch::TchError> {
        crate::learner::zero_gradients(&self.params)
    }

    /// Global gradient norm, as `AdamW::grad_norm` computes it over all parameters.
    fn grad_norm(&self) -> Result<f64, tch::TchError> {
        crate::learner::optim::grad_norm_of(self.params.iter().map(|(_, p)| p))
    }

    /// Clip on the global norm, update the owned tensors that `updates` names (those some rank
    /// had a gradient for), broadcast every tensor from its owner. Call after the gradients have
    /// been all-reduced.
    pub fn step<C: Communicator + ?Sized>(
        &mut self,
        comm: &C,
        updates: &dyn Fn(&str) -> bool,
    ) -> Result<StepReport, DataParallelError> {
        let lr = self.optimizer.current_lr();
        let grad_norm = self.grad_norm()?;
        if !grad_norm.is_finite() {
            self.zero_grad()?;
            let mut c = self.optimizer.counters();
            c.scheduler_steps += 1;
            self.optimizer.set_counters(c);
            return Ok(StepReport { grad_norm, lr, skipped: true });
        }
        let scale = if self.grad_clip > 0.0 { (self.grad_clip / (grad_norm + 1e-6)).min(1.0) } else { 1.0 };
        if scale < 1.0 {
            tch::no_grad(|| -> Result<(), tch::TchError> {
                for ((_, p), &o) in self.params.iter().zip(&self.owners) {
                    let mut g = p.grad();
                    if o == comm.rank() && g.defined() {
                        let scaled = g.f_to_kind(Kind::Float)?.f_mul_scalar(scale)?.f_to_kind(g.kind())?;
                        g.f_copy_(&scaled)?;
                    }
                }
                Ok(())
            })?;
        }
        let report = self.optimizer.step_where(updates)?;
        for ((_, p), &owner) in self.params.iter().zip(&self.owners) {
            let mut p = p.shallow_clone();
            comm.broadcast(&mut p, owner)?;
        }
        Ok(StepReport { grad_norm, lr, skipped: report.skipped })
    }

    /// This rank's optimizer shard (moments and masters of the owned tensors), for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.optimizer.state_tensors()
    }

    /// Write this rank's shard into `dir` (atomically: temporary files, then renames).
    pub fn save_shard(&self, dir: &Path, rank: u32, world: u32) -> Result<PathBuf, ShardIoError> {
        let (tensors, meta) = shard_paths(dir, rank, world);
        let io = |p: &Path, e: String| ShardIoError::Io { path: p.display().to_string(), message: e };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e.to_string()))?;
        let tmp = tensors.with_extension("safetensors.tmp");
        let state: Vec<(String, Tensor)> = self
            .state_tensors()
            .into_iter()
            .map(|(n, t)| Ok((n, t.f_detach()?.f_contiguous()?)))
            .collect::<Result<_, tch::TchError>>()
            .map_err(|e| io(&tmp, e.to_string()))?;
        write_safetensors(&tmp, &state)?;
        std::fs::rename(&tmp, &tensors).map_err(|e| io(&tensors, e.to_string()))?;
        let m = ShardMeta { rank, world, owners: self.owners.clone(), counters: self.optimizer.counters() };
        let text = serde_json::to_string(&m).map_err(|e| io(&meta, e.to_string()))?;
        let tmp = meta.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| io(&tmp, e.to_string()))?;
        std::fs::rename(&tmp, &meta).map_err(|e| io(&meta, e.to_string()))?;
        Ok(tensors)
    }

    /// Restore this rank's shard from `dir`; the world size and tensor ownership must match.
    pub fn load_shard(&mut self, dir: &Path, rank: u32, world: u32) -> Result<(), ShardIoError> {
        let (tensors, meta) = shard_paths(dir, rank, world);
        let layout = |message: String| ShardIoError::Layout { path: meta.display().to_string(), message };
        let text = std::fs::read_to_string(&meta)
            .map_err(|e| ShardIoError::Io { path: meta.display().to_string(), message: e.to_string() })?;
        let m: ShardMeta = serde_json::from_str(&text).map_err(|e| layout(e.to_string()))?;
        if (m.rank, m.world) != (rank, world) || m.owners != self.owners {
            return Err(layout(format!(
                "written by rank {} of {} with owners {:?}; this is rank {rank} of {world} with owners {:?}",
                m.rank, m.world, m.owners, self.owners
            )));
        }
        let mut loaded = 0usize;
        let mut failure = None;
        let optimizer = &mut self.optimizer;
        read_safetensors(&tensors, |name, t| {
            match optimizer.load_state_tensor(name, &t) {
                Ok(true) => loaded += 1,
                Ok(false) => {}
                Err(e) => failure = failure.take().or(Some(e)),
            }
            Ok(())
        })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        let expected = self.optimizer.state_tensors().len();
        if loaded != expected {
            return Err(layout(format!("{loaded} of {expected} state tensors found")));
        }
        self.optimizer.set_counters(m.counters);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_balances_whole_tensors() {
        assert_eq!(partition(&[10, 10, 10, 10], 2).unwrap(), vec![0, 1, 0, 1]);
        assert_eq!(partition(&[100, 1, 1], 2).unwrap(), vec![0, 1, 1]);
        assert_eq!(partition(&[5, 5], 1).unwrap(), vec![0, 0]);
        assert_eq!(partition(&[], 4).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn shards_save_and_load_back() {
        use crate::dist::comm::SingleProcess;
        use crate::learner::toy::ToyLm;
        use crate::learner::{DecayRule, LrScheduler, TrainablePolicy};
        let config = AdamWConfig {
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
            grad_clip: 1.0,
            decay_rule: DecayRule::default(),
            schedule: LrScheduler::new(crate::recipe::sections::LrSchedule::Constant, 0.1, 0.0, 4),
        };
        let model = ToyLm::new(8, 4, 3).unwrap();
        let mut z = Zero1::new(model.trainable_variables(), config, 0, 1).unwrap();
        for (_, p) in model.trainable_variables() {
            p.square().sum(Kind::Float).backward();
        }
        z.step(&SingleProcess, &|_| true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        z.save_shard(dir.path(), 0, 1).unwrap();
        let mut fresh = Zero1::new(model.trainable_variables(), config, 0, 1).unwrap();
        fresh.load_shard(dir.path(), 0, 1).unwrap();
        assert_eq!(fresh.optimizer.counters(), z.optimizer.counters());
        for ((n, a), (_, b)) in z.state_tensors().iter().zip(fresh.state_tensors()) {
            assert!(a.equal(&b), "{n}");
        }
        // Another layout is refused, naming it.
        let e = fresh.load_shard(dir.path(), 1, 2).unwrap_err();
        assert!(e.to_string().contains("optimizer-rank00001-of-00002.json"), "{e}");
        std::fs::write(dir.path().join("optimizer-rank00000-of-00001.json"), "{").unwrap();
        assert!(matches!(fresh.load_shard(dir.path(), 0, 1), Err(ShardIoError::Layout { .. })));
    }
}
