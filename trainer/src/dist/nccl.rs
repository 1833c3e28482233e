//! The NCCL backend (through cudarc's dynamically loaded bindings) for GPU runs.
//!
//! cudarc compiles without CUDA and loads `libnccl.so` / `libcuda.so` at first use, but its
//! loader panics when a library is missing, and its own presence check is an `unsafe fn`
//! (the workspace denies `unsafe`). [`libraries_present`] therefore looks for the files itself,
//! on LD_LIBRARY_PATH and the usual system directories, before anything calls into cudarc:
//! every entry point here returns [`NcclError::Unavailable`] instead of panicking. Note that the
//! NCCL pip wheel ships only `libnccl.so.2`; put a `libnccl.so` symlink next to it.
//!
//! The unique id travels over MPI ([`NcclComm::init_with_mpi`]) or a TCP rendezvous at
//! MASTER_ADDR:MASTER_PORT ([`NcclComm::init_with_rendezvous`]); a watchdog side channel on
//! MASTER_PORT + 1 (or over MPI) guards the collectives as on the MPI backend.
//!
//! Left out: zero-copy on CUDA tensors. Handing a tch tensor's device pointer to NCCL needs
//! `unsafe`, so buffers are staged through host memory (tensor → Vec → device → NCCL → host);
//! correct on any tensor, but the measured bandwidth includes two PCIe copies per collective.

use super::comm::{CommBuf, CommError, CommSrc, Communicator, check_root};
use super::watchdog::Watchdog;
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{Comm, Id, ReduceOp};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum NcclError {
    #[error("NCCL is unavailable: {0}")]
    Unavailable(String),
    #[error("NCCL/CUDA call failed: {0}")]
    Call(String),
    #[error(transparent)]
    Rendezvous(#[from] super::rendezvous::RendezvousError),
    #[error(transparent)]
    Watchdog(#[from] super::watchdog::WatchdogError),
    #[error(transparent)]
    Mpi(#[from] super::mpi::MpiInitError),
    #[error(transparent)]
    Comm(#[from] CommError),
    #[error("NCCL over the environment needs {0}")]
    Env(&'static str),
}

fn call<E: std::fmt::Debug>(what: &str) -> impl Fn(E) -> NcclError + '_ {
    move |e| NcclError::Call(format!("{what}: {e:?}"))
}

/// Where a shared library cudarc would load is, if it is in a searched directory.
pub fn find_library(lib: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("LD_LIBRARY_PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    for d in
        ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib", "/usr/local/cuda/lib64", "/usr/lib/wsl/lib"]
    {
        dirs.push(PathBuf::from(d));
    }
    let names = cudarc::get_lib_name_candidates(lib);
    dirs.iter().flat_map(|d| names.iter().map(move |n| d.join(n))).find(|p| p.exists())
}

/// `Ok` when both `libnccl.so` and the CUDA driver (`libcuda.so`) can be found.
pub fn libraries_present() -> Result<(), NcclError> {
    for lib in ["nccl", "cuda"] {
        if find_library(lib).is_none() {
            return Err(NcclError::Unavailable(format!(
                "lib{lib}.so not found on LD_LIBRARY_PATH or the system library directories"
            )));
        }
    }
    Ok(())
}

/// NCCL's version code (e.g. 22809 for 2.28.9).
pub fn version() -> Result<i32, NcclError> {
    libraries_present()?;
    cudarc::nccl::result::get_nccl_version().map_err(call("ncclGetVersion"))
}

/// A fresh NCCL unique id (rank 0 makes it and hands it to the others).
pub fn unique_id() -> Result<[u8; 128], NcclError> {
    libraries_present()?;
    let id = Id::new().map_err(call("ncclGetUniqueId"))?;
    let mut out = [0u8; 128];
    for (o, &c) in out.iter_mut().zip(id.internal()) {
        *o = c as u8;
    }
    Ok(out)
}

/// One rank of an NCCL communicator on one GPU.
pub struct NcclComm {
    watchdog: Watchdog,
    comm: Comm,
    stream: Arc<CudaStream>,
    rank: u32,
    size: u32,
}

impl std::fmt::Debug for NcclComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclComm").field("rank", &self.rank).field("size", &self.size).finish()
    }
}

impl NcclComm {
    /// Join the communicator identified by `id` as `rank` of `world` on GPU `gpu`.
    pub fn new(rank: u32, world: u32, gpu: u32, id: [u8; 128], watchdog: Watchdog) -> Result<NcclComm, NcclError> {
        libraries_present()?;
        let ctx = CudaContext::new(gpu as usize).map_err(call("cuCtxCreate"))?;
        let stream = ctx.default_stream();
        let mut internal = [0 as std::ffi::c_char; 128];
        for (i, &b) in internal.iter_mut().zip(&id) {
            *i = b as std::ffi::c_char;
        }
        let comm = Comm::from_rank(Arc::clone(&stream), rank as usize, world as usize, Id::uninit(internal))
            .map_err(call("ncclCommInitRank"))?;
        Ok(NcclComm { watchdog, comm, stream, rank, size: world })
    }

    /// Rank and world from `info` (torchrun-style env, Slurm, ...), unique id over a TCP
    /// rendezvous at MASTER_ADDR:MASTER_PORT, watchdog hub at MASTER_PORT + 1.
    pub fn init_with_rendezvous(info: &super::RankInfo, timeout: Duration) -> Result<NcclComm, NcclError> {
        libraries_present()?;
        let gpu = info.gpu_index.unwrap_or(info.local_rank);
        if info.world_size <= 1 {
            return NcclComm::new(0, 1, gpu, unique_id()?, Watchdog::local(0));
        }
        let addr = info.master_addr.clone().ok_or(NcclError::Env("MASTER_ADDR"))?;
        let port = info.master_port.ok_or(NcclError::Env("MASTER_PORT"))?;
        let hub = format!("{addr}:{}", port.wrapping_add(1));
        let (id, watchdog) = if info.rank == 0 {
            let id = unique_id()?;
            let listener = Watchdog::bind_hub(&format!("0.0.0.0:{}", port.wrapping_add(1)))?;
            super::rendezvous::serve(&format!("0.0.0.0:{port}"), info.world_size, &id, timeout)?;
            (id, Watchdog::start_hub(listener, info.world_size, timeout)?)
        } else {
            let blob = super::rendezvous::fetch(&format!("{addr}:{port}"), info.rank, timeout)?;
            let id: [u8; 128] = blob
                .try_into()
                .map_err(|b: Vec<u8>| NcclError::Call(format!("the unique id from rank 0 has {} bytes", b.len())))?;
            (id, Watchdog::start_peer(info.rank, &hub, timeout)?)
        };
        NcclComm::new(info.rank, info.world_size, gpu, id, watchdog)
    }

    /// Rank and world from MPI; rank 0's unique id broadcast over MPI.
    pub fn init_with_mpi(
        mpi: &super::mpi::MpiComm,
        gpu: u32,
        timeout: Duration,
        hub_host: Option<&str>,
    ) -> Result<NcclComm, NcclError> {
        libraries_present()?;
        let mut id = if mpi.rank() == 0 { unique_id()? } else { [0u8; 128] };
        mpi.broadcast_bytes(&mut id, 0)?;
        let watchdog = mpi.start_side_watchdog(timeout, hub_host)?;
        NcclComm::new(mpi.rank(), mpi.world_size(), gpu, id, watchdog)
    }

    fn run<T>(&self, op: &'static str, f: impl FnOnce() -> Result<T, NcclError>) -> Result<T, CommError> {
        self.watchdog.enter(op);
        let out = f().and_then(|v| self.stream.synchronize().map_err(call("cuStreamSynchronize")).map(|()| v));
        self.watchdog.leave();
        out.map_err(|e| CommError::Backend { backend: "nccl", message: e.to_string() })
    }
}

macro_rules! host_op {
    ($self:ident, $buf:expr, |$d:ident| $body:expr) => {
        match $buf {
            CommBuf::F32(b) => {
                let mut $d = $self.stream.clone_htod(&b[..]).map_err(call("copy to device"))?;
                $body?;
                $self.stream.memcpy_dtoh(&$d, b).map_err(call("copy to host"))
            }
            CommBuf::F64(b) => {
                let mut $d = $self.stream.clone_htod(&b[..]).map_err(call("copy to device"))?;
                $body?;
                $self.stream.memcpy_dtoh(&$d, b).map_err(call("copy to host"))
            }
        }
    };
}

impl Communicator for NcclComm {
    fn rank(&self) -> u32 {
        self.rank
    }
    fn world_size(&self) -> u32 {
        self.size
    }
    fn backend(&self) -> &'static str {
        "nccl"
    }

    fn all_reduce_sum_buf(&self, buf: CommBuf<'_>) -> Result<(), CommError> {
        self.run("all_reduce", || {
            host_op!(self, buf, |d| self
                .comm
                .all_reduce_in_place(&mut d, &ReduceOp::Sum)
                .map_err(call("ncclAllReduce")))
        })
    }

    fn broadcast_buf(&self, buf: CommBuf<'_>, root: u32) -> Result<(), CommError> {
        check_root("broadcast", root, self.size)?;
        self.run("broadcast", || {
            host_op!(self, buf, |d| self.comm.broadcast_in_place(&mut d, root as i32).map_err(call("ncclBroadcast")))
        })
    }

    fn all_gather_buf(&self, send: CommSrc<'_>, recv: CommBuf<'_>) -> Result<(), CommError> {
        self.run("all_gather", || match (send, recv) {
            (CommSrc::F32(s), CommBuf::F32(r)) => {
                let src = self.stream.clone_htod(s).map_err(call("copy to device"))?;
                let mut dst = self.stream.clone_htod(&r[..]).map_err(call("copy to device"))?;
                self.comm.all_gather(&src, &mut dst).map_err(call("ncclAllGather"))?;
                self.stream.memcpy_dtoh(&dst, r).map_err(call("copy to host"))
            }
            (CommSrc::F64(s), CommBuf::F64(r)) => {
                let src = self.stream.clone_htod(s).map_err(call("copy to device"))?;
                let mut dst = self.stream.clone_htod(&r[..]).map_err(call("copy to device"))?;
                self.comm.all_gather(&src, &mut dst).map_err(call("ncclAllGather"))?;
                self.stream.memcpy_dtoh(&dst, r).map_err(call("copy to host"))
            }
            _ => Err(NcclError::Call("all_gather: send and receive kinds differ".into())),
        })
    }

    fn reduce_scatter_sum_buf(&self, send: CommSrc<'_>, recv: CommBuf<'_>) -> Result<(), CommError> {
        self.run("reduce_scatter", || match (send, recv) {
            (CommSrc::F32(s), CommBuf::F32(r)) => {
                let src = self.stream.clone_htod(s).map_err(call("copy to device"))?;
                let mut dst = self.stream.clone_htod(&r[..]).map_err(call("copy to device"))?;
                self.comm.reduce_scatter(&src, &mut dst, &ReduceOp::Sum).map_err(call("ncclReduceScatter"))?;
                self.stream.memcpy_dtoh(&dst, r).map_err(call("copy to host"))
            }
            (CommSrc::F64(s), CommBuf::F64(r)) => {
                let src = self.stream.clone_htod(s).map_err(call("copy to device"))?;
                let mut dst = self.stream.clone_htod(&r[..]).map_err(call("copy to device"))?;
                self.comm.reduce_scatter(&src, &mut dst, &ReduceOp::Sum).map_err(call("ncclReduceScatter"))?;
                self.stream.memcpy_dtoh(&dst, r).map_err(call("copy to host"))
            }
            _ => Err(NcclError::Call("reduce_scatter: send and receive kinds differ".into())),
        })
    }

    fn barrier(&self) -> Result<(), CommError> {
        // NCCL has no barrier: an all-reduce of one value is one.
        let mut one = [0f32];
        self.all_reduce_sum_buf(CommBuf::F32(&mut one))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_libraries_are_an_error_not_a_panic() {
        // On machines without NCCL this must say so; with NCCL it must report a version.
        match version() {
            Ok(v) => assert!(v > 0),
            Err(NcclError::Unavailable(m)) => assert!(m.contains("not found"), "{m}"),
            Err(e) => panic!("{e}"),
        }
        assert!(find_library("omnirl_no_such_library").is_none());
    }
}
