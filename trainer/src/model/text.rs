//! The thinker's language model: a Qwen2 decoder (`Qwen2_5OmniThinkerTextModel`,
//! docs/reference.md#llm). Pre-norm blocks with RMSNorm in fp32, GQA attention with q/k/v biases
//! and no o_proj bias, 3-axis M-RoPE applied to q and k, SwiGLU MLP, final norm; `lm_head` (or
//! the tied embedding).
//!
//! The KV cache is preallocated per layer (`[B, Hkv, capacity, d]`) and written in place, so a
//! decode step costs no reallocation; attention reads the filled prefix. Per-layer entry points
//! ([`TextModel::layer`]) let the training forward checkpoint activations layer by layer.
//!
//! Left out: sliding-window attention (disabled in every Omni config; `validate` rejects it).

use super::layers::{Linear, Mask, RmsNorm, TResult, attention};
use super::rope::apply_rotary;
use super::weights::{Weights, WeightsError};
use crate::model::OmniThinkerConfig;
use tch::{Kind, Tensor};

#[derive(Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

#[derive(Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

#[derive(Debug)]
pub struct Layer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

/// Per-layer key/value cache.
#[derive(Debug)]
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Filled length (same for every row; padding is masked, not skipped).
    pub len: i64,
    pub capacity: i64,
}

impl KvCache {
    pub fn new(model: &TextModel, batch: i64, capacity: i64) -> TResult<KvCache> {
        let a = &model.layers.first().map(|l| (l.self_attn.kv_heads, l.self_attn.head_dim)).unwrap_or((1, 1));
        let opts = (model.kind, model.embed.device());
        let mut k = Vec::with_capacity(model.layers.len());
        let mut v = Vec::with_capacity(model.layers.len());
        for _ in &model.layers {
            k.push(Tensor::f_zeros([batch, a.0, capacity, a.1], opts)?);
            v.push(Tensor::f_zeros([batch, a.0, capacity, a.1], opts)?);
        }
        Ok(KvCache { k, v, len: 0, capacity })
    }

    /// Keeps only the rows `keep` (indices into the batch), e.g. after sequences finished.
    pub fn select_rows(&mut self, keep: &Tensor) -> TResult<()> {
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            *t = t.f_index_select(0, keep)?;
        }
        Ok(())
    }

    /// Writes one row's keys and values (per layer `[Hkv, n, d]`) at columns `start..start + n`.
    pub fn write_row(&mut self, row: i64, start: i64, k: &[Tensor], v: &[Tensor]) -> TResult<()> {
        if k.len() != self.k.len() || v.len() != self.v.len() {
            return Err(tch::TchError::Shape(format!("{} cached layers for a {}-layer cache", k.len(), self.k.len())));
        }
        for (dst, src) in self.k.iter().zip(k).chain(self.v.iter().zip(v)) {
            let n = src.size().get(1).copied().unwrap_or(0);
            dst.f_get(row)?.f_narrow(1, start, n)?.f_copy_(src)?;
        }
        Ok(())
    }

    /// Rearranges the filled columns: row `r`'s column `c` becomes its old column `cols[r, c]`
    /// (`cols`: `[B, W]` int64), leaving `W` filled columns and room for `capacity` in all.
    pub fn gather_columns(&mut self, cols: &Tensor, capacity: i64) -> TResult<()> {
        let (b, w) = (cols.size()[0], cols.size()[1]);
        if w > capacity {
            return Err(tch::TchError::Shape(format!("KV cache full ({w} > {capacity})")));
        }
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            let (h, d) = (t.size()[1], t.size()[3]);
            let moved = t.f_gather(2, &cols.f_view([b, 1, w, 1])?.f_expand([b, h, w, d], false)?, false)?;
            let fresh = Tensor::f_zeros([b, h, capacity, d], (t.kind(), t.device()))?;
            fresh.f_narrow(2, 0, w)?.f_copy_(&moved)?;
            *t = fresh;
        }
        self.len = w;
        self.capacity = capacity;
        Ok(())
    }

    /// One row's keys and values (per layer `[Hkv, n, d]`, a copy) at the columns `cols` (int64).
    pub fn read_row(&self, row: i64, cols: &Tensor) -> TResult<(Vec<Tensor>, Vec<Tensor>)> {
        let take = |t: &Tensor| t.f_get(row)?.f_index_select(1, cols);
        Ok((self.k.iter().map(take).collect::<TResult<_>>()?, self.v.iter().map(take).collect::<TResult<_>>()?))
    }
}

#[derive(Debug)]
pub struct TextModel {
    pub embed: Tensor,
    pub layers: Vec<Layer>,
    pub norm: RmsNorm,
    /// `lm_head.weight`, or the embedding when tied.
    pub lm_head: Tensor,
    pub kind: Kind,
    scale: f64,
}

impl TextModel {
    pub fn new(cfg: &OmniThinkerConfig, w: &Weights) -> Result<TextModel, WeightsError> {
        let t = cfg.text();
        let (heads, kv_heads, head_dim) =
            (t.num_attention_heads as i64, t.num_key_value_heads as i64, cfg.head_dim() as i64);
        let eps = t.rms_norm_eps;
        let mut layers = Vec::with_capacity(t.num_hidden_layers);
        for i in 0..t.num_hidden_layers {
            let l = w.scope(format!("model.layers.{i}"));
            layers.push(Layer {
                input_layernorm: l.rms_norm("input_layernorm", eps)?,
                self_attn: Attention {
                    q_proj: l.linear("self_attn.q_proj", true)?,
                    k_proj: l.linear("self_attn.k_proj", true)?,
                    v_proj: l.linear("self_attn.v_proj", true)?,
                    o_proj: l.linear("self_attn.o_proj", false)?,
                    heads,
                    kv_heads,
                    head_dim,
                },
                post_attention_layernorm: l.rms_norm("post_attention_layernorm", eps)?,
                mlp: Mlp {
                    gate_proj: l.linear("mlp.gate_proj", false)?,
                    up_proj: l.linear("mlp.up_proj", false)?,
                    down_proj: l.linear("mlp.down_proj", false)?,
                },
            });
        }
        let embed = w.get("model.embed_tokens.weight")?;
        let lm_head = if cfg.tie_word_embeddings() || !w.contains("lm_head.weight") {
            embed.shallow_clone()
        } else {
            w.get("lm_head.weight")?
        };
        Ok(TextModel {
            embed,
            layers,
            norm: RmsNorm { w: w.get("model.norm.weight")?, eps },
            lm_head,
            kind: w.kind,
            scale: 1.0 / (head_dim as f64).sqrt(),
        })
    }

    /// Floating-point operations of the decoder per token (its matrix products, every layer)
    /// and per attended (query, key) pair (scores and weighted sum, every layer): what
    /// generation weighs a prefill layout by.
    pub fn flops(&self) -> (f64, f64) {
        let Some(l) = self.layers.first() else { return (0.0, 0.0) };
        let (a, m) = (&l.self_attn, &l.mlp);
        let params: i64 = [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj, &m.gate_proj, &m.up_proj, &m.down_proj]
            .iter()
            .map(|lin| lin.w.numel() as i64)
            .sum();
        let n = self.layers.len() as f64;
        (2.0 * params as f64 * n, 4.0 * (a.heads * a.head_dim) as f64 * n)
    }

    /// `ids [B, L]` (int64) → `[B, L, D]`.
    pub fn embed(&self, ids: &Tensor) -> TResult<Tensor> {
        Tensor::f_embedding(&self.embed, ids, -1, false, false)
    }

    /// One decoder layer. `cos, sin`: `[B, 1, L, d]`. With a cache, this step's keys/values are
    /// written at `cache.len` (the caller advances `len` after the last layer).
    pub fn layer(
        &self,
        i: usize,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Mask,
        cache: Option<&mut KvCache>,
    ) -> TResult<Tensor> {
        let Some(layer) = self.layers.get(i) else {
            return Err(tch::TchError::Shape(format!("no layer {i}")));
        };
        let a = &layer.self_attn;
        let x = layer.input_layernorm.forward(h)?;
        let (b, l) = (x.size()[0], x.size()[1]);
        let q = a.q_proj.forward(&x)?.f_view([b, l, a.heads, a.head_dim])?.f_transpose(1, 2)?;
        let k = a.k_proj.forward(&x)?.f_view([b, l, a.kv_heads, a.head_dim])?.f_transpose(1, 2)?;
        let v = a.v_proj.forward(&x)?.f_view([b, l, a.kv_heads, a.head_dim])?.f_transpose(1, 2)?;
        let q = apply_rotary(&q, cos, sin)?;
        let k = apply_rotary(&k, cos, sin)?;
        let o = match cache {
            None => attention(&q, &k, &v, mask, self.scale)?,
            Some(c) => {
                let end = c.len + l;
                if end > c.capacity {
                    return Err(tch::TchError::Shape(format!("KV cache full ({end} > {})", c.capacity)));
                }
                let mut dst = c.k[i].f_narrow(2, c.len, l)?;
                dst.f_copy_(&k)?;
                let mut dst = c.v[i].f_narrow(2, c.len, l)?;
                dst.f_copy_(&v)?;
                let ks = c.k[i].f_narrow(2, 0, end)?;
                let vs = c.v[i].f_narrow(2, 0, end)?;
                attention(&q, &ks, &vs, mask, self.scale)?
            }
        };
        let o = o.f_transpose(1, 2)?.f_reshape([b, l, a.heads * a.head_dim])?;
        let h = h.f_add(&a.o_proj.forward(&o)?)?;
        let x = layer.post_attention_layernorm.forward(&h)?;
        let m = &layer.mlp;
        let y = m.down_proj.forward(&m.gate_proj.forward(&x)?.f_silu()?.f_mul(&m.up_proj.forward(&x)?)?)?;
        h.f_add(&y)
    }

    /// Every decoder layer, without the final norm. With `layer_inputs`, each layer's input is
    /// kept there (what activation checkpointing recomputes from).
    pub fn decoder(
        &self,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Mask,
        mut cache: Option<&mut KvCache>,
        mut layer_inputs: Option<&mut Vec<Tensor>>,
    ) -> TResult<Tensor> {
        let mut h = h.shallow_clone();
        for i in 0..self.layers.len() {
            if let Some(keep) = layer_inputs.as_deref_mut() {
                keep.push(h.shallow_clone());
            }
            h = self.layer(i, &h, cos, sin, mask, cache.as_deref_mut())?;
        }
        if let Some(c) = cache {
            c.len += h.size()[1];
        }
        Ok(h)
    }

    /// All layers and the final norm.
    pub fn forward(
        &self,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Mask,
        cache: Option<&mut KvCache>,
    ) -> TResult<Tensor> {
        self.norm.forward(&self.decoder(h, cos, sin, mask, cache, None)?)
    }

    /// Final-norm hidden states → logits in fp32.
    pub fn logits(&self, h: &Tensor) -> TResult<Tensor> {
        h.f_matmul(&self.lm_head.f_tr()?)?.f_to_kind(Kind::Float)
    }
}
