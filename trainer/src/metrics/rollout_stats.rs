//! Scalars of one rollout batch (docs/reference.md#training-rows, docs/reference.md#step-order
//! step 2): reward mean overall and per question type, accuracy (`won` of the last stored turn)
//! overall and per type, stored-turn counts, retries, exceed and drop rates, prompt/response
//! token means, and the rate of each error code over stored turns; and the media side of a
//! batch ([`media_scalars`]: extraction time, the decode cache's hit rate and bytes).
//!
//! Question types are the normalised ones (`MCQ`, `TR`, `NUM`, `SIZE`, `FF`), so `MCQ_LongVR-Short`
//! and `MCQ_Holmes` pool into `reward/MCQ`; the reference's raw-label `curve/reward_<qtype>` split
//! can be rebuilt from the rollout dumps. Dropped trajectories count in `rollout/dropped` only.
//! The statistics are computed from [`EpisodeSummary`], a plain digest of a trajectory, so they do
//! not depend on how the rollout crate builds its types.

use super::Scalars;
use rollout::driver::RolloutStats;
use rollout::media::CacheStats;
use rollout::trajectory::Trajectory;
use std::collections::BTreeMap;

/// What the batch statistics read from one trajectory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EpisodeSummary {
    pub question_type: &'static str,
    pub reward: f64,
    pub won: bool,
    pub dropped: bool,
    pub exceeded: bool,
    pub physical_steps: u32,
    pub retries: u32,
    /// Per stored turn: error code (`None` for OK), prompt tokens, response tokens.
    pub turns: Vec<(Option<&'static str>, usize, usize)>,
}

impl From<&Trajectory> for EpisodeSummary {
    fn from(t: &Trajectory) -> Self {
        EpisodeSummary {
            question_type: t.spec.qtype.as_str(),
            reward: t.episode_reward,
            won: t.won,
            dropped: t.dropped.is_some(),
            exceeded: t.exceeded(),
            physical_steps: t.physical_steps,
            retries: t.retries,
            turns: t
                .turns
                .iter()
                .map(|x| {
                    (x.outcome.error_code.map(|_| x.outcome.error_name()), x.prompt_ids.len(), x.response_ids.len())
                })
                .collect(),
        }
    }
}

/// [`summary_scalars`] of the rollout crate's trajectories.
pub fn rollout_scalars(trajectories: &[Trajectory]) -> Scalars {
    let s: Vec<EpisodeSummary> = trajectories.iter().map(EpisodeSummary::from).collect();
    summary_scalars(&s)
}

#[derive(Default)]
struct TypeAcc {
    n: usize,
    reward: f64,
    won: usize,
}

/// The batch scalars (see the module doc); empty input gives only the counts.
pub fn summary_scalars(episodes: &[EpisodeSummary]) -> Scalars {
    let mut s = Scalars::default();
    let kept: Vec<&EpisodeSummary> = episodes.iter().filter(|t| !t.dropped).collect();
    s.push("rollout/trajectories", kept.len() as f64);
    s.push("rollout/dropped", (episodes.len() - kept.len()) as f64);
    if kept.is_empty() {
        return s;
    }
    let n = kept.len() as f64;
    let mut by_type: BTreeMap<&'static str, TypeAcc> = BTreeMap::new();
    for t in &kept {
        let acc = by_type.entry(t.question_type).or_default();
        acc.n += 1;
        acc.reward += t.reward;
        acc.won += usize::from(t.won);
    }
    s.push("reward/mean", kept.iter().map(|t| t.reward).sum::<f64>() / n);
    s.push("accuracy/mean", kept.iter().filter(|t| t.won).count() as f64 / n);
    for (qt, acc) in &by_type {
        s.push(format!("reward/{qt}"), acc.reward / acc.n as f64);
        s.push(format!("accuracy/{qt}"), acc.won as f64 / acc.n as f64);
        s.push(format!("rollout/count_{qt}"), acc.n as f64);
    }
    let turns: Vec<f64> = kept.iter().map(|t| t.turns.len() as f64).collect();
    s.describe("turns", &turns);
    s.push("turns/physical_mean", kept.iter().map(|t| f64::from(t.physical_steps)).sum::<f64>() / n);
    s.push("rollout/retries_mean", kept.iter().map(|t| f64::from(t.retries)).sum::<f64>() / n);
    s.push("rollout/exceed_rate", kept.iter().filter(|t| t.exceeded).count() as f64 / n);
    let all_turns: Vec<_> = kept.iter().flat_map(|t| t.turns.iter()).collect();
    let nt = all_turns.len().max(1) as f64;
    s.push("tokens/prompt_mean", all_turns.iter().map(|t| t.1 as f64).sum::<f64>() / nt);
    s.push("tokens/response_mean", all_turns.iter().map(|t| t.2 as f64).sum::<f64>() / nt);
    let mut codes: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (code, _, _) in &all_turns {
        if let Some(c) = code {
            *codes.entry(c).or_default() += 1;
        }
    }
    s.push("errors/any_rate", codes.values().sum::<usize>() as f64 / nt);
    for (code, c) in codes {
        s.push(format!("errors/{code}_rate"), c as f64 / nt);
    }
    s
}

/// The media side of a rollout batch: time spent extracting media (summed over requests) and,
/// with the decode cache on, its hit rate, coalesced requests and bytes
/// (`media/cache_peak_mib`: the most held at once during the batch).
pub fn media_scalars(stats: &RolloutStats, cache: Option<&CacheStats>) -> Scalars {
    let mut s = Scalars::default();
    s.push("media/requests", stats.media_requests as f64);
    s.push("media/busy_s", stats.media_busy_s);
    s.push("media/wait_share", stats.media_wait_share());
    if let Some(c) = cache {
        s.push("media/cache_hit_rate", c.hit_rate());
        s.push("media/cache_coalesced", c.coalesced as f64);
        s.push("media/cache_evictions", c.evictions as f64);
        s.push("media/cache_peak_mib", c.bytes_peak as f64 / f64::from(1u32 << 20));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_scalars_add_the_cache_only_when_there_is_one() {
        let stats =
            RolloutStats { media_requests: 4, media_busy_s: 2.0, wall_s: 8.0, media_wait_s: 2.0, ..Default::default() };
        let off = media_scalars(&stats, None);
        assert_eq!(off.get("media/requests"), Some(4.0));
        assert_eq!(off.get("media/wait_share"), Some(0.25));
        assert_eq!(off.get("media/cache_hit_rate"), None);
        let cache = CacheStats { hits: 3, misses: 1, coalesced: 1, bytes_peak: 3 << 20, ..Default::default() };
        let on = media_scalars(&stats, Some(&cache));
        assert_eq!(on.get("media/cache_hit_rate"), Some(0.75));
        assert_eq!(on.get("media/cache_peak_mib"), Some(3.0));
        assert_eq!(on.get("media/cache_coalesced"), Some(1.0));
    }

    #[test]
    fn batch_scalars_by_hand() {
        let ep = |qt, reward, won, turns: Vec<(Option<&'static str>, usize, usize)>| EpisodeSummary {
            question_type: qt,
            reward,
            won,
            physical_steps: turns.len() as u32 + 1,
            retries: 1,
            turns,
            ..Default::default()
        };
        let eps = vec![
            ep("MCQ", 1.0, true, vec![(None, 10, 4), (None, 20, 6)]),
            ep("MCQ", 0.0, false, vec![(Some("INVALID_JSON"), 10, 2)]),
            ep("TR", 0.4, false, vec![(None, 12, 3), (Some("STEP_LIMIT_REACHED"), 30, 5), (None, 40, 1)]),
            EpisodeSummary { dropped: true, question_type: "TR", reward: 9.0, ..Default::default() },
        ];
        let s = summary_scalars(&eps);
        // Three kept: rewards 1, 0, 0.4 → mean 1.4/3; accuracy 1/3; MCQ reward ½, TR 0.4.
        assert_eq!(s.get("rollout/dropped"), Some(1.0));
        assert!((s.get("reward/mean").unwrap() - 1.4 / 3.0).abs() < 1e-15);
        assert_eq!(s.get("accuracy/mean"), Some(1.0 / 3.0));
        assert_eq!((s.get("reward/MCQ"), s.get("accuracy/MCQ"), s.get("reward/TR")), (Some(0.5), Some(0.5), Some(0.4)));
        // Turns 2, 1, 3: mean 2; six stored turns, two with errors.
        assert_eq!((s.get("turns/mean"), s.get("turns/max"), s.get("turns/min")), (Some(2.0), Some(3.0), Some(1.0)));
        assert_eq!(s.get("errors/any_rate"), Some(2.0 / 6.0));
        assert_eq!(s.get("errors/INVALID_JSON_rate"), Some(1.0 / 6.0));
        assert_eq!(s.get("tokens/response_mean"), Some(21.0 / 6.0));
        assert_eq!(s.get("turns/physical_mean"), Some(3.0));
    }
}
