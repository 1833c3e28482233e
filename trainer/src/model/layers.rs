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
//! A left-padded prefill ([`Mask::LeftPadCausal`]) runs causal SDPA on each group of rows with
//! the same pad count, over their unpadded positions only, instead of one call with a boolean
//! `[B, 1, L, L]` mask: the causal kernel skips the blocks above the diagonal (half the work at
//! long prompts) and no mask is built or converted. Pads attend only to themselves, as under the
//! boolean mask, so their outputs are their own values.
//!
//! A packed row ([`Mask::Packed`], the training forward's micro-batch) runs causal SDPA per
//! segment: the varlen layout without padding, each sequence attending only to itself.
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
    /// Causal within each row after its left padding: a row's first `pad` positions are pads,
    /// which attend only to themselves; every other position attends to the non-pad positions
    /// up to itself. Only for `Lq == Lk` (a whole batch, no cache before it).
    LeftPadCausal(PadGroups),
    /// Several sequences packed into one row: causal within each segment `(start, len)`, no
    /// attention across segments. The segments tile the row in order. Only for `Lq == Lk` and a
    /// batch of one row (the training forward's packed micro-batch).
    Packed(Vec<(i64, i64)>),
}

/// The rows of a left-padded batch grouped by pad count, with each group's row indices on the
/// device: built once per batch, used by every layer.
#[derive(Debug)]
pub struct PadGroups {
    rows: i64,
    /// `(pad, rows)`; `rows` is `None` when the group is the whole batch.
    groups: Vec<(i64, Option<Tensor>)>,
}

impl PadGroups {
    /// Groups row `r` under `pads[r]`; a negative pad count is an error.
    pub fn new(pads: &[i64], device: tch::Device) -> TResult<PadGroups> {
        if let Some(p) = pads.iter().find(|&&p| p < 0) {
            return Err(tch::TchError::Shape(format!("left-padded causal attention: pad count {p}")));
        }
        let mut by_pad: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (row, &pad) in pads.iter().enumerate() {
            by_pad.entry(pad).or_default().push(row as i64);
        }
        let whole = by_pad.len() == 1;
        let groups = by_pad
            .into_iter()
            .map(|(pad, rows)| {
                let idx = if whole { None } else { Some(Tensor::f_from_slice(&rows)?.f_to_device(device)?) };
                Ok((pad, idx))
            })
            .collect::<TResult<_>>()?;
        Ok(PadGroups { rows: pads.len() as i64, groups })
    }
}

/// SDPA with GQA: `q [B, H, Lq, d]`, `k, v [B, Hkv, Lk, d]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Mask, scale: f64) -> TResult<Tensor> {
    let (h, hkv) = (q.size()[1], k.size()[1]);
    let (m, causal) = match mask {
        Mask::Causal => (None, true),
        Mask::Bool(m) => (Some(m), false),
        Mask::LeftPadCausal(pads) => return left_padded_causal(q, k, v, pads, scale),
        Mask::Packed(segments) => return packed_causal(q, k, v, segments, scale),
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

/// [`Mask::LeftPadCausal`] attention: one causal SDPA call per distinct pad count, on those
/// rows' unpadded positions; a pad's output is its own value (its only key).
fn left_padded_causal(q: &Tensor, k: &Tensor, v: &Tensor, pads: &PadGroups, scale: f64) -> TResult<Tensor> {
    let (b, h, l) = (q.size()[0], q.size()[1], q.size()[2]);
    let hkv = k.size()[1];
    let widest = pads.groups.last().map_or(0, |g| g.0);
    if pads.rows != b || k.size()[2] != l || widest >= l {
        return Err(tch::TchError::Shape(format!(
            "left-padded causal attention: {} rows with pad counts up to {widest} for {b} rows, {l} queries, {} keys",
            pads.rows,
            k.size()[2]
        )));
    }
    let out = if h == hkv {
        let mut own = v.f_empty_like()?;
        own.f_copy_(v)?;
        own
    } else {
        v.f_repeat_interleave_self_int(h / hkv.max(1), 1, None)?
    };
    for (pad, rows) in &pads.groups {
        let (pad, n) = (*pad, l - *pad);
        let take = |t: &Tensor| match rows {
            None => t.f_narrow(2, pad, n),
            Some(idx) => t.f_index_select(0, idx)?.f_narrow(2, pad, n),
        };
        let o = attention(&take(q)?, &take(k)?, &take(v)?, &Mask::Causal, scale)?;
        let mut dst = out.f_narrow(2, pad, n)?;
        match rows {
            None => dst.f_copy_(&o)?,
            Some(idx) => {
                let _ = dst.f_index_copy_(0, idx, &o)?;
            }
        }
    }
    Ok(out)
}

/// [`Mask::Packed`] attention: one causal SDPA call per segment on its own positions, the
/// outputs concatenated in order (differentiable: `narrow` and `cat`, nothing written in place).
fn packed_causal(q: &Tensor, k: &Tensor, v: &Tensor, segments: &[(i64, i64)], scale: f64) -> TResult<Tensor> {
    let (b, l) = (q.size()[0], q.size()[2]);
    let mut next = 0;
    let tiles = segments.iter().all(|&(s, n)| {
        let ok = s == next && n > 0;
        next = s + n;
        ok
    });
    if b != 1 || k.size()[2] != l || !tiles || next != l {
        return Err(tch::TchError::Shape(format!(
            "packed causal attention: segments {segments:?} must tile {l} positions of one row ({b} rows, {} keys)",
            k.size()[2]
        )));
    }
    let outs = segments
        .iter()
        .map(|&(s, n)| {
            let take = |t: &Tensor| t.f_narrow(2, s, n);
            attention(&take(q)?, &take(k)?, &take(v)?, &Mask::Causal, scale)
        })
        .collect::<TResult<Vec<_>>>()?;
    Tensor::f_cat(&outs, 2)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{Mask, PadGroups, attention};
    use tch::{Device, Kind, Tensor};

    /// The boolean mask a left-padded batch would need: causal, keys that are not pads, and
    /// each pad attending to itself.
    fn bool_mask(pads: &[i64], l: i64, dev: Device) -> Tensor {
        let causal = Tensor::ones([l, l], (Kind::Bool, dev)).tril(0);
        let valid: Vec<bool> = pads.iter().flat_map(|&p| (0..l).map(move |j| j >= p)).collect();
        let keys = Tensor::from_slice(&valid).view([pads.len() as i64, 1, 1, l]).to_device(dev);
        causal.logical_and(&keys).logical_or(&Tensor::eye(l, (Kind::Bool, dev)))
    }

    /// Per-pad-group causal attention equals SDPA under the boolean mask, pads included, with
    /// and without GQA, for one pad count shared by all rows and for mixed ones.
    #[test]
    fn left_padded_causal_equals_the_boolean_mask() {
        let mut devices = vec![Device::Cpu];
        if tch::Cuda::is_available() {
            devices.push(Device::Cuda(0));
        }
        for dev in devices {
            tch::manual_seed(3);
            for (heads, kv_heads) in [(4, 2), (2, 2)] {
                for pads in [vec![0, 3, 3, 8], vec![2, 2, 2, 2], vec![0, 0, 0, 0]] {
                    let (b, l, d) = (pads.len() as i64, 9, 8);
                    let q = Tensor::randn([b, heads, l, d], (Kind::Float, dev));
                    let k = Tensor::randn([b, kv_heads, l, d], (Kind::Float, dev));
                    let v = Tensor::randn([b, kv_heads, l, d], (Kind::Float, dev));
                    let groups = PadGroups::new(&pads, dev).unwrap();
                    let fast = attention(&q, &k, &v, &Mask::LeftPadCausal(groups), 0.3).unwrap();
                    let masked = attention(&q, &k, &v, &Mask::Bool(bool_mask(&pads, l, dev)), 0.3).unwrap();
                    let diff = (&fast - &masked).abs().max().double_value(&[]);
                    assert!(diff < 1e-5, "{dev:?} heads {heads}/{kv_heads} pads {pads:?}: {diff}");
                }
            }
        }
    }

    /// Packed causal attention equals SDPA under a block-diagonal causal mask, with and without
    /// GQA; segments that do not tile the row are errors.
    #[test]
    fn packed_causal_equals_the_block_diagonal_mask() {
        for dev in [Device::Cpu].into_iter().chain(tch::Cuda::is_available().then_some(Device::Cuda(0))) {
            tch::manual_seed(5);
            let segments = vec![(0i64, 3i64), (3, 1), (4, 6)];
            let l = 10;
            let seg_of: Vec<i64> =
                segments.iter().enumerate().flat_map(|(i, &(_, n))| (0..n).map(move |_| i as i64)).collect();
            let seg = Tensor::from_slice(&seg_of).to_device(dev);
            let same = seg.unsqueeze(1).eq_tensor(&seg.unsqueeze(0));
            let mask = Tensor::ones([l, l], (Kind::Bool, dev)).tril(0).logical_and(&same).view([1, 1, l, l]);
            for (heads, kv_heads) in [(4, 2), (2, 2)] {
                let q = Tensor::randn([1, heads, l, 8], (Kind::Float, dev));
                let k = Tensor::randn([1, kv_heads, l, 8], (Kind::Float, dev));
                let v = Tensor::randn([1, kv_heads, l, 8], (Kind::Float, dev));
                let packed = attention(&q, &k, &v, &Mask::Packed(segments.clone()), 0.3).unwrap();
                let masked = attention(&q, &k, &v, &Mask::Bool(mask.shallow_clone()), 0.3).unwrap();
                let diff = (&packed - &masked).abs().max().double_value(&[]);
                assert!(diff < 1e-5, "{dev:?} heads {heads}/{kv_heads}: {diff}");
            }
            let q = Tensor::zeros([1, 2, l, 8], (Kind::Float, dev));
            for bad in [vec![(0, 3), (4, 6)], vec![(0, 3), (3, 6)], vec![(0, 0), (0, 10)]] {
                let e = attention(&q, &q, &q, &Mask::Packed(bad.clone()), 1.0).unwrap_err();
                assert!(e.to_string().contains("packed causal attention"), "{bad:?}: {e}");
            }
        }
    }

    #[test]
    fn left_padded_causal_rejects_mismatched_pads() {
        let q = Tensor::zeros([2, 2, 4, 8], (Kind::Float, Device::Cpu));
        for pads in [vec![0], vec![0, 4], vec![-1, 0]] {
            let e = PadGroups::new(&pads, Device::Cpu)
                .and_then(|groups| attention(&q, &q, &q, &Mask::LeftPadCausal(groups), 1.0))
                .unwrap_err();
            assert!(e.to_string().contains("left-padded causal attention"), "{pads:?}: {e}");
        }
    }
}
