//! The RL learner's passes over rows packed into one forward (`algorithm.max_tokens_per_forward`):
//! the no-grad scoring and reference passes, and the update's forward + backward. Rows are
//! packed in order into runs of at most the budget's tokens ([`pack_by_tokens`]); each row's
//! terms are those of the row alone, so packing changes speed and memory, never the gradient
//! (docs/performance.md, "Packed training forwards").

use super::loss_sums::{Accum, LossSums};
use super::rl::RlLearner;
use super::{LearnerError, PackedSeq, RlRow, TrainablePolicy};
use crate::algo::loss::{kl_penalty, pg_token_losses};
use crate::metrics::Progress;
use tch::{Kind, Tensor};

/// Consecutive runs of items whose lengths sum to at most `budget` (an item longer than the
/// budget runs alone); `budget` 0 puts every item alone.
pub fn pack_by_tokens(lens: &[usize], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, &n) in lens.iter().enumerate() {
        if i > start && (budget == 0 || used + n > budget) {
            out.push(start..i);
            (start, used) = (i, 0);
        }
        used += n;
    }
    if start < lens.len() {
        out.push(start..lens.len());
    }
    out
}

/// Per-row tensors of the update.
pub(super) struct RowInputs<'a> {
    /// The row's index in the step's rows.
    pub index: usize,
    pub advantage: f64,
    /// Recomputed old log-probs (PPO flow); `None` = detach the current ones (on-policy).
    pub old: Option<&'a Tensor>,
    pub tis: &'a Tensor,
    pub reference: Option<&'a Tensor>,
    pub mask: &'a Tensor,
    /// The row's token weight (aggregation and micro-batch scaling).
    pub weight: f64,
}

/// `Σ x·m` as a detached 0-d f32 tensor.
pub(super) fn masked_sum(x: &Tensor, m: &Tensor) -> Result<Tensor, tch::TchError> {
    x.f_detach()?.f_mul(m)?.f_sum(Kind::Float)
}

/// Per row: the scoring pass's `(log-probs, entropies)` (empty without one), and the reference
/// log-probs (`None` without a KL penalty).
pub(super) type ScoringPasses = (Vec<(Tensor, Tensor)>, Vec<Option<Tensor>>);

impl RlLearner {
    /// The step's no-grad passes, rows packed as the update packs them: per row the scoring
    /// pass's log-probs and entropies (when `recompute`), and the reference log-probs (when a KL
    /// penalty is on, else `None`).
    pub(super) fn scoring_passes<P: TrainablePolicy>(
        &self,
        policy: &P,
        rows: &[RlRow<P::Media>],
        recompute: bool,
        scored_tokens: &mut usize,
    ) -> Result<ScoringPasses, LearnerError> {
        let kl = self.loss.kl_coef != 0.0;
        let (mut scored, mut reference) = (Vec::new(), Vec::with_capacity(rows.len()));
        let bar = Progress::new(rows.len() as u64, "log-probs", self.progress && (recompute || kl));
        let lens: Vec<usize> = rows.iter().map(|r| r.ids.len()).collect();
        for range in pack_by_tokens(&lens, self.algorithm.max_tokens_per_forward as usize) {
            let group = &rows[range.clone()];
            let seqs: Vec<PackedSeq<'_, P::Media>> = group.iter().map(RlRow::packed_seq).collect();
            let sizes: Vec<i64> = group.iter().map(|r| r.mask.len() as i64).collect();
            let total: i64 = sizes.iter().sum();
            let wrong = |what: &str, got: Vec<i64>| LearnerError::Row {
                row: range.start,
                message: format!("the policy's {what} gave {got:?} tokens for rows of {total}"),
            };
            if recompute {
                let s = policy.score_packed(&seqs)?;
                if s.logprobs.size() != [total] || s.entropies.size() != [total] {
                    return Err(wrong("scoring pass", s.logprobs.size()));
                }
                *scored_tokens += lens[range.clone()].iter().sum::<usize>();
                let lps = s.logprobs.f_split_with_sizes(&sizes, 0)?;
                scored.extend(lps.into_iter().zip(s.entropies.f_split_with_sizes(&sizes, 0)?));
            }
            if kl {
                let r = policy.reference_logprobs_packed(&seqs)?.ok_or_else(|| {
                    LearnerError::Config("kl_coef is set but the policy has no reference model".into())
                })?;
                if r.size() != [total] {
                    return Err(wrong("reference pass", r.size()));
                }
                for part in r.f_split_with_sizes(&sizes, 0)? {
                    reference.push(Some(part.f_to_kind(Kind::Float)?));
                }
            } else {
                reference.extend(group.iter().map(|_| None));
            }
            bar.inc(group.len() as u64);
        }
        bar.finish();
        Ok((scored, reference))
    }

    /// Forward + backward of the weighted loss of rows packed into one forward, accumulating
    /// gradients and metrics. Each row's terms are those of the row alone; the per-token tensors
    /// are the rows' concatenated in order, as the packed scored spans are.
    pub(super) fn packed_backward<P: TrainablePolicy>(
        &self,
        policy: &P,
        rows: &[RlRow<P::Media>],
        batch: &[RowInputs<'_>],
        acc: &mut Accum,
    ) -> Result<(), LearnerError> {
        let cfg = self.loss;
        let cat = |f: &dyn Fn(&RowInputs<'_>) -> Result<Tensor, tch::TchError>| -> Result<Tensor, tch::TchError> {
            let parts = batch.iter().map(f).collect::<Result<Vec<_>, _>>()?;
            Tensor::f_cat(&parts, 0)
        };
        let mask = cat(&|r| Ok(r.mask.shallow_clone()))?;
        let weighted = cat(&|r| r.mask.f_mul_scalar(r.weight))?;
        let advantage = cat(&|r| r.mask.f_full_like(r.advantage))?;
        let tis = cat(&|r| Ok(r.tis.shallow_clone()))?;
        let old = match batch.iter().map(|r| r.old).collect::<Option<Vec<_>>>() {
            Some(old) if !old.is_empty() => Some(Tensor::f_cat(&old, 0)?),
            _ => None,
        };
        let reference = match batch.iter().map(|r| r.reference).collect::<Option<Vec<_>>>() {
            Some(r) if !r.is_empty() => Some(Tensor::f_cat(&r, 0)?),
            _ => None,
        };
        let mut closure = |offset: usize, lp: &Tensor, ent: &Tensor| -> Result<Tensor, tch::TchError> {
            let (o, len) = (offset as i64, super::len0(lp));
            let kind = lp.kind();
            let span = |t: &Tensor| t.f_narrow(0, o, len)?.f_to_kind(kind);
            let (m, wm) = (span(&mask)?, span(&weighted)?);
            let old = match &old {
                Some(t) => span(t)?,
                None => lp.f_detach()?,
            };
            let terms = pg_token_losses(lp, &old, &span(&advantage)?, &cfg)?;
            let pg = terms.loss.f_mul(&span(&tis)?)?;
            let mut per_token = pg.shallow_clone();
            let mut kl_sum = lp.f_new_zeros([], (Kind::Float, lp.device()))?;
            if let Some(r) = &reference {
                let kl = kl_penalty(lp, &span(r)?, cfg.kl_type)?;
                kl_sum = masked_sum(&kl, &wm)?;
                per_token = per_token.f_add(&kl.f_mul_scalar(cfg.kl_coef)?)?;
            }
            if cfg.entropy_coef != 0.0 {
                per_token = per_token.f_sub(&ent.f_mul_scalar(cfg.entropy_coef)?)?;
            }
            acc.add(LossSums {
                pg: masked_sum(&pg, &wm)?,
                kl: kl_sum,
                entropy: masked_sum(ent, &wm)?,
                tokens: m.f_sum(Kind::Float)?,
                clipped: masked_sum(&terms.clipped, &m)?,
                dual_clipped: masked_sum(&terms.dual_clipped, &m)?,
                old_minus_new: masked_sum(&old.f_sub(&lp.f_detach()?)?, &m)?,
            })?;
            per_token.f_mul(&wm)?.f_sum(Kind::Float)
        };
        let seqs: Vec<PackedSeq<'_, P::Media>> = batch.iter().map(|r| rows[r.index].packed_seq()).collect();
        let scores = policy.forward_backward_packed(&seqs, &mut closure)?;
        if scores.logprobs.size() != [super::len0(&mask)] {
            return Err(LearnerError::Row {
                row: batch.first().map_or(0, |r| r.index),
                message: "the policy's training forward returned the wrong length".into(),
            });
        }
        acc.forward_tokens += seqs.iter().map(|s| s.ids.len()).sum::<usize>();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::pack_by_tokens;

    #[test]
    fn rows_pack_in_order_up_to_the_token_budget() {
        // (lengths, budget) -> runs as (start, end)
        type Case = (&'static [usize], usize, &'static [(usize, usize)]);
        let cases: [Case; 6] = [
            (&[3, 4, 5], 0, &[(0, 1), (1, 2), (2, 3)]),
            (&[3, 4, 5], 7, &[(0, 2), (2, 3)]),
            (&[3, 4, 5], 12, &[(0, 3)]),
            (&[9, 2, 2, 9], 8, &[(0, 1), (1, 3), (3, 4)]), // longer than the budget: alone
            (&[2, 2, 2, 2, 2], 5, &[(0, 2), (2, 4), (4, 5)]),
            (&[], 10, &[]),
        ];
        for (lens, budget, want) in cases {
            let got: Vec<(usize, usize)> = pack_by_tokens(lens, budget).into_iter().map(|r| (r.start, r.end)).collect();
            assert_eq!(got, want, "{lens:?} budget {budget}");
        }
    }
}
