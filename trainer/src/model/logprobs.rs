//! The training forward: teacher-forced log-probs and entropies of the response tokens of one
//! sequence, computed in chunks of `chunk_tokens` positions so the full `[tokens x vocab]` logits
//! never exist at once (only hidden states of the scored positions go through `lm_head`).
//!
//! `log p(y_t) = z[y_t] - logsumexp(z)` and `H_t = logsumexp(z) - Σ softmax(z) z`, in fp32, over
//! the raw vocabulary (no temperature, no masking: the learner's distribution). Positions are
//! recomputed over prompt + response with the same TMRoPE walk as generation, which gives the ids
//! incremental decoding used (trailing text continues `max + 1 + i`).
//!
//! [`forward_backward`] also runs the backward pass of a per-chunk loss: each chunk's loss is
//! back-propagated at once into the (detached) final hidden states, so its logits are freed
//! before the next chunk; then the accumulated gradient flows through the decoder. With
//! `checkpoint`, the decoder runs first under `no_grad` keeping only each layer's input, and the
//! backward recomputes one layer at a time (`h_i → layer_i → (out · g).sum().backward()`), the
//! manual activation checkpointing docs/reference.md#libtorch describes. Gradients accumulate into every
//! tensor with `requires_grad` (LoRA adapters, unfrozen base weights); the caller zeroes them.
//!
//! Left out: batching several sequences in one forward (one packed sequence per micro-batch is the
//! recommended layout and needs no padding mask), sequence parallelism.

use super::layers::Mask;
use super::thinker::{MResult, MediaInput, ModelError, Thinker};
use tch::{Kind, Tensor};

/// Chunking and checkpointing of the training forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainOptions {
    /// Scored positions per `lm_head` chunk.
    pub chunk_tokens: usize,
    /// Recompute each decoder layer in the backward pass instead of keeping its activations.
    pub checkpoint: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions { chunk_tokens: 1024, checkpoint: false }
    }
}

/// Per-token results of one sequence's scored span (`[n]` f32 tensors on the model device,
/// detached).
#[derive(Debug)]
pub struct Scores {
    pub logprobs: Tensor,
    pub entropies: Tensor,
    /// Sum of the chunk losses (0 when no loss was given).
    pub loss: f64,
}

/// `(log p(targets), entropy)` of `logits [n, V]` (f32).
pub fn token_logprob_entropy(logits: &Tensor, targets: &Tensor) -> Result<(Tensor, Tensor), tch::TchError> {
    let lse = logits.f_logsumexp([-1], false)?;
    let picked = logits.f_gather(1, &targets.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?;
    let p = logits.f_softmax(-1, Kind::Float)?;
    let mean_z = p.f_mul(logits)?.f_sum_dim_intlist(-1, false, Kind::Float)?;
    Ok((picked.f_sub(&lse)?, lse.f_sub(&mean_z)?))
}

fn check(ids: &[u32], start: usize) -> MResult<()> {
    if start == 0 || start >= ids.len() {
        return Err(ModelError::Input(format!(
            "scored span starts at {start} in a sequence of {}: it must start after the first token and be non-empty",
            ids.len()
        )));
    }
    Ok(())
}

/// Log-probs and entropies of `ids[start..]` given everything before, without gradients.
pub fn score(thinker: &Thinker, ids: &[u32], media: &MediaInput, start: usize, chunk: usize) -> MResult<Scores> {
    check(ids, start)?;
    tch::no_grad(|| {
        let (h, targets) = final_hidden(thinker, ids, media, start)?;
        let (mut lps, mut ents) = (Vec::new(), Vec::new());
        let n = h.size()[0];
        let c = chunk.max(1) as i64;
        let mut s = 0;
        while s < n {
            let len = c.min(n - s);
            let logits = thinker.text.logits(&h.f_narrow(0, s, len)?)?;
            let (lp, en) = token_logprob_entropy(&logits, &targets.f_narrow(0, s, len)?)?;
            lps.push(lp);
            ents.push(en);
            s += len;
        }
        Ok(Scores { logprobs: Tensor::f_cat(&lps, 0)?, entropies: Tensor::f_cat(&ents, 0)?, loss: 0.0 })
    })
}

/// Final-norm hidden states of positions `start-1 .. L-1` and their targets `ids[start..]`.
fn final_hidden(thinker: &Thinker, ids: &[u32], media: &MediaInput, start: usize) -> MResult<(Tensor, Tensor)> {
    let inp = thinker.inputs(&[(ids, media)])?;
    let h = thinker.forward(&inp, None)?.f_get(0)?;
    let n = (ids.len() - start) as i64;
    let h = h.f_narrow(0, start as i64 - 1, n)?;
    let t: Vec<i64> = ids[start..].iter().map(|&x| i64::from(x)).collect();
    let targets = Tensor::f_from_slice(&t)?.f_to_device(thinker.device())?;
    Ok((h, targets))
}

/// A chunk handed to the loss: offset into the scored span, log-probs and entropies (with grad).
pub type ChunkLoss<'a> = dyn FnMut(usize, &Tensor, &Tensor) -> MResult<Tensor> + 'a;

/// Forward + backward of a token-decomposable loss over `ids[start..]` (see the module doc).
/// `loss(offset, logprobs, entropies)` returns the scalar loss of that chunk.
pub fn forward_backward(
    thinker: &Thinker,
    ids: &[u32],
    media: &MediaInput,
    start: usize,
    opts: TrainOptions,
    loss: &mut ChunkLoss<'_>,
) -> MResult<Scores> {
    check(ids, start)?;
    let inp = thinker.inputs(&[(ids, media)])?;
    let (cos, sin) = thinker.cos_sin(&inp.positions)?;
    let text = &thinker.text;
    // Decoder: with the graph, or without it keeping only each layer's input.
    let mut saved = Vec::new();
    let top = if opts.checkpoint {
        tch::no_grad(|| text.decoder(&inp.h, &cos, &sin, &Mask::Causal, None, Some(&mut saved)))?
            .f_detach()?
            .f_set_requires_grad(true)?
    } else {
        text.decoder(&inp.h, &cos, &sin, &Mask::Causal, None, None)?
    };
    let normed = text.norm.forward(&top)?.f_get(0)?;
    let n = (ids.len() - start) as i64;
    let span = normed.f_narrow(0, start as i64 - 1, n)?;
    let leaf = span.f_detach()?.f_set_requires_grad(true)?;
    let t: Vec<i64> = ids[start..].iter().map(|&x| i64::from(x)).collect();
    let targets = Tensor::f_from_slice(&t)?.f_to_device(thinker.device())?;
    let (mut lps, mut ents, mut total) = (Vec::new(), Vec::new(), 0.0);
    let c = opts.chunk_tokens.max(1) as i64;
    let mut s = 0;
    while s < n {
        let len = c.min(n - s);
        let logits = text.logits(&leaf.f_narrow(0, s, len)?)?;
        let (lp, en) = token_logprob_entropy(&logits, &targets.f_narrow(0, s, len)?)?;
        let l = loss(s as usize, &lp, &en)?;
        total += l.f_double_value(&[])?;
        if l.requires_grad() {
            l.f_backward()?;
        }
        lps.push(lp.f_detach()?);
        ents.push(en.f_detach()?);
        s += len;
    }
    let g_span = leaf.f_grad()?;
    if g_span.defined() && span.requires_grad() {
        span.f_mul(&g_span)?.f_sum(Kind::Float)?.f_backward()?;
    }
    let top_grad = if opts.checkpoint { top.f_grad()? } else { Tensor::new() };
    if top_grad.defined() {
        let mut g = top_grad;
        for i in (0..saved.len()).rev() {
            let x = saved[i].f_detach()?.f_set_requires_grad(true)?;
            let out = text.layer(i, &x, &cos, &sin, &Mask::Causal, None)?;
            out.f_mul(&g)?.f_sum(Kind::Float)?.f_backward()?;
            g = x.f_grad()?;
            if !g.defined() {
                break;
            }
        }
        if g.defined() && inp.h.requires_grad() {
            inp.h.f_mul(&g)?.f_sum(Kind::Float)?.f_backward()?;
        }
    }
    Ok(Scores { logprobs: Tensor::f_cat(&lps, 0)?, entropies: Tensor::f_cat(&ents, 0)?, loss: total })
}
