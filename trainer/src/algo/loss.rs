//! The PPO-style policy loss on libtorch tensors (docs/reference.md#importance-sampling,
//! docs/reference.md#policy-loss), token by token, and its aggregation over rows.
//!
//! Per token, with `Δ = clamp(log π_θ − log π_old, −20, 20)` and `r = exp(Δ)`:
//! `L1 = −A·r`, `L2 = −A·clip(r, 1 − ε_low, 1 + ε_high)`, `Lc = max(L1, L2)`, and for `A < 0`
//! the dual clip `min(Lc, −A·c)`; the result is multiplied by the truncated importance-sampling
//! weight `ρ = min(exp(clamp(log π_old − log π_sampler, −20, 20)), cap)` (detached).
//! Optional terms: a KL penalty to a reference policy ([`KlType`]) and an entropy bonus, each
//! aggregated like the policy term: `loss = pg + β_kl·kl − β_H·H`.
//!
//! Aggregation ([`aggregate`], the reference's `agg_loss`) over a `[rows, tokens]` matrix and its
//! response mask: `token-mean` = `Σ m·ℓ / (Σ m + 1e-8)` (verl's `masked_mean`),
//! `seq-mean-token-mean` = mean over rows of each row's masked token mean,
//! `seq-mean-token-sum` = mean over rows of each row's masked token sum. Because every mode is
//! linear in the token losses, a learner that feeds rows one at a time (or packed into one
//! forward) can use per-row token weights instead ([`token_weight`]); `aggregate` is the matrix
//! form the tests pin both against.
//!
//! Left out: other policy losses of verl's registry (GSPO, CISPO, clip-cov), sequence-level IS
//! and rejection sampling (`rollout_rs`), all off in the shipped scripts.

use crate::recipe::{AlgorithmConfig, LossAggregation};
use tch::{Kind, Tensor};

/// Bound of the log-ratio before `exp` (ratio and IS weights).
pub const LOG_RATIO_CLAMP: f64 = 20.0;
/// The constant verl's `masked_mean` adds to the token count.
pub const MASKED_MEAN_EPSILON: f64 = 1e-8;

/// KL estimators between the policy and a reference policy, as verl's `kl_penalty` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KlType {
    /// `k1`: `log π − log π_ref`.
    K1,
    /// `k2` / `mse`: `½ (log π − log π_ref)²`.
    K2,
    /// `k3` without clamps: `exp(d) − d − 1`, `d = log π_ref − log π`.
    K3,
    /// verl's `low_var_kl`: k3 with `d` clamped to ±20 and the result to ±10 (the reference's
    /// configured type; verl itself treats `k3` as this one).
    #[default]
    LowVarKl,
}

/// Everything the token loss needs besides the tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyLossConfig {
    pub clip_ratio_low: f64,
    pub clip_ratio_high: f64,
    /// Dual-clip bound for negative advantages.
    pub clip_ratio_c: f64,
    pub aggregation: LossAggregation,
    /// Truncated IS cap; `None` disables the correction.
    pub tis_cap: Option<f64>,
    pub kl_coef: f64,
    pub kl_type: KlType,
    pub entropy_coef: f64,
}

impl PolicyLossConfig {
    /// From a recipe's `algorithm` section (KL type: the reference's `low_var_kl`).
    pub fn from_config(cfg: &AlgorithmConfig) -> Self {
        PolicyLossConfig {
            clip_ratio_low: cfg.clip_ratio_low,
            clip_ratio_high: cfg.clip_ratio_high,
            clip_ratio_c: cfg.clip_ratio_c,
            aggregation: cfg.loss_aggregation,
            tis_cap: cfg.tis_cap,
            kl_coef: cfg.kl_coef,
            kl_type: KlType::default(),
            entropy_coef: cfg.entropy_coef,
        }
    }
}

impl Default for PolicyLossConfig {
    fn default() -> Self {
        Self::from_config(&AlgorithmConfig::default())
    }
}

/// Per-token results of [`pg_token_losses`] (all the shape of the inputs).
#[derive(Debug)]
pub struct TokenTerms {
    /// The clipped policy-gradient loss (before IS weights).
    pub loss: Tensor,
    /// `exp(clamp(Δ))`.
    pub ratio: Tensor,
    /// 1.0 where the ε clip was active (`L2 > L1`), as verl's `pg_clipfrac` counts.
    pub clipped: Tensor,
    /// 1.0 where the dual clip was active (`A < 0` and `Lc > −A·c`).
    pub dual_clipped: Tensor,
}

/// The clipped surrogate per token (see the module doc).
pub fn pg_token_losses(
    logp: &Tensor,
    old_logp: &Tensor,
    advantages: &Tensor,
    cfg: &PolicyLossConfig,
) -> Result<TokenTerms, tch::TchError> {
    let delta = logp.f_sub(old_logp)?.f_clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)?;
    let ratio = delta.f_exp()?;
    let neg_adv = advantages.f_neg()?;
    let l1 = neg_adv.f_mul(&ratio)?;
    let l2 = neg_adv.f_mul(&ratio.f_clamp(1.0 - cfg.clip_ratio_low, 1.0 + cfg.clip_ratio_high)?)?;
    let lc = l1.f_maximum(&l2)?;
    let clipped = l2.f_gt_tensor(&l1)?.f_to_kind(Kind::Float)?;
    let l3 = neg_adv.f_mul_scalar(cfg.clip_ratio_c)?;
    let dual = lc.f_minimum(&l3)?;
    let negative = advantages.f_lt(0.0)?;
    let dual_clipped = lc.f_gt_tensor(&l3)?.f_logical_and(&negative)?.f_to_kind(Kind::Float)?;
    let loss = dual.f_where_self(&negative, &lc)?;
    Ok(TokenTerms { loss, ratio, clipped, dual_clipped })
}

/// Truncated IS weights `min(exp(clamp(old − sampler, −20, 20)), cap)`, detached.
pub fn tis_weights(old_logp: &Tensor, sampler_logp: &Tensor, cap: f64) -> Result<Tensor, tch::TchError> {
    old_logp
        .f_detach()?
        .f_sub(&sampler_logp.f_detach()?)?
        .f_clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)?
        .f_exp()?
        .f_clamp_max(cap)
}

/// The per-token KL estimate of `kind` between the policy and the reference.
pub fn kl_penalty(logp: &Tensor, ref_logp: &Tensor, kind: KlType) -> Result<Tensor, tch::TchError> {
    match kind {
        KlType::K1 => logp.f_sub(ref_logp),
        KlType::K2 => logp.f_sub(ref_logp)?.f_square()?.f_mul_scalar(0.5),
        KlType::K3 => {
            let d = ref_logp.f_sub(logp)?;
            d.f_exp()?.f_sub(&d)?.f_sub_scalar(1.0)
        }
        KlType::LowVarKl => {
            let d = ref_logp.f_sub(logp)?.f_clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)?;
            d.f_exp()?.f_sub(&d)?.f_sub_scalar(1.0)?.f_clamp(-10.0, 10.0)
        }
    }
}

/// `agg_loss` over `loss [rows, tokens]` and `mask [rows, tokens]` (0/1, any float kind).
pub fn aggregate(loss: &Tensor, mask: &Tensor, mode: LossAggregation) -> Result<Tensor, tch::TchError> {
    let mask = mask.f_to_kind(loss.kind())?;
    let masked = loss.f_mul(&mask)?;
    match mode {
        LossAggregation::TokenMean => {
            masked.f_sum(loss.kind())?.f_div(&mask.f_sum(loss.kind())?.f_add_scalar(MASKED_MEAN_EPSILON)?)
        }
        LossAggregation::SeqMeanTokenMean => {
            let per_row = masked.f_sum_dim_intlist(-1, false, loss.kind())?;
            per_row.f_div(&mask.f_sum_dim_intlist(-1, false, loss.kind())?)?.f_mean(loss.kind())
        }
        LossAggregation::SeqMeanTokenSum => masked.f_sum_dim_intlist(-1, false, loss.kind())?.f_mean(loss.kind()),
    }
}

/// The weight of each (unmasked) token of one row so that summing `weight · ℓ` over the rows of a
/// micro-batch equals [`aggregate`] of that micro-batch: `row_tokens` counts the row's unmasked
/// tokens, `micro_rows` and `micro_tokens` the micro-batch's rows and unmasked tokens.
pub fn token_weight(mode: LossAggregation, row_tokens: usize, micro_rows: usize, micro_tokens: usize) -> f64 {
    match mode {
        LossAggregation::TokenMean => 1.0 / (micro_tokens as f64 + MASKED_MEAN_EPSILON),
        LossAggregation::SeqMeanTokenMean => 1.0 / (micro_rows.max(1) as f64 * row_tokens.max(1) as f64),
        LossAggregation::SeqMeanTokenSum => 1.0 / micro_rows.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64]) -> Tensor {
        Tensor::from_slice(v)
    }

    fn vec(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap()
    }

    fn close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= tol, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn clipped_surrogate_worked_example() {
        // ε_low 0.2, ε_high 0.3, c 3. (ratio, A) → loss by hand:
        // (1, 1): L1 = L2 = −1 → −1.
        // (1.5, 1): L1 = −1.5, L2 = −1.3 → max −1.3, clipped.
        // (0.5, 1): L1 = −0.5, L2 = −0.8 → −0.5.
        // (2, −1): L1 = 2, L2 = 1.3 → 2; dual min(2, 3) = 2.
        // (0.5, −1): L1 = 0.5, L2 = 0.8 → 0.8, clipped.
        // (4, −1): L1 = 4, L2 = 1.3 → 4; dual min(4, 3) = 3, dual-clipped.
        // (1.2, 0): all zero.
        let ratios = [1.0f64, 1.5, 0.5, 2.0, 0.5, 4.0, 1.2];
        let adv = [1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 0.0];
        let logp = t(&ratios.map(f64::ln));
        let old = Tensor::zeros([7], (Kind::Double, tch::Device::Cpu));
        let cfg =
            PolicyLossConfig { clip_ratio_low: 0.2, clip_ratio_high: 0.3, clip_ratio_c: 3.0, ..Default::default() };
        let out = pg_token_losses(&logp, &old, &t(&adv), &cfg).unwrap();
        close(&vec(&out.loss), &[-1.0, -1.3, -0.5, 2.0, 0.8, 3.0, 0.0], 1e-12);
        close(&vec(&out.ratio), &ratios, 1e-12);
        assert_eq!(vec(&out.clipped), vec![0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(vec(&out.dual_clipped), vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn ratio_one_leaves_clips_inert() {
        // Hazard 4: with old = detach(logp) the ratio is exactly 1, the loss is −A whatever the
        // clip ratios, and the gradient is −A ∂logp (d/dx of −A·exp(x − x̄) at x = x̄).
        for (low, high) in [(0.2, 0.3), (1e-3, 1e-3)] {
            let x = t(&[-1.0, -2.0, -0.5]).set_requires_grad(true);
            let adv = t(&[2.0, -1.0, 0.5]);
            let cfg = PolicyLossConfig { clip_ratio_low: low, clip_ratio_high: high, ..Default::default() };
            let out = pg_token_losses(&x, &x.detach(), &adv, &cfg).unwrap();
            close(&vec(&out.loss), &[-2.0, 1.0, -0.5], 0.0);
            out.loss.sum(Kind::Double).backward();
            close(&vec(&x.grad()), &[-2.0, 1.0, -0.5], 1e-15);
        }
    }

    #[test]
    fn truncated_is_weights() {
        // old − sampler = [0, ln 1.5, ln 3, 25 → clamp 20], cap 2 → [1, 1.5, 2, 2]; [ln 0.25] → 0.25.
        let old = t(&[0.0, 1.5f64.ln(), 3f64.ln(), 25.0, 0.25f64.ln()]);
        let sampler = Tensor::zeros([5], (Kind::Double, tch::Device::Cpu));
        close(&vec(&tis_weights(&old, &sampler, 2.0).unwrap()), &[1.0, 1.5, 2.0, 2.0, 0.25], 1e-12);
    }

    #[test]
    fn kl_estimators() {
        // d = ref − logp ∈ {0, ln 2, −ln 2, 5}; k3 = e^d − d − 1.
        let logp = Tensor::zeros([4], (Kind::Double, tch::Device::Cpu));
        let d = [0.0, 2f64.ln(), -(2f64.ln()), 5.0];
        let reference = t(&d);
        let k3 = [0.0, 1.0 - 2f64.ln(), 0.5 + 2f64.ln() - 1.0, 5f64.exp() - 6.0];
        let table = [
            (KlType::K1, d.map(|x| -x)),
            (KlType::K2, d.map(|x| 0.5 * x * x)),
            (KlType::K3, k3),
            (KlType::LowVarKl, [k3[0], k3[1], k3[2], 10.0]),
        ];
        for (kind, want) in table {
            close(&vec(&kl_penalty(&logp, &reference, kind).unwrap()), &want, 1e-12);
        }
    }

    #[test]
    fn aggregation_modes_and_token_weights() {
        // loss [[1, 2, 3], [4, 9, 9]], mask [[1, 1, 1], [1, 0, 0]]:
        // token-mean = 10 / (4 + 1e-8); seq-mean-token-mean = (6/3 + 4/1)/2 = 3;
        // seq-mean-token-sum = (6 + 4)/2 = 5.
        let loss = t(&[1.0, 2.0, 3.0, 4.0, 9.0, 9.0]).view([2, 3]);
        let mask = t(&[1.0, 1.0, 1.0, 1.0, 0.0, 0.0]).view([2, 3]);
        let table = [
            (LossAggregation::TokenMean, 10.0 / (4.0 + 1e-8)),
            (LossAggregation::SeqMeanTokenMean, 3.0),
            (LossAggregation::SeqMeanTokenSum, 5.0),
        ];
        for (mode, want) in table {
            let got = aggregate(&loss, &mask, mode).unwrap().double_value(&[]);
            assert!((got - want).abs() < 1e-12, "{mode:?}: {got} vs {want}");
            // The per-row weights give the same value: rows have 3 and 1 unmasked tokens.
            let by_weights = token_weight(mode, 3, 2, 4) * 6.0 + token_weight(mode, 1, 2, 4) * 4.0;
            assert!((by_weights - want).abs() < 1e-12, "{mode:?}: {by_weights} vs {want}");
        }
    }
}
