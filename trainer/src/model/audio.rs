//! The audio encoder (`Qwen2_5OmniAudioEncoder`, docs/reference.md#audio-encoder): each audio's log-mel
//! frames are cut into chunks of `2 · n_window` frames (2 s), zero-padded to a common length;
//! `gelu(conv1)` (masked to the valid frames), `gelu(conv2, stride 2)`, plus the sinusoidal
//! position table restarted in every chunk; the valid tokens go through pre-LN encoder layers
//! whose attention is block-diagonal per chunk; then per audio: average-pool pairs, `ln_post`,
//! `proj`. Output: `((F - 1) / 2 + 1 - 2) / 2 + 1` tokens per audio of `F` frames.
//!
//! Chunk attention runs through [`segment_attention`] (chunks of equal length batched, no mask),
//! which equals the reference's block-diagonal mask exactly.
//!
//! Left out: `audio_bos_eos_token` (in the checkpoint, never used by the thinker's forward), fp16
//! clamping (we run f32 or bf16).

use super::layers::{LayerNorm, Linear, TResult, segment_attention};
use super::weights::{Weights, WeightsError};
use crate::model::OmniThinkerConfig;
use tch::{Kind, Tensor};

#[derive(Debug)]
struct EncoderLayer {
    self_attn_layer_norm: LayerNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    final_layer_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

#[derive(Debug)]
pub struct AudioEncoder {
    conv1_w: Tensor,
    conv1_b: Tensor,
    conv2_w: Tensor,
    conv2_b: Tensor,
    layers: Vec<EncoderLayer>,
    ln_post: LayerNorm,
    proj: Linear,
    heads: i64,
    d_model: i64,
    pub mel_bins: i64,
    n_window: usize,
    max_positions: usize,
}

/// Tokens an audio of `frames` mel frames becomes.
pub fn audio_output_len(frames: usize) -> usize {
    rollout::chat::audio_tokens_for_frames(frames)
}

/// The encoder's LayerNorm epsilon (transformers' `nn.LayerNorm` default).
const LN_EPS: f64 = 1e-5;

/// The `[length, channels]` table `[sin | cos]` of `pos · exp(-ln(10000) / (c/2 - 1) · i)` (f32).
fn sinusoids(length: usize, channels: usize, device: tch::Device) -> TResult<Tensor> {
    let half = (channels / 2) as i64;
    let inc = (10000f64).ln() / (half - 1).max(1) as f64;
    let inv = Tensor::f_arange(half, (Kind::Float, device))?.f_mul_scalar(-inc)?.f_exp()?;
    let t = Tensor::f_arange(length as i64, (Kind::Int64, device))?.f_unsqueeze(1)?.f_to_kind(Kind::Float)?;
    let scaled = t.f_mul(&inv.f_unsqueeze(0)?)?;
    Tensor::f_cat(&[scaled.f_sin()?, scaled.f_cos()?], 1)
}

impl AudioEncoder {
    pub fn new(cfg: &OmniThinkerConfig, w: &Weights) -> Result<AudioEncoder, WeightsError> {
        let a = cfg.audio();
        let tower = w.scope("audio_tower");
        let mut layers = Vec::with_capacity(a.encoder_layers);
        for i in 0..a.encoder_layers {
            let l = w.scope(format!("audio_tower.layers.{i}"));
            layers.push(EncoderLayer {
                self_attn_layer_norm: l.layer_norm("self_attn_layer_norm", LN_EPS)?,
                q_proj: l.linear("self_attn.q_proj", true)?,
                k_proj: l.linear("self_attn.k_proj", false)?,
                v_proj: l.linear("self_attn.v_proj", true)?,
                out_proj: l.linear("self_attn.out_proj", true)?,
                final_layer_norm: l.layer_norm("final_layer_norm", LN_EPS)?,
                fc1: l.linear("fc1", true)?,
                fc2: l.linear("fc2", true)?,
            });
        }
        Ok(AudioEncoder {
            conv1_w: tower.get("conv1.weight")?,
            conv1_b: tower.get("conv1.bias")?,
            conv2_w: tower.get("conv2.weight")?,
            conv2_b: tower.get("conv2.bias")?,
            layers,
            ln_post: tower.layer_norm("ln_post", LN_EPS)?,
            proj: tower.linear("proj", true)?,
            heads: a.encoder_attention_heads as i64,
            d_model: a.d_model as i64,
            mel_bins: a.num_mel_bins as i64,
            n_window: a.n_window,
            max_positions: a.max_source_positions,
        })
    }

    /// `features [mel, ΣF]` (the audios' valid frames side by side), `frames` per audio →
    /// `[Σ tokens, output_dim]`.
    pub fn forward(&self, features: &Tensor, frames: &[usize]) -> TResult<Tensor> {
        let dev = self.conv1_w.device();
        let kind = self.conv1_w.kind();
        let x = features.f_to_device(dev)?.f_to_kind(kind)?;
        let chunk = 2 * self.n_window.max(1);
        // (audio, start frame, length) per chunk
        let mut chunks = Vec::new();
        let mut off = 0usize;
        for (a, &f) in frames.iter().enumerate() {
            let mut s = 0;
            while s < f {
                let l = chunk.min(f - s);
                chunks.push((a, off + s, l));
                s += l;
            }
            off += f;
        }
        let max_len = chunks.iter().map(|c| c.2).max().unwrap_or(0) as i64;
        let nc = chunks.len() as i64;
        let mut padded = Tensor::f_zeros([nc, self.mel_bins, max_len], (kind, dev))?;
        let mut mask = vec![0f32; (nc * max_len) as usize];
        for (i, &(_, s, l)) in chunks.iter().enumerate() {
            let mut dst = padded.f_get(i as i64)?.f_narrow(1, 0, l as i64)?;
            dst.f_copy_(&x.f_narrow(1, s as i64, l as i64)?)?;
            mask[i * max_len as usize..i * max_len as usize + l].fill(1.0);
        }
        padded = padded.f_contiguous()?;
        let mask = Tensor::f_from_slice(&mask)?.f_to_device(dev)?.f_to_kind(kind)?.f_view([nc, 1, max_len])?;
        let h = padded.f_conv1d(&self.conv1_w, Some(&self.conv1_b), [1], [1], [1], 1)?.f_gelu("none")?.f_mul(&mask)?;
        let h = h.f_conv1d(&self.conv2_w, Some(&self.conv2_b), [2], [1], [1], 1)?.f_gelu("none")?.f_transpose(1, 2)?;
        let t_after = h.size()[1];
        let pos = sinusoids(self.max_positions.max(t_after as usize), self.d_model as usize, dev)?;
        let h = h.f_add(&pos.f_narrow(0, 0, t_after)?.f_unsqueeze(0)?.f_to_kind(kind)?)?;
        // Valid tokens, chunk after chunk.
        let mut idx = Vec::new();
        let mut segs = Vec::new();
        for (i, &(_, _, l)) in chunks.iter().enumerate() {
            let n = (l - 1) / 2 + 1;
            segs.push((idx.len(), n));
            idx.extend((0..n).map(|j| i as i64 * t_after + j as i64));
        }
        let idx = Tensor::f_from_slice(&idx)?.f_to_device(dev)?;
        let mut h = h.f_reshape([nc * t_after, self.d_model])?.f_index_select(0, &idx)?;
        let s = h.size()[0];
        let hd = self.d_model / self.heads.max(1);
        let scale = 1.0 / (hd as f64).sqrt();
        for l in &self.layers {
            let y = l.self_attn_layer_norm.forward(&h)?;
            let shape = [s, self.heads, hd];
            let q = l.q_proj.forward(&y)?.f_reshape(shape)?;
            let k = l.k_proj.forward(&y)?.f_reshape(shape)?;
            let v = l.v_proj.forward(&y)?.f_reshape(shape)?;
            let o = segment_attention(&q, &k, &v, &segs, scale)?.f_reshape([s, self.d_model])?;
            h = h.f_add(&l.out_proj.forward(&o)?)?;
            let y = l.final_layer_norm.forward(&h)?;
            h = h.f_add(&l.fc2.forward(&l.fc1.forward(&y)?.f_gelu("none")?)?)?;
        }
        // Per audio: pool pairs, ln_post, proj.
        let mut outs = Vec::with_capacity(frames.len());
        let mut start = 0i64;
        for &f in frames {
            let n = if f == 0 { 0 } else { ((f - 1) / 2 + 1) as i64 };
            let pairs = n / 2;
            let a = h.f_narrow(0, start, n)?;
            start += n;
            if pairs == 0 {
                continue;
            }
            let pooled =
                a.f_narrow(0, 0, 2 * pairs)?.f_reshape([pairs, 2, self.d_model])?.f_mean_dim(1, false, kind)?;
            outs.push(self.proj.forward(&self.ln_post.forward(&pooled)?)?);
        }
        if outs.is_empty() {
            let out_dim = self.proj.w.size()[0];
            return Tensor::f_zeros([0, out_dim], (kind, dev));
        }
        Tensor::f_cat(&outs, 0)
    }
}
