//! `omnirl bench decode`: decode tokens/s of batched generation with the KV cache
//! (`model::generate::generate_timed`, greedy, stop tokens ignored) at several batch sizes, and the
//! share of the HBM roofline that makes.
//!
//! Each batch is `B` left-aligned prompts of `prompt_len` plain tokens; a warm-up of 2 tokens runs
//! first, then `reps` timed generations of `new_tokens + 1` tokens, best of them kept (prefill
//! and decode separately). The first token comes out of the prefill; the other `new_tokens` are
//! the decode steps timed.
//!
//! Roofline: a decode step must at least read every weight it multiplies once (`N` matmul
//! params, [`ShapeInfo::matmul_params`], plus the `B` embedding rows) and the KV cache of the
//! batch over the mean context `prompt_len + (new_tokens + 1) / 2`. Bytes per step over the
//! measured step time is the achieved bandwidth; divided by the GPU's HBM peak (`hw`, or
//! `--hbm-gbps`) it is the roofline share. Logits, activations and sampling traffic are not
//! counted, so the share is a lower bound of the real traffic's.
//!
//! Left out: sampling with temperature (greedy costs the same per step up to the sort), media in
//! the prompts (the encoders are `encoders`' business) and continuous batching.

use super::hw::{Ceilings, DeviceInfo, MemReport, ceilings, probe_for};
use super::{
    BResult, BenchError, Placement, RecordHeader, Shape, ShapeInfo, kind_bytes, plain_ids, random_thinker, sync,
};
use crate::model::generate::{Prompt, SamplingParams, generate, generate_timed};
use crate::model::thinker::MediaInput;
use serde::Serialize;

/// What to measure.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub shape: Shape,
    pub placement: Placement,
    pub batches: Vec<usize>,
    pub prompt_len: usize,
    pub new_tokens: usize,
    pub reps: usize,
    pub seed: i64,
    pub hbm_gbps: Option<f64>,
    pub ceilings: bool,
}

/// One batch size.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeRow {
    pub batch: usize,
    pub prompt_len: usize,
    /// Decode steps timed (tokens per row after the first).
    pub new_tokens: usize,
    pub prefill_s: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_s: f64,
    pub decode_tokens_per_s: f64,
    pub step_ms: f64,
    pub bytes_per_step: f64,
    pub achieved_gbps: f64,
    pub hbm_share: Option<f64>,
}

/// The decode measurement.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeRecord {
    #[serde(flatten)]
    pub header: RecordHeader,
    pub rows: Vec<DecodeRow>,
    pub bytes_formula: String,
    pub memory: Option<MemReport>,
    pub ceilings: Option<Ceilings>,
    pub note: Option<String>,
}

/// Bytes a decode step must read at batch `b` (see the module doc).
pub fn bytes_per_step(info: &ShapeInfo, elt: u64, b: usize, prompt_len: usize, new_tokens: usize) -> f64 {
    let weights = (info.matmul_params + (b * info.hidden) as u64) * elt;
    let ctx = prompt_len as f64 + (new_tokens as f64 + 1.0) / 2.0;
    weights as f64 + b as f64 * ctx * info.kv_bytes_per_token(elt) as f64
}

/// Runs the decode benchmark.
pub fn run(o: &DecodeOptions) -> BResult<DecodeRecord> {
    if o.batches.is_empty() || o.batches.contains(&0) || o.prompt_len == 0 || o.new_tokens == 0 || o.reps == 0 {
        return Err(BenchError::Options(
            "--batch needs positive sizes; --prompt-len, --new-tokens and --reps must be positive".into(),
        ));
    }
    let p = o.placement;
    let cfg = o.shape.config()?;
    let info = ShapeInfo::new(o.shape, &cfg);
    let device = DeviceInfo::new(p.device, None, o.hbm_gbps);
    let ceil = if o.ceilings { ceilings(p.device)? } else { None };
    let probe = probe_for(p.device);
    let th = random_thinker(&cfg, p, o.seed)?;
    let media = MediaInput::default();
    let elt = kind_bytes(p.compute);
    let mut rows = Vec::with_capacity(o.batches.len());
    for &b in &o.batches {
        let ids: Vec<Vec<u32>> = (0..b).map(|r| plain_ids(o.prompt_len, r + 1)).collect();
        let prompts: Vec<Prompt<'_>> = ids.iter().map(|i| Prompt { ids: i, media: &media, seed: None }).collect();
        let params =
            |n| SamplingParams { greedy: true, ignore_eos: true, max_new_tokens: n, ..SamplingParams::default() };
        generate(&th, &prompts, &params(2))?;
        let (mut prefill, mut decode, mut steps) = (f64::MAX, f64::MAX, 0);
        for _ in 0..o.reps {
            let (_, t) = generate_timed(&th, &prompts, &params(o.new_tokens + 1))?;
            prefill = prefill.min(t.prefill_s);
            decode = decode.min(t.decode_s.max(1e-9));
            steps = t.decode_steps;
        }
        sync(p.device);
        let step = decode / steps.max(1) as f64;
        let bytes = bytes_per_step(&info, elt, b, o.prompt_len, steps);
        let gbps = bytes / step / 1e9;
        rows.push(DecodeRow {
            batch: b,
            prompt_len: o.prompt_len,
            new_tokens: steps,
            prefill_s: prefill,
            prefill_tokens_per_s: (b * o.prompt_len) as f64 / prefill,
            decode_s: decode,
            decode_tokens_per_s: (b * steps) as f64 / decode,
            step_ms: step * 1e3,
            bytes_per_step: bytes,
            achieved_gbps: gbps,
            hbm_share: device.hbm_gbps().map(|peak| gbps / peak),
        });
    }
    Ok(DecodeRecord {
        rows,
        bytes_formula: format!(
            "(matmul params + B·hidden)·{elt} B + B·(prompt + (new+1)/2)·KV bytes per token; per step time"
        ),
        memory: probe.map(|m| m.finish()),
        ceilings: ceil,
        note: p.note(),
        header: RecordHeader::new("decode", device, info, &p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seven_b_batch_one_reads_about_the_weights() {
        let info = ShapeInfo::new(Shape::Seven, &Shape::Seven.config().unwrap());
        let b1 = bytes_per_step(&info, 2, 1, 512, 128);
        // 7.07 G matmul params in bf16 = 14.1 GB, plus 576.5 tokens x 57,344 B of KV cache.
        assert!((b1 / 1e9 - 14.17).abs() < 0.05, "{b1}");
        let b64 = bytes_per_step(&info, 2, 64, 512, 128);
        assert!((b64 - b1 - 63.0 * (3584.0 * 2.0 + 576.5 * 57_344.0)).abs() < 1.0);
    }
}
