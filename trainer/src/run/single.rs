//! One episode of an already loaded policy on one video, as `omnirl infer` and `omnirl demo` run
//! it: the question as an episode spec (the video probed), the settings of the recipe stage it
//! takes its environment from, the real rollout driver with a per-step observer, and the
//! trajectory JSON `omnirl infer` writes (docs/reference.md#evaluation-and-inference-outputs).
//!
//! The JSON holds the keys of a `results.jsonl` line of `omnirl eval` (with `steps` holding every
//! physical step, not only the stored ones), per step additionally `stored`, `prompt_text` and
//! `feedback`, plus `scored`, `max_steps`, `video_meta`, `sampling` and `model`. The episode id is
//! always `infer`, so the same inputs give the same JSON from both commands.
//!
//! Nothing is loaded here (no checkpoint, no tokenizer): the caller owns the model, so a server
//! can keep one loaded across episodes. Left out: several episodes at once (`omnirl eval`).

use super::RunError;
use super::episodes::{driver, video_opener};
use super::eval::result_line;
use super::trace::{feedback_text, render_messages, step_record};
use crate::recipe::resolved::{Episodes, ResolvedRecipe, default_stage};
use crate::recipe::{PreprocessConfig, StageKind};
use rollout::data::EvalSample;
use rollout::driver::StepEvent;
use rollout::episode::{EpisodeSpec, PromptEncoder, VideoMeta};
use rollout::policy::{Policy, Sampling};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The question of one episode.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub video: PathBuf,
    pub question: String,
    /// MCQ options with their labels (`"A. red"`).
    pub options: Vec<String>,
    /// MCQ, TR, NUM, SIZE or FF (with an optional `_Suffix`); `None`: MCQ with options, else FF.
    pub question_type: Option<String>,
    /// The ground truth; `None`: nothing is scored.
    pub answer: Option<String>,
}

/// The environment, preprocessing and tokenizer override of the stage an episode runs in.
#[derive(Debug, Clone)]
pub struct StageSettings {
    pub episodes: Episodes,
    pub preprocess: PreprocessConfig,
    pub tokenizer: Option<PathBuf>,
}

/// The settings of `recipe`'s stage `name`, else of its first eval, rl or expert sft stage (in
/// that order); without a recipe, those of a default eval stage on `model`.
pub fn stage_settings(
    recipe: Option<(&ResolvedRecipe, &Path)>,
    name: Option<&str>,
    model: &Path,
    seed: u64,
) -> Result<StageSettings, RunError> {
    let Some((recipe, path)) = recipe else {
        let stage = default_stage(StageKind::Eval, model, seed).map_err(|e| RunError::Config(e.to_string()))?;
        let episodes =
            stage.episodes().cloned().ok_or_else(|| RunError::Config("an eval stage runs episodes".into()))?;
        return Ok(StageSettings { episodes, preprocess: stage.preprocess().clone(), tokenizer: None });
    };
    let found = match name {
        Some(name) => recipe.stage(name),
        None => {
            let of = |k| recipe.stages.iter().find(|s| s.kind() == k && s.episodes().is_some());
            of(StageKind::Eval).or_else(|| of(StageKind::Rl)).or_else(|| of(StageKind::Sft))
        }
    };
    let Some(stage) = found else {
        let what = name.map_or_else(|| "no eval or rl stage".to_string(), |n| format!("no stage `{n}`"));
        return Err(RunError::Config(format!("{}: {what}", path.display())));
    };
    let Some(episodes) = stage.episodes() else {
        let why = format!("{}: stage `{}` runs no episodes (an sft stage on files)", path.display(), stage.name());
        return Err(RunError::Config(why));
    };
    Ok(StageSettings {
        episodes: episodes.clone(),
        preprocess: stage.preprocess().clone(),
        tokenizer: stage.model_ref().tokenizer.clone(),
    })
}

/// Placeholder ground truth of a type (when no answer is given).
fn placeholder_answer(qtype: &str) -> &'static str {
    match qtype.split('_').next().unwrap_or("").to_ascii_uppercase().as_str() {
        "MCQ" => "A",
        "TR" => "[[0.0, 1.0]]",
        "NUM" => "0",
        "SIZE" => "1",
        _ => "",
    }
}

/// The episode spec of a question, with the probed video metadata (episode id `infer`).
pub fn spec_of(q: &Question) -> Result<EpisodeSpec, RunError> {
    let video = &q.video;
    if !video.is_file() {
        return Err(RunError::Data(format!("{}: no such video file", video.display())));
    }
    let info = rollout::media::probe(video)
        .map_err(|e| RunError::Data(format!("cannot probe video {}: {e}", video.display())))?;
    let meta = VideoMeta { duration: info.duration_s, fps: Some(info.fps), has_audio: info.has_audio };
    let qtype = q.question_type.clone().unwrap_or_else(|| if q.options.is_empty() { "FF" } else { "MCQ" }.into());
    let answer = q.answer.clone().unwrap_or_else(|| placeholder_answer(&qtype).to_string());
    let raw = json!({
        "video": video.display().to_string(),
        "question_type": qtype,
        "question": q.question,
        "options": q.options,
        "answer": answer,
    });
    let mut sample: EvalSample =
        serde_json::from_value(raw).map_err(|e| RunError::Data(format!("the sample is not valid: {e}")))?;
    sample.video_path = video.clone();
    Ok(EpisodeSpec::from_eval(&sample, meta, "infer"))
}

/// The turn budget of an episode on `spec` (the dynamic budget of the limits, docs/reference.md#limits).
pub fn max_steps(spec: &EpisodeSpec, episodes: &Episodes) -> u32 {
    rollout::episode::budget::effective_max_steps(spec.meta.duration, &episodes.settings.limits)
}

/// How one episode runs.
pub struct EpisodeRun<'a> {
    pub settings: &'a StageSettings,
    pub encoder: Arc<dyn PromptEncoder>,
    pub sampling: Sampling,
    /// Whether the question carried a ground truth (else `answer`, `reward`, `correct` are null).
    pub scored: bool,
    /// The model directory, as the JSON names it.
    pub model: String,
}

/// What an episode ended with.
#[derive(Debug, Clone)]
pub struct EpisodeResult {
    /// The trajectory JSON (see the module docs).
    pub json: Value,
    /// Why the driver dropped the episode, if it did.
    pub dropped: Option<String>,
    pub reward: f64,
    pub won: bool,
}

/// Runs one episode of `policy` on `spec`, calling `observe` with every physical step and its
/// record (the `steps` entry the JSON will hold) the moment the environment has applied it.
pub fn run_episode(
    policy: &mut dyn Policy,
    spec: Arc<EpisodeSpec>,
    run: &EpisodeRun<'_>,
    observe: &mut dyn FnMut(&StepEvent<'_>, &Map<String, Value>),
) -> Result<EpisodeResult, RunError> {
    let episodes = &run.settings.episodes;
    let seed = run.sampling.seed;
    let mut drv = driver(episodes, run.encoder.clone(), 1, run.sampling.clone(), seed)?;
    drv.config.record_messages = true;
    drv.config.media_threads = 1;
    let opener = video_opener(&run.settings.preprocess, None);
    let mut steps: Vec<Value> = Vec::new();
    let batch = {
        let mut each = |ev: &StepEvent<'_>| {
            let mut rec = step_record(ev.outcome, ev.response, ev.prompt_ids.len(), ev.response_ids.len());
            rec.insert("stored".into(), ev.outcome.stored.into());
            rec.insert("prompt_text".into(), ev.messages.map(render_messages).into());
            rec.insert("feedback".into(), feedback_text(ev.history).into());
            observe(ev, &rec);
            steps.push(Value::Object(rec));
        };
        tch::no_grad(|| drv.run_observed(policy, std::slice::from_ref(&spec), opener, &mut each))
            .map_err(|e| RunError::Rollout(e.to_string()))?
    };
    let traj = batch.trajectories.into_iter().next().ok_or_else(|| RunError::Rollout("no trajectory".into()))?;
    let mut line: Map<String, Value> = match result_line(&traj) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if !run.scored {
        for k in ["answer", "reward", "correct"] {
            line.insert(k.into(), Value::Null);
        }
    }
    let (m, s) = (&spec.meta, &run.sampling);
    line.insert("steps".into(), Value::Array(steps));
    line.insert("scored".into(), run.scored.into());
    line.insert("max_steps".into(), traj.max_steps.into());
    line.insert("video_meta".into(), json!({"duration": m.duration, "fps": m.fps, "has_audio": m.has_audio}));
    line.insert(
        "sampling".into(),
        json!({"temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p,
               "seed": s.seed, "max_response_tokens": s.max_new_tokens}),
    );
    line.insert("model".into(), run.model.clone().into());
    Ok(EpisodeResult {
        json: Value::Object(line),
        dropped: traj.dropped.map(|d| d.to_string()),
        reward: traj.episode_reward,
        won: traj.won,
    })
}
