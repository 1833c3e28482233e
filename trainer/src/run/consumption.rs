//! What an evaluation consumed, per group of trajectories: turns, frames (delivered by
//! `get_frames`), seconds of media (audio from `get_audio` plus clip length from `get_clip`),
//! and the runtime error rate (the share of episodes dropped by the driver: policy failures,
//! token encoding or prefix errors, unscorable ground truth; not wrong answers).
//!
//! Used by `summary.json` / `summary.csv` (`stages::write_eval_outputs`) and the `--max-steps`
//! sweep of `omnirl eval`. Left out: clip frame counts (the environment records a clip's range,
//! not how many frames the processor sampled from it).

use rollout::trajectory::Trajectory;
use serde::Serialize;
use std::collections::BTreeMap;

/// Consumption figures of a group of episodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Consumption {
    pub episodes: usize,
    pub mean_turns: f64,
    pub total_frames: usize,
    pub mean_frames: f64,
    pub mean_audio_seconds: f64,
    pub mean_clip_seconds: f64,
    /// Audio plus clip seconds.
    pub total_media_seconds: f64,
    pub mean_media_seconds: f64,
    pub runtime_errors: usize,
    pub runtime_error_rate: f64,
}

/// Frames, audio seconds and clip seconds delivered to one episode.
pub fn delivered(t: &Trajectory) -> (usize, f64, f64) {
    let frames = t.turns.iter().map(|x| x.outcome.delivered.n_frames).sum();
    let audio = t.turns.iter().map(|x| x.outcome.delivered.audio_seconds()).sum();
    let clip = t.turns.iter().filter_map(|x| x.outcome.delivered.clip_range).map(|(s, e)| (e - s).max(0.0)).sum();
    (frames, audio, clip)
}

/// The figures of `trajectories`.
pub fn consumption<'a>(trajectories: impl IntoIterator<Item = &'a Trajectory>) -> Consumption {
    let mut c = Consumption::default();
    let (mut turns, mut audio, mut clip) = (0usize, 0.0, 0.0);
    for t in trajectories {
        let (f, a, v) = delivered(t);
        c.episodes += 1;
        turns += t.turns.len();
        c.total_frames += f;
        audio += a;
        clip += v;
        c.runtime_errors += usize::from(t.dropped.is_some());
    }
    let n = c.episodes.max(1) as f64;
    c.mean_turns = turns as f64 / n;
    c.mean_frames = c.total_frames as f64 / n;
    c.mean_audio_seconds = audio / n;
    c.mean_clip_seconds = clip / n;
    c.total_media_seconds = audio + clip;
    c.mean_media_seconds = c.total_media_seconds / n;
    c.runtime_error_rate = c.runtime_errors as f64 / n;
    c
}

/// Figures per question type (`MCQ`, `TR`, ...) and `all`, keyed as `figures` keys them.
pub fn by_type(trajectories: &[Trajectory]) -> BTreeMap<String, Consumption> {
    let mut groups: BTreeMap<String, Vec<&Trajectory>> = BTreeMap::new();
    for t in trajectories {
        groups.entry(t.spec.qtype.as_str().to_string()).or_default().push(t);
        groups.entry("all".to_string()).or_default().push(t);
    }
    groups.into_iter().map(|(k, ts)| (k, consumption(ts))).collect()
}
