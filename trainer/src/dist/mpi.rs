//! The MPI backend (rsmpi over the system MPI) for CPU tensors: CPU training runs and CI.
//!
//! [`MpiComm::init`] initialises MPI once per process, checks that MPI's world agrees with the
//! launcher's environment when one was found, and (world size > 1) starts the collective
//! [`Watchdog`]: rank 0 binds the side-channel hub and broadcasts its address over MPI. Every
//! collective is bracketed by the watchdog so a dead or stalled peer ends the job with an error
//! naming it. Buffers are host `Vec`s (see `comm`), so no `unsafe` is needed.
//!
//! Left out: GPU buffers (CUDA-aware MPI is not assumed; GPU runs use NCCL) and MPI's own
//! error handlers (OpenMPI aborts the job on a communication error, which is what we want).

use super::comm::{CommBuf, CommError, CommSrc, Communicator, check_root};
use super::watchdog::Watchdog;
use ::mpi::collective::SystemOperation;
use ::mpi::topology::SimpleCommunicator;
use ::mpi::traits::{Communicator as _, CommunicatorCollectives, Root};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MpiInitError {
    #[error("MPI is already initialised in this process, or MPI_Init failed")]
    Init,
    #[error(
        "MPI reports rank {mpi_rank} of {mpi_world}, but the launcher environment says rank {env_rank} of {env_world}"
    )]
    Mismatch { mpi_rank: u32, mpi_world: u32, env_rank: u32, env_world: u32 },
    #[error("starting the collective watchdog on rank {rank}: {message}")]
    Watchdog { rank: u32, message: String },
}

/// MPI's world communicator with a watchdog. Dropping it finalises MPI.
pub struct MpiComm {
    // Field order matters: the watchdog says goodbye before MPI is finalised.
    watchdog: Watchdog,
    world: SimpleCommunicator,
    _universe: ::mpi::environment::Universe,
    rank: u32,
    size: u32,
}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiComm").field("rank", &self.rank).field("size", &self.size).finish()
    }
}

/// Length of the buffer that carries the hub's address.
const ADDR_BYTES: usize = 256;

impl MpiComm {
    /// Initialise MPI (thread level "multiple" is asked for, "funneled" suffices: only the
    /// calling thread uses MPI). `expected` is (rank, world) from `dist::discover`, checked when
    /// given. `timeout` bounds every collective (see `watchdog`); `hub_host` is the address the
    /// peers use to reach rank 0 (MASTER_ADDR, else rank 0's host name).
    pub fn init(
        expected: Option<(u32, u32)>,
        timeout: Duration,
        hub_host: Option<&str>,
    ) -> Result<MpiComm, MpiInitError> {
        let (universe, _threading) =
            ::mpi::initialize_with_threading(::mpi::Threading::Funneled).ok_or(MpiInitError::Init)?;
        let world = universe.world();
        let (rank, size) = (world.rank().max(0) as u32, world.size().max(1) as u32);
        if let Some((env_rank, env_world)) = expected
            && (env_rank, env_world) != (rank, size)
        {
            return Err(MpiInitError::Mismatch { mpi_rank: rank, mpi_world: size, env_rank, env_world });
        }
        let watchdog =
            if size > 1 { start_watchdog(&world, rank, size, timeout, hub_host)? } else { Watchdog::local(0) };
        Ok(MpiComm { watchdog, world, _universe: universe, rank, size })
    }

    /// Overwrite `buf` with `root`'s bytes (e.g. an NCCL unique id).
    pub fn broadcast_bytes(&self, buf: &mut [u8], root: u32) -> Result<(), CommError> {
        check_root("broadcast", root, self.size)?;
        let root = self.world.process_at_rank(root as i32);
        self.guarded("broadcast", || root.broadcast_into(buf));
        Ok(())
    }

    /// A second watchdog side channel (for another communicator, e.g. NCCL, on these ranks).
    pub fn start_side_watchdog(&self, timeout: Duration, hub_host: Option<&str>) -> Result<Watchdog, MpiInitError> {
        if self.size > 1 {
            start_watchdog(&self.world, self.rank, self.size, timeout, hub_host)
        } else {
            Ok(Watchdog::local(0))
        }
    }

    fn guarded<T>(&self, op: &'static str, f: impl FnOnce() -> T) -> T {
        self.watchdog.enter(op);
        let out = f();
        self.watchdog.leave();
        out
    }
}

fn start_watchdog(
    world: &SimpleCommunicator,
    rank: u32,
    size: u32,
    timeout: Duration,
    hub_host: Option<&str>,
) -> Result<Watchdog, MpiInitError> {
    let err = |message: String| MpiInitError::Watchdog { rank, message };
    let mut addr = [0u8; ADDR_BYTES];
    let listener = if rank == 0 {
        let listener = Watchdog::bind_hub("0.0.0.0:0").map_err(|e| err(e.to_string()))?;
        let port = listener.local_addr().map_err(|e| err(e.to_string()))?.port();
        let host = hub_host.map(str::to_owned).unwrap_or_else(local_host);
        let text = format!("{host}:{port}");
        if text.len() > ADDR_BYTES {
            return Err(err(format!("hub address {text:?} is too long")));
        }
        addr[..text.len()].copy_from_slice(text.as_bytes());
        Some(listener)
    } else {
        None
    };
    world.process_at_rank(0).broadcast_into(&mut addr[..]);
    match listener {
        Some(l) => Watchdog::start_hub(l, size, timeout).map_err(|e| err(e.to_string())),
        None => {
            let end = addr.iter().position(|&b| b == 0).unwrap_or(ADDR_BYTES);
            let text = String::from_utf8_lossy(&addr[..end]).into_owned();
            Watchdog::start_peer(rank, &text, timeout).map_err(|e| err(e.to_string()))
        }
    }
}

/// This machine's host name (for the peers to reach rank 0), else loopback.
fn local_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".into())
}

fn same_len(op: &'static str, a: usize, b: usize) -> Result<(), CommError> {
    if a == b { Ok(()) } else { Err(CommError::Shape { op, message: format!("buffer lengths {a} and {b} differ") }) }
}

impl Communicator for MpiComm {
    fn rank(&self) -> u32 {
        self.rank
    }
    fn world_size(&self) -> u32 {
        self.size
    }
    fn backend(&self) -> &'static str {
        "mpi"
    }

    fn all_reduce_sum_buf(&self, buf: CommBuf<'_>) -> Result<(), CommError> {
        self.guarded("all_reduce", || match buf {
            CommBuf::F32(b) => {
                let send = b.to_vec();
                self.world.all_reduce_into(&send[..], b, SystemOperation::sum());
            }
            CommBuf::F64(b) => {
                let send = b.to_vec();
                self.world.all_reduce_into(&send[..], b, SystemOperation::sum());
            }
        });
        Ok(())
    }

    fn broadcast_buf(&self, buf: CommBuf<'_>, root: u32) -> Result<(), CommError> {
        check_root("broadcast", root, self.size)?;
        let root = self.world.process_at_rank(root as i32);
        self.guarded("broadcast", || match buf {
            CommBuf::F32(b) => root.broadcast_into(b),
            CommBuf::F64(b) => root.broadcast_into(b),
        });
        Ok(())
    }

    fn all_gather_buf(&self, send: CommSrc<'_>, recv: CommBuf<'_>) -> Result<(), CommError> {
        let n = self.size as usize;
        match (send, recv) {
            (CommSrc::F32(s), CommBuf::F32(r)) => {
                same_len("all_gather", s.len() * n, r.len())?;
                self.guarded("all_gather", || self.world.all_gather_into(s, r));
            }
            (CommSrc::F64(s), CommBuf::F64(r)) => {
                same_len("all_gather", s.len() * n, r.len())?;
                self.guarded("all_gather", || self.world.all_gather_into(s, r));
            }
            _ => return Err(CommError::Shape { op: "all_gather", message: "send and receive kinds differ".into() }),
        }
        Ok(())
    }

    fn reduce_scatter_sum_buf(&self, send: CommSrc<'_>, recv: CommBuf<'_>) -> Result<(), CommError> {
        let n = self.size as usize;
        let op = SystemOperation::sum();
        match (send, recv) {
            (CommSrc::F32(s), CommBuf::F32(r)) => {
                same_len("reduce_scatter", s.len(), r.len() * n)?;
                self.guarded("reduce_scatter", || self.world.reduce_scatter_block_into(s, r, op));
            }
            (CommSrc::F64(s), CommBuf::F64(r)) => {
                same_len("reduce_scatter", s.len(), r.len() * n)?;
                self.guarded("reduce_scatter", || self.world.reduce_scatter_block_into(s, r, op));
            }
            _ => {
                return Err(CommError::Shape { op: "reduce_scatter", message: "send and receive kinds differ".into() });
            }
        }
        Ok(())
    }

    fn barrier(&self) -> Result<(), CommError> {
        self.guarded("barrier", || self.world.barrier());
        Ok(())
    }
}
