//! Learners: turn rows into parameter updates (docs/reference.md#update-rule,
//! docs/reference.md#optimizer, docs/reference.md#step-order, docs/reference.md#sft-recipe).
//!
//! * [`rl::RlLearner`]: one RL training step over a batch of scored turns: recompute old
//!   log-probs and entropies, GRPO/TAURA advantages, truncated IS weights, then either the
//!   reference's default on-policy flow (one optimizer step, per-row gradient accumulation) or
//!   PPO mini-batch epochs.
//! * [`sft::SftLearner`]: one agentic-SFT optimizer step over per-turn rows, loss on the agent's
//!   own tokens only, with gradient accumulation.
//! * [`optim::AdamW`]: AdamW with weight-decay exclusions, global-norm clipping, LR schedules and
//!   fp32 master weights for bf16 parameters.
//! * [`cursor`]: the deterministic data order and the run's own RNG, both checkpointed.
//!
//! The learners see the model through [`TrainablePolicy`], a small trait with the two forwards a
//! learner needs (no-grad scoring; forward + backward of a chunked token loss), each also over
//! several sequences packed into one forward (defaults: one sequence at a time), the trainable
//! tensors, and HF save/load. It is implemented for the Qwen2.5-Omni thinker ([`thinker`]) and for
//! a tiny token-id LM used by tests and benchmarks ([`toy`]).
//!
//! Data parallelism enters through [`GradientSync`]: the learners normalise their losses by
//! counts summed over ranks and hand the optimizer step to it, so the distributed runtime
//! (`dist::data_parallel::DataParallelSync`) all-reduces the gradients (and may own a sharded
//! optimizer) without the learners knowing about communicators. [`LocalSteps`] is one process.
//! Left out: the training loop itself (`omnirl train`, in `run`).

pub mod cursor;
mod loss_sums;
pub mod optim;
pub mod rl;
mod rl_packed;
pub mod rows;
pub mod sft;
pub mod thinker;
pub mod toy;

pub use crate::model::logprobs::PackedSeq;
pub use cursor::{Batch, DataCursor, SplitMix64};
pub use optim::{AdamW, AdamWConfig, DecayRule, LrScheduler, OptimizerCounters, StepReport};
pub use rl::{RlLearner, RlStepStats};
pub use rows::{RlRow, SftRow};
pub use sft::{SftLearner, SftOptions, SftStepStats};

use crate::algo::AdvantageError;
use crate::model::thinker::ModelError;
use std::path::Path;
use tch::{Device, Tensor};

/// The loss of one chunk of a row's scored span: `(offset, log-probs, entropies) -> scalar`. The
/// tensors cover scored positions `offset .. offset + len` and carry gradients.
pub type ChunkLoss<'a> = dyn FnMut(usize, &Tensor, &Tensor) -> Result<Tensor, tch::TchError> + 'a;

/// Per-token results for the scored span of one sequence: `[n]` float tensors on the model's
/// device, detached.
#[derive(Debug)]
pub struct TokenScores {
    pub logprobs: Tensor,
    pub entropies: Tensor,
}

impl TokenScores {
    /// Several sequences' scores, concatenated in order.
    fn concat(parts: Vec<TokenScores>) -> Result<TokenScores, tch::TchError> {
        let (lps, ents): (Vec<Tensor>, Vec<Tensor>) = parts.into_iter().map(|p| (p.logprobs, p.entropies)).unzip();
        Ok(TokenScores { logprobs: Tensor::f_cat(&lps, 0)?, entropies: Tensor::f_cat(&ents, 0)? })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    Other(String),
}

/// What a learner needs from a model. Sequences are `ids = prompt ++ response`; the scored span is
/// `ids[start..]` (each position predicted from everything before it), `start ≥ 1`.
pub trait TrainablePolicy {
    /// Media inputs of one sequence (passed through untouched).
    type Media;

    fn device(&self) -> Device;

    /// Every tensor the optimizer updates, by a stable unique name, in a stable order.
    fn trainable_variables(&self) -> Vec<(String, Tensor)>;

    /// Log-probs and entropies of `ids[start..]` without gradients.
    fn score(&self, ids: &[u32], media: &Self::Media, start: usize) -> Result<TokenScores, PolicyError>;

    /// Forward and backward of a token-decomposable loss over `ids[start..]`: `loss` is called
    /// per chunk and its result back-propagated; gradients accumulate into the trainable tensors.
    fn forward_backward(
        &self,
        ids: &[u32],
        media: &Self::Media,
        start: usize,
        loss: &mut ChunkLoss<'_>,
    ) -> Result<TokenScores, PolicyError>;

    /// [`forward_backward`](Self::forward_backward) of several sequences at once: their scored
    /// spans are concatenated in order and `loss` sees offsets into that concatenation. A model
    /// that can pack sequences into one forward overrides this; the default runs them one by one.
    fn forward_backward_packed(
        &self,
        seqs: &[PackedSeq<'_, Self::Media>],
        loss: &mut ChunkLoss<'_>,
    ) -> Result<TokenScores, PolicyError> {
        if seqs.is_empty() {
            return Err(PolicyError::Other("a packed forward needs at least one sequence".into()));
        }
        let (mut parts, mut base) = (Vec::with_capacity(seqs.len()), 0usize);
        for s in seqs {
            let at = base;
            let mut shifted = |o: usize, lp: &Tensor, en: &Tensor| loss(at + o, lp, en);
            parts.push(self.forward_backward(s.ids, s.media, s.start, &mut shifted)?);
            base += s.ids.len().saturating_sub(s.start);
        }
        Ok(TokenScores::concat(parts)?)
    }

    /// Log-probs of `ids[start..]` under a frozen reference policy, if the model has one (e.g. the
    /// base weights under LoRA); needed only for a KL penalty.
    fn reference_logprobs(
        &self,
        ids: &[u32],
        media: &Self::Media,
        start: usize,
    ) -> Result<Option<Tensor>, PolicyError> {
        let _ = (ids, media, start);
        Ok(None)
    }

    /// [`score`](Self::score) of several sequences, their spans concatenated in order; a model
    /// that packs sequences into one forward overrides this.
    fn score_packed(&self, seqs: &[PackedSeq<'_, Self::Media>]) -> Result<TokenScores, PolicyError> {
        let parts = seqs.iter().map(|s| self.score(s.ids, s.media, s.start)).collect::<Result<Vec<_>, _>>()?;
        Ok(TokenScores::concat(parts)?)
    }

    /// [`reference_logprobs`](Self::reference_logprobs) of several sequences, concatenated.
    fn reference_logprobs_packed(&self, seqs: &[PackedSeq<'_, Self::Media>]) -> Result<Option<Tensor>, PolicyError> {
        let mut parts = Vec::with_capacity(seqs.len());
        for s in seqs {
            match self.reference_logprobs(s.ids, s.media, s.start)? {
                Some(t) => parts.push(t),
                None => return Ok(None),
            }
        }
        Ok(Some(Tensor::f_cat(&parts, 0)?))
    }

    /// Writes the weights as a Hugging Face checkpoint directory (`config.json` + safetensors).
    fn save_hf(&self, dir: &Path) -> Result<(), PolicyError>;

    /// Loads weights written by [`save_hf`](Self::save_hf) into this model, in place.
    fn load_hf(&mut self, dir: &Path) -> Result<(), PolicyError>;
}

#[derive(Debug, thiserror::Error)]
pub enum LearnerError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Advantage(#[from] AdvantageError),
    #[error("row {row}: {message}")]
    Row { row: usize, message: String },
    #[error("configuration: {0}")]
    Config(String),
    #[error("data-parallel synchronisation: {0}")]
    Sync(String),
}

/// How a learner's steps meet the other data-parallel ranks. Every rank must make the same calls
/// in the same order (each is a collective).
pub trait GradientSync {
    fn world_size(&self) -> u32;

    /// Element-wise sum of small counters over ranks, in place.
    fn sum_counts(&mut self, values: &mut [f64]) -> Result<(), LearnerError>;

    /// Sum the gradients of `params` over ranks, then take one optimizer step: `optimizer`'s
    /// (replicated state), or that of a sharded optimizer the implementation owns.
    fn step(&mut self, optimizer: &mut AdamW, params: &[(String, Tensor)]) -> Result<StepReport, LearnerError>;
}

/// One process: counts stay local and `optimizer` steps.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalSteps;

impl GradientSync for LocalSteps {
    fn world_size(&self) -> u32 {
        1
    }

    fn sum_counts(&mut self, _values: &mut [f64]) -> Result<(), LearnerError> {
        Ok(())
    }

    fn step(&mut self, optimizer: &mut AdamW, _params: &[(String, Tensor)]) -> Result<StepReport, LearnerError> {
        Ok(optimizer.step()?)
    }
}

/// Zeroes every defined gradient of `params` (the learners zero through the policy's tensors,
/// so a sharded optimizer that holds only some of them still starts from clean gradients).
pub fn zero_gradients(params: &[(String, Tensor)]) -> Result<(), tch::TchError> {
    for (_, p) in params {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.f_zero_()?;
        }
    }
    Ok(())
}

/// Length of a tensor's first dimension (0 for a 0-d tensor).
pub(crate) fn len0(t: &Tensor) -> i64 {
    t.size().first().copied().unwrap_or(0)
}

/// `seconds` as tokens per second (0 when no time passed).
pub(crate) fn per_second(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 { count as f64 / seconds } else { 0.0 }
}
