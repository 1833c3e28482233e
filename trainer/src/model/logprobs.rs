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
//! [`forward_backward_packed`] runs several sequences as one packed row (causal within each,
//! [`Mask::Packed`](super::layers::Mask::Packed)): a micro-batch without padding, whose matrix
//! products see every sequence's tokens at once.
//!
//! Left out: padded `[B, L]` training batches (packing needs no padding mask and wastes no
//! compute on pads), sequence parallelism.

use super::thinker::{BatchInputs, MResult, MediaInput, ModelError, Thinker};
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
    score_packed(thinker, &[PackedSeq { ids, media, start }], chunk)
}

/// [`score`] of several sequences packed into one row: their scored spans, concatenated.
pub fn score_packed(thinker: &Thinker, seqs: &[TrainSeq<'_>], chunk: usize) -> MResult<Scores> {
    seqs.iter().try_for_each(|s| check(s.ids, s.start))?;
    tch::no_grad(|| {
        let inp = packed(thinker, seqs)?;
        let h = thinker.forward(&inp, None)?.f_get(0)?;
        let (h, targets) = scored_spans(thinker, &h, seqs)?;
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

/// The packed model inputs of `seqs`.
fn packed(thinker: &Thinker, seqs: &[TrainSeq<'_>]) -> MResult<BatchInputs> {
    let pairs: Vec<(&[u32], &MediaInput)> = seqs.iter().map(|s| (s.ids, s.media)).collect();
    thinker.packed_inputs(&pairs)
}

/// The rows of final-norm hidden states `h [ΣL, D]` that predict each sequence's scored span
/// (positions `start-1 .. L-1` of each), concatenated, and their targets `ids[start..]`.
fn scored_spans(thinker: &Thinker, h: &Tensor, seqs: &[TrainSeq<'_>]) -> MResult<(Tensor, Tensor)> {
    let (mut spans, mut t, mut at) = (Vec::with_capacity(seqs.len()), Vec::new(), 0i64);
    for s in seqs {
        let n = (s.ids.len() - s.start) as i64;
        spans.push(h.f_narrow(0, at + s.start as i64 - 1, n)?);
        t.extend(s.ids[s.start..].iter().map(|&x| i64::from(x)));
        at += s.ids.len() as i64;
    }
    let span = if spans.len() == 1 { spans.swap_remove(0) } else { Tensor::f_cat(&spans, 0)? };
    Ok((span, Tensor::f_from_slice(&t)?.f_to_device(thinker.device())?))
}

/// A chunk handed to the loss: offset into the scored span, log-probs and entropies (with grad).
pub type ChunkLoss<'a> = dyn FnMut(usize, &Tensor, &Tensor) -> MResult<Tensor> + 'a;

/// One sequence of a packed training forward: `ids = prompt ++ response`, its media, and the
/// start of its scored span. Generic over the media so the learners' policy trait can use it for
/// any model; the thinker's is [`MediaInput`].
#[derive(Debug)]
pub struct PackedSeq<'a, M> {
    pub ids: &'a [u32],
    pub media: &'a M,
    pub start: usize,
}

/// A sequence of the thinker's packed forward.
pub type TrainSeq<'a> = PackedSeq<'a, MediaInput>;

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
    forward_backward_packed(thinker, &[PackedSeq { ids, media, start }], opts, loss)
}

/// [`forward_backward`] of several sequences packed into one row ([`Thinker::packed_inputs`]):
/// the scored spans are concatenated in order, and `loss` sees offsets into that concatenation.
/// One sequence runs exactly the unpacked forward.
pub fn forward_backward_packed(
    thinker: &Thinker,
    seqs: &[TrainSeq<'_>],
    opts: TrainOptions,
    loss: &mut ChunkLoss<'_>,
) -> MResult<Scores> {
    seqs.iter().try_for_each(|s| check(s.ids, s.start))?;
    let inp = packed(thinker, seqs)?;
    let (cos, sin) = thinker.cos_sin(&inp.positions)?;
    let text = &thinker.text;
    // Decoder: with the graph, or without it keeping only each layer's input.
    let mut saved = Vec::new();
    let top = if opts.checkpoint {
        tch::no_grad(|| text.decoder(&inp.h, &cos, &sin, &inp.mask, None, Some(&mut saved)))?
            .f_detach()?
            .f_set_requires_grad(true)?
    } else {
        text.decoder(&inp.h, &cos, &sin, &inp.mask, None, None)?
    };
    let normed = text.norm.forward(&top)?.f_get(0)?;
    let (span, targets) = scored_spans(thinker, &normed, seqs)?;
    let n = span.size()[0];
    let leaf = span.f_detach()?.f_set_requires_grad(true)?;
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
            let out = text.layer(i, &x, &cos, &sin, &inp.mask, None)?;
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
