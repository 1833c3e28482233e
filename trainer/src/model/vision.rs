//! The vision encoder (`Qwen2_5OmniVisionEncoder`, docs/reference.md#vision-encoder): patch embedding as one
//! matmul (the Conv3d with kernel = stride is exactly `x @ W.reshape(hidden, C·T·P·P)ᵀ`), 2-D RoPE
//! over merge-block-major (h, w) patch positions, window permutation so each window is
//! contiguous, blocks with window attention except the full-attention ones (full attention within
//! each temporal slice), RMSNorm, SiLU-gated biased MLP, the patch merger (RMSNorm, 4 tokens →
//! one vector, Linear–GELU(erf)–Linear), and the inverse permutation.
//!
//! Input: `pixel_values [N, C·T·P·P]` rows in the processor's order and `grid_thw` per item, one
//! call for any number of images or videos. Output: `[N / merge², out_hidden]` in raster order.
//! The window index and segment boundaries are computed in Rust; attention runs per segment via
//! [`segment_attention`].
//!
//! Left out: the fused-qkv Qwen2.5-VL checkpoints (Omni stores q, k, v separately).

use super::layers::{Linear, RmsNorm, TResult, segment_attention};
use super::rope::{apply_rotary, inv_freq};
use super::weights::{Weights, WeightsError};
use crate::model::OmniThinkerConfig;
use tch::{Device, Kind, Tensor};

#[derive(Debug)]
struct Block {
    norm1: RmsNorm,
    norm2: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    proj: Linear,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

#[derive(Debug)]
pub struct VisionEncoder {
    patch: Tensor,
    blocks: Vec<Block>,
    full_blocks: Vec<usize>,
    ln_q: RmsNorm,
    mlp0: Linear,
    mlp2: Linear,
    heads: i64,
    head_dim: i64,
    merge: usize,
    /// Merged units per window side.
    window: usize,
    pub patch_dim: i64,
}

/// Window permutation of one call: the merged-unit order and the window segments (in patches).
fn window_index(grids: &[[usize; 3]], merge: usize, window: usize) -> (Vec<i64>, Vec<(usize, usize)>) {
    let unit = merge * merge;
    let mut index = Vec::new();
    let mut segments = Vec::new();
    let (mut base, mut pos) = (0usize, 0usize);
    for &[t, h, w] in grids {
        let (hh, ww) = (h / merge, w / merge);
        for ti in 0..t {
            for wr in 0..hh.div_ceil(window) {
                for wc in 0..ww.div_ceil(window) {
                    let mut n = 0;
                    for r in wr * window..((wr + 1) * window).min(hh) {
                        for c in wc * window..((wc + 1) * window).min(ww) {
                            index.push((base + ti * hh * ww + r * ww + c) as i64);
                            n += 1;
                        }
                    }
                    segments.push((pos, n * unit));
                    pos += n * unit;
                }
            }
        }
        base += t * hh * ww;
    }
    (index, segments)
}

/// (h, w) patch coordinates in the processor's merge-block-major order, repeated per t.
fn patch_positions(grids: &[[usize; 3]], merge: usize) -> (Vec<i64>, Vec<i64>) {
    let (mut hs, mut ws) = (Vec::new(), Vec::new());
    for &[t, h, w] in grids {
        for _ in 0..t {
            for br in 0..h / merge {
                for bc in 0..w / merge {
                    for mr in 0..merge {
                        for mc in 0..merge {
                            hs.push((br * merge + mr) as i64);
                            ws.push((bc * merge + mc) as i64);
                        }
                    }
                }
            }
        }
    }
    (hs, ws)
}

impl VisionEncoder {
    pub fn new(cfg: &OmniThinkerConfig, w: &Weights) -> Result<VisionEncoder, WeightsError> {
        let v = cfg.vision();
        let patch = w.get("visual.patch_embed.proj.weight")?;
        let patch_dim = (v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size) as i64;
        let patch = patch.f_reshape([v.hidden_size as i64, patch_dim]).map_err(WeightsError::Torch)?;
        let eps = 1e-6;
        let mut blocks = Vec::with_capacity(v.depth);
        for i in 0..v.depth {
            let b = w.scope(format!("visual.blocks.{i}"));
            blocks.push(Block {
                norm1: b.rms_norm("norm1", eps)?,
                norm2: b.rms_norm("norm2", eps)?,
                q: b.linear("attn.q", true)?,
                k: b.linear("attn.k", true)?,
                v: b.linear("attn.v", true)?,
                proj: b.linear("attn.proj", true)?,
                gate_proj: b.linear("mlp.gate_proj", true)?,
                up_proj: b.linear("mlp.up_proj", true)?,
                down_proj: b.linear("mlp.down_proj", true)?,
            });
        }
        let merger = w.scope("visual.merger");
        Ok(VisionEncoder {
            patch,
            blocks,
            full_blocks: v.fullatt_block_indexes.clone(),
            ln_q: merger.rms_norm("ln_q", eps)?,
            mlp0: merger.linear("mlp.0", true)?,
            mlp2: merger.linear("mlp.2", true)?,
            heads: v.num_heads as i64,
            head_dim: (v.hidden_size / v.num_heads.max(1)) as i64,
            merge: v.spatial_merge_size,
            window: (v.window_size / v.spatial_merge_size.max(1) / v.patch_size.max(1)).max(1),
            patch_dim,
        })
    }

    /// Checks `pixel_values [N, patch_dim]` against the grids (N = Σ t·h·w, h, w multiples of
    /// the merge size) before any tensor work.
    pub fn check(&self, rows: i64, cols: i64, grids: &[[usize; 3]]) -> Result<(), String> {
        let mut n = 0usize;
        for g in grids {
            if g.contains(&0) || !g[1].is_multiple_of(self.merge) || !g[2].is_multiple_of(self.merge) {
                return Err(format!("grid {g:?} is empty or not divisible by the merge size {}", self.merge));
            }
            let rows = g[0].checked_mul(g[1]).and_then(|x| x.checked_mul(g[2]));
            n = rows.and_then(|r| n.checked_add(r)).ok_or_else(|| format!("grid {g:?} is too large"))?;
        }
        if cols != self.patch_dim || rows != n as i64 {
            return Err(format!("pixel_values is [{rows}, {cols}] but the grids imply [{n}, {}]", self.patch_dim));
        }
        Ok(())
    }

    /// Where the tower's weights live (and its input should be made).
    pub fn device(&self) -> Device {
        self.patch.device()
    }

    /// `pixel_values [N, patch_dim]` (any float dtype) → `[N / merge², out_hidden]`.
    pub fn forward(&self, pixel_values: &Tensor, grids: &[[usize; 3]]) -> TResult<Tensor> {
        let dev = self.patch.device();
        let kind = self.patch.kind();
        let x = pixel_values.f_to_device(dev)?.f_to_kind(kind)?.f_matmul(&self.patch.f_tr()?)?;
        let n = x.size()[0];
        let unit = (self.merge * self.merge) as i64;
        // 2-D RoPE: angles of h then w, duplicated to head_dim.
        let inv = inv_freq((self.head_dim / 2) as usize, 10000.0, dev)?;
        let (hs, ws) = patch_positions(grids, self.merge);
        let hpos = Tensor::f_from_slice(&hs)?.f_to_device(dev)?.f_to_kind(Kind::Float)?;
        let wpos = Tensor::f_from_slice(&ws)?.f_to_device(dev)?.f_to_kind(Kind::Float)?;
        let fh = hpos.f_unsqueeze(1)?.f_mul(&inv.f_unsqueeze(0)?)?;
        let fw = wpos.f_unsqueeze(1)?.f_mul(&inv.f_unsqueeze(0)?)?;
        let freqs = Tensor::f_cat(&[fh, fw], 1)?;
        let (index, windows) = window_index(grids, self.merge, self.window);
        let idx = Tensor::f_from_slice(&index)?.f_to_device(dev)?;
        let permute = |t: &Tensor| -> TResult<Tensor> {
            let d = t.size()[1];
            t.f_reshape([n / unit, unit, d])?.f_index_select(0, &idx)?.f_reshape([n, d])
        };
        let x = permute(&x)?;
        let freqs = permute(&freqs)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], 1)?.f_unsqueeze(1)?;
        let (cos, sin) = (emb.f_cos()?, emb.f_sin()?);
        let mut full = Vec::new();
        let mut pos = 0usize;
        for &[t, h, w] in grids {
            for _ in 0..t {
                full.push((pos, h * w));
                pos += h * w;
            }
        }
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let mut x = x;
        for (i, b) in self.blocks.iter().enumerate() {
            let segs = if self.full_blocks.contains(&i) { &full } else { &windows };
            let y = b.norm1.forward(&x)?;
            let shape = [n, self.heads, self.head_dim];
            let rot = |t: Tensor| -> TResult<Tensor> {
                apply_rotary(&t.f_to_kind(Kind::Float)?, &cos, &sin)?.f_to_kind(kind)
            };
            let q = rot(b.q.forward(&y)?.f_reshape(shape)?)?;
            let k = rot(b.k.forward(&y)?.f_reshape(shape)?)?;
            let v = b.v.forward(&y)?.f_reshape(shape)?;
            let o = segment_attention(&q, &k, &v, segs, scale)?.f_reshape([n, self.heads * self.head_dim])?;
            x = x.f_add(&b.proj.forward(&o)?)?;
            let y = b.norm2.forward(&x)?;
            x = x.f_add(&b.down_proj.forward(&b.gate_proj.forward(&y)?.f_silu()?.f_mul(&b.up_proj.forward(&y)?)?)?)?;
        }
        let d = x.size()[1];
        let m = self.ln_q.forward(&x)?.f_reshape([n / unit, d * unit])?;
        let m = self.mlp2.forward(&self.mlp0.forward(&m)?.f_gelu("none")?)?;
        let reverse = idx.f_argsort(0, false)?;
        m.f_index_select(0, &reverse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_tile_the_merged_grid() {
        // 1 x 12 x 20 patches -> 6 x 10 merged, windows of 4: rows [4, 2] x cols [4, 4, 2].
        let (index, segs) = window_index(&[[1, 12, 20]], 2, 4);
        assert_eq!(index.len(), 60);
        let lens: Vec<usize> = segs.iter().map(|s| s.1 / 4).collect();
        assert_eq!(lens, [16, 16, 8, 8, 8, 4]);
        assert_eq!(&index[..5], [0, 1, 2, 3, 10]);
        let mut sorted = index.clone();
        sorted.sort();
        assert_eq!(sorted, (0..60).collect::<Vec<i64>>());
    }

    #[test]
    fn patch_positions_are_merge_block_major() {
        let (h, w) = patch_positions(&[[1, 2, 4]], 2);
        assert_eq!(h, [0, 0, 1, 1, 0, 0, 1, 1]);
        assert_eq!(w, [0, 1, 0, 1, 2, 3, 2, 3]);
    }
}
