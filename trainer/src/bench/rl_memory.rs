//! `omnirl bench rl-memory`: one real RL step (`learner::RlLearner`, the TAURA on-policy flow,
//! AdamW) of the whole thinker on a GRPO group of text-only rows, and the device memory it needs.
//! On CUDA this is also the suite's "CUDA training step": the record says whether the step
//! produced a finite gradient norm and changed the trained weights.
//!
//! Setup (the recipe for one 80 GB GPU of docs/reference.md#memory-budget): weights in the
//! asked dtype, encoders frozen, with `--lora` adapters of rank R on every LLM linear (fp32, the
//! base frozen, the base with adapters off as the KL reference), activation checkpointing,
//! chunked `lm_head`. Without
//! `--lora` every LLM weight trains (full fine-tuning: expect it not to fit an 80 GB GPU at 7B).
//! Each row is `prompt_len + response_len` plain tokens; the learner scores every row, runs the
//! reference pass when the KL coefficient is set, then forward + backward per row and one step.
//!
//! Memory: on CUDA, device memory in use sampled through the driver (`hw::MemProbe`: includes the
//! CUDA context and PyTorch's cached blocks, comparable to `max_memory_reserved` + context); on the
//! CPU the process's peak resident set (`VmHWM`).
//!
//! Left out: media in the rows (the frozen encoders' activations are not kept for the backward,
//! so they add one encoder forward's transient memory, see `encoders`), and rollout memory (the
//! KV cache of generation, see `decode`).

use super::hw::{DeviceInfo, MemReport, probe_for};
use super::{BResult, BenchError, Placement, RecordHeader, Shape, ShapeInfo, kind_bytes, plain_ids, random_weights};
use crate::learner::LocalSteps;
use crate::learner::thinker::{TrainableParts, TrainableThinker, set_trainable};
use crate::learner::{RlLearner, RlRow};
use crate::model::Component;
use crate::model::logprobs::TrainOptions;
use crate::model::lora::LoraConfig;
use crate::model::thinker::{MediaInput, Thinker};
use crate::recipe::resolved::Optimizer;
use crate::recipe::{AlgorithmConfig, LrSchedule};
use serde::Serialize;
use std::time::Instant;
use tch::{Kind, Tensor};

/// What to run.
#[derive(Debug, Clone)]
pub struct RlMemoryOptions {
    pub shape: Shape,
    pub placement: Placement,
    /// `None`: full fine-tuning of the LLM.
    pub lora_rank: Option<usize>,
    pub rows: usize,
    pub prompt_len: usize,
    pub response_len: usize,
    pub chunk: usize,
    pub checkpointing: bool,
    pub kl_coef: f64,
    pub seed: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RlMemoryRecord {
    #[serde(flatten)]
    pub header: RecordHeader,
    pub lora_rank: Option<usize>,
    pub rows: usize,
    pub seq_len: usize,
    pub checkpointing: bool,
    pub kl_coef: f64,
    pub trainable_params: u64,
    /// Bytes of the thinker's weights as held.
    pub weights_bytes: u64,
    pub step_s: f64,
    pub update_tokens_per_s: f64,
    pub grad_norm: f64,
    pub pg_loss: f64,
    /// Finite gradient norm, the step not skipped, and the trained weights changed.
    pub train_step_ok: bool,
    /// Device memory: at start, after the model was built, and the peak over the step.
    pub memory: Option<MemReport>,
    pub after_load_bytes: Option<u64>,
    pub peak_rss_bytes: Option<u64>,
    pub memory_source: &'static str,
    pub note: Option<String>,
}

/// A fingerprint of the trained tensors: Σ|x| over the LoRA B matrices (zero at init), or a copy
/// of `lm_head` (full fine-tuning).
fn fingerprint(th: &Thinker) -> BResult<Tensor> {
    let bs: Vec<Tensor> =
        th.lora_tensors().into_iter().filter(|(n, _)| n.ends_with("lora_B.weight")).map(|(_, t)| t).collect();
    if bs.is_empty() {
        return Ok(th.text.lm_head.f_detach_copy()?.f_to_kind(Kind::Float)?);
    }
    let mut total = Tensor::f_zeros([], (Kind::Float, th.device()))?;
    for b in bs {
        total = total.f_add(&b.f_detach()?.f_abs()?.f_sum(Kind::Float)?)?;
    }
    Ok(total)
}

/// Runs the RL step and reports its memory.
pub fn run(o: &RlMemoryOptions) -> BResult<RlMemoryRecord> {
    if o.rows < 2 || o.prompt_len == 0 || o.response_len < 2 {
        return Err(BenchError::Options(
            "--rows must be at least 2 (a GRPO group), --prompt-len positive, --response-len at least 2".into(),
        ));
    }
    if o.lora_rank == Some(0) {
        return Err(BenchError::Options("--lora-rank must be positive".into()));
    }
    let p = o.placement;
    let cfg = o.shape.config()?;
    let info = ShapeInfo::new(o.shape, &cfg);
    let device = DeviceInfo::new(p.device, None, None);
    let probe = probe_for(p.device);
    let all = [Component::Llm, Component::Vision, Component::Audio];
    let weights = random_weights(&cfg, p, o.seed, &all, p.device)?;
    let weights_bytes = (info.llm_params + info.vision_params + info.audio_params) * kind_bytes(p.compute);
    let parts = if o.lora_rank.is_some() {
        TrainableParts { llm: false, vision: false, audio: false }
    } else {
        TrainableParts::sft()
    };
    set_trainable(&weights, parts)?;
    let mut thinker = Thinker::new(cfg, weights)?;
    thinker.freeze_encoders(true);
    if let Some(rank) = o.lora_rank {
        thinker.add_lora(&LoraConfig { rank, alpha: 2.0 * rank as f64, ..LoraConfig::default() })?;
    }
    let eos = thinker.ids.eos.clone();
    let train = TrainOptions { chunk_tokens: o.chunk.max(1), checkpoint: o.checkpointing };
    let policy =
        TrainableThinker { thinker, train, max_shard_bytes: 5 << 30, reference: None, base_model: String::new() };
    let before = fingerprint(&policy.thinker)?;
    let trainable_params: u64 = policy.thinker.trainable().iter().map(|t| t.numel() as u64).sum();
    let algorithm = AlgorithmConfig { kl_coef: o.kl_coef, ..AlgorithmConfig::default() };
    let optimizer = Optimizer {
        lr: 1e-4,
        betas: [0.9, 0.999],
        eps: 1e-8,
        weight_decay: 0.01,
        lr_schedule: LrSchedule::Constant,
        warmup_ratio: 0.0,
        grad_clip: 1.0,
    };
    let mut learner = RlLearner::new(&policy, &algorithm, &optimizer, 10)?;
    let rewards = [1.0, 0.0, 0.5, 0.0, 1.0, 0.25, 0.0, 0.75];
    let rows: Vec<RlRow<MediaInput>> = (0..o.rows)
        .map(|r| {
            let prompt = plain_ids(o.prompt_len, 2 * r + 1);
            let response = plain_ids(o.response_len, 2 * r + 2);
            let reward = rewards[r % rewards.len()];
            RlRow::new(&prompt, &response, &eos, MediaInput::default(), "g0", format!("g0-{r}"), reward)
        })
        .collect();
    let after_load_bytes = probe.as_ref().map(|m| m.used_now());
    let t0 = Instant::now();
    let stats = learner.step(&policy, &rows, &mut LocalSteps)?;
    super::sync(p.device);
    let step_s = t0.elapsed().as_secs_f64();
    let after = fingerprint(&policy.thinker)?;
    let changed = after.f_sub(&before)?.f_abs()?.f_max()?.f_double_value(&[])? > 0.0;
    let report = stats.optimizer_steps.last().copied();
    let grad_norm = report.map_or(f64::NAN, |r| r.grad_norm);
    let skipped = report.is_none_or(|r| r.skipped);
    Ok(RlMemoryRecord {
        lora_rank: o.lora_rank,
        rows: o.rows,
        seq_len: o.prompt_len + o.response_len,
        checkpointing: o.checkpointing,
        kl_coef: o.kl_coef,
        trainable_params,
        weights_bytes,
        step_s,
        update_tokens_per_s: stats.update_tokens_per_second(),
        grad_norm,
        pg_loss: stats.pg_loss,
        train_step_ok: grad_norm.is_finite() && !skipped && changed,
        memory: probe.map(|m| m.finish()),
        after_load_bytes,
        peak_rss_bytes: super::peak_rss_bytes(),
        memory_source: if p.device == tch::Device::Cpu {
            "CPU: peak resident set (VmHWM) of the process"
        } else {
            "CUDA: device memory in use (cuMemGetInfo total − free) sampled every 2 ms; includes the context and the caching allocator's reserve"
        },
        note: p.note(),
        header: RecordHeader::new("rl_memory", device, info, &p),
    })
}
