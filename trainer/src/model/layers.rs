//! Building blocks shared by the LLM and the two encoders: a linear layer with an optional LoRA
//! adapter, RMSNorm (computed in fp32 as Qwen2 does), LayerNorm, and attention through libtorch's
//! `scaled_dot_product_attention` (SDPA) — causal / masked for the LLM, and over independent
//! segments (vision windows, per-time-slice full attention, audio chunks) for the encoders.
//!
//! Segment attention groups segments of equal length into one batch each and runs SDPA without a
//! mask, which is exact (no padding, so no all-masked rows) and equivalent to flash-attention's
//! varlen call or transformers' per-chunk loop. GQA uses SDPA's `enable_gqa`; a backend that
//! refuses it falls back to repeating the KV heads. A decode step (one query per row) instead
//! folds the query heads that share a KV head into that head's query rows: SDPA without GQA on
//! the cache as it is, which the CPU runs as small matrix products where a masked GQA call went
//! through one matrix-vector product per head (docs/performance.md).
//!
//! Left out: dropout (inference and RL use none), fused kernels beyond what SDPA picks.

use super::lora::Lora;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

pub type TResult<T> = Result<T, tch::TchError>;

/// `y = x Wᵀ + b` (+ LoRA `scale * x Aᵀ Bᵀ` when attached and enabled).
#[derive(Debug)]
pub struct Linear {
    pub w: Tensor,
    pub b: Option<Tensor>,
    pub lora: Option<Lora>,
}

impl Linear {
    pub fn new(w: Tensor, b: Option<Tensor>) -> Self {
        Linear { w, b, lora: None }
    }

    pub fn forward(&self, x: &Tensor) -> TResult<Tensor> {
        let y = x.f_linear(&self.w, self.b.as_ref())?;
        match &self.lora {
            Some(l) if l.enabled() => y.f_add(&l.delta(x)?),
            _ => Ok(y),
        }
    }
}

/// Qwen2RMSNorm: `w * (x_f32 * rsqrt(mean(x_f32²) + eps)).to(x.dtype)`.
#[derive(Debug)]
pub struct RmsNorm {
    pub w: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> TResult<Tensor> {
        let kind = x.kind();
        let xf = x.f_to_kind(Kind::Float)?;
        let var = xf.f_square()?.f_mean_dim(-1, true, Kind::Float)?;
        let normed = xf.f_mul(&var.f_add_scalar(self.eps)?.f_rsqrt()?)?.f_to_kind(kind)?;
        self.w.f_mul(&normed)
    }
}

/// `torch.nn.LayerNorm` with affine parameters.
#[derive(Debug)]
pub struct LayerNorm {
    pub w: Tensor,
    pub b: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor) -> TResult<Tensor> {
        let d = x.size().last().copied().unwrap_or(0);
        x.f_layer_norm([d], Some(&self.w), Some(&self.b), self.eps, true)
    }
}

/// How LLM queries may attend.
#[derive(Debug)]
pub enum Mask {
    /// Lower-triangular, no padding (`is_causal`, the fast path).
    Causal,
    /// Boolean `[B, 1, Lq, Lk]`, true = attend.
    Bool(Tensor),
}

/// SDPA with GQA: `q [B, H, Lq, d]`, `k, v [B, Hkv, Lk, d]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Mask, scale: f64) -> TResult<Tensor> {
    let (h, hkv) = (q.size()[1], k.size()[1]);
    let (m, causal) = match mask {
        Mask::Causal => (None, true),
        Mask::Bool(m) => (Some(m), false),
    };
    if h == hkv {
        return Tensor::f_scaled_dot_product_attention(q, k, v, m, 0.0, causal, scale, false);
    }
    let (b, lq, d) = (q.size()[0], q.size()[2], q.size()[3]);
    if lq == 1 && !causal && hkv > 0 && h % hkv == 0 {
        // One query per row (a decode step): the `h / hkv` query heads that share a KV head
        // become that head's query rows, an attention without GQA over the unexpanded cache.
        let grouped = q.f_reshape([b, hkv, h / hkv, d])?;
        let o = Tensor::f_scaled_dot_product_attention(&grouped, k, v, m, 0.0, false, scale, false)?;
        return o.f_reshape([b, h, 1, d]);
    }
    match Tensor::f_scaled_dot_product_attention(q, k, v, m, 0.0, causal, scale, true) {
        Ok(o) => Ok(o),
        Err(_) => {
            let rep = h / hkv.max(1);
            let k = k.f_repeat_interleave_self_int(rep, 1, None)?;
            let v = v.f_repeat_interleave_self_int(rep, 1, None)?;
            Tensor::f_scaled_dot_product_attention(q, &k, &v, m, 0.0, causal, scale, false)
        }
    }
}

/// Bidirectional attention within each segment `(start, len)` of a token sequence.
/// `q, k, v`: `[S, H, d]`; returns `[S, H, d]`. Segments must tile `0..S`.
pub fn segment_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    segments: &[(usize, usize)],
    scale: f64,
) -> TResult<Tensor> {
    let dev = q.device();
    let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &(s, l) in segments {
        if l > 0 {
            by_len.entry(l).or_default().push(s);
        }
    }
    let mut out = q.f_zeros_like()?;
    for (len, starts) in by_len {
        let idx: Vec<i64> = starts.iter().flat_map(|&s| (s..s + len).map(|i| i as i64)).collect();
        let idx = Tensor::f_from_slice(&idx)?.f_to_device(dev)?;
        let n = starts.len() as i64;
        let take = |t: &Tensor| -> TResult<Tensor> {
            let sz = t.size();
            t.f_index_select(0, &idx)?.f_view([n, len as i64, sz[1], sz[2]])?.f_transpose(1, 2)
        };
        let o = Tensor::f_scaled_dot_product_attention(
            &take(q)?,
            &take(k)?,
            &take(v)?,
            None::<&Tensor>,
            0.0,
            false,
            scale,
            false,
        )?;
        let sz = q.size();
        let o = o.f_transpose(1, 2)?.f_reshape([n * len as i64, sz[1], sz[2]])?;
        out = out.f_index_copy(0, &idx, &o)?;
    }
    Ok(out)
}
