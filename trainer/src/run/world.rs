//! The ranks of one `omnirl train` run: who this process is, its device, and the few collectives
//! the stage runner needs beyond the learners' gradient sync.
//!
//! Every rank runs the same stage code on the same recipe. Rank 0 (the main rank) decides the run
//! directory and writes every file (resolved recipe, random initialisation, checkpoints,
//! metrics, evaluation outputs, `summary.json`); the others read what it wrote after a barrier,
//! so `output_dir` must be on a filesystem every node sees (as resuming needs anyway). With
//! optimizer-state sharding each rank also writes its own shard into the stage's step checkpoints.
//!
//! Left out: sharded evaluation (every rank evaluates the whole held-out set with the same
//! weights and seed and only rank 0 writes the results; sharding it needs trajectories that
//! travel between ranks).

use super::RunError;
use crate::dist::comm::{CommBuf, Communicator, all_gather_bytes, broadcast_bytes};
use crate::dist::data_parallel::{DEFAULT_BUCKET_ELEMS, DataParallelSync, broadcast_parameters};
use crate::dist::env::{RankInfo, discover};
use crate::dist::runtime::Runtime;
use crate::dist::zero1::Zero1;
use crate::learner::{AdamW, AdamWConfig, TrainablePolicy};
use crate::metrics::Scalars;
use crate::recipe::{DeviceKind, DistributedConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Device;

/// This process's place in the run.
#[derive(Debug)]
pub struct World {
    runtime: Runtime,
    info: RankInfo,
    shard_optimizer: bool,
}

fn dist_error(e: impl std::fmt::Display) -> RunError {
    RunError::Dist(e.to_string())
}

impl World {
    /// The ranks the launcher (mpirun, srun, env variables) started, with the recipe's backend.
    pub fn start(dist: &DistributedConfig) -> Result<World, RunError> {
        let (info, problems) = discover(&|k: &str| std::env::var(k).ok());
        if let Some(p) = problems.first() {
            return Err(RunError::Dist(format!("{}: {}", p.variable, p.message)));
        }
        let cuda = wants_cuda(dist);
        let runtime = Runtime::start(&info, dist, cuda).map_err(dist_error)?;
        let shard_optimizer = dist.shard_optimizer_state && info.world_size > 1;
        Ok(World { runtime, info, shard_optimizer })
    }

    pub fn rank(&self) -> u32 {
        self.comm().rank()
    }

    pub fn size(&self) -> u32 {
        self.comm().world_size()
    }

    /// Rank 0: writes the run's files and prints progress.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    pub fn comm(&self) -> &dyn Communicator {
        self.runtime.comm()
    }

    /// The device this rank trains on when the recipe asks for CUDA and there is one: the
    /// `local_rank`-th of `distributed.gpu_ids` (GPU_IDS), else the GPU the launch variables
    /// chose (CUDA_VISIBLE_DEVICES, local rank); else the CPU.
    pub fn device(&self, dist: &DistributedConfig) -> Device {
        if !wants_cuda(dist) {
            return Device::Cpu;
        }
        let local = self.info.local_rank;
        let gpu = dist.gpu_ids.get(local as usize).copied().or(self.info.gpu_index).unwrap_or(local);
        Device::Cuda(gpu as usize)
    }

    pub fn barrier(&self) -> Result<(), RunError> {
        if self.size() > 1 {
            self.comm().barrier().map_err(dist_error)?;
        }
        Ok(())
    }

    /// Rank 0's `path` on every rank.
    pub fn agree_path(&self, path: &Path) -> Result<PathBuf, RunError> {
        let bytes = broadcast_bytes(self.comm(), path.to_string_lossy().as_bytes(), 0).map_err(dist_error)?;
        Ok(PathBuf::from(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Element-wise sum over ranks.
    pub fn sum(&self, values: &mut [f64]) -> Result<(), RunError> {
        if self.size() > 1 {
            self.comm().all_reduce_sum_buf(CommBuf::F64(values)).map_err(dist_error)?;
        }
        Ok(())
    }

    /// Rank 0's trainable tensors on every rank.
    pub fn broadcast_weights<P: TrainablePolicy>(&self, policy: &P) -> Result<(), RunError> {
        if self.size() > 1 {
            broadcast_parameters(self.comm(), &policy.trainable_variables()).map_err(dist_error)?;
        }
        Ok(())
    }

    /// The learner's optimizer and its gradient sync: a replicated AdamW, or with
    /// `distributed.shard_optimizer_state` over several ranks, an empty AdamW and a ZeRO-1
    /// optimizer holding this rank's share of the state.
    pub fn optimizer<P: TrainablePolicy>(
        &self,
        policy: &P,
        config: AdamWConfig,
    ) -> Result<(AdamW, DataParallelSync<'_>), RunError> {
        let params = policy.trainable_variables();
        let (adamw, zero1) = if self.shard_optimizer {
            let z = Zero1::new(params, config, self.rank(), self.size()).map_err(dist_error)?;
            (AdamW::new(Vec::new(), config)?, Some(z))
        } else {
            (AdamW::new(params, config)?, None)
        };
        Ok((adamw, DataParallelSync { comm: self.comm(), bucket_elems: DEFAULT_BUCKET_ELEMS, zero1 }))
    }

    /// Each scalar averaged over the ranks that logged it (rank 0's order; names only other
    /// ranks logged are appended). One process: `s` unchanged.
    pub fn mean_scalars(&self, s: Scalars) -> Result<Scalars, RunError> {
        if self.size() <= 1 {
            return Ok(s);
        }
        let mine = serde_json::to_vec(&s.0).map_err(dist_error)?;
        let all = all_gather_bytes(self.comm(), &mine).map_err(dist_error)?;
        let mut order: Vec<String> = Vec::new();
        let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for bytes in all {
            let pairs: Vec<(String, f64)> = serde_json::from_slice(&bytes).map_err(dist_error)?;
            for (name, v) in pairs {
                let e = sums.entry(name.clone()).or_insert_with(|| {
                    order.push(name);
                    (0.0, 0.0)
                });
                e.0 += v;
                e.1 += 1.0;
            }
        }
        Ok(Scalars(order.into_iter().map(|n| (n.clone(), sums.get(&n).map_or(0.0, |(s, c)| s / c))).collect()))
    }
}

fn wants_cuda(dist: &DistributedConfig) -> bool {
    dist.device != DeviceKind::Cpu && tch::Cuda::is_available()
}
