//! Episodes for the stage runner: the recipe's data files as [`EpisodeSpec`]s, a media opener
//! that decodes real videos at the stage's preprocessing budgets, the rollout [`Driver`] of a
//! stage, and the per-question-type figures of a batch of trajectories (accuracy = share of
//! episodes won, mean reward, turns).
//!
//! Eval-format samples carry no duration, so their videos are probed here; a video that cannot be
//! probed is an error of the run (the dry run already checked the files exist). `max_samples`
//! caps each file, as the dry run counts it. Left out: data sources other than the local files
//! of the recipe, and sharding over ranks.

use super::RunError;
use crate::recipe::resolved::Episodes;
use crate::recipe::{PreprocessConfig, SamplingConfig};
use rollout::data::{load_eval_samples, load_rl_samples};
use rollout::driver::{Driver, DriverConfig, MediaOpener};
use rollout::episode::{EpisodeSpec, MediaEnv, MediaFailure, PromptEncoder, VideoEnv, VideoMeta};
use rollout::media::MediaCache;
use rollout::policy::Sampling;
use rollout::trajectory::Trajectory;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// RL-format samples of `files` (at most `max` of each) as episode specs (question ids
/// `file-stem:line`).
pub fn rl_specs(
    files: &[PathBuf],
    media_root: Option<&Path>,
    max: Option<usize>,
) -> Result<Vec<Arc<EpisodeSpec>>, RunError> {
    let mut out = Vec::new();
    for f in files {
        let samples = load_rl_samples(f, media_root).map_err(|e| RunError::Data(format!("{}: {e}", f.display())))?;
        let stem = f.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        for (i, s) in samples.iter().take(max.unwrap_or(usize::MAX)).enumerate() {
            out.push(Arc::new(EpisodeSpec::from_rl(s, format!("{stem}:{}", i + 1))));
        }
    }
    Ok(out)
}

/// Eval-format samples of `files` (at most `max` of each) as episode specs; each video is
/// probed for its metadata.
pub fn eval_specs(
    files: &[PathBuf],
    media_root: Option<&Path>,
    max: Option<usize>,
) -> Result<Vec<Arc<EpisodeSpec>>, RunError> {
    let mut out = Vec::new();
    for f in files {
        let samples = load_eval_samples(f, media_root).map_err(|e| RunError::Data(format!("{}: {e}", f.display())))?;
        let stem = f.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        for (i, s) in samples.iter().take(max.unwrap_or(usize::MAX)).enumerate() {
            let info = rollout::media::probe(&s.video_path).map_err(|e| {
                RunError::Data(format!("{}: cannot probe {}: {e}", f.display(), s.video_path.display()))
            })?;
            let meta = VideoMeta { duration: info.duration_s, fps: Some(info.fps), has_audio: info.has_audio };
            out.push(Arc::new(EpisodeSpec::from_eval(s, meta, format!("{stem}:{}", i + 1))));
        }
    }
    Ok(out)
}

/// The decode cache the episodes of a stage share (`data.media_cache_mib`); `None` when off.
pub fn media_cache(episodes: &Episodes) -> Option<Arc<MediaCache>> {
    (episodes.media_cache_bytes > 0).then(|| MediaCache::new(episodes.media_cache_bytes))
}

/// Opens each episode's video with the stage's pixel budgets; with a `cache`, the episodes on
/// one video share its decoder and what it decoded (`rollout::media::cache`).
pub fn video_opener(pre: &PreprocessConfig, cache: Option<Arc<MediaCache>>) -> Arc<MediaOpener> {
    let (sizing, sampling) = (pre.image_sizing(), pre.video_sampling());
    Arc::new(move |spec: &EpisodeSpec| -> Result<Arc<dyn MediaEnv>, MediaFailure> {
        let (path, duration, audio) = (Path::new(&spec.video), Some(spec.meta.duration), spec.meta.has_audio);
        let mut env = match &cache {
            Some(c) => VideoEnv::open_shared(c, path, duration, audio),
            None => VideoEnv::open(path, duration, audio),
        }
        .map_err(|e| MediaFailure::new(e.to_string()))?;
        env.sizing = sizing;
        env.sampling = sampling;
        Ok(Arc::new(env))
    })
}

/// Sampling settings from a recipe's sampling section.
pub fn sampling(s: &SamplingConfig, max_new_tokens: u32, entropies: bool, seed: u64) -> Sampling {
    Sampling {
        temperature: s.temperature,
        top_p: s.top_p,
        top_k: s.top_k,
        max_new_tokens,
        entropies,
        policy_scores: false,
        seed,
    }
}

/// The rollout driver of a stage's episodes.
pub fn driver(
    episodes: &Episodes,
    encoder: Arc<dyn PromptEncoder>,
    group_size: usize,
    sampling: Sampling,
    seed: u64,
) -> Result<Driver, RunError> {
    let template = episodes.template().map_err(|e| RunError::Config(e.to_string()))?;
    let config = DriverConfig {
        group_size: group_size.max(1),
        max_batch: (episodes.micro_ratio.max(1) as usize).max(group_size),
        media_threads: episodes.media_threads.max(1) as usize,
        sampling,
        record_messages: false,
        min_fill: 0.5,
        overlap: true,
        seed,
        global_samples: Vec::new(),
    };
    Ok(Driver::new(episodes.settings.clone(), template, encoder, config))
}

/// Figures of one question type (or of everything).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TypeFigures {
    pub episodes: usize,
    /// Share of episodes won (the answer was right).
    pub accuracy: f64,
    pub mean_reward: f64,
    pub mean_turns: f64,
    /// Share of episodes that ended without an answer or were dropped.
    pub no_answer_rate: f64,
}

/// Figures per question type (`MCQ`, `TR`, `NUM`, `SIZE`, ...) and `all`.
pub fn figures(trajectories: &[Trajectory]) -> BTreeMap<String, TypeFigures> {
    let mut groups: BTreeMap<String, Vec<&Trajectory>> = BTreeMap::new();
    for t in trajectories {
        groups.entry(t.spec.qtype.as_str().to_string()).or_default().push(t);
        groups.entry("all".to_string()).or_default().push(t);
    }
    groups
        .into_iter()
        .map(|(k, ts)| {
            let n = ts.len().max(1) as f64;
            let answered = |t: &Trajectory| t.turns.last().is_some_and(|x| x.outcome.action_name() == "answer");
            let f = TypeFigures {
                episodes: ts.len(),
                accuracy: ts.iter().filter(|t| t.won).count() as f64 / n,
                mean_reward: ts.iter().map(|t| t.episode_reward).sum::<f64>() / n,
                mean_turns: ts.iter().map(|t| t.turns.len() as f64).sum::<f64>() / n,
                no_answer_rate: ts.iter().filter(|t| t.dropped.is_some() || !answered(t)).count() as f64 / n,
            };
            (k, f)
        })
        .collect()
}
