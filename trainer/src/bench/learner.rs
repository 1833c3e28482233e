//! `omnirl bench learner`: forward + backward tokens/s of the thinker's LLM on one packed
//! sequence, through the training forward the learners use (`model::logprobs::forward_backward`:
//! chunked fp32 log-softmax over `lm_head`, optional per-layer activation checkpointing), and the
//! model-FLOPs utilisation (MFU) that makes.
//!
//! What trains: every LLM weight (full fine-tuning, the encoders frozen), so the backward computes
//! weight and input gradients and the usual `6·N` FLOPs per token apply; or, with `--lora-rank R`,
//! LoRA adapters on a frozen base (input gradients only: `4·N`). The loss is the mean negative
//! log-likelihood of tokens 1..L. Gradients are zeroed between steps; no optimizer step is taken
//! (that is `rl-memory`'s business).
//!
//! FLOPs per token (`T` = sequence length, `d` = heads × head_dim, `ℓ` = layers, `N` =
//! [`ShapeInfo::matmul_params`]): causal attention forward is `2·T·d·ℓ` (QKᵀ and AV over T/2 keys on
//! average). MFU counts `6·N + 6·T·d·ℓ` (forward + backward, PaLM's convention with the causal
//! half), HFU adds the recomputed forward of checkpointing (`8·N + 8·T·d·ℓ`). Both are divided by
//! the dense bf16 peak of the GPU (`hw`), or by `--peak-tflops`.
//!
//! Left out: several sequences packed into one forward (the learners' micro-batch layout,
//! `forward_backward_packed`; one long sequence measures the same matrix products),
//! optimizer time, and the vision / audio encoders in the training graph.

use super::hw::{Ceilings, DeviceInfo, MemReport, ceilings, probe_for};
use super::{
    BResult, BenchError, Placement, RecordHeader, Shape, ShapeInfo, mean_min, plain_ids, random_weights, sync,
};
use crate::learner::thinker::{TrainableParts, set_trainable};
use crate::model::Component;
use crate::model::logprobs::{TrainOptions, forward_backward};
use crate::model::lora::LoraConfig;
use crate::model::thinker::{MResult, MediaInput, Thinker};
use serde::Serialize;
use std::time::Instant;
use tch::{Kind, Tensor};

/// What to measure.
#[derive(Debug, Clone)]
pub struct LearnerOptions {
    pub shape: Shape,
    pub placement: Placement,
    pub seq_len: usize,
    pub steps: usize,
    pub warmup: usize,
    pub checkpointing: bool,
    /// Positions per `lm_head` chunk.
    pub chunk: usize,
    /// 0: full fine-tuning of the LLM; else LoRA of this rank on every LLM linear.
    pub lora_rank: usize,
    pub seed: i64,
    pub peak_tflops: Option<f64>,
    /// Also measure the matmul / copy ceilings (CUDA only).
    pub ceilings: bool,
}

/// One learner measurement.
#[derive(Debug, Clone, Serialize)]
pub struct LearnerRecord {
    #[serde(flatten)]
    pub header: RecordHeader,
    pub seq_len: usize,
    pub checkpointing: bool,
    pub lora_rank: usize,
    pub trainable_params: u64,
    pub steps: usize,
    pub step_s: f64,
    pub step_s_min: f64,
    pub tokens_per_s: f64,
    pub flops_per_token: f64,
    pub hardware_flops_per_token: f64,
    pub flops_formula: String,
    pub achieved_tflops: f64,
    pub mfu: Option<f64>,
    pub hfu: Option<f64>,
    /// Mean NLL of the last step (≈ ln(vocab) for random weights).
    pub loss: f64,
    pub memory: Option<MemReport>,
    pub peak_rss_bytes: Option<u64>,
    pub ceilings: Option<Ceilings>,
    pub note: Option<String>,
}

/// Model FLOPs per token (`mfu`) and with one recomputed forward (`hfu`), and the formula.
pub fn flops_per_token(info: &ShapeInfo, seq_len: usize, lora: bool, checkpointing: bool) -> (f64, f64, String) {
    let n = info.matmul_params as f64;
    let attn = 2.0 * seq_len as f64 * (info.heads * info.head_dim * info.layers) as f64;
    let (wn, wa, what) = if lora { (4.0, 3.0, "4N (frozen base)") } else { (6.0, 3.0, "6N") };
    let model = wn * n + wa * attn;
    let hw = if checkpointing { model + 2.0 * n + attn } else { model };
    let formula = format!(
        "{what} + 6·T·d·ℓ causal attention; N = {} matmul params, T = {seq_len}, d = {}, ℓ = {}{}",
        info.matmul_params,
        info.heads * info.head_dim,
        info.layers,
        if checkpointing { "; HFU adds one recomputed forward (2N + 2·T·d·ℓ)" } else { "" }
    );
    (model, hw, formula)
}

fn zero_grads(params: &[Tensor]) -> BResult<()> {
    for p in params {
        let mut g = p.f_grad()?;
        if g.defined() {
            let _ = g.f_zero_()?;
        }
    }
    Ok(())
}

/// Runs the learner benchmark.
pub fn run(o: &LearnerOptions) -> BResult<LearnerRecord> {
    if o.seq_len < 2 || o.steps == 0 {
        return Err(BenchError::Options("--seq-len must be at least 2 and --steps at least 1".into()));
    }
    let p = o.placement;
    let cfg = o.shape.config()?;
    let info = ShapeInfo::new(o.shape, &cfg);
    let device = DeviceInfo::new(p.device, o.peak_tflops, None);
    let ceil = if o.ceilings { ceilings(p.device)? } else { None };
    let probe = probe_for(p.device);
    let all = [Component::Llm, Component::Vision, Component::Audio];
    let weights = random_weights(&cfg, p, o.seed, &all, p.device)?;
    if o.lora_rank == 0 {
        set_trainable(&weights, TrainableParts::sft())?;
    }
    let mut th = Thinker::new(cfg, weights)?;
    th.freeze_encoders(true);
    if o.lora_rank > 0 {
        th.add_lora(&LoraConfig { rank: o.lora_rank, ..LoraConfig::default() })?;
    }
    let params = th.trainable();
    let trainable_params: u64 = params.iter().map(|t| t.numel() as u64).sum();
    let ids = plain_ids(o.seq_len, 1);
    let media = MediaInput::default();
    let opts = TrainOptions { chunk_tokens: o.chunk.max(1), checkpoint: o.checkpointing };
    let scored = (o.seq_len - 1) as f64;
    let mut loss_fn = |_: usize, lp: &Tensor, _: &Tensor| -> MResult<Tensor> {
        Ok(lp.f_sum(Kind::Float)?.f_mul_scalar(-1.0 / scored)?)
    };
    let mut times = Vec::with_capacity(o.steps);
    let mut loss = f64::NAN;
    for i in 0..o.warmup + o.steps {
        sync(p.device);
        let t0 = Instant::now();
        let s = forward_backward(&th, &ids, &media, 1, opts, &mut loss_fn)?;
        sync(p.device);
        if i >= o.warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
        loss = s.loss;
        zero_grads(&params)?;
    }
    let (step_s, step_s_min) = mean_min(&times);
    let tokens_per_s = o.seq_len as f64 / step_s;
    let (fpt, hfpt, flops_formula) = flops_per_token(&info, o.seq_len, o.lora_rank > 0, o.checkpointing);
    let peak = device.peak_tflops();
    Ok(LearnerRecord {
        seq_len: o.seq_len,
        checkpointing: o.checkpointing,
        lora_rank: o.lora_rank,
        trainable_params,
        steps: o.steps,
        step_s,
        step_s_min,
        tokens_per_s,
        flops_per_token: fpt,
        hardware_flops_per_token: hfpt,
        flops_formula,
        achieved_tflops: tokens_per_s * fpt / 1e12,
        mfu: peak.map(|pk| tokens_per_s * fpt / (pk * 1e12)),
        hfu: peak.map(|pk| tokens_per_s * hfpt / (pk * 1e12)),
        loss,
        memory: probe.map(|m| m.finish()),
        peak_rss_bytes: super::peak_rss_bytes(),
        ceilings: ceil,
        note: p.note(),
        header: RecordHeader::new("learner", device, info, &p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_of_the_7b_shape_at_8k() {
        let info = ShapeInfo::new(Shape::Seven, &Shape::Seven.config().unwrap());
        let (model, hw, _) = flops_per_token(&info, 8192, false, true);
        let n = info.matmul_params as f64;
        let attn = 2.0 * 8192.0 * 3584.0 * 28.0;
        assert!((model - (6.0 * n + 3.0 * attn)).abs() < 1.0);
        assert!((hw - (8.0 * n + 4.0 * attn)).abs() < 1.0);
        // 6N alone is about 42.4 GFLOP per token for the 7B LLM.
        assert!((6.0 * n / 1e9 - 42.4).abs() < 0.1, "{}", 6.0 * n / 1e9);
    }
}
