//! Choosing and starting the communicator for a run from the recipe's `distributed` section and
//! the discovered rank layout.
//!
//! [`choose`] is the pure decision (table-tested): one rank needs no communication; on CUDA,
//! `auto`/`nccl` use NCCL when its libraries are present (the unique id over MPI when mpirun
//! launched the job, else over the TCP rendezvous at MASTER_ADDR:MASTER_PORT); on the CPU, or with
//! `backend: mpi`, MPI, which needs an MPI launcher (mpirun, or srun with PMI). [`Runtime::start`]
//! carries the decision out; `timeout_s` bounds start-up and every collective (see `watchdog`).
//!
//! Left out: a CPU backend for env-variable launches without MPI (use mpirun for CPU runs).

use super::comm::{Communicator, SingleProcess};
use super::env::{Launcher, RankInfo};
use crate::recipe::{Backend, DistributedConfig};
use std::time::Duration;

/// Which backend a run uses, and how NCCL gets its unique id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Single,
    Mpi,
    NcclOverMpi,
    NcclOverTcp,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "{world} ranks on the CPU need MPI, but the job was launched by {launcher}: launch it with mpirun (scripts/launch.sh --launcher mpirun)"
    )]
    NeedsMpi { world: u32, launcher: &'static str },
    #[error("backend nccl needs CUDA and the NCCL library: {0}")]
    NoNccl(String),
    #[error("NCCL over TCP needs MASTER_ADDR and MASTER_PORT (launched by {0})")]
    NoMaster(&'static str),
    #[error(transparent)]
    Mpi(#[from] super::mpi::MpiInitError),
    #[error(transparent)]
    Nccl(#[from] super::nccl::NcclError),
}

fn mpi_launched(l: Launcher) -> bool {
    matches!(l, Launcher::OpenMpi | Launcher::Pmi)
}

/// The backend for `info` with `backend`, on CUDA or not, with NCCL's libraries present or not
/// (`Err` holds why not).
pub fn choose(info: &RankInfo, backend: Backend, cuda: bool, nccl: Result<(), String>) -> Result<Choice, RuntimeError> {
    if info.world_size <= 1 && backend != Backend::Nccl {
        return Ok(Choice::Single);
    }
    let want_nccl = match backend {
        Backend::Mpi => false,
        Backend::Nccl => true,
        Backend::Auto => cuda && nccl.is_ok(),
    };
    if want_nccl {
        if !cuda {
            return Err(RuntimeError::NoNccl("the run is on the CPU".into()));
        }
        nccl.map_err(RuntimeError::NoNccl)?;
        if mpi_launched(info.launcher) {
            return Ok(Choice::NcclOverMpi);
        }
        if info.world_size > 1 && (info.master_addr.is_none() || info.master_port.is_none()) {
            return Err(RuntimeError::NoMaster(info.launcher.describe()));
        }
        return Ok(Choice::NcclOverTcp);
    }
    if mpi_launched(info.launcher) || info.launcher == Launcher::Slurm {
        Ok(Choice::Mpi)
    } else {
        Err(RuntimeError::NeedsMpi { world: info.world_size, launcher: info.launcher.describe() })
    }
}

/// A started communicator. Field order: NCCL is torn down before MPI is finalised.
pub enum Runtime {
    Single(SingleProcess),
    Mpi(super::mpi::MpiComm),
    Nccl { nccl: super::nccl::NcclComm, mpi: Option<super::mpi::MpiComm> },
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Runtime({}, rank {} of {})", self.comm().backend(), self.comm().rank(), self.comm().world_size())
    }
}

impl Runtime {
    /// Start the communicator `choose` picks for this rank (`cuda`: the run's device is a GPU).
    pub fn start(info: &RankInfo, config: &DistributedConfig, cuda: bool) -> Result<Runtime, RuntimeError> {
        let timeout = Duration::from_secs(config.timeout_s.max(1));
        let nccl = if cuda { super::nccl::libraries_present().map_err(|e| e.to_string()) } else { Err("CPU".into()) };
        let hub = info.master_addr.as_deref();
        let expected = Some((info.rank, info.world_size));
        let gpu = info.gpu_index.unwrap_or(info.local_rank);
        Ok(match choose(info, config.backend, cuda, nccl)? {
            Choice::Single => Runtime::Single(SingleProcess),
            Choice::Mpi => Runtime::Mpi(super::mpi::MpiComm::init(expected, timeout, hub)?),
            Choice::NcclOverMpi => {
                let mpi = super::mpi::MpiComm::init(expected, timeout, hub)?;
                let nccl = super::nccl::NcclComm::init_with_mpi(&mpi, gpu, timeout, hub)?;
                Runtime::Nccl { nccl, mpi: Some(mpi) }
            }
            Choice::NcclOverTcp => {
                Runtime::Nccl { nccl: super::nccl::NcclComm::init_with_rendezvous(info, timeout)?, mpi: None }
            }
        })
    }

    pub fn comm(&self) -> &dyn Communicator {
        match self {
            Runtime::Single(c) => c,
            Runtime::Mpi(c) => c,
            Runtime::Nccl { nccl, .. } => nccl,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(world: u32, launcher: Launcher, master: bool) -> RankInfo {
        RankInfo {
            world_size: world,
            rank: 0,
            local_rank: 0,
            local_world_size: world,
            nnodes: Some(1),
            launcher,
            master_addr: master.then(|| "127.0.0.1".to_owned()),
            master_port: master.then_some(29500),
            gpu_index: None,
            gpu_source: "local rank",
            ignored_sources: Vec::new(),
        }
    }

    #[test]
    fn choose_table() {
        use Backend::{Auto, Nccl};
        use Choice::{NcclOverMpi, NcclOverTcp, Single};
        let ok = || Ok(());
        let missing = || Err("libnccl.so not found".to_owned());
        type Case = (RankInfo, Backend, bool, Result<(), String>, Result<Choice, &'static str>);
        let cases: Vec<Case> = vec![
            (info(1, Launcher::Single, false), Auto, false, missing(), Ok(Single)),
            (info(1, Launcher::Single, false), Auto, true, ok(), Ok(Single)),
            (info(1, Launcher::Single, false), Nccl, true, ok(), Ok(NcclOverTcp)),
            (info(2, Launcher::OpenMpi, false), Auto, false, missing(), Ok(Choice::Mpi)),
            (info(2, Launcher::OpenMpi, false), Auto, true, ok(), Ok(NcclOverMpi)),
            (info(2, Launcher::OpenMpi, false), Auto, true, missing(), Ok(Choice::Mpi)),
            (info(2, Launcher::OpenMpi, false), Backend::Mpi, true, ok(), Ok(Choice::Mpi)),
            (info(8, Launcher::Env, true), Auto, true, ok(), Ok(NcclOverTcp)),
            (info(8, Launcher::Slurm, true), Auto, true, ok(), Ok(NcclOverTcp)),
            (info(8, Launcher::Slurm, false), Auto, false, missing(), Ok(Choice::Mpi)),
            (info(2, Launcher::Env, true), Auto, false, missing(), Err("need MPI")),
            (info(2, Launcher::Env, false), Nccl, true, ok(), Err("MASTER_ADDR")),
            (info(2, Launcher::OpenMpi, false), Nccl, true, missing(), Err("libnccl.so not found")),
            (info(2, Launcher::OpenMpi, false), Nccl, false, ok(), Err("on the CPU")),
        ];
        for (i, (info, backend, cuda, nccl, want)) in cases.into_iter().enumerate() {
            match (choose(&info, backend, cuda, nccl), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "case {i}"),
                (Err(e), Err(part)) => assert!(e.to_string().contains(part), "case {i}: {e}"),
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn single_rank_starts_without_mpi() {
        let config = DistributedConfig {
            backend: Backend::Auto,
            device: crate::recipe::DeviceKind::Cpu,
            gpu_ids: Vec::new(),
            gpu_memory_gib: 80.0,
            shard_optimizer_state: false,
            timeout_s: 5,
        };
        let rt = Runtime::start(&info(1, Launcher::Single, false), &config, false).unwrap();
        assert_eq!(rt.comm().backend(), "single");
        assert_eq!(format!("{rt:?}"), "Runtime(single, rank 0 of 1)");
    }
}
