//! The RL learner on the toy LM: the on-policy flow's gradient is the mean over rows of per-row
//! token means (docs/reference.md#token-mean), clip ratios are inert in it
//! (docs/reference.md#inert-clip), the PPO flow's mini-batch epochs, truncated IS, TAURA
//! statistics, and input errors. Expected gradients are built from the formulas of
//! docs/reference.md#policy-loss and docs/reference.md#update-rule with advantages and IS weights
//! computed by hand, not by the learner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod learner_support;

use learner_support::*;
use rollout::policy::PolicyScores;
use tch::{Kind, Tensor};
use trainer::learner::LocalSteps;
use trainer::learner::toy::ToyLm;
use trainer::learner::{LearnerError, RlLearner, RlRow, SplitMix64, TrainablePolicy};
use trainer::recipe::{AlgorithmConfig, Estimator, LossAggregation, OldLogprobs, UpdateFlow};

/// Group "a": trajectory 0 (reward 1, one turn), 1 (reward 0, two turns), 2 (reward 0, one turn).
fn rows() -> Vec<RlRow<()>> {
    let mut rng = SplitMix64::new(5);
    group_rows(&mut rng, "a", &[1.0, 0.0, 0.0], TOY_VOCAB as u32, TOY_END, 3)
}

fn grpo() -> AlgorithmConfig {
    AlgorithmConfig { estimator: Estimator::Grpo, ..AlgorithmConfig::default() }
}

/// A row's truncated IS weights `ρ = min(exp(clamp(old − sampler, −20, 20)), 2)` (by hand in
/// f64, `old` from the model as it is) and its loss mask.
fn is_weights_and_mask(model: &ToyLm, r: &RlRow<()>) -> (Vec<f64>, Vec<f64>) {
    let old = model.score(&r.ids, &(), r.prompt_len).unwrap().logprobs;
    let old = Vec::<f32>::try_from(&old).unwrap();
    let rho = old
        .iter()
        .zip(r.sampler_logprobs.as_ref().unwrap())
        .map(|(o, s)| (f64::from(*o) - f64::from(*s)).clamp(-20.0, 20.0).exp().min(2.0))
        .collect();
    (rho, r.mask.iter().map(|&m| f64::from(u8::from(m))).collect())
}

/// The on-policy loss value `Σ_r c_r Σ_t m_rt · (−A_r ρ_rt)` (the ratio is 1 before the update).
fn expected_pg_loss(model: &ToyLm, rows: &[RlRow<()>], adv: &[f64], scale: impl Fn(&RlRow<()>) -> f64) -> f64 {
    let mut loss = 0.0;
    for (r, a) in rows.iter().zip(adv) {
        let (rho, mask) = is_weights_and_mask(model, r);
        let tokens: f64 = rho.iter().zip(&mask).map(|(w, m)| -a * w * m).sum();
        loss += scale(r) * tokens;
    }
    loss
}

/// Gradient of `Σ_r c_r Σ_t m_rt · (−A_r ρ_rt log π_rt)` where `c_r` comes from `scale(row)`.
fn expected_grad(model: &ToyLm, rows: &[RlRow<()>], adv: &[f64], scale: impl Fn(&RlRow<()>) -> f64) -> Vec<Tensor> {
    zero_grads(model);
    for (r, a) in rows.iter().zip(adv) {
        let (rho, mask) = is_weights_and_mask(model, r);
        let c = scale(r);
        let mut f = |off: usize, lp: &Tensor, _e: &Tensor| -> Result<Tensor, tch::TchError> {
            let n = lp.size()[0] as usize;
            let w: Vec<f32> = (off..off + n).map(|t| (-a * rho[t] * mask[t] * c) as f32).collect();
            Ok((lp * Tensor::from_slice(&w)).sum(Kind::Float))
        };
        model.forward_backward(&r.ids, &(), r.prompt_len, &mut f).unwrap();
    }
    grads(model)
}

#[test]
fn on_policy_gradient_is_the_mean_of_per_row_token_means() {
    let model = toy();
    let rows = rows();
    assert_eq!(rows.len(), 4);
    // Scores [1, 0, 0] (trajectory 1 counted once): μ = 1/3, σ = √(1/3).
    let s = (1.0f64 / 3.0).sqrt() + 1e-6;
    let adv = [(2.0 / 3.0) / s, (-1.0 / 3.0) / s, (-1.0 / 3.0) / s, (-1.0 / 3.0) / s];
    let per_row = expected_grad(&model, &rows, &adv, |r| 1.0 / (rows.len() * r.loss_tokens()) as f64);
    let total: usize = rows.iter().map(RlRow::loss_tokens).sum();
    let global = expected_grad(&model, &rows, &adv, |_| 1.0 / total as f64);
    let per_row_loss = expected_pg_loss(&model, &rows, &adv, |r| 1.0 / (rows.len() * r.loss_tokens()) as f64);
    let global_loss = expected_pg_loss(&model, &rows, &adv, |_| 1.0 / total as f64);

    zero_grads(&model);
    let mut learner = RlLearner::new(&model, &grpo(), &optimizer(0.0), 10).unwrap();
    let stats = learner.step(&model, &rows, &mut LocalSteps).unwrap();
    let got = grads(&model);
    for (a, b) in stats.advantages.iter().zip(adv) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    assert_eq!(stats.optimizer_steps.len(), 1);
    let scale = max_abs(&per_row);
    // Different arithmetic (IS weights and row scales in f32 vs by hand in f64, then a few dozen
    // products per gradient entry): a few ulps, ~1e-7 of the scale; the global mean is ~20% away.
    assert!(max_abs_diff(&got, &per_row) < 1e-5 * scale, "{} vs scale {scale}", max_abs_diff(&got, &per_row));
    // Not the global token mean (rows have different lengths).
    assert!(max_abs_diff(&got, &global) > 1e-3 * scale);
    // The reported loss is the same aggregation: mean over rows of per-row token means.
    assert!((stats.pg_loss - per_row_loss).abs() < 1e-5 * per_row_loss.abs(), "{} vs {per_row_loss}", stats.pg_loss);
    assert!((per_row_loss - global_loss).abs() > 1e-3 * per_row_loss.abs(), "the two aggregations must differ here");
    let names: Vec<String> = stats.scalars().0.into_iter().map(|(n, _)| n).collect();
    for want in [
        "actor/pg_loss",
        "actor/grad_norm",
        "actor/lr",
        "training/advantage/mean",
        "training/raw_entropy/mean",
        "perf/update_tokens_per_s",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
}

#[test]
fn clip_ratios_are_inert_in_the_on_policy_flow() {
    let rows = rows();
    let mut after = Vec::new();
    for (low, high, c) in [(0.2, 0.3, 3.0), (1e-4, 1e-4, 1.0001)] {
        let model = toy();
        let algo = AlgorithmConfig { clip_ratio_low: low, clip_ratio_high: high, clip_ratio_c: c, ..grpo() };
        let mut learner = RlLearner::new(&model, &algo, &optimizer(1e-2), 10).unwrap();
        let stats = learner.step(&model, &rows, &mut LocalSteps).unwrap();
        assert_eq!(stats.pg_clipfrac, 0.0);
        assert_eq!(stats.ppo_kl, 0.0);
        after.push(snapshot(&model));
    }
    for ((n, a), (_, b)) in after[0].iter().zip(&after[1]) {
        assert!(a.equal(b), "{n} differs");
    }
}

#[test]
fn ppo_flow_first_pass_matches_on_policy_and_epochs_step_per_mini_batch() {
    let rows = rows();
    // One mini-batch of all rows, micro-batches of one row, one epoch: the recomputed old
    // log-probs equal the current ones, so the gradient is the on-policy one.
    let (a, b) = (toy(), toy());
    let mut on = RlLearner::new(&a, &grpo(), &optimizer(0.0), 10).unwrap();
    on.step(&a, &rows, &mut LocalSteps).unwrap();
    let ppo_algo =
        AlgorithmConfig { update_flow: UpdateFlow::Ppo, ppo_mini_batch_size: 4, micro_batch_size_per_gpu: 1, ..grpo() };
    let mut ppo = RlLearner::new(&b, &ppo_algo, &optimizer(0.0), 10).unwrap();
    ppo.step(&b, &rows, &mut LocalSteps).unwrap();
    assert!(max_abs_diff(&grads(&a), &grads(&b)) < 1e-6 * max_abs(&grads(&a)));

    // Two mini-batches of two rows, two epochs: four optimizer steps; after the first update
    // the policy is off the recomputed one, so the ratio differs from 1 (ppo_kl ≠ 0).
    let c = toy();
    let algo = AlgorithmConfig { ppo_mini_batch_size: 2, micro_batch_size_per_gpu: 2, ppo_epochs: 2, ..ppo_algo };
    let mut learner = RlLearner::new(&c, &algo, &optimizer(0.05), 10).unwrap();
    let stats = learner.step(&c, &rows, &mut LocalSteps).unwrap();
    assert_eq!(stats.optimizer_steps.len(), 4);
    assert!(stats.ppo_kl != 0.0);
    assert_eq!(learner.optimizer.counters().adam_steps, 4);
}

#[test]
fn micro_batch_token_mean_weights_tokens_within_the_micro_batch() {
    // PPO with one micro-batch of all rows under token-mean: the gradient of the global masked
    // token mean Σ m·ℓ / (Σ m + 1e-8).
    let rows = rows();
    let model = toy();
    let s = (1.0f64 / 3.0).sqrt() + 1e-6;
    let adv = [(2.0 / 3.0) / s, (-1.0 / 3.0) / s, (-1.0 / 3.0) / s, (-1.0 / 3.0) / s];
    let total: usize = rows.iter().map(RlRow::loss_tokens).sum();
    let want = expected_grad(&model, &rows, &adv, |_| 1.0 / (total as f64 + 1e-8));
    zero_grads(&model);
    let algo = AlgorithmConfig {
        update_flow: UpdateFlow::Ppo,
        ppo_mini_batch_size: 4,
        micro_batch_size_per_gpu: 4,
        loss_aggregation: LossAggregation::TokenMean,
        ..grpo()
    };
    RlLearner::new(&model, &algo, &optimizer(0.0), 10).unwrap().step(&model, &rows, &mut LocalSteps).unwrap();
    // Weights computed in f32 by the learner vs in f64 here: a few ulps of the scale (~1e-7 seen).
    assert!(max_abs_diff(&grads(&model), &want) < 1e-5 * max_abs(&want));
}

#[test]
fn truncated_is_weights_and_taura_statistics() {
    let model = toy();
    let mut rows = rows();
    // Sampler log-probs equal to the learner's: ρ = 1, the same gradient as no correction.
    let mut plain = rows.clone();
    for r in &mut rows {
        let old = model.score(&r.ids, &(), r.prompt_len).unwrap().logprobs;
        r.sampler_logprobs = Some(Vec::<f32>::try_from(&old).unwrap());
    }
    for r in &mut plain {
        r.sampler_logprobs = None;
    }
    let mut l1 = RlLearner::new(&model, &grpo(), &optimizer(0.0), 10).unwrap();
    let s1 = l1.step(&model, &rows, &mut LocalSteps).unwrap();
    let g1 = grads(&model);
    zero_grads(&model);
    let mut l2 = RlLearner::new(&model, &grpo(), &optimizer(0.0), 10).unwrap();
    l2.step(&model, &plain, &mut LocalSteps).unwrap();
    assert!(max_abs_diff(&g1, &grads(&model)) < 1e-6 * max_abs(&g1));
    assert_eq!((s1.tis_mean, s1.tis_max), (1.0, 1.0));

    // TAURA: the learner's turn entropies are masked means of the scored entropies, and the
    // weights follow w = h / (Σh/(n + 1e-8) + 1e-8) over the group's four rows.
    let taura = AlgorithmConfig { estimator: Estimator::Taura, ..AlgorithmConfig::default() };
    let mut l3 = RlLearner::new(&model, &taura, &optimizer(0.0), 10).unwrap();
    let s3 = l3.step(&model, &rows, &mut LocalSteps).unwrap();
    let h: Vec<f64> = rows
        .iter()
        .map(|r| {
            let e = Vec::<f32>::try_from(&model.score(&r.ids, &(), r.prompt_len).unwrap().entropies).unwrap();
            let (sum, n) = e
                .iter()
                .zip(&r.mask)
                .filter(|(_, m)| **m)
                .fold((0.0, 0.0), |(s, n), (x, _)| (s + f64::from(*x), n + 1.0));
            sum / (n + 1e-8)
        })
        .collect();
    let hbar = h.iter().sum::<f64>() / (4.0 + 1e-8);
    let w = s3.entropy_weights.as_ref().unwrap();
    for i in 0..4 {
        assert!((s3.turn_entropies[i] - h[i]).abs() < 1e-9);
        assert!((w[i] - h[i] / (hbar + 1e-8)).abs() < 1e-9);
        assert!((s3.advantages[i] - s3.outcome_advantages[i] * w[i]).abs() < 1e-12);
    }
}

/// `old_logprobs: rollout`: given the rollout's scores of the rows (here the model's own, as
/// the sampler records them), the step skips the scoring pass and does what `recompute` does,
/// in both flows, with TAURA's entropy weights and the IS weights; rollout scores off by a
/// constant move the IS weights and the TAURA weights accordingly; a row without them is an
/// error naming the row.
#[test]
fn rollout_scores_replace_the_scoring_pass() {
    let scored = |model: &ToyLm, shift: f32| -> Vec<RlRow<()>> {
        rows()
            .into_iter()
            .map(|mut r| {
                let s = model.score(&r.ids, &(), r.prompt_len).unwrap();
                let lp: Vec<f32> = Vec::<f32>::try_from(&s.logprobs).unwrap().iter().map(|x| x + shift).collect();
                let h: Vec<f32> = Vec::<f32>::try_from(&s.entropies).unwrap().iter().map(|x| x * 2.0).collect();
                r.rollout_scores = Some(PolicyScores { logprobs: lp, entropies: h });
                r
            })
            .collect()
    };
    for flow in [UpdateFlow::OnPolicy, UpdateFlow::Ppo] {
        let base = AlgorithmConfig { estimator: Estimator::Taura, update_flow: flow, ..AlgorithmConfig::default() };
        let rollout = AlgorithmConfig { old_logprobs: OldLogprobs::Rollout, ..base.clone() };
        let (m1, m2) = (toy(), toy());
        let mut l1 = RlLearner::new(&m1, &base, &optimizer(1e-2), 10).unwrap();
        let mut l2 = RlLearner::new(&m2, &rollout, &optimizer(1e-2), 10).unwrap();
        let s1 = l1.step(&m1, &rows(), &mut LocalSteps).unwrap();
        let mut exact = scored(&m2, 0.0);
        for r in &mut exact {
            // Entropies as the model scores them (the `scored` helper doubles them).
            let h = model_entropies(&m2, r);
            r.rollout_scores.as_mut().unwrap().entropies = h;
        }
        let s2 = l2.step(&m2, &exact, &mut LocalSteps).unwrap();
        assert_eq!(s2.logprob_tokens, 0, "{flow:?}: no scoring pass");
        assert!(s1.logprob_tokens > 0);
        for (a, b) in s1.advantages.iter().zip(&s2.advantages) {
            assert!((a - b).abs() < 1e-9, "{flow:?}");
        }
        assert!((s1.tis_mean - s2.tis_mean).abs() < 1e-9 && (s1.raw_entropy - s2.raw_entropy).abs() < 1e-9);
        assert!((s1.pg_loss - s2.pg_loss).abs() < 1e-6 * s1.pg_loss.abs().max(1e-3), "{flow:?}");
        assert!(max_abs_diff(&snapshot_tensors(&m1), &snapshot_tensors(&m2)) < 1e-6, "{flow:?}: same update");
    }
    // Rollout scores are used, not recomputed: old log-probs 0.1 above the model's raise every
    // IS weight by e^0.1 (below the cap), and doubled entropies leave TAURA's weights (h / mean h)
    // as they were while doubling the turn entropies.
    let model = toy();
    let taura = AlgorithmConfig { old_logprobs: OldLogprobs::Rollout, ..AlgorithmConfig::default() };
    let mut rows_shifted = scored(&model, 0.1);
    for r in &mut rows_shifted {
        let old = r.rollout_scores.as_ref().unwrap().logprobs.clone();
        // Sampler log-probs 0.1 below the rollout's: every IS weight is e^0.1.
        r.sampler_logprobs = Some(old.iter().map(|x| x - 0.1).collect());
    }
    let mut l = RlLearner::new(&model, &taura, &optimizer(0.0), 10).unwrap();
    let s = l.step(&model, &rows_shifted, &mut LocalSteps).unwrap();
    assert!((s.tis_mean - 0.1f64.exp()).abs() < 1e-5 && (s.tis_max - 0.1f64.exp()).abs() < 1e-5, "{}", s.tis_mean);
    let mut l = RlLearner::new(&model, &AlgorithmConfig::default(), &optimizer(0.0), 10).unwrap();
    let r = l.step(&model, &rows(), &mut LocalSteps).unwrap();
    for i in 0..r.turn_entropies.len() {
        assert!((s.turn_entropies[i] - 2.0 * r.turn_entropies[i]).abs() < 1e-5);
        assert!((s.entropy_weights.as_ref().unwrap()[i] - r.entropy_weights.as_ref().unwrap()[i]).abs() < 1e-5);
    }
    let mut missing = scored(&model, 0.0);
    missing[2].rollout_scores = None;
    let mut l = RlLearner::new(&model, &taura, &optimizer(0.0), 10).unwrap();
    let err = l.step(&model, &missing, &mut LocalSteps).unwrap_err();
    assert!(matches!(&err, LearnerError::Row { row: 2, .. }), "{err}");
    missing[2].rollout_scores = Some(PolicyScores { logprobs: vec![0.0], entropies: vec![0.0] });
    assert!(matches!(l.step(&model, &missing, &mut LocalSteps), Err(LearnerError::Row { row: 2, .. })));
}

fn model_entropies(model: &ToyLm, r: &RlRow<()>) -> Vec<f32> {
    Vec::<f32>::try_from(&model.score(&r.ids, &(), r.prompt_len).unwrap().entropies).unwrap()
}

fn snapshot_tensors(model: &ToyLm) -> Vec<Tensor> {
    snapshot(model).into_iter().map(|(_, t)| t).collect()
}

#[test]
fn bad_inputs_are_errors() {
    let model = toy();
    let mut learner = RlLearner::new(&model, &grpo(), &optimizer(1e-3), 10).unwrap();
    assert!(matches!(learner.step(&model, &[], &mut LocalSteps), Err(LearnerError::Config(_))));
    let mut rows = rows();
    rows[1].sampler_logprobs = Some(vec![0.0]);
    assert!(matches!(learner.step(&model, &rows, &mut LocalSteps), Err(LearnerError::Row { row: 1, .. })));
    let mut rows = self::rows();
    rows[2].reward = f64::NAN;
    assert!(matches!(learner.step(&model, &rows, &mut LocalSteps), Err(LearnerError::Row { row: 2, .. })));
    let mut rows = self::rows();
    rows[0].ids.push(99);
    rows[0].mask.push(true);
    rows[0].sampler_logprobs.as_mut().unwrap().push(-1.0);
    assert!(matches!(learner.step(&model, &rows, &mut LocalSteps), Err(LearnerError::Policy(_))));
    let epochs = AlgorithmConfig { ppo_epochs: 2, ..grpo() };
    let mut l = RlLearner::new(&model, &epochs, &optimizer(1e-3), 10).unwrap();
    assert!(matches!(l.step(&model, &self::rows(), &mut LocalSteps), Err(LearnerError::Config(_))));
    let kl = AlgorithmConfig { kl_coef: 0.1, ..grpo() };
    let mut l = RlLearner::new(&model, &kl, &optimizer(1e-3), 10).unwrap();
    assert!(matches!(l.step(&model, &self::rows(), &mut LocalSteps), Err(LearnerError::Config(_))));
}

#[test]
fn a_group_with_equal_rewards_does_not_move_the_policy() {
    // Equal rewards in the group: every advantage, the policy-gradient loss and its gradient are
    // exactly zero.
    let model = toy();
    let mut rng = SplitMix64::new(5);
    let rows = group_rows(&mut rng, "a", &[1.0, 1.0, 1.0], TOY_VOCAB as u32, TOY_END, 3);
    let mut l = RlLearner::new(&model, &grpo(), &optimizer(0.0), 10).unwrap();
    let stats = l.step(&model, &rows, &mut LocalSteps).unwrap();
    assert!(stats.advantages.iter().all(|&a| a == 0.0), "{:?}", stats.advantages);
    assert_eq!(stats.pg_loss, 0.0);
    assert_eq!(max_abs(&grads(&model)), 0.0);
}

#[test]
fn zero_advantage_rows_are_skipped_with_the_same_update() {
    // Group "a" has different rewards, group "b" equal ones: b's rows have advantage 0 and, in
    // the on-policy flow without KL or entropy terms, are not forwarded. The update, the loss and
    // the entropy metric are those of the full pass; only the forwarded tokens differ.
    let mut rng = SplitMix64::new(9);
    let mut batch = group_rows(&mut rng, "a", &[1.0, 0.0, 0.2], TOY_VOCAB as u32, TOY_END, 3);
    let equal = group_rows(&mut rng, "b", &[1.0, 1.0, 1.0], TOY_VOCAB as u32, TOY_END, 3);
    let (equal_rows, equal_tokens) = (equal.len(), equal.iter().map(|r| r.ids.len()).sum::<usize>());
    batch.extend(equal);
    for estimator in [Estimator::Grpo, Estimator::Taura] {
        let cfg = AlgorithmConfig { estimator, ..AlgorithmConfig::default() };
        let (full_model, skip_model) = (toy(), toy());
        let mut full = RlLearner::new(&full_model, &cfg, &optimizer(1e-2), 10).unwrap();
        full.skip_zero_advantage = false;
        let mut skip = RlLearner::new(&skip_model, &cfg, &optimizer(1e-2), 10).unwrap();
        let f = full.step(&full_model, &batch, &mut LocalSteps).unwrap();
        let s = skip.step(&skip_model, &batch, &mut LocalSteps).unwrap();
        assert_eq!((f.skipped_rows, s.skipped_rows), (0, equal_rows), "{estimator:?}");
        assert_eq!(s.scalars().get("perf/skipped_zero_advantage_rows"), Some(equal_rows as f64));
        assert_eq!(f.update_tokens - s.update_tokens, equal_tokens, "{estimator:?}");
        assert_eq!(max_abs_diff(&snapshot_tensors(&full_model), &snapshot_tensors(&skip_model)), 0.0, "{estimator:?}");
        assert_eq!(f.optimizer_steps[0].grad_norm, s.optimizer_steps[0].grad_norm, "{estimator:?}");
        assert_eq!(f.pg_loss, s.pg_loss, "{estimator:?}");
        assert!((f.entropy_loss - s.entropy_loss).abs() < 1e-6 * f.entropy_loss.abs(), "{estimator:?}");
        assert!(f.entropy_loss > 0.0);
    }
    // Where a zero-advantage row's loss is not zero (an entropy bonus) or the old log-probs are
    // not the current ones (the PPO flow), every row is forwarded.
    let entropy = AlgorithmConfig { entropy_coef: 0.01, ..grpo() };
    let ppo = AlgorithmConfig { update_flow: UpdateFlow::Ppo, ..grpo() };
    for cfg in [entropy, ppo] {
        let model = toy();
        let mut l = RlLearner::new(&model, &cfg, &optimizer(1e-2), 10).unwrap();
        let st = l.step(&model, &batch, &mut LocalSteps).unwrap();
        assert_eq!(st.skipped_rows, 0, "{cfg:?}");
        assert_eq!(st.update_tokens, batch.iter().map(|r| r.ids.len()).sum::<usize>());
    }
}
