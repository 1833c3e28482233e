//! The hardware side of the benchmarks: which GPU this is (through the CUDA driver, via cudarc),
//! its datasheet peaks (dense bf16 TFLOP/s for MFU, HBM bandwidth for the decode roofline), the
//! device-memory probe that gives "peak memory", and two quick ceilings measured on the spot (an
//! 8192³ bf16 matmul and a device-to-device copy) to read the datasheet figures against.
//!
//! Peak memory: tch 0.24 / torch-sys expose none of PyTorch's CUDA allocator statistics, so
//! [`MemProbe`] samples the driver's `cuMemGetInfo` (total − free) on a side thread every few
//! milliseconds and keeps the maximum. That counts the CUDA context and whatever PyTorch's caching
//! allocator has reserved, i.e. it is comparable to `torch.cuda.max_memory_reserved()` plus the
//! context (about 0.5 GiB), not to `max_memory_allocated()`. Because the caching allocator does not
//! give memory back during a run, short peaks between two samples are still counted.
//!
//! Left out: NVML (clocks, power) and GPUs missing from the table below (pass the peaks as flags).

use super::{BResult, BenchError, sync};
use cudarc::driver::CudaContext;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// Datasheet figures of a GPU model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GpuPeaks {
    /// Dense bf16 tensor-core TFLOP/s (no sparsity).
    pub bf16_tflops: f64,
    /// HBM bandwidth in GB/s (10⁹ bytes).
    pub hbm_gbps: f64,
}

/// Known GPUs by a substring of the CUDA device name, most specific first (NVIDIA datasheets).
const KNOWN: [(&str, GpuPeaks); 6] = [
    ("H200", GpuPeaks { bf16_tflops: 989.0, hbm_gbps: 4800.0 }),
    ("H100 PCIe", GpuPeaks { bf16_tflops: 756.0, hbm_gbps: 2000.0 }),
    ("H100 NVL", GpuPeaks { bf16_tflops: 835.0, hbm_gbps: 3900.0 }),
    ("H100", GpuPeaks { bf16_tflops: 989.0, hbm_gbps: 3350.0 }),
    ("A100-SXM4-80GB", GpuPeaks { bf16_tflops: 312.0, hbm_gbps: 2039.0 }),
    ("A100", GpuPeaks { bf16_tflops: 312.0, hbm_gbps: 1555.0 }),
];

/// The datasheet peaks of the GPU named `name`, if it is in the table.
pub fn known_peaks(name: &str) -> Option<GpuPeaks> {
    KNOWN.iter().find(|(k, _)| name.contains(k)).map(|(_, p)| *p)
}

/// The CUDA driver's context for GPU `gpu`, when the driver library can be found (cudarc panics
/// instead of failing when it cannot, so look first).
fn context(gpu: usize) -> BResult<Arc<CudaContext>> {
    if crate::dist::nccl::find_library("cuda").is_none() {
        return Err(BenchError::Unavailable(
            "libcuda.so not found on LD_LIBRARY_PATH or the system library directories".into(),
        ));
    }
    CudaContext::new(gpu).map_err(|e| BenchError::Unavailable(format!("CUDA driver: {e:?}")))
}

/// What is known about the device a benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// The GPU's name from the driver (`None` on the CPU or when the driver is not reachable).
    pub gpu: Option<String>,
    pub peaks: Option<GpuPeaks>,
    pub libtorch_threads: i32,
}

impl DeviceInfo {
    /// Looks the device up; `peak_tflops` / `hbm_gbps` override (or supply) the table's figures.
    pub fn new(device: Device, peak_tflops: Option<f64>, hbm_gbps: Option<f64>) -> Self {
        let gpu = match device {
            Device::Cuda(i) => context(i).ok().and_then(|c| c.name().ok()),
            _ => None,
        };
        let table = gpu.as_deref().and_then(known_peaks);
        let peaks = match (table, peak_tflops, hbm_gbps) {
            (Some(t), p, h) => {
                Some(GpuPeaks { bf16_tflops: p.unwrap_or(t.bf16_tflops), hbm_gbps: h.unwrap_or(t.hbm_gbps) })
            }
            (None, Some(p), h) => Some(GpuPeaks { bf16_tflops: p, hbm_gbps: h.unwrap_or(f64::NAN) }),
            (None, None, Some(h)) => Some(GpuPeaks { bf16_tflops: f64::NAN, hbm_gbps: h }),
            (None, None, None) => None,
        };
        DeviceInfo { device: super::device_name(device), gpu, peaks, libtorch_threads: tch::get_num_threads() }
    }

    /// The GPU's name where known, else the device (`cpu`, `cuda:N`).
    pub fn label(&self) -> &str {
        self.gpu.as_deref().unwrap_or(&self.device)
    }

    pub fn peak_tflops(&self) -> Option<f64> {
        self.peaks.map(|p| p.bf16_tflops).filter(|x| x.is_finite())
    }

    pub fn hbm_gbps(&self) -> Option<f64> {
        self.peaks.map(|p| p.hbm_gbps).filter(|x| x.is_finite())
    }
}

/// Device memory in use over a span of work (see the module doc).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemReport {
    /// In use when the probe started (the CUDA context, other processes).
    pub baseline_bytes: u64,
    /// The largest value sampled.
    pub peak_bytes: u64,
    pub total_bytes: u64,
    pub samples: u64,
}

/// Samples `cuMemGetInfo` on a side thread.
#[derive(Debug)]
pub struct MemProbe {
    ctx: Arc<CudaContext>,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    baseline: u64,
    total: u64,
    handle: Option<JoinHandle<()>>,
}

impl MemProbe {
    /// Starts sampling GPU `gpu` every `period`.
    pub fn start(gpu: usize, period: Duration) -> BResult<MemProbe> {
        let ctx = context(gpu)?;
        let (free, total) = ctx.mem_get_info().map_err(|e| BenchError::Unavailable(format!("cuMemGetInfo: {e:?}")))?;
        let baseline = (total - free) as u64;
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(baseline));
        let samples = Arc::new(AtomicU64::new(1));
        let (c, s, p, n) = (Arc::clone(&ctx), Arc::clone(&stop), Arc::clone(&peak), Arc::clone(&samples));
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok((free, total)) = c.mem_get_info() {
                    p.fetch_max((total - free) as u64, Ordering::Relaxed);
                    n.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(period);
            }
        });
        Ok(MemProbe { ctx, stop, peak, samples, baseline, total: total as u64, handle: Some(handle) })
    }

    /// Bytes in use now (also folded into the peak).
    pub fn used_now(&self) -> u64 {
        match self.ctx.mem_get_info() {
            Ok((free, total)) => {
                let used = (total - free) as u64;
                self.peak.fetch_max(used, Ordering::Relaxed);
                used
            }
            Err(_) => 0,
        }
    }

    /// Stops the sampler and reports.
    pub fn finish(mut self) -> MemReport {
        self.used_now();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        MemReport {
            baseline_bytes: self.baseline,
            peak_bytes: self.peak.load(Ordering::Relaxed),
            total_bytes: self.total,
            samples: self.samples.load(Ordering::Relaxed),
        }
    }
}

impl Drop for MemProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A memory probe on CUDA devices when the driver is reachable; `None` on the CPU.
pub fn probe_for(device: Device) -> Option<MemProbe> {
    match device {
        Device::Cuda(i) => MemProbe::start(i, Duration::from_millis(2)).ok(),
        _ => None,
    }
}

/// Ceilings measured on the spot.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ceilings {
    /// An 8192 × 8192 × 8192 bf16 matmul, mean of 10 after 3 warm-ups.
    pub matmul_bf16_tflops: f64,
    /// `copy_` of 1 GiB device to device, counting bytes read and written.
    pub copy_gbps: f64,
}

/// Measures [`Ceilings`] on a CUDA device (`None` on the CPU).
pub fn ceilings(device: Device) -> BResult<Option<Ceilings>> {
    if device == Device::Cpu {
        return Ok(None);
    }
    let n = 8192i64;
    let a = Tensor::f_randn([n, n], (Kind::BFloat16, device))?;
    let b = Tensor::f_randn([n, n], (Kind::BFloat16, device))?;
    let mm = timed(device, || a.f_matmul(&b).map(drop).map_err(BenchError::from))?;
    let src = Tensor::f_empty([1 << 29], (Kind::BFloat16, device))?;
    let mut dst = Tensor::f_empty([1 << 29], (Kind::BFloat16, device))?;
    let cp = timed(device, || dst.f_copy_(&src).map_err(BenchError::from))?;
    Ok(Some(Ceilings {
        matmul_bf16_tflops: 2.0 * (n as f64).powi(3) / mm / 1e12,
        copy_gbps: 2.0 * (1u64 << 30) as f64 / cp / 1e9,
    }))
}

/// Mean seconds of `f` over 10 calls after 3 warm-ups.
fn timed(device: Device, mut f: impl FnMut() -> BResult<()>) -> BResult<f64> {
    for _ in 0..3 {
        f()?;
    }
    sync(device);
    let t0 = Instant::now();
    for _ in 0..10 {
        f()?;
    }
    sync(device);
    Ok(t0.elapsed().as_secs_f64() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_table_picks_the_most_specific_name() {
        assert_eq!(known_peaks("NVIDIA H100 80GB HBM3").map(|p| p.hbm_gbps), Some(3350.0));
        assert_eq!(known_peaks("NVIDIA H100 PCIe").map(|p| p.hbm_gbps), Some(2000.0));
        assert_eq!(known_peaks("NVIDIA H200").map(|p| (p.bf16_tflops, p.hbm_gbps)), Some((989.0, 4800.0)));
        assert!(known_peaks("Some CPU").is_none());
        let cpu = DeviceInfo::new(Device::Cpu, None, None);
        assert!(cpu.peaks.is_none() && cpu.gpu.is_none());
        let flagged = DeviceInfo::new(Device::Cpu, Some(1.0), None);
        assert_eq!(flagged.peak_tflops(), Some(1.0));
        assert_eq!(flagged.hbm_gbps(), None);
    }
}
