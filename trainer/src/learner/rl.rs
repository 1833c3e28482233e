//! One RL training step over a batch of scored turns (docs/reference.md#step-order steps 4-9):
//!
//! 1. **Old log-probs and entropies**: every row is re-scored without gradients by the current
//!    weights (the reference's `compute_log_prob(calculate_entropy=True)`), or, under
//!    `old_logprobs: rollout`, taken from the rollout, which scored the same tokens with the
//!    same weights while sampling them (docs/recipes.md); plus reference-policy log-probs when a
//!    KL penalty is on.
//! 2. **Advantages**: turn entropies `h_r` (masked token means), then the recipe's estimator
//!    (GRPO / GRPO-no-std / TAURA) in `f64` over the batch's groups.
//! 3. **Truncated IS weights** `min(exp(clamp(old − sampler)), cap)` per token (rows without
//!    sampler log-probs get weight 1).
//! 4. **Update**, in one of two flows:
//!    * `on-policy` (the reference default, `ABS_ON_POLICY=True`, docs/reference.md#update-rule):
//!      zero the gradients once; for each row forward with `old = detach(log π_θ)` (so the ratio
//!      is exactly 1 and the clip ratios are inert, docs/reference.md#inert-clip), loss = the
//!      row's aggregation (a per-row token mean under `token-mean`) scaled by `1/rows`, backward
//!      (accumulating); then **one** optimizer step. The result is the mean over rows of per-row
//!      token means: seq-mean-token-mean over turns (docs/reference.md#token-mean), not a global
//!      token mean. Requires `ppo_epochs = 1`; micro-batches are one row
//!      whatever `micro_batch_size_per_gpu` says, as the reference's launcher forces.
//!    * `ppo`: for each of `ppo_epochs` epochs, mini-batches of `ppo_mini_batch_size` rows in
//!      order (no shuffle, as verl's actor); within one, micro-batches of
//!      `micro_batch_size_per_gpu` rows aggregated per `loss_aggregation` and scaled by
//!      `1/micro-batches`; `old` = the recomputed log-probs of step 1, so clipping is active;
//!      one optimizer step per mini-batch.
//!
//!    Both flows run through the same code: the on-policy flow is "one mini-batch of every row,
//!    micro-batches of one row, old = detach". Micro-batches decide the loss normalisation only:
//!    the forwards run one row at a time, or rows packed up to `max_tokens_per_forward` tokens
//!    (`learner::rl_packed`; the scoring and reference passes pack the same way). Each optimizer
//!    step clips to `grad_clip` and skips a non-finite gradient norm
//!    (docs/reference.md#update-rule).
//!
//!    In the on-policy flow without a KL or entropy term, a row whose advantage is exactly 0
//!    adds exactly 0 to every gradient (its loss is `−0·ρ` per token), so its forward and
//!    backward are skipped: the same update for fewer tokens (every row of an equal-reward group;
//!    docs/performance.md). It still counts in the loss normalisation and the metrics, its entropy
//!    taken from step 1's scores of the same weights. The one difference: a skipped row whose
//!    forward would have been non-finite can no longer turn the step's gradient into NaN.
//!
//! Data parallelism ([`RlLearner::step`] with a data-parallel sync): each rank holds whole GRPO
//! groups, so the advantages are computed locally; losses are normalised by the micro-batches of
//! every rank and the gradients summed before each optimizer step (a global mean, where FSDP
//! averages per-rank means; the two agree when ranks hold equal rows). Batch-padding duplicates
//! (`adjust_batch`) are ordinary rows here: deduplicated by GRPO, counted by TAURA
//! (docs/reference.md#taura-group-mean).
//! Left out: the critic, KL-in-reward, and dynamic sampling (all off in the reference).

use super::loss_sums::{Accum, LossSums};
use super::optim::{AdamW, AdamWConfig, StepReport};
use super::rl_packed::{RowInputs, pack_by_tokens};
use super::{GradientSync, LearnerError, RlRow, TrainablePolicy, per_second, zero_gradients};
use crate::algo::advantage::{AdvantageEstimator, AdvantageRow, Advantages};
use crate::algo::entropy::turn_entropy_f32;
use crate::algo::loss::{PolicyLossConfig, tis_weights, token_weight};
use crate::metrics::{Phase, PhaseTimes, Progress, Scalars};
use crate::recipe::resolved::Optimizer;
use crate::recipe::{AlgorithmConfig, OldLogprobs, RowWeighting, UpdateFlow};
use std::time::Instant;
use tch::{Kind, Tensor};

/// The RL learner: its algorithm settings and the optimizer it steps.
#[derive(Debug)]
pub struct RlLearner {
    pub algorithm: AlgorithmConfig,
    pub loss: PolicyLossConfig,
    pub estimator: AdvantageEstimator,
    /// Leave rows of exceeding trajectories out of the GRPO statistics, with advantage 0 (off,
    /// as in the reference).
    pub ignore_exceed: bool,
    /// Progress bars over the rows of the scoring and update passes (`logging.progress_bars`;
    /// drawn only on a terminal).
    pub progress: bool,
    /// Skip the forward and backward of zero-advantage rows where that leaves the update
    /// unchanged (module doc; on by default, off only to compare against the full pass).
    pub skip_zero_advantage: bool,
    pub optimizer: AdamW,
}

/// What one step did and saw.
#[derive(Debug, Clone, Default)]
pub struct RlStepStats {
    pub rows: usize,
    /// Unmasked response tokens in the batch.
    pub loss_tokens: usize,
    pub advantages: Vec<f64>,
    /// GRPO `Â` per row.
    pub outcome_advantages: Vec<f64>,
    /// TAURA weights per row.
    pub entropy_weights: Option<Vec<f64>>,
    /// Turn entropies `h_r` per row (from the recomputation).
    pub turn_entropies: Vec<f64>,
    /// Token-mean entropy of the recomputation (`actor/entropy` in verl).
    pub raw_entropy: f64,
    /// Mean and max truncated-IS weight over loss tokens, and the share at the cap.
    pub tis_mean: f64,
    pub tis_max: f64,
    pub tis_capped: f64,
    /// Aggregated losses, averaged over optimizer steps.
    pub pg_loss: f64,
    pub kl_loss: f64,
    pub entropy_loss: f64,
    pub pg_clipfrac: f64,
    pub pg_clipfrac_lower: f64,
    pub ppo_kl: f64,
    pub optimizer_steps: Vec<StepReport>,
    pub times: PhaseTimes,
    /// Tokens (prompt + response) through the scoring and the training forwards.
    pub logprob_tokens: usize,
    pub update_tokens: usize,
    /// Zero-advantage rows whose forward and backward the update skipped (module doc).
    pub skipped_rows: usize,
}

impl RlLearner {
    /// A learner for `policy`'s trainable tensors; `total_steps` sizes the LR schedule (optimizer
    /// steps over the run).
    pub fn new<P: TrainablePolicy>(
        policy: &P,
        algorithm: &AlgorithmConfig,
        optimizer: &Optimizer,
        total_steps: u64,
    ) -> Result<Self, LearnerError> {
        let opt = AdamW::new(policy.trainable_variables(), AdamWConfig::from_recipe(optimizer, total_steps))?;
        Ok(Self::with_optimizer(algorithm, opt))
    }

    pub fn with_optimizer(algorithm: &AlgorithmConfig, optimizer: AdamW) -> Self {
        RlLearner {
            algorithm: algorithm.clone(),
            loss: PolicyLossConfig::from_config(algorithm),
            estimator: AdvantageEstimator::from_config(algorithm),
            ignore_exceed: false,
            progress: false,
            skip_zero_advantage: true,
            optimizer,
        }
    }

    /// Steps 1-4 of the module doc on `rows` (one batch; every row of a GRPO group must be in
    /// it). `sync` is [`LocalSteps`](super::LocalSteps) in one process. Under data parallelism
    /// `rows` are this rank's whole GRPO groups (so the advantages are local); each mini-batch's
    /// loss is normalised by the micro-batches of every rank and `sync` sums the gradients before
    /// each optimizer step, so in the on-policy flow the update equals one process on every
    /// rank's rows. In the PPO flow each rank splits its rows into the same number of
    /// mini-batches, `ceil(global rows / ppo_mini_batch_size)`. Loss and clip metrics are global
    /// sums; the advantage and entropy descriptions are this rank's. A rank may have no rows.
    pub fn step<P: TrainablePolicy>(
        &mut self,
        policy: &P,
        rows: &[RlRow<P::Media>],
        sync: &mut dyn GradientSync,
    ) -> Result<RlStepStats, LearnerError> {
        self.check_step(rows.is_empty(), sync.world_size())?;
        rows.iter().enumerate().try_for_each(|(i, r)| r.check(i))?;
        let mut stats = RlStepStats { rows: rows.len(), ..Default::default() };
        let device = policy.device();

        // 1. Old log-probs, entropies, reference log-probs.
        let t0 = Instant::now();
        let OldScores { old, reference, turn_entropies, row_entropy_sums, entropy_tokens, scored_tokens } =
            self.old_scores(policy, rows)?;
        stats.turn_entropies = turn_entropies;
        stats.logprob_tokens = scored_tokens;
        let mut ent = [row_entropy_sums.iter().sum(), entropy_tokens as f64];
        sync.sum_counts(&mut ent)?;
        stats.raw_entropy = if ent[1] > 0.0 { ent[0] / ent[1] } else { 0.0 };
        stats.times.add(Phase::Logprobs, t0.elapsed().as_secs_f64());

        // 2. Advantages.
        let adv_rows: Vec<AdvantageRow<'_>> = rows
            .iter()
            .zip(&stats.turn_entropies)
            .map(|(r, &h)| AdvantageRow {
                uid: &r.uid,
                traj_uid: &r.traj_uid,
                reward: r.reward,
                entropy: Some(h),
                exceed: r.exceed,
            })
            .collect();
        let Advantages { values, outcome, weights } = self.estimator.compute(&adv_rows, self.ignore_exceed)?;

        // 3. Truncated IS weights and masks.
        let weighting = self.importance_weights(rows, &old, device, sync, &mut stats)?;

        // 4. Update.
        let t1 = Instant::now();
        let inputs = UpdateInputs {
            advantages: &values,
            old: &old,
            reference: &reference,
            weighting: &weighting,
            row_entropy_sums: &row_entropy_sums,
        };
        let acc = self.update(policy, rows, &inputs, sync, &mut stats)?;
        stats.times.add(Phase::Update, t1.elapsed().as_secs_f64());
        record_losses(&mut stats, &acc, sync)?;
        stats.advantages = values;
        stats.outcome_advantages = outcome;
        stats.entropy_weights = weights;
        Ok(stats)
    }

    /// Step 4: the update flow's mini-batches and micro-batches over `rows`, each row's forward
    /// and backward (packed into forwards of up to `max_tokens_per_forward` tokens), one
    /// optimizer step per mini-batch; returns the loss sums.
    fn update<P: TrainablePolicy>(
        &mut self,
        policy: &P,
        rows: &[RlRow<P::Media>],
        inputs: &UpdateInputs<'_>,
        sync: &mut dyn GradientSync,
        stats: &mut RlStepStats,
    ) -> Result<Accum, LearnerError> {
        let w = inputs.weighting;
        let a = &self.algorithm;
        let all: Vec<usize> = (0..rows.len()).collect();
        let (mini_batches, micro, epochs, use_old): (Vec<&[usize]>, usize, u32, bool) = match a.update_flow {
            UpdateFlow::OnPolicy => (vec![&all[..]], 1, 1, false),
            UpdateFlow::Ppo => (
                mini_batches(&all, a.ppo_mini_batch_size as usize, w.global_rows.round() as usize, sync.world_size()),
                a.micro_batch_size_per_gpu as usize,
                a.ppo_epochs,
                true,
            ),
        };
        // Micro-batches per mini-batch over every rank: each micro-batch's loss is divided by it.
        let mut n_micros: Vec<f64> = mini_batches.iter().map(|mb| mb.len().div_ceil(micro) as f64).collect();
        sync.sum_counts(&mut n_micros)?;
        let share = self.row_shares(rows, w.global_rows, w.global_trajectories);
        // Zero-advantage rows change nothing in the on-policy flow without KL or entropy terms.
        let skippable = self.skip_zero_advantage
            && a.update_flow == UpdateFlow::OnPolicy
            && self.loss.kl_coef == 0.0
            && self.loss.entropy_coef == 0.0;
        let params = policy.trainable_variables();
        let mut acc = Accum::default();
        let bar = Progress::new(u64::from(epochs) * rows.len() as u64, "update", self.progress);
        for _ in 0..epochs {
            for (mb, &n_micro) in mini_batches.iter().zip(&n_micros) {
                zero_gradients(&params)?;
                let mut todo = Vec::with_capacity(mb.len());
                for m in mb.chunks(micro) {
                    let micro_tokens: usize = m.iter().map(|&i| rows[i].loss_tokens()).sum();
                    for &i in m {
                        let weight = share[i]
                            * token_weight(self.loss.aggregation, rows[i].loss_tokens(), m.len(), micro_tokens)
                            / n_micro;
                        if skippable && inputs.advantages[i] == 0.0 {
                            acc.skipped_tokens += rows[i].loss_tokens() as f64;
                            acc.skipped_entropy += weight * inputs.row_entropy_sums[i];
                            stats.skipped_rows += 1;
                            bar.inc(1);
                            continue;
                        }
                        todo.push(RowInputs {
                            index: i,
                            advantage: inputs.advantages[i],
                            old: use_old.then_some(&inputs.old[i]),
                            tis: &w.tis[i],
                            reference: inputs.reference[i].as_ref(),
                            mask: &w.masks[i],
                            weight,
                        });
                    }
                }
                // Rows are packed into forwards in order; the gradient is their sum either way.
                let lens: Vec<usize> = todo.iter().map(|r| rows[r.index].ids.len()).collect();
                for range in pack_by_tokens(&lens, a.max_tokens_per_forward as usize) {
                    let n = range.len() as u64;
                    self.packed_backward(policy, rows, &todo[range], &mut acc)?;
                    bar.inc(n);
                }
                stats.optimizer_steps.push(sync.step(&mut self.optimizer, &params)?);
            }
        }
        bar.finish();
        Ok(acc)
    }

    /// The algorithm settings a step needs, and at least one row somewhere.
    fn check_step(&self, no_rows: bool, world: u32) -> Result<(), LearnerError> {
        let a = &self.algorithm;
        if no_rows && world <= 1 {
            return Err(LearnerError::Config("an RL step needs at least one row".into()));
        }
        if a.update_flow == UpdateFlow::OnPolicy && a.ppo_epochs != 1 {
            return Err(LearnerError::Config(format!("the on-policy flow needs ppo_epochs = 1, got {}", a.ppo_epochs)));
        }
        if a.update_flow == UpdateFlow::Ppo && (a.ppo_mini_batch_size == 0 || a.micro_batch_size_per_gpu == 0) {
            return Err(LearnerError::Config(
                "ppo_mini_batch_size and micro_batch_size_per_gpu must be positive".into(),
            ));
        }
        Ok(())
    }

    /// Step 3: each row's truncated IS weights and loss mask on the device, their statistics in
    /// `stats`, and the rows and trajectories of every rank.
    fn importance_weights<M>(
        &self,
        rows: &[RlRow<M>],
        old: &[Tensor],
        device: tch::Device,
        sync: &mut dyn GradientSync,
        stats: &mut RlStepStats,
    ) -> Result<Weighting, LearnerError> {
        let mut tis = Vec::with_capacity(rows.len());
        let mut masks = Vec::with_capacity(rows.len());
        let (mut w_sum, mut w_max, mut w_capped, mut w_n) = (0.0f64, 0.0f64, 0usize, 0usize);
        for (r, o) in rows.iter().zip(old) {
            let w = match (self.loss.tis_cap, &r.sampler_logprobs) {
                (Some(cap), Some(s)) => tis_weights(o, &Tensor::f_from_slice(s)?.f_to_device(device)?, cap)?,
                _ => o.f_ones_like()?,
            };
            let wv = Vec::<f32>::try_from(w.f_to_device(tch::Device::Cpu)?)?;
            for (x, m) in wv.iter().zip(&r.mask) {
                if *m {
                    let x = f64::from(*x);
                    w_sum += x;
                    w_max = w_max.max(x);
                    w_capped += usize::from(self.loss.tis_cap.is_some_and(|c| x >= c));
                    w_n += 1;
                }
            }
            tis.push(w);
            let m: Vec<f32> = r.mask.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
            masks.push(Tensor::f_from_slice(&m)?.f_to_device(device)?);
        }
        let trajectories = rows.iter().map(|r| r.traj_uid.as_str()).collect::<std::collections::HashSet<_>>().len();
        let mut tis_sums = [w_sum, w_n as f64, w_capped as f64, rows.len() as f64, trajectories as f64];
        sync.sum_counts(&mut tis_sums)?;
        let [w_sum, w_n, w_capped, global_rows, global_trajectories] = tis_sums;
        stats.loss_tokens = w_n.round() as usize;
        stats.tis_mean = if w_n > 0.0 { w_sum / w_n } else { 0.0 };
        stats.tis_max = w_max;
        stats.tis_capped = if w_n > 0.0 { w_capped / w_n } else { 0.0 };
        if global_rows < 0.5 {
            return Err(LearnerError::Config("an RL step needs at least one row on some rank".into()));
        }
        Ok(Weighting { tis, masks, global_rows, global_trajectories })
    }

    /// Each row's share of the loss under `row_weighting`.
    fn row_shares<M>(&self, rows: &[RlRow<M>], global_rows: f64, global_trajectories: f64) -> Vec<f64> {
        match self.algorithm.row_weighting {
            RowWeighting::PerTurn => vec![1.0; rows.len()],
            RowWeighting::PerTrajectory => {
                let uids: Vec<&str> = rows.iter().map(|r| r.traj_uid.as_str()).collect();
                trajectory_shares(&uids, global_rows, global_trajectories)
            }
        }
    }

    /// Step 1: every row's old log-probs and token entropies, from a scoring pass
    /// (`old_logprobs: recompute`) or from the rollout (`rollout`), and its reference log-probs
    /// when a KL penalty is on.
    fn old_scores<P: TrainablePolicy>(&self, policy: &P, rows: &[RlRow<P::Media>]) -> Result<OldScores, LearnerError> {
        let mut out = OldScores::default();
        let from_rollout = self.algorithm.old_logprobs == OldLogprobs::Rollout;
        let (scored, reference) = self.scoring_passes(policy, rows, !from_rollout, &mut out.scored_tokens)?;
        let mut scored = scored.into_iter();
        for (i, r) in rows.iter().enumerate() {
            let (logprobs, ents) = if from_rollout {
                let s = r.rollout_scores.as_ref().ok_or_else(|| LearnerError::Row {
                    row: i,
                    message: "old_logprobs is rollout but the row has no rollout log-probs (the rollout \
                              did not ask the policy for them)"
                        .into(),
                })?;
                (Tensor::f_from_slice(&s.logprobs)?.f_to_device(policy.device())?, s.entropies.clone())
            } else {
                let (lp, en) =
                    scored.next().ok_or_else(|| LearnerError::Row { row: i, message: "not scored".into() })?;
                (lp, Vec::<f32>::try_from(en.f_to_kind(Kind::Float)?.f_to_device(tch::Device::Cpu)?)?)
            };
            let mut row_sum = 0.0;
            for (h, m) in ents.iter().zip(&r.mask) {
                if *m {
                    row_sum += f64::from(*h);
                    out.entropy_tokens += 1;
                }
            }
            out.row_entropy_sums.push(row_sum);
            out.turn_entropies.push(turn_entropy_f32(&ents, &r.mask));
            out.old.push(logprobs.f_to_kind(Kind::Float)?);
        }
        out.reference = reference;
        Ok(out)
    }
}

/// What the update reads per row: advantages, old and reference log-probs, step 3's weights,
/// and the masked entropy sums (for the rows it skips).
struct UpdateInputs<'a> {
    advantages: &'a [f64],
    old: &'a [Tensor],
    reference: &'a [Option<Tensor>],
    weighting: &'a Weighting,
    row_entropy_sums: &'a [f64],
}

/// Step 3's results: per row the truncated IS weights and loss mask (on the device), and the
/// rows and trajectories of every rank.
struct Weighting {
    tis: Vec<Tensor>,
    masks: Vec<Tensor>,
    global_rows: f64,
    global_trajectories: f64,
}

/// The update's loss and clip figures, summed over every rank, into `stats`: losses are means
/// over the optimizer steps, clip fractions and the PPO KL per token.
fn record_losses(stats: &mut RlStepStats, acc: &Accum, sync: &mut dyn GradientSync) -> Result<(), LearnerError> {
    let n_steps = stats.optimizer_steps.len().max(1) as f64;
    let mut sums = acc.values()?;
    sync.sum_counts(&mut sums)?;
    let LossSums { pg, kl, entropy, tokens, clipped, dual_clipped, old_minus_new } = LossSums::from_array(sums);
    stats.pg_loss = pg / n_steps;
    stats.kl_loss = kl / n_steps;
    stats.entropy_loss = entropy / n_steps;
    if tokens > 0.0 {
        stats.pg_clipfrac = clipped / tokens;
        stats.pg_clipfrac_lower = dual_clipped / tokens;
        stats.ppo_kl = old_minus_new / tokens;
    }
    stats.update_tokens = acc.forward_tokens;
    Ok(())
}

/// `per-trajectory` shares, relative to equal rows: a row of a trajectory with `k` rows gets
/// `(rows / trajectories) / k` (global counts), so every trajectory weighs the same and the
/// shares still sum to the rows. Whole trajectories sit on one rank, so `k` is local.
fn trajectory_shares(traj_uids: &[&str], global_rows: f64, global_trajectories: f64) -> Vec<f64> {
    let mut per_traj: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for u in traj_uids {
        *per_traj.entry(u).or_default() += 1;
    }
    let per = global_rows / global_trajectories.max(1.0);
    traj_uids.iter().map(|u| per / per_traj[u] as f64).collect()
}

/// The PPO flow's mini-batches of this rank's `rows`: chunks of `size` in one process (verl's
/// order); under data parallelism every rank needs the same number of optimizer steps, so each
/// splits its rows evenly into `ceil(global_rows / size)` chunks (some may be empty).
fn mini_batches(rows: &[usize], size: usize, global_rows: usize, world: u32) -> Vec<&[usize]> {
    let size = size.max(1);
    if world <= 1 {
        return rows.chunks(size).collect();
    }
    let n = global_rows.div_ceil(size).max(1);
    (0..n).map(|k| &rows[k * rows.len() / n..(k + 1) * rows.len() / n]).collect()
}

/// Step 1's results: per row the old log-probs, reference log-probs, turn entropy and masked
/// entropy sum; the masked token count; the tokens a scoring pass went through.
#[derive(Default)]
struct OldScores {
    old: Vec<Tensor>,
    reference: Vec<Option<Tensor>>,
    turn_entropies: Vec<f64>,
    row_entropy_sums: Vec<f64>,
    entropy_tokens: usize,
    scored_tokens: usize,
}

impl RlStepStats {
    /// Tokens per second of the training forward/backward.
    pub fn update_tokens_per_second(&self) -> f64 {
        per_second(self.update_tokens, self.times.get(Phase::Update))
    }

    /// The step's scalars (verl's names where one exists), without the time split (the loop adds
    /// its own `PhaseTimes`, which include these). Advantage, entropy-weight and turn-entropy
    /// statistics are over rows (turns); verl's `training/entropy_weight/*` weighs by tokens.
    pub fn scalars(&self) -> Scalars {
        let mut s = Scalars::default();
        s.push("actor/pg_loss", self.pg_loss);
        s.push("actor/kl_loss", self.kl_loss);
        s.push("actor/entropy_loss", self.entropy_loss);
        s.push("actor/pg_clipfrac", self.pg_clipfrac);
        s.push("actor/pg_clipfrac_lower", self.pg_clipfrac_lower);
        s.push("actor/ppo_kl", self.ppo_kl);
        s.push("actor/entropy", self.raw_entropy);
        let norms: Vec<f64> = self.optimizer_steps.iter().map(|r| r.grad_norm).collect();
        if let Some(last) = self.optimizer_steps.last() {
            s.push("actor/grad_norm", norms.iter().sum::<f64>() / norms.len() as f64);
            s.push("actor/lr", last.lr);
        }
        s.push("actor/optimizer_steps", self.optimizer_steps.len() as f64);
        s.push("actor/skipped_steps", self.optimizer_steps.iter().filter(|r| r.skipped).count() as f64);
        s.describe("training/advantage", &self.advantages);
        s.describe("training/outcome_advantage", &self.outcome_advantages);
        s.push(
            "training/advantage/exploded",
            self.advantages.iter().filter(|a| a.abs() > crate::algo::advantage::EXPLODED_ABS).count() as f64,
        );
        if let Some(w) = &self.entropy_weights {
            s.describe("training/entropy_weight", w);
        }
        s.push("training/raw_entropy/mean", self.raw_entropy);
        s.describe("training/turn_entropy", &self.turn_entropies);
        s.push("rollout_correction/tis_weight/mean", self.tis_mean);
        s.push("rollout_correction/tis_weight/max", self.tis_max);
        s.push("rollout_correction/tis_weight/capped_frac", self.tis_capped);
        s.push("perf/rows", self.rows as f64);
        s.push("perf/loss_tokens", self.loss_tokens as f64);
        s.push("perf/update_tokens_per_s", self.update_tokens_per_second());
        s.push("perf/skipped_zero_advantage_rows", self.skipped_rows as f64);
        s.push("perf/logprob_tokens_per_s", per_second(self.logprob_tokens, self.times.get(Phase::Logprobs)));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::{mini_batches, trajectory_shares};

    #[test]
    fn per_trajectory_shares_weigh_every_trajectory_the_same() {
        // Trajectory a has 3 rows, b has 1: 4 rows over 2 trajectories = 2 per trajectory.
        let got = trajectory_shares(&["a", "a", "b", "a"], 4.0, 2.0);
        let want = [2.0 / 3.0, 2.0 / 3.0, 2.0, 2.0 / 3.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        assert!((got.iter().sum::<f64>() - 4.0).abs() < 1e-12);
        // Data parallel: this rank holds 2 of 6 global rows, 1 of 3 global trajectories.
        assert_eq!(trajectory_shares(&["c", "c"], 6.0, 3.0), vec![1.0, 1.0]);
        assert!(trajectory_shares(&[], 0.0, 0.0).is_empty());
    }

    #[test]
    fn ppo_mini_batches_one_process_and_data_parallel() {
        // (local rows, mini-batch size, global rows, world) -> chunk lengths
        let cases: [(usize, usize, usize, u32, &[usize]); 6] = [
            (10, 4, 10, 1, &[4, 4, 2]),
            (9, 4, 9, 1, &[4, 4, 1]),
            (5, 4, 10, 2, &[1, 2, 2]),
            (0, 4, 10, 2, &[0, 0, 0]),
            (3, 8, 3, 2, &[3]),
            (7, 0, 7, 1, &[1, 1, 1, 1, 1, 1, 1]),
        ];
        for (i, (local, size, global, world, want)) in cases.into_iter().enumerate() {
            let rows: Vec<usize> = (0..local).collect();
            let got: Vec<usize> = mini_batches(&rows, size, global, world).iter().map(|c| c.len()).collect();
            assert_eq!(got, want, "case {i}");
        }
    }
}
