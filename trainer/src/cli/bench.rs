//! `omnirl bench <learner|decode|encoders|rl-memory|parity|nccl>`: the performance suite
//! (`trainer::bench`), one measurement per call. `--json` prints exactly one JSON object on one
//! line (the record; `scripts/gpu/report.py` reads these); otherwise a short summary. Common
//! flags: `--shape tiny|mid|7b` (default tiny), `--device auto|cpu|cuda|cuda:N` (auto: CUDA when
//! libtorch sees one), `--dtype auto|bf16|f16|f32` (auto: bf16 on CUDA, f32 on the CPU), `--seed`,
//! `--threads` (libtorch's CPU threads). Sizes default by shape: the `7b` defaults are the ones
//! `docs/performance.md` reports (8K-token learner sequences, 512-token prompts with 128 new
//! tokens, a 16-frame 448² video and 30 s of audio, RL rows of 7168 + 1024 tokens).
//!
//! Exit status: 0, or 1 when a check inside the benchmark failed (`parity` out of tolerance, an
//! RL step that did not train, a collective that returned wrong values), 2 on errors.
//!
//! Left out: running the Python peers (the GPU suite's launcher runs them beside these).

use crate::bench::{self, Placement, Shape};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;
use std::process::ExitCode;
use tch::Device;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Forward+backward tokens/s and MFU of the LLM on one packed sequence.
    Learner(LearnerArgs),
    /// Decode tokens/s with the KV cache at several batch sizes, and the HBM roofline share.
    Decode(DecodeArgs),
    /// Vision and audio encoder forward throughput.
    Encoders(EncodersArgs),
    /// Peak memory (and success) of one RL step, with LoRA by `--lora`.
    RlMemory(RlMemoryArgs),
    /// The thinker on the device in bf16 against fp32 on the CPU.
    Parity(ParityArgs),
    /// Collectives at world size 1 through NCCL (CUDA) or the single-process backend (CPU).
    Nccl(NcclArgs),
}

#[derive(Debug, Args)]
pub struct Common {
    #[arg(long, value_enum, default_value = "tiny")]
    pub shape: Shape,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// auto, bf16, f16 or f32.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
    /// libtorch CPU threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Print the record as one JSON line.
    #[arg(long)]
    pub json: bool,
}

impl Common {
    fn device(&self) -> anyhow::Result<Device> {
        if let Some(n) = self.threads {
            tch::set_num_threads(n);
        }
        Ok(bench::parse_device(&self.device)?)
    }

    fn placement(&self) -> anyhow::Result<Placement> {
        let device = self.device()?;
        Ok(Placement::new(device, bench::parse_dtype(&self.dtype, device)?))
    }

    /// A value that depends on the shape: `(tiny, mid, 7b)`.
    fn by_shape<T>(&self, given: Option<T>, tiny: T, mid: T, seven: T) -> T {
        given.unwrap_or(match self.shape {
            Shape::Tiny => tiny,
            Shape::Mid => mid,
            Shape::Seven => seven,
        })
    }
}

#[derive(Debug, Args)]
pub struct LearnerArgs {
    #[command(flatten)]
    pub common: Common,
    /// Tokens in the sequence (default: tiny 256, mid 1024, 7b 8192).
    #[arg(long)]
    pub seq_len: Option<usize>,
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Per-layer activation checkpointing.
    #[arg(long)]
    pub checkpointing: bool,
    /// Positions per lm_head chunk.
    #[arg(long, default_value_t = 2048)]
    pub chunk: usize,
    /// Train LoRA adapters of this rank on a frozen base instead of every LLM weight.
    #[arg(long, default_value_t = 0)]
    pub lora_rank: usize,
    /// Dense peak TFLOP/s for MFU (default: the GPU's datasheet figure when known).
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Also measure the GPU's matmul and copy ceilings.
    #[arg(long)]
    pub ceilings: bool,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Batch sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub batch: Vec<usize>,
    /// Prompt tokens per row (default: tiny 32, mid 128, 7b 512).
    #[arg(long)]
    pub prompt_len: Option<usize>,
    /// Decode steps timed (default: tiny 16, mid 32, 7b 128).
    #[arg(long)]
    pub new_tokens: Option<usize>,
    /// Timed generations per batch size (the best is kept).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// HBM bandwidth in GB/s for the roofline (default: the GPU's datasheet figure when known).
    #[arg(long)]
    pub hbm_gbps: Option<f64>,
    #[arg(long)]
    pub ceilings: bool,
}

#[derive(Debug, Args)]
pub struct EncodersArgs {
    #[command(flatten)]
    pub common: Common,
    /// Video frames (default: tiny 4, mid 8, 7b 16).
    #[arg(long)]
    pub frames: Option<usize>,
    /// Frame height in pixels, a multiple of 28 (default: tiny 56, mid 224, 7b 448).
    #[arg(long)]
    pub height: Option<usize>,
    /// Frame width in pixels, a multiple of 28 (default as height).
    #[arg(long)]
    pub width: Option<usize>,
    /// Seconds of audio (default: tiny 2, mid 10, 7b 30).
    #[arg(long)]
    pub audio_seconds: Option<f64>,
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
}

#[derive(Debug, Args)]
pub struct RlMemoryArgs {
    #[command(flatten)]
    pub common: Common,
    /// LoRA on every LLM linear (else full fine-tuning of the LLM).
    #[arg(long)]
    pub lora: bool,
    #[arg(long, default_value_t = 64, requires = "lora")]
    pub lora_rank: usize,
    /// Rows of the GRPO group.
    #[arg(long, default_value_t = 4)]
    pub rows: usize,
    /// Prompt tokens per row (default: tiny 48, mid 512, 7b 7168).
    #[arg(long)]
    pub prompt_len: Option<usize>,
    /// Response tokens per row (default: tiny 16, mid 128, 7b 1024).
    #[arg(long)]
    pub response_len: Option<usize>,
    #[arg(long, default_value_t = 1024)]
    pub chunk: usize,
    /// Keep every layer's activations instead of checkpointing.
    #[arg(long)]
    pub no_checkpointing: bool,
    /// KL coefficient (default: 0.001 with LoRA, whose reference is the base; 0 without).
    #[arg(long)]
    pub kl_coef: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ParityArgs {
    #[command(flatten)]
    pub common: Common,
    /// Text tokens around the media.
    #[arg(long, default_value_t = 24)]
    pub text_tokens: usize,
    /// Greedy tokens generated on both sides.
    #[arg(long, default_value_t = 8)]
    pub gen_tokens: usize,
    /// Relative tolerance (default by dtype: f32 1e-4, bf16 0.05, f16 0.02).
    #[arg(long)]
    pub tolerance: Option<f64>,
}

#[derive(Debug, Args)]
pub struct NcclArgs {
    /// auto, cpu, cuda or cuda:N (the CPU runs the single-process backend).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Size of the timed all-reduce in MiB.
    #[arg(long, default_value_t = 64)]
    pub mib: usize,
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    #[arg(long)]
    pub json: bool,
}

fn emit<T: Serialize>(json: bool, record: &T, summary: String, ok: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(record)?);
    } else {
        println!("{summary}");
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a (unknown peak)".into(), |v| format!("{:.1}%", 100.0 * v))
}

fn gib(x: u64) -> f64 {
    x as f64 / (1u64 << 30) as f64
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        BenchCommand::Learner(a) => learner(a),
        BenchCommand::Decode(a) => decode(a),
        BenchCommand::Encoders(a) => encoders(a),
        BenchCommand::RlMemory(a) => rl_memory(a),
        BenchCommand::Parity(a) => parity(a),
        BenchCommand::Nccl(a) => nccl(a),
    }
}

fn learner(a: &LearnerArgs) -> anyhow::Result<ExitCode> {
    let c = &a.common;
    let o = bench::learner::LearnerOptions {
        shape: c.shape,
        placement: c.placement()?,
        seq_len: c.by_shape(a.seq_len, 256, 1024, 8192),
        steps: a.steps,
        warmup: a.warmup,
        checkpointing: a.checkpointing,
        chunk: a.chunk,
        lora_rank: a.lora_rank,
        seed: c.seed,
        peak_tflops: a.peak_tflops,
        ceilings: a.ceilings,
    };
    let r = bench::learner::run(&o).context("bench learner")?;
    let s = format!(
        "learner {} {} on {}: {} tokens, {:.3} s/step, {:.0} tokens/s, {:.1} TFLOP/s, MFU {}, loss {:.3}",
        r.header.shape.name,
        r.header.dtype,
        r.header.device.label(),
        r.seq_len,
        r.step_s,
        r.tokens_per_s,
        r.achieved_tflops,
        pct(r.mfu),
        r.loss
    );
    emit(c.json, &r, s, r.loss.is_finite())
}

fn decode(a: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let c = &a.common;
    let o = bench::decode::DecodeOptions {
        shape: c.shape,
        placement: c.placement()?,
        batches: a.batch.clone(),
        prompt_len: c.by_shape(a.prompt_len, 32, 128, 512),
        new_tokens: c.by_shape(a.new_tokens, 16, 32, 128),
        reps: a.reps,
        seed: c.seed,
        hbm_gbps: a.hbm_gbps,
        ceilings: a.ceilings,
    };
    let r = bench::decode::run(&o).context("bench decode")?;
    let mut s = format!("decode {} {} on {}:", r.header.shape.name, r.header.dtype, r.header.device.label());
    for row in &r.rows {
        s.push_str(&format!(
            "\n  batch {:>3}: {:.1} tokens/s, {:.2} ms/step, {:.0} GB/s, roofline {}",
            row.batch,
            row.decode_tokens_per_s,
            row.step_ms,
            row.achieved_gbps,
            pct(row.hbm_share)
        ));
    }
    emit(c.json, &r, s, true)
}

fn encoders(a: &EncodersArgs) -> anyhow::Result<ExitCode> {
    let c = &a.common;
    let height = c.by_shape(a.height, 56, 224, 448);
    let o = bench::encoders::EncoderOptions {
        shape: c.shape,
        placement: c.placement()?,
        frames: c.by_shape(a.frames, 4, 8, 16),
        height,
        width: a.width.unwrap_or(height),
        audio_seconds: c.by_shape(a.audio_seconds, 2.0, 10.0, 30.0),
        steps: a.steps,
        seed: c.seed,
    };
    let r = bench::encoders::run(&o).context("bench encoders")?;
    let s = format!(
        "encoders {} {}: vision {} patches in {:.4} s = {:.0} patches/s ({:.1} frames/s); audio {:.1} s in {:.4} s = {:.1} audio s/s",
        r.header.shape.name,
        r.header.dtype,
        r.vision.patches,
        r.vision.s_per_call,
        r.vision.patches_per_s,
        r.vision.frames_per_s,
        r.audio.seconds,
        r.audio.s_per_call,
        r.audio.audio_seconds_per_s
    );
    emit(c.json, &r, s, true)
}

fn rl_memory(a: &RlMemoryArgs) -> anyhow::Result<ExitCode> {
    let c = &a.common;
    let o = bench::rl_memory::RlMemoryOptions {
        shape: c.shape,
        placement: c.placement()?,
        lora_rank: a.lora.then_some(a.lora_rank),
        rows: a.rows,
        prompt_len: c.by_shape(a.prompt_len, 48, 512, 7168),
        response_len: c.by_shape(a.response_len, 16, 128, 1024),
        chunk: a.chunk,
        checkpointing: !a.no_checkpointing,
        kl_coef: a.kl_coef.unwrap_or(if a.lora { 0.001 } else { 0.0 }),
        seed: c.seed,
    };
    let r = bench::rl_memory::run(&o).context("bench rl-memory")?;
    let mem = match (&r.memory, r.peak_rss_bytes) {
        (Some(m), _) => format!("peak device memory {:.2} GiB of {:.1} GiB", gib(m.peak_bytes), gib(m.total_bytes)),
        (None, Some(rss)) => format!("peak RSS {:.2} GiB", gib(rss)),
        (None, None) => "memory not measured".into(),
    };
    let s = format!(
        "rl-memory {} {} lora {:?}: {} rows x {} tokens, step {:.2} s, grad norm {:.3e}, train step ok: {}; {mem}",
        r.header.shape.name, r.header.dtype, r.lora_rank, r.rows, r.seq_len, r.step_s, r.grad_norm, r.train_step_ok
    );
    emit(c.json, &r, s, r.train_step_ok)
}

fn parity(a: &ParityArgs) -> anyhow::Result<ExitCode> {
    let c = &a.common;
    let o = bench::parity::ParityOptions {
        shape: c.shape,
        placement: c.placement()?,
        text_tokens: a.text_tokens,
        gen_tokens: a.gen_tokens,
        tolerance: a.tolerance,
        seed: c.seed,
    };
    let r = bench::parity::run(&o).context("bench parity")?;
    let s = format!(
        "parity {} {} on {} vs cpu f32: max |diff| {:.3e} ({:.2e} of max |logit| {:.3}, tolerance {:.0e}), argmax agree {:.0}%, within tolerance {:.0}%, greedy prefix {}/{}: {}",
        r.header.shape.name,
        r.header.dtype,
        r.header.device.device,
        r.max_abs_diff,
        r.rel_max_diff,
        r.ref_max_abs,
        r.tolerance,
        100.0 * r.argmax_agreement,
        100.0 * r.argmax_within_tolerance,
        r.greedy_prefix_agreement,
        r.greedy_tokens,
        if r.pass { "PASS" } else { "FAIL" }
    );
    emit(c.json, &r, s, r.pass)
}

fn nccl(a: &NcclArgs) -> anyhow::Result<ExitCode> {
    let device = bench::parse_device(&a.device)?;
    let r = bench::nccl::run(&bench::nccl::NcclOptions { device, mib: a.mib, iters: a.iters }).context("bench nccl")?;
    let s = format!(
        "nccl: backend {} (version {:?}), world {}: all-reduce {} broadcast {} all-gather {} reduce-scatter {}; {} MiB all-reduce {:.2} ms ({} GB/s host-staged)",
        r.backend,
        r.nccl_version,
        r.world_size,
        r.all_reduce_ok,
        r.broadcast_ok,
        r.all_gather_ok,
        r.reduce_scatter_ok,
        r.bytes >> 20,
        r.all_reduce_s_min * 1e3,
        r.host_staged_gbps.map_or_else(|| "n/a".into(), |g| format!("{g:.1}"))
    );
    emit(a.json, &r, s, r.pass)
}
