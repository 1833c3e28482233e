//! `omnirl bench nccl`: the distributed runtime's collectives at world size 1 through the NCCL
//! communicator (`dist::nccl::NcclComm`, unique id made locally, local watchdog) on a CUDA device,
//! or through the single-process backend on the CPU (which checks only the harness).
//!
//! Checks that an all-reduce (sum over one rank = identity), a broadcast from rank 0, an
//! all-gather and a reduce-scatter return their inputs, then times `iters` all-reduces of `mib`
//! MiB of f32. The NCCL backend stages buffers through host memory (see `dist::nccl`), so the
//! bandwidth printed is host → device → NCCL → host, not NCCL's bus bandwidth.
//!
//! Left out: several ranks (one GPU is lent here; `scripts/launch.sh` + `dist_launch` tests cover
//! the multi-process paths over MPI and TCP).

use super::{BResult, BenchError, mean_min};
use crate::dist::comm::{CommBuf, CommSrc, Communicator, SingleProcess};
use crate::dist::nccl::{NcclComm, unique_id, version};
use crate::dist::watchdog::Watchdog;
use serde::Serialize;
use std::time::Instant;
use tch::Device;

#[derive(Debug, Clone)]
pub struct NcclOptions {
    pub device: Device,
    pub mib: usize,
    pub iters: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct NcclRecord {
    pub bench: &'static str,
    pub implementation: &'static str,
    pub device: String,
    pub backend: &'static str,
    /// NCCL's version code (e.g. 22809 for 2.28.9).
    pub nccl_version: Option<i32>,
    pub world_size: u32,
    pub rank: u32,
    pub all_reduce_ok: bool,
    pub broadcast_ok: bool,
    pub all_gather_ok: bool,
    pub reduce_scatter_ok: bool,
    pub bytes: usize,
    pub iters: usize,
    pub all_reduce_s: f64,
    pub all_reduce_s_min: f64,
    /// Bytes over the best time (NCCL only: the single-process backend copies nothing).
    pub host_staged_gbps: Option<f64>,
    pub pass: bool,
}

fn pattern(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i % 1000) as f32 * 0.5 - 7.0).collect()
}

fn check(comm: &dyn Communicator, o: &NcclOptions) -> BResult<(bool, bool, bool, bool, Vec<f64>)> {
    let want = pattern(4096);
    let mut buf = want.clone();
    comm.all_reduce_sum_buf(CommBuf::F32(&mut buf))?;
    let ar = buf == want;
    let mut buf = want.clone();
    comm.broadcast_buf(CommBuf::F32(&mut buf), 0)?;
    let bc = buf == want;
    let mut out = vec![0f32; want.len()];
    comm.all_gather_buf(CommSrc::F32(&want), CommBuf::F32(&mut out))?;
    let ag = out == want;
    let mut out = vec![0f32; want.len()];
    comm.reduce_scatter_sum_buf(CommSrc::F32(&want), CommBuf::F32(&mut out))?;
    let rs = out == want;
    comm.barrier()?;
    let mut big = pattern(o.mib * (1 << 20) / 4);
    comm.all_reduce_sum_buf(CommBuf::F32(&mut big))?;
    let mut times = Vec::with_capacity(o.iters);
    for _ in 0..o.iters {
        let t0 = Instant::now();
        comm.all_reduce_sum_buf(CommBuf::F32(&mut big))?;
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok((ar, bc, ag, rs, times))
}

/// Runs the collectives check and timing.
pub fn run(o: &NcclOptions) -> BResult<NcclRecord> {
    if o.mib == 0 || o.iters == 0 {
        return Err(BenchError::Options("--mib and --iters must be positive".into()));
    }
    let (comm, ver): (Box<dyn Communicator>, Option<i32>) = match o.device {
        Device::Cuda(i) => {
            let ver = version()?;
            let comm = NcclComm::new(0, 1, i as u32, unique_id()?, Watchdog::local(0))?;
            (Box::new(comm), Some(ver))
        }
        _ => (Box::new(SingleProcess), None),
    };
    let (ar, bc, ag, rs, times) = check(comm.as_ref(), o)?;
    let (mean, min) = mean_min(&times);
    let bytes = o.mib << 20;
    Ok(NcclRecord {
        bench: "nccl",
        implementation: "omnirl",
        device: super::device_name(o.device),
        backend: comm.backend(),
        nccl_version: ver,
        world_size: comm.world_size(),
        rank: comm.rank(),
        all_reduce_ok: ar,
        broadcast_ok: bc,
        all_gather_ok: ag,
        reduce_scatter_ok: rs,
        bytes,
        iters: o.iters,
        all_reduce_s: mean,
        all_reduce_s_min: min,
        host_staged_gbps: (comm.backend() == "nccl").then(|| bytes as f64 / min.max(1e-12) / 1e9),
        pass: ar && bc && ag && rs,
    })
}
