//! A tiny language model on token ids for learner tests and CPU benchmarks: an embedding table, a
//! causal running mean of the embeddings (so each position sees its whole prefix), a `tanh`
//! hidden layer with bias, and an untied output projection. Media are ignored (`Media = ()`).
//!
//! It implements [`TrainablePolicy`] with the same contract as the thinker (fp32 log-probs and
//! full-vocabulary entropies of `ids[start..]`, chunked loss callbacks), so the learners,
//! checkpoints and resume logic can be tested in milliseconds and without model files. Its
//! "HF checkpoint" is a `model.safetensors` with these tensor names plus a small `config.json`.
//! Not a model of anything; left out: everything a real LM has.

use super::cursor::SplitMix64;
use super::{ChunkLoss, PolicyError, TokenScores, TrainablePolicy};
use crate::model::logprobs::token_logprob_entropy;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Names of the toy model's tensors, in order.
pub const TOY_TENSORS: [&str; 5] =
    ["model.embed_tokens.weight", "model.hidden.weight", "model.hidden.bias", "model.norm.weight", "lm_head.weight"];

#[derive(Debug)]
pub struct ToyLm {
    pub vocab: i64,
    pub hidden: i64,
    /// Scored positions per loss chunk (exercises the chunked callback).
    pub chunk: usize,
    tensors: Vec<(String, Tensor)>,
}

impl ToyLm {
    /// Random weights from `seed`, fp32, trainable. Drawn from the model's own generator, not
    /// libtorch's global one, so tests running in parallel threads get identical models.
    pub fn new(vocab: i64, hidden: i64, seed: i64) -> Result<ToyLm, tch::TchError> {
        let mut rng = SplitMix64::new(seed as u64);
        let mut normal = |shape: [i64; 2], scale: f64| -> Result<Tensor, tch::TchError> {
            // Box-Muller over the model's own generator.
            let n = (shape[0] * shape[1]) as usize;
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    let (u1, u2) = (rng.next_f64().max(f64::MIN_POSITIVE), rng.next_f64());
                    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * scale) as f32
                })
                .collect();
            Tensor::f_from_slice(&values)?.f_reshape(shape)
        };
        let opts = (Kind::Float, Device::Cpu);
        let init = [
            normal([vocab, hidden], 0.5)?,
            normal([hidden, hidden], 1.0 / (hidden as f64).sqrt())?,
            Tensor::f_zeros([hidden], opts)?,
            Tensor::f_ones([hidden], opts)?,
            normal([vocab, hidden], 0.5)?,
        ];
        let tensors = TOY_TENSORS
            .iter()
            .zip(init)
            .map(|(n, t)| t.f_set_requires_grad(true).map(|t| ((*n).to_owned(), t)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ToyLm { vocab, hidden, chunk: 3, tensors })
    }

    fn get(&self, i: usize) -> &Tensor {
        &self.tensors[i].1
    }

    /// Logits `[L, vocab]` predicting positions `1..=L` from each prefix of `ids`.
    fn logits(&self, ids: &[u32]) -> Result<Tensor, PolicyError> {
        if let Some(bad) = ids.iter().find(|&&t| i64::from(t) >= self.vocab) {
            return Err(PolicyError::Other(format!("token {bad} is outside the toy vocabulary ({})", self.vocab)));
        }
        let idx: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
        let e = self.get(0).f_index_select(0, &Tensor::f_from_slice(&idx)?)?;
        let n = idx.len() as i64;
        let counts = Tensor::f_arange_start(1, n + 1, (Kind::Float, Device::Cpu))?.f_unsqueeze(1)?;
        let mean = e.f_cumsum(0, Kind::Float)?.f_div(&counts)?;
        let h = mean.f_matmul(self.get(1))?.f_add(self.get(2))?.f_tanh()?.f_mul(self.get(3))?;
        Ok(h.f_matmul(&self.get(4).f_transpose(0, 1)?)?)
    }

    fn span(&self, ids: &[u32], start: usize) -> Result<(Tensor, Tensor), PolicyError> {
        if start == 0 || start >= ids.len() {
            return Err(PolicyError::Other(format!("scored span start {start} outside 1..{}", ids.len())));
        }
        let logits = self.logits(&ids[..ids.len() - 1])?;
        let n = (ids.len() - start) as i64;
        let logits = logits.f_narrow(0, start as i64 - 1, n)?;
        let t: Vec<i64> = ids[start..].iter().map(|&x| i64::from(x)).collect();
        Ok((logits, Tensor::f_from_slice(&t)?))
    }
}

impl TrainablePolicy for ToyLm {
    type Media = ();

    fn device(&self) -> Device {
        Device::Cpu
    }

    fn trainable_variables(&self) -> Vec<(String, Tensor)> {
        self.tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
    }

    fn score(&self, ids: &[u32], _media: &(), start: usize) -> Result<TokenScores, PolicyError> {
        tch::no_grad(|| {
            let (logits, targets) = self.span(ids, start)?;
            let (lp, ent) = token_logprob_entropy(&logits, &targets)?;
            Ok(TokenScores { logprobs: lp, entropies: ent })
        })
    }

    fn forward_backward(
        &self,
        ids: &[u32],
        _media: &(),
        start: usize,
        loss: &mut ChunkLoss<'_>,
    ) -> Result<TokenScores, PolicyError> {
        let (logits, targets) = self.span(ids, start)?;
        let (lp, ent) = token_logprob_entropy(&logits, &targets)?;
        let n = super::len0(&lp);
        let c = self.chunk.max(1) as i64;
        let mut total: Option<Tensor> = None;
        let mut s = 0;
        while s < n {
            let len = c.min(n - s);
            let l = loss(s as usize, &lp.f_narrow(0, s, len)?, &ent.f_narrow(0, s, len)?)?;
            total = Some(match total {
                Some(t) => t.f_add(&l)?,
                None => l,
            });
            s += len;
        }
        if let Some(t) = total.filter(Tensor::requires_grad) {
            t.f_backward()?;
        }
        Ok(TokenScores { logprobs: lp.f_detach()?, entropies: ent.f_detach()? })
    }

    fn save_hf(&self, dir: &Path) -> Result<(), PolicyError> {
        let io = |e: std::io::Error| PolicyError::Io { path: dir.display().to_string(), message: e.to_string() };
        std::fs::create_dir_all(dir).map_err(io)?;
        let detached: Vec<(String, Tensor)> = self
            .tensors
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.f_detach()?.f_contiguous()?)))
            .collect::<Result<_, tch::TchError>>()?;
        crate::checkpoint::tensor_io::write_safetensors(&dir.join("model.safetensors"), &detached)
            .map_err(|e| PolicyError::Io { path: dir.display().to_string(), message: e.to_string() })?;
        let config =
            serde_json::json!({"model_type": "omnirl_toy_lm", "vocab_size": self.vocab, "hidden_size": self.hidden});
        std::fs::write(dir.join("config.json"), config.to_string()).map_err(io)
    }

    fn load_hf(&mut self, dir: &Path) -> Result<(), PolicyError> {
        let path = dir.join("model.safetensors");
        let mut found = 0usize;
        let tensors = &mut self.tensors;
        crate::checkpoint::tensor_io::read_safetensors(&path, |name, t| {
            if let Some((_, dst)) = tensors.iter_mut().find(|(n, _)| n == name) {
                tch::no_grad(|| dst.f_copy_(&t))?;
                found += 1;
            }
            Ok(())
        })
        .map_err(|e| PolicyError::Io { path: path.display().to_string(), message: e.to_string() })?;
        if found != TOY_TENSORS.len() {
            return Err(PolicyError::Other(format!(
                "{}: {found} of {} toy tensors found",
                path.display(),
                TOY_TENSORS.len()
            )));
        }
        Ok(())
    }
}
