//! Advantage estimators (docs/reference.md#grpo, docs/reference.md#taura) as pure `f64` functions
//! over rows, one row per stored turn: GRPO's group-normalised outcome advantage, the same
//! without the std division, and TAURA (GRPO times each turn's entropy relative to its group's
//! mean turn entropy).
//!
//! Semantics kept from the reference (`compute_grpo_outcome_advantage`, `get_entropy_weights`):
//! * a row's score is its episode reward (every turn of a trajectory carries the same scalar);
//! * group statistics (group = prompt `uid`) count each trajectory once: rows are scanned in
//!   order and a `(uid, traj_uid)` pair already seen is skipped, so the first row of a trajectory
//!   supplies its score (the GRPO half of docs/reference.md#taura-group-mean);
//! * a group of one trajectory has mean 0 and std 1, so `Â = s / (1 + ε)` (and `s` without std);
//!   larger groups use the mean and the **unbiased** std (divisor n − 1);
//! * `Â = (s − μ) / (σ + ε)` with ε = 1e-6 from the recipe, or `s − μ` for `grpo-no-std`;
//! * TAURA: `h̄_g = Σ_{r∈g} h_r / (|g| + 1e-8)` over **all rows** of the group (turns, not
//!   trajectories, duplicates included: kept as the reference has it,
//!   docs/reference.md#taura-group-mean), then
//!   `w_r = h_r / (h̄_g + 1e-8)` (no clipping, no floor) and `A_r = Â_traj(r) · w_r`;
//! * advantages are never clipped (docs/reference.md#advantage-explode); [`EXPLODED_ABS`] only
//!   feeds a metric.
//!
//! Deliberate deviations:
//! * Statistics are computed in `f64` with a shifted mean (`x₀ + Σ(xᵢ − x₀)/n`), so identical
//!   rewards give a mean equal to the reward and an advantage of exactly 0 (the reference's
//!   float32 `torch.mean` can be off by an ulp, which the 1e-6 denominator then inflates into a
//!   spurious non-zero advantage: a known bug, docs/reference.md#grpo-float32-mean).
//! * With `ignore_exceed` (off in the reference and by default), excluded rows get advantage 0
//!   instead of the reference's raw reward (docs/reference.md#ignore-exceed).
//!
//! Left out: RLOO/GiGPO and the disabled entropy knobs (top-k token masks, soft sequence weights),
//! none of which the shipped scripts use.

use crate::recipe::{AlgorithmConfig, Estimator};
use std::collections::{HashMap, HashSet};

/// The reference's `epsilon` in the GRPO std denominator.
pub const DEFAULT_EPSILON: f64 = 1e-6;
/// The constant TAURA adds to the group size and to the group mean entropy.
pub const TAURA_EPSILON: f64 = 1e-8;
/// `|Â|` above which the reference logs "Advantage Exploded" (metric only; never clipped).
pub const EXPLODED_ABS: f64 = 10.0;

/// One advantage estimator with its constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AdvantageEstimator {
    /// `(s − μ) / (σ + ε)` over unique trajectories of a group.
    Grpo { epsilon: f64 },
    /// `s − μ`.
    GrpoNoStd,
    /// GRPO `Â` times the turn-entropy weight `w_r`.
    Taura { epsilon: f64 },
}

/// What an estimator reads from one row (one stored turn).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdvantageRow<'a> {
    /// GRPO group (one per prompt).
    pub uid: &'a str,
    /// Trajectory within the group.
    pub traj_uid: &'a str,
    /// The episode reward (the row's summed token-level reward).
    pub reward: f64,
    /// The turn entropy `h_r` (TAURA only).
    pub entropy: Option<f64>,
    /// The trajectory hit a limit (the reference's `exceed_mask`); only read with `ignore_exceed`.
    pub exceed: bool,
}

impl<'a> AdvantageRow<'a> {
    pub fn new(uid: &'a str, traj_uid: &'a str, reward: f64) -> Self {
        AdvantageRow { uid, traj_uid, reward, entropy: None, exceed: false }
    }

    pub fn with_entropy(mut self, entropy: f64) -> Self {
        self.entropy = Some(entropy);
        self
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdvantageError {
    #[error("row {row}: reward {value} is not a finite number")]
    NonFiniteReward { row: usize, value: f64 },
    #[error("row {row}: TAURA needs the turn entropy")]
    MissingEntropy { row: usize },
    #[error("row {row}: entropy {value} is not a finite number")]
    NonFiniteEntropy { row: usize, value: f64 },
}

/// Per-row results, in row order.
#[derive(Debug, Clone, PartialEq)]
pub struct Advantages {
    /// The advantage each row trains with.
    pub values: Vec<f64>,
    /// GRPO's trajectory advantage `Â` of each row (equal to `values` except under TAURA).
    pub outcome: Vec<f64>,
    /// TAURA's turn weights `w_r`.
    pub weights: Option<Vec<f64>>,
}

impl Advantages {
    /// Rows with `|A| >` [`EXPLODED_ABS`].
    pub fn exploded(&self) -> usize {
        self.values.iter().filter(|a| a.abs() > EXPLODED_ABS).count()
    }
}

/// Mean and std of one group's trajectory scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupStats {
    pub mean: f64,
    pub std: f64,
    pub trajectories: usize,
}

/// `x₀ + Σ(xᵢ − x₀)/n`: exact for identical values (0 for an empty slice).
pub fn shifted_mean(xs: &[f64]) -> f64 {
    let Some(&x0) = xs.first() else { return 0.0 };
    x0 + xs.iter().map(|x| x - x0).sum::<f64>() / xs.len() as f64
}

/// Unbiased standard deviation around `mean` (divisor n − 1; 0 for fewer than two values).
pub fn unbiased_std(xs: &[f64], mean: f64) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// The reference's group statistics: one score → mean 0, std 1; else mean and unbiased std.
pub fn group_stats(scores: &[f64]) -> GroupStats {
    if scores.len() == 1 {
        return GroupStats { mean: 0.0, std: 1.0, trajectories: 1 };
    }
    let mean = shifted_mean(scores);
    GroupStats { mean, std: unbiased_std(scores, mean), trajectories: scores.len() }
}

/// Index of each row's group, in order of first appearance, and the number of groups.
fn group_index(rows: &[AdvantageRow<'_>]) -> (Vec<usize>, usize) {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let idx = rows
        .iter()
        .map(|r| {
            let n = ids.len();
            *ids.entry(r.uid).or_insert(n)
        })
        .collect();
    (idx, ids.len())
}

/// GRPO's `Â` per row: statistics over unique `(uid, traj_uid)` trajectories; `epsilon = None`
/// skips the std division (`grpo-no-std`). With `ignore_exceed`, exceeding rows are left out of
/// the statistics and get 0.
pub fn outcome_advantages(rows: &[AdvantageRow<'_>], epsilon: Option<f64>, ignore_exceed: bool) -> Vec<f64> {
    let (group, n_groups) = group_index(rows);
    let mut scores: Vec<Vec<f64>> = vec![Vec::new(); n_groups];
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    for (r, &g) in rows.iter().zip(&group) {
        if ignore_exceed && r.exceed {
            continue;
        }
        if seen.insert((r.uid, r.traj_uid)) {
            scores[g].push(r.reward);
        }
    }
    let stats: Vec<Option<GroupStats>> =
        scores.iter().map(|s| if s.is_empty() { None } else { Some(group_stats(s)) }).collect();
    rows.iter()
        .zip(&group)
        .map(|(r, &g)| match stats[g] {
            Some(st) if !(ignore_exceed && r.exceed) => {
                let centred = r.reward - st.mean;
                let a = match epsilon {
                    Some(eps) => centred / (st.std + eps),
                    None => centred,
                };
                // Keep a signed zero out of the outputs.
                if a == 0.0 { 0.0 } else { a }
            }
            _ => 0.0,
        })
        .collect()
}

/// TAURA's turn weights `w_r = h_r / (h̄_g + 1e-8)`, `h̄_g = Σ_{r∈g} h_r / (|g| + 1e-8)` over every
/// row of the group.
pub fn taura_weights(uids: &[&str], entropies: &[f64]) -> Vec<f64> {
    let rows: Vec<AdvantageRow<'_>> = uids.iter().map(|u| AdvantageRow::new(u, "", 0.0)).collect();
    let (group, n_groups) = group_index(&rows);
    let mut sum = vec![0.0f64; n_groups];
    let mut count = vec![0usize; n_groups];
    for (&g, &h) in group.iter().zip(entropies) {
        sum[g] += h;
        count[g] += 1;
    }
    let mean: Vec<f64> = sum.iter().zip(&count).map(|(s, &n)| s / (n as f64 + TAURA_EPSILON)).collect();
    group.iter().zip(entropies).map(|(&g, &h)| h / (mean[g] + TAURA_EPSILON)).collect()
}

impl AdvantageEstimator {
    /// The estimator a recipe's `algorithm` section asks for.
    pub fn from_config(cfg: &AlgorithmConfig) -> Self {
        Self::new(cfg.estimator, cfg.epsilon)
    }

    pub fn new(estimator: Estimator, epsilon: f64) -> Self {
        match estimator {
            Estimator::Grpo => AdvantageEstimator::Grpo { epsilon },
            Estimator::GrpoNoStd => AdvantageEstimator::GrpoNoStd,
            Estimator::Taura => AdvantageEstimator::Taura { epsilon },
        }
    }

    /// Parses `grpo`, `taura` or `grpo-no-std` (the recipe's and the CLI's spelling).
    pub fn parse(name: &str, epsilon: f64) -> Option<Self> {
        let e = match name {
            "grpo" => Estimator::Grpo,
            "taura" => Estimator::Taura,
            "grpo-no-std" => Estimator::GrpoNoStd,
            _ => return None,
        };
        Some(Self::new(e, epsilon))
    }

    pub fn name(&self) -> &'static str {
        match self {
            AdvantageEstimator::Grpo { .. } => "grpo",
            AdvantageEstimator::GrpoNoStd => "grpo-no-std",
            AdvantageEstimator::Taura { .. } => "taura",
        }
    }

    /// Whether rows need a turn entropy.
    pub fn needs_entropy(&self) -> bool {
        matches!(self, AdvantageEstimator::Taura { .. })
    }

    /// Per-row advantages. Fails on a non-finite reward or entropy, or a missing entropy under
    /// TAURA, naming the row.
    pub fn compute(&self, rows: &[AdvantageRow<'_>], ignore_exceed: bool) -> Result<Advantages, AdvantageError> {
        for (row, r) in rows.iter().enumerate() {
            if !r.reward.is_finite() {
                return Err(AdvantageError::NonFiniteReward { row, value: r.reward });
            }
            match r.entropy {
                Some(h) if !h.is_finite() => return Err(AdvantageError::NonFiniteEntropy { row, value: h }),
                None if self.needs_entropy() => return Err(AdvantageError::MissingEntropy { row }),
                _ => {}
            }
        }
        let epsilon = match *self {
            AdvantageEstimator::Grpo { epsilon } | AdvantageEstimator::Taura { epsilon } => Some(epsilon),
            AdvantageEstimator::GrpoNoStd => None,
        };
        let outcome = outcome_advantages(rows, epsilon, ignore_exceed);
        if !self.needs_entropy() {
            return Ok(Advantages { values: outcome.clone(), outcome, weights: None });
        }
        let uids: Vec<&str> = rows.iter().map(|r| r.uid).collect();
        let entropies: Vec<f64> = rows.iter().map(|r| r.entropy.unwrap_or(0.0)).collect();
        let weights = taura_weights(&uids, &entropies);
        let values = outcome.iter().zip(&weights).map(|(a, w)| if a * w == 0.0 { 0.0 } else { a * w }).collect();
        Ok(Advantages { values, outcome, weights: Some(weights) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-6;

    fn rows<'a>(spec: &'a [(&'a str, &'a str, f64)]) -> Vec<AdvantageRow<'a>> {
        spec.iter().map(|&(u, t, r)| AdvantageRow::new(u, t, r)).collect()
    }

    fn close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn grpo_worked_examples() {
        let sqrt_half = 0.5f64.sqrt();
        // (rows, expected Â per row under grpo, expected under grpo-no-std)
        type Case = (Vec<(&'static str, &'static str, f64)>, Vec<f64>, Vec<f64>);
        let table: Vec<Case> = vec![
            // μ = 0.25; unbiased var = (0.75² + 3·0.25²)/3 = 0.25, σ = 0.5.
            (
                vec![("a", "1", 1.0), ("a", "2", 0.0), ("a", "3", 0.0), ("a", "4", 0.0)],
                vec![0.75 / (0.5 + EPS), -0.25 / (0.5 + EPS), -0.25 / (0.5 + EPS), -0.25 / (0.5 + EPS)],
                vec![0.75, -0.25, -0.25, -0.25],
            ),
            // Trajectory 1 has three turns, counted once: scores [1, 0], μ = 0.5,
            // σ = sqrt((0.25 + 0.25)/1) = √0.5. (Counting rows would give μ = 0.75.)
            (
                vec![("a", "1", 1.0), ("a", "1", 1.0), ("a", "2", 0.0), ("a", "1", 1.0)],
                vec![
                    0.5 / (sqrt_half + EPS),
                    0.5 / (sqrt_half + EPS),
                    -0.5 / (sqrt_half + EPS),
                    0.5 / (sqrt_half + EPS),
                ],
                vec![0.5, 0.5, -0.5, 0.5],
            ),
            // A group of one trajectory: mean 0, std 1 → Â = s / (1 + ε), s without std.
            (vec![("solo", "x", 0.7), ("solo", "x", 0.7)], vec![0.7 / (1.0 + EPS), 0.7 / (1.0 + EPS)], vec![0.7, 0.7]),
            // Identical rewards (0.1 is not exact in binary): exactly zero, no float32 artefact.
            (vec![("a", "1", 0.1), ("a", "2", 0.1), ("a", "3", 0.1)], vec![0.0; 3], vec![0.0; 3]),
            // Interleaved groups: a = [1, 0] → ±0.5/(√0.5+ε); b = [0.2, 0.4, 0.9]: μ = 0.5,
            // var = (0.09 + 0.01 + 0.16)/2 = 0.13.
            (
                vec![("a", "1", 1.0), ("b", "1", 0.2), ("a", "2", 0.0), ("b", "2", 0.4), ("b", "3", 0.9)],
                vec![
                    0.5 / (sqrt_half + EPS),
                    -0.3 / (0.13f64.sqrt() + EPS),
                    -0.5 / (sqrt_half + EPS),
                    -0.1 / (0.13f64.sqrt() + EPS),
                    0.4 / (0.13f64.sqrt() + EPS),
                ],
                vec![0.5, -0.3, -0.5, -0.1, 0.4],
            ),
            // Hazard 22: no clipping. [100, 0]: μ = 50, σ = √5000.
            (
                vec![("a", "1", 100.0), ("a", "2", 0.0)],
                vec![50.0 / (5000f64.sqrt() + EPS), -50.0 / (5000f64.sqrt() + EPS)],
                vec![50.0, -50.0],
            ),
        ];
        for (spec, grpo, no_std) in &table {
            let r = rows(spec);
            let a = AdvantageEstimator::Grpo { epsilon: EPS }.compute(&r, false).unwrap();
            close(&a.values, grpo);
            assert_eq!(a.values, a.outcome);
            let b = AdvantageEstimator::GrpoNoStd.compute(&r, false).unwrap();
            close(&b.values, no_std);
        }
    }

    #[test]
    fn identical_rewards_are_exactly_zero() {
        for reward in [0.1, 1.0 / 3.0, 0.7, 1e-9, 123.456, -0.3] {
            let spec: Vec<(&str, &str, f64)> =
                ["1", "2", "3", "4", "5", "6", "7", "8"].iter().map(|t| ("g", *t, reward)).collect();
            let r: Vec<AdvantageRow<'_>> =
                rows(&spec).into_iter().enumerate().map(|(i, r)| r.with_entropy(i as f64 + 0.5)).collect();
            for est in [
                AdvantageEstimator::Grpo { epsilon: EPS },
                AdvantageEstimator::GrpoNoStd,
                AdvantageEstimator::Taura { epsilon: EPS },
            ] {
                let a = est.compute(&r, false).unwrap();
                assert!(a.values.iter().all(|&v| v == 0.0 && v.is_sign_positive()), "{reward}: {:?}", a.values);
            }
        }
    }

    #[test]
    fn taura_worked_example() {
        // Group a: trajectory 1 (reward 1) has turns with h = 2.0 and 1.0, trajectory 2 (reward 0)
        // one turn with h = 0.5. Â = ±0.5/(√0.5 + ε). The group mean counts turns
        // (docs/reference.md#taura-group-mean):
        // h̄ = 3.5 / (3 + 1e-8); w = h / (h̄ + 1e-8).
        // Group b: one trajectory, one turn, h = 0.8, reward 0.6: Â = 0.6/(1+ε), h̄ = 0.8/(1+1e-8).
        let r = vec![
            AdvantageRow::new("a", "1", 1.0).with_entropy(2.0),
            AdvantageRow::new("b", "9", 0.6).with_entropy(0.8),
            AdvantageRow::new("a", "1", 1.0).with_entropy(1.0),
            AdvantageRow::new("a", "2", 0.0).with_entropy(0.5),
        ];
        let a_hat = 0.5 / (0.5f64.sqrt() + EPS);
        let hbar_a = 3.5 / (3.0 + 1e-8);
        let hbar_b = 0.8 / (1.0 + 1e-8);
        let w = [2.0 / (hbar_a + 1e-8), 0.8 / (hbar_b + 1e-8), 1.0 / (hbar_a + 1e-8), 0.5 / (hbar_a + 1e-8)];
        let out = AdvantageEstimator::Taura { epsilon: EPS }.compute(&r, false).unwrap();
        close(out.weights.as_ref().unwrap(), &w);
        close(&out.outcome, &[a_hat, 0.6 / (1.0 + EPS), a_hat, -a_hat]);
        close(&out.values, &[a_hat * w[0], 0.6 / (1.0 + EPS) * w[1], a_hat * w[2], -a_hat * w[3]]);
        // The group's row-mean weight is ≈ 1: (2 + 1 + 0.5) / 3.5.
        let mean_w = (w[0] + w[2] + w[3]) / 3.0;
        assert!((mean_w - 1.0).abs() < 1e-7);
    }

    #[test]
    fn taura_zero_entropy_gives_zero_weight() {
        // h̄ = 0 → w = 0 / 1e-8 = 0 (no floor, as the reference).
        let r = vec![
            AdvantageRow::new("a", "1", 1.0).with_entropy(0.0),
            AdvantageRow::new("a", "2", 0.0).with_entropy(0.0),
        ];
        let out = AdvantageEstimator::Taura { epsilon: EPS }.compute(&r, false).unwrap();
        assert_eq!(out.values, vec![0.0, 0.0]);
    }

    #[test]
    fn errors_name_the_row() {
        let r = vec![AdvantageRow::new("a", "1", 1.0), AdvantageRow::new("a", "2", f64::NAN)];
        let err = AdvantageEstimator::GrpoNoStd.compute(&r, false).unwrap_err();
        assert!(matches!(err, AdvantageError::NonFiniteReward { row: 1, .. }));
        let r = vec![AdvantageRow::new("a", "1", 1.0)];
        let err = AdvantageEstimator::Taura { epsilon: EPS }.compute(&r, false).unwrap_err();
        assert_eq!(err, AdvantageError::MissingEntropy { row: 0 });
        let r = vec![AdvantageRow::new("a", "1", 1.0).with_entropy(f64::INFINITY)];
        assert!(AdvantageEstimator::Taura { epsilon: EPS }.compute(&r, false).is_err());
        assert!(AdvantageEstimator::Grpo { epsilon: EPS }.compute(&[], false).unwrap().values.is_empty());
    }

    #[test]
    fn ignore_exceed_zeroes_excluded_rows() {
        // Trajectory 3 exceeded: statistics over [1, 0] only; its row gets 0 (not its raw reward,
        // docs/reference.md#ignore-exceed).
        let mut r = rows(&[("a", "1", 1.0), ("a", "2", 0.0), ("a", "3", 5.0)]);
        r[2].exceed = true;
        let out = outcome_advantages(&r, None, true);
        assert_eq!(out, vec![0.5, -0.5, 0.0]);
        // Off (the reference default): the flag is ignored; μ = 2, values s − 2.
        assert_eq!(outcome_advantages(&r, None, false), vec![-1.0, -2.0, 3.0]);
    }

    #[test]
    fn names_round_trip() {
        for name in ["grpo", "taura", "grpo-no-std"] {
            assert_eq!(AdvantageEstimator::parse(name, EPS).unwrap().name(), name);
        }
        assert!(AdvantageEstimator::parse("ppo", EPS).is_none());
        assert_eq!(
            AdvantageEstimator::from_config(&AlgorithmConfig::default()),
            AdvantageEstimator::Taura { epsilon: 1e-6 }
        );
    }
}
