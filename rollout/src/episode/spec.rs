//! The plain data around a step: what an episode is about ([`EpisodeSpec`], built from an RL
//! or eval sample), what goes in ([`Response`]) and what comes out ([`StepOutcome`]).
//!
//! Left out: the reference's `info` dict as a whole (it copies the sample into every step);
//! the outcome carries the fields training and logging read, and the episode keeps the rest.

use super::action::ActionType;
use super::validate::{ErrorCode, VideoMeta};
use crate::data::{EvalSample, RlSample};
use rewards::QuestionType;
use serde::Serialize;
use std::path::PathBuf;

/// What one episode is about.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeSpec {
    /// A stable name for the sample (SFT `question_id`, dump lines).
    pub question_id: String,
    /// The video, resolved against the media root.
    pub video: PathBuf,
    /// The raw label (`MCQ_LongVR-Short`), kept for per-task metrics.
    pub question_type: String,
    pub qtype: QuestionType,
    pub question: String,
    /// MCQ options with their `A. ` labels.
    pub options: Vec<String>,
    /// The ground truth.
    pub answer: String,
    pub meta: VideoMeta,
    pub data_source: Option<String>,
    /// The sample's `extra_info` (RL lines): annotations a scripted expert may read (the
    /// quickstart's timeline); never shown to a model policy.
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl EpisodeSpec {
    /// From an RL sample, whose line carries the video metadata.
    pub fn from_rl(sample: &RlSample, question_id: impl Into<String>) -> EpisodeSpec {
        EpisodeSpec {
            question_id: question_id.into(),
            video: sample.video_path.clone(),
            question_type: sample.question_type.clone(),
            qtype: sample.qtype,
            question: sample.question.clone(),
            options: sample.options.clone(),
            answer: sample.answer.clone(),
            meta: VideoMeta { duration: sample.duration_seconds, fps: Some(sample.fps), has_audio: sample.has_audio },
            data_source: sample.data_source.clone(),
            annotations: sample.extra_info.clone(),
        }
    }

    /// From an eval sample and the metadata probed from its video.
    pub fn from_eval(sample: &EvalSample, meta: VideoMeta, question_id: impl Into<String>) -> EpisodeSpec {
        EpisodeSpec {
            question_id: question_id.into(),
            video: sample.video_path.clone(),
            question_type: sample.question_type.clone(),
            qtype: sample.qtype,
            question: sample.question.clone(),
            options: sample.options.clone(),
            answer: sample.answer.clone(),
            meta,
            data_source: sample.data_source.clone(),
            annotations: None,
        }
    }
}

/// One model response: its text and, when a sampler produced it, its token ids (without
/// them, an episode with an encoder encodes the text).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Response {
    pub text: String,
    pub ids: Option<Vec<u32>>,
    /// The logged action was not a string (replays of logs): `text` holds its JSON and the
    /// step fails with `INVALID_JSON` "not a string", as in the reference.
    pub not_a_string: bool,
}

impl Response {
    pub fn text(text: impl Into<String>) -> Response {
        Response { text: text.into(), ..Response::default() }
    }

    /// A sampled response.
    pub fn sampled(text: impl Into<String>, ids: Vec<u32>) -> Response {
        Response { text: text.into(), ids: Some(ids), not_a_string: false }
    }
}

/// What a step delivered to the model.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Delivered {
    /// Frames of a `get_frames`.
    pub n_frames: usize,
    pub frames_range: Option<(f64, f64)>,
    pub audio_range: Option<(f64, f64)>,
    pub clip_range: Option<(f64, f64)>,
}

impl Delivered {
    /// Seconds of audio delivered by a `get_audio`.
    pub fn audio_seconds(&self) -> f64 {
        self.audio_range.map_or(0.0, |(s, e)| e - s)
    }

    /// The range of the delivered clip, or of the delivered frames (the reference records
    /// `get_frames` ranges in its clip fields).
    pub fn clip_or_frames_range(&self) -> Option<(f64, f64)> {
        self.clip_range.or(self.frames_range)
    }
}

/// The result of one step, as the environment reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// Physical steps taken after this one (1-based; dropped retries count).
    pub step: u32,
    /// The parsed action's type (`None` when parsing failed or the episode was already done).
    pub action_type: Option<ActionType>,
    pub error_code: Option<ErrorCode>,
    /// The reference's `error_message`.
    pub error_message: Option<String>,
    pub is_action_valid: bool,
    pub done: bool,
    /// The env reward of this step (non-zero only for an answer).
    pub reward: f64,
    pub won: bool,
    /// Whether training keeps this turn (retry semantics, docs/reference.md#retry-mode).
    pub stored: bool,
    /// The sample's ground truth is unusable: drop the trajectory.
    pub data_error: bool,
    pub confidence: Option<f64>,
    pub delivered: Delivered,
    /// Media messages still raw after the step.
    pub n_raw_media: usize,
    /// Tokens of the next prompt (`None` without an encoder).
    pub prompt_tokens: Option<usize>,
}

impl StepOutcome {
    /// `"OK"` or the error code.
    pub fn error_name(&self) -> &'static str {
        self.error_code.map_or("OK", ErrorCode::as_str)
    }

    /// The reference's `action_type` row field: the action's name, or `"ERROR"` for a step
    /// with an error code.
    pub fn action_name(&self) -> &'static str {
        match (self.error_code, self.action_type) {
            (None, Some(t)) => t.as_str(),
            _ => "ERROR",
        }
    }
}
