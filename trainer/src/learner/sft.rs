//! One agentic-SFT optimizer step (docs/reference.md#sft-recipe): rows are single turns (the full
//! context at that turn as the prompt, the agent's JSON output through `<|im_end|>` as the
//! target), the loss is the negative log-likelihood of the target tokens only (everything in the
//! prompt, earlier turns included, is context), and `gradient_accumulation_steps` micro-batches of
//! `per_device_batch_size` rows are accumulated before one clipped AdamW step. A micro-batch goes
//! through the policy as one packed forward (`TrainablePolicy::forward_backward_packed`: the
//! rows concatenated into one sequence, each attending only to itself), so its loss is that of
//! the rows one by one, up to floating-point summation order.
//!
//! Normalisation ([`SftOptions::aggregation`]): `token-mean` (default) divides the summed NLL by
//! the number of target tokens of the **whole step** (all micro-batches), which is what
//! transformers ≥ 4.46 does with `num_items_in_batch` under gradient accumulation;
//! `seq-mean-token-mean` averages per-row token means (older transformers with one row per
//! micro-batch); `seq-mean-token-sum` averages per-row sums.
//!
//! Frozen encoders are a property of the policy's trainable set (see `learner::thinker`), not of
//! this loop; the schedule (linear warm-up then decay at the recipe's 1e-5) lives in the
//! optimizer. Under data parallelism ([`SftLearner::step`] with a data-parallel sync) the step's tokens and rows
//! are those of every rank, so the update equals one process stepping on all ranks' rows.
//! Left out: packing rows across micro-batch boundaries (a micro-batch is the recipe's
//! `per_device_batch_size` rows, as in transformers), and label smoothing.

use super::optim::{AdamW, AdamWConfig, StepReport};
use super::{GradientSync, LearnerError, PackedSeq, SftRow, TrainablePolicy, per_second, zero_gradients};
use crate::metrics::{Phase, PhaseTimes, Progress, Scalars};
use crate::recipe::LossAggregation;
use crate::recipe::resolved::{Optimizer, SftSchedule};
use std::time::Instant;
use tch::{Kind, Tensor};

/// How an SFT step splits and normalises its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SftOptions {
    pub per_device_batch_size: u32,
    pub gradient_accumulation_steps: u32,
    pub aggregation: LossAggregation,
}

impl SftOptions {
    pub fn from_schedule(s: &SftSchedule) -> Self {
        SftOptions {
            per_device_batch_size: s.per_device_batch_size.max(1),
            gradient_accumulation_steps: s.gradient_accumulation_steps.max(1),
            aggregation: LossAggregation::TokenMean,
        }
    }

    /// Rows consumed by one optimizer step.
    pub fn rows_per_step(&self) -> usize {
        (self.per_device_batch_size.max(1) * self.gradient_accumulation_steps.max(1)) as usize
    }
}

#[derive(Debug)]
pub struct SftLearner {
    pub options: SftOptions,
    /// A progress bar over the step's rows (drawn only on a terminal).
    pub progress: bool,
    pub optimizer: AdamW,
}

/// What one SFT step did.
#[derive(Debug, Clone, Default)]
pub struct SftStepStats {
    pub rows: usize,
    pub target_tokens: usize,
    /// The normalised loss (mean NLL per target token under `token-mean`).
    pub loss: f64,
    /// Share of target tokens whose log-prob is above ln ½ (the model puts most mass on them).
    pub confident: f64,
    pub report: Option<StepReport>,
    pub times: PhaseTimes,
    /// Tokens (prompt + target) through the forward/backward.
    pub tokens: usize,
}

impl SftLearner {
    pub fn new<P: TrainablePolicy>(
        policy: &P,
        options: SftOptions,
        optimizer: &Optimizer,
        total_steps: u64,
    ) -> Result<Self, LearnerError> {
        let opt = AdamW::new(policy.trainable_variables(), AdamWConfig::from_recipe(optimizer, total_steps))?;
        Ok(SftLearner { options, progress: false, optimizer: opt })
    }

    /// One optimizer step over `rows` (normally [`SftOptions::rows_per_step`] of them; a short
    /// last batch of an epoch is accepted). `sync` is [`LocalSteps`](super::LocalSteps) in one process; under data
    /// parallelism `rows` are this rank's share, the normalisation uses the target tokens and
    /// rows of every rank, `sync` sums the gradients and steps, and the loss, rows and target
    /// tokens in the result are global. A rank may have no rows as long as some rank has.
    pub fn step<P: TrainablePolicy>(
        &mut self,
        policy: &P,
        rows: &[SftRow<P::Media>],
        sync: &mut dyn GradientSync,
    ) -> Result<SftStepStats, LearnerError> {
        if rows.is_empty() && sync.world_size() <= 1 {
            return Err(LearnerError::Config("an SFT step needs at least one row".into()));
        }
        rows.iter().enumerate().try_for_each(|(i, r)| r.check(i))?;
        let device = policy.device();
        let t0 = Instant::now();
        let local_tokens: usize = rows.iter().map(SftRow::loss_tokens).sum();
        let mut counts = [local_tokens as f64, rows.len() as f64];
        sync.sum_counts(&mut counts)?;
        let (step_tokens, step_rows) = (counts[0].round() as usize, counts[1].round() as usize);
        if step_rows == 0 {
            return Err(LearnerError::Config("an SFT step needs at least one row on some rank".into()));
        }
        let mut stats = SftStepStats { rows: step_rows, target_tokens: step_tokens, ..Default::default() };
        let (mut loss_sum, mut confident) = (0.0f64, 0.0f64);
        let params = policy.trainable_variables();
        zero_gradients(&params)?;
        let bar = Progress::new(rows.len() as u64, "sft", self.progress);
        // A micro-batch is one packed forward; every weight is normalised over the whole step
        // (every rank's rows), so the micro-batches' backward passes accumulate exactly the
        // step's gradient.
        let micro = self.options.per_device_batch_size.max(1) as usize;
        for (k, batch) in rows.chunks(micro).enumerate() {
            let (mut weights, mut in_loss) = (Vec::new(), Vec::new());
            for row in batch {
                let w = match self.options.aggregation {
                    LossAggregation::TokenMean => 1.0 / step_tokens.max(1) as f64,
                    LossAggregation::SeqMeanTokenMean => 1.0 / (step_rows * row.loss_tokens().max(1)) as f64,
                    LossAggregation::SeqMeanTokenSum => 1.0 / step_rows as f64,
                };
                weights.extend(row.mask.iter().map(|&b| if b { w as f32 } else { 0.0 }));
                in_loss.extend(row.mask.iter().map(|&b| if b { 1.0f32 } else { 0.0 }));
            }
            let weights = Tensor::f_from_slice(&weights)?.f_to_device(device)?;
            let in_loss = Tensor::f_from_slice(&in_loss)?.f_to_device(device)?;
            let mut closure = |offset: usize, lp: &Tensor, _ent: &Tensor| -> Result<Tensor, tch::TchError> {
                let len = super::len0(lp);
                let w = weights.f_narrow(0, offset as i64, len)?.f_to_kind(lp.kind())?;
                let nll = lp.f_neg()?.f_mul(&w)?.f_sum(Kind::Float)?;
                loss_sum += nll.f_double_value(&[])?;
                let m = in_loss.f_narrow(0, offset as i64, len)?.f_to_kind(lp.kind())?;
                let sure = lp.f_detach()?.f_gt(0.5f64.ln())?.f_to_kind(Kind::Float)?.f_mul(&m)?;
                confident += sure.f_sum(Kind::Float)?.f_double_value(&[])?;
                Ok(nll)
            };
            let seqs: Vec<PackedSeq<'_, P::Media>> = batch.iter().map(SftRow::packed_seq).collect();
            let scores = policy.forward_backward_packed(&seqs, &mut closure)?;
            if scores.logprobs.size() != [super::len0(&in_loss)] {
                return Err(LearnerError::Row {
                    row: k * micro,
                    message: "the policy's training forward returned the wrong length".into(),
                });
            }
            stats.tokens += batch.iter().map(|r| r.ids.len()).sum::<usize>();
            bar.inc(batch.len() as u64);
        }
        bar.finish();
        stats.report = Some(sync.step(&mut self.optimizer, &params)?);
        let mut sums = [loss_sum, confident];
        sync.sum_counts(&mut sums)?;
        stats.loss = sums[0];
        stats.confident = if step_tokens > 0 { sums[1] / step_tokens as f64 } else { 0.0 };
        stats.times.add(Phase::Update, t0.elapsed().as_secs_f64());
        Ok(stats)
    }
}

impl SftStepStats {
    pub fn tokens_per_second(&self) -> f64 {
        per_second(self.tokens, self.times.get(Phase::Update))
    }

    pub fn scalars(&self) -> Scalars {
        let mut s = Scalars::default();
        s.push("sft/loss", self.loss);
        s.push("sft/confident_token_frac", self.confident);
        if let Some(r) = self.report {
            s.push("sft/grad_norm", r.grad_norm);
            s.push("sft/lr", r.lr);
            s.push("sft/skipped_step", f64::from(u8::from(r.skipped)));
        }
        s.push("perf/rows", self.rows as f64);
        s.push("perf/target_tokens", self.target_tokens as f64);
        s.push("perf/update_tokens_per_s", self.tokens_per_second());
        s
    }
}
