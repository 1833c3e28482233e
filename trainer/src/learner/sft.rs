//! One agentic-SFT optimizer step (spec §8): rows are single turns (the full context at that turn
//! as the prompt, the agent's JSON output through `<|im_end|>` as the target), the loss is the
//! negative log-likelihood of the target tokens only (everything in the prompt, earlier turns
//! included, is context), and `gradient_accumulation_steps` micro-batches of
//! `per_device_batch_size` rows are accumulated before one clipped AdamW step.
//!
//! Normalisation ([`SftOptions::aggregation`]): `token-mean` (default) divides the summed NLL by
//! the number of target tokens of the **whole step** (all micro-batches), which is what
//! transformers ≥ 4.46 does with `num_items_in_batch` under gradient accumulation;
//! `seq-mean-token-mean` averages per-row token means (older transformers with one row per
//! micro-batch); `seq-mean-token-sum` averages per-row sums.
//!
//! Frozen encoders are a property of the policy's trainable set (see `learner::thinker`), not of
//! this loop; the schedule (linear warm-up then decay at the recipe's 1e-5) lives in the
//! optimizer. Left out: packing several turns into one sequence, and label smoothing.

use super::optim::{AdamW, AdamWConfig, StepReport};
use super::{LearnerError, SftRow, TrainablePolicy, per_second};
use crate::metrics::{Phase, PhaseTimes, Progress, Scalars};
use crate::recipe::{LossAggregation, OptimizerConfig, ScheduleConfig};
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
    pub fn from_schedule(s: &ScheduleConfig) -> Self {
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
        optimizer: &OptimizerConfig,
        total_steps: u64,
    ) -> Result<Self, LearnerError> {
        let opt = AdamW::new(policy.trainable_variables(), AdamWConfig::from_recipe(optimizer, total_steps))?;
        Ok(SftLearner { options, progress: false, optimizer: opt })
    }

    /// One optimizer step over `rows` (normally [`SftOptions::rows_per_step`] of them; a short
    /// last batch of an epoch is accepted).
    pub fn step<P: TrainablePolicy>(
        &mut self,
        policy: &P,
        rows: &[SftRow<P::Media>],
    ) -> Result<SftStepStats, LearnerError> {
        if rows.is_empty() {
            return Err(LearnerError::Config("an SFT step needs at least one row".into()));
        }
        rows.iter().enumerate().try_for_each(|(i, r)| r.check(i))?;
        let device = policy.device();
        let t0 = Instant::now();
        let step_tokens: usize = rows.iter().map(SftRow::loss_tokens).sum();
        let mut stats = SftStepStats { rows: rows.len(), target_tokens: step_tokens, ..Default::default() };
        let (mut loss_sum, mut confident) = (0.0f64, 0.0f64);
        self.optimizer.zero_grad()?;
        let bar = Progress::new(rows.len() as u64, "sft", self.progress);
        // Micro-batches only group rows; every weight is normalised over the whole step, so the
        // per-row backward passes accumulate exactly the step's gradient.
        for (index, row) in rows.iter().enumerate() {
            let weight = match self.options.aggregation {
                LossAggregation::TokenMean => 1.0 / step_tokens.max(1) as f64,
                LossAggregation::SeqMeanTokenMean => 1.0 / (rows.len() * row.loss_tokens().max(1)) as f64,
                LossAggregation::SeqMeanTokenSum => 1.0 / rows.len() as f64,
            };
            let mask: Vec<f32> = row.mask.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
            let mask = Tensor::f_from_slice(&mask)?.f_to_device(device)?;
            let mut closure = |offset: usize, lp: &Tensor, _ent: &Tensor| -> Result<Tensor, tch::TchError> {
                let m = mask.f_narrow(0, offset as i64, super::len0(lp))?.f_to_kind(lp.kind())?;
                let nll = lp.f_neg()?.f_mul(&m)?.f_sum(Kind::Float)?.f_mul_scalar(weight)?;
                loss_sum += nll.f_double_value(&[])?;
                let sure = lp.f_detach()?.f_gt(0.5f64.ln())?.f_to_kind(Kind::Float)?.f_mul(&m)?;
                confident += sure.f_sum(Kind::Float)?.f_double_value(&[])?;
                Ok(nll)
            };
            let scores = policy.forward_backward(&row.ids, &row.media, row.prompt_len, &mut closure)?;
            if scores.logprobs.size() != [row.mask.len() as i64] {
                return Err(LearnerError::Row {
                    row: index,
                    message: "the policy's training forward returned the wrong length".into(),
                });
            }
            stats.tokens += row.ids.len();
            bar.inc(1);
        }
        bar.finish();
        stats.report = Some(self.optimizer.step()?);
        stats.loss = loss_sum;
        stats.confident = if step_tokens > 0 { confident / step_tokens as f64 } else { 0.0 };
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
