//! What the episode needs from the media layer: a [`MediaEnv`] that turns a validated request
//! into an [`Observation`] (one [`MediaItem`] per media part, with its placeholder layout and
//! the decoded model inputs), or a [`MediaFailure`] that becomes `FFMPEG_*_FAIL`.
//!
//! The trait keeps the state machine independent of the decoder: `VideoEnv` (`video_env.rs`)
//! implements it on `media::MediaSource`; tests and benchmarks implement it with synthetic
//! observations. Implementations must be `Sync` because the rollout driver extracts media for
//! several episodes on a thread pool while the policy generates for others.
//!
//! The reference's duration sanity checks (docs/reference.md#environment) run in the episode on
//! the durations an observation reports ([`Observation::video_seconds`],
//! [`Observation::audio_seconds`]), so `bypass_duration_check` is an episode setting.
//!
//! Left out: caching observations (the reference re-extracts every request too).

use super::validate::MediaRequest;
use crate::chat;
use crate::media::ModelInputs;
use std::fmt;
use std::sync::Arc;

/// One media part: its placeholder layout for the chat template and, when decoded by a real
/// media layer, the model inputs of exactly this part (one image of a `get_frames`, the audio,
/// or the clip with its audio), so a policy can walk the parts of a prompt in order.
#[derive(Clone, PartialEq)]
pub struct MediaItem {
    /// `Image`, `Audio`, `Video` or `VideoWithAudio` (never `Text`).
    pub layout: chat::Part,
    pub inputs: Option<Arc<ModelInputs>>,
}

impl fmt::Debug for MediaItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaItem").field("layout", &self.layout).field("inputs", &self.inputs.is_some()).finish()
    }
}

impl MediaItem {
    /// An item with a layout and no decoded inputs (tests, token accounting).
    pub fn layout_only(layout: chat::Part) -> MediaItem {
        MediaItem { layout, inputs: None }
    }
}

/// The answer to one media request.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Frames: one image per requested timestamp, in order; audio and clip: one item.
    pub items: Vec<MediaItem>,
    /// Length of the extracted video stream (clips), seconds.
    pub video_seconds: Option<f64>,
    /// Length of the extracted audio (audio, and clips with audio), seconds.
    pub audio_seconds: Option<f64>,
}

/// An extraction that failed; the episode reports it as the action's `FFMPEG_*_FAIL` (terminal,
/// counted as a valid action).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct MediaFailure {
    /// For logs: what went wrong.
    pub reason: String,
    /// For frames: the requested timestamp that failed (the reference's `Bad frame {t:.2f}s`).
    pub at: Option<f64>,
}

impl MediaFailure {
    pub fn new(reason: impl Into<String>) -> MediaFailure {
        MediaFailure { reason: reason.into(), at: None }
    }
}

/// Runs a media request on an environment.
pub fn extract(request: &MediaRequest, env: &dyn MediaEnv) -> Result<Observation, MediaFailure> {
    match request {
        MediaRequest::Frames { start, end, timestamps } => env.frames(*start, *end, timestamps),
        MediaRequest::Audio { start, end } => env.audio(start.value(), end.value()),
        MediaRequest::Clip { start, end } => env.clip(start.value(), end.value()),
    }
}

/// The media environment of one video.
pub trait MediaEnv: Send + Sync {
    /// One image per timestamp of `linspace(start, end, timestamps.len())` (the requested
    /// timestamps are the labels; clamping to the decodable range is the implementation's, as
    /// in the reference).
    fn frames(&self, start: f64, end: f64, timestamps: &[f64]) -> Result<Observation, MediaFailure>;
    /// 16 kHz mono audio of `[start, end]`.
    fn audio(&self, start: f64, end: f64) -> Result<Observation, MediaFailure>;
    /// A clip of `[start, end]` (with its audio track when the video has one).
    fn clip(&self, start: f64, end: f64) -> Result<Observation, MediaFailure>;
}

/// A media environment that fabricates observations of fixed placeholder sizes without any
/// decoding: for tests, benchmarks of the agent loop and token accounting. `delay` simulates
/// extraction time per request.
#[derive(Debug, Clone)]
pub struct SyntheticMedia {
    /// Placeholder tokens per image (`grid_thw` is derived as `[1, 2, 2 * tokens]`).
    pub image_tokens: usize,
    /// Audio tokens per second.
    pub audio_tokens_per_second: f64,
    /// Video tokens per second of clip.
    pub video_tokens_per_second: usize,
    pub has_audio: bool,
    pub delay: std::time::Duration,
    /// Fail every request (to exercise `FFMPEG_*_FAIL`).
    pub fail: bool,
}

impl Default for SyntheticMedia {
    fn default() -> Self {
        SyntheticMedia {
            image_tokens: 4,
            audio_tokens_per_second: 25.0,
            video_tokens_per_second: 8,
            has_audio: true,
            delay: std::time::Duration::ZERO,
            fail: false,
        }
    }
}

impl SyntheticMedia {
    fn wait(&self) -> Result<(), MediaFailure> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        if self.fail { Err(MediaFailure::new("synthetic media set to fail")) } else { Ok(()) }
    }
}

impl MediaEnv for SyntheticMedia {
    fn frames(&self, _start: f64, _end: f64, timestamps: &[f64]) -> Result<Observation, MediaFailure> {
        self.wait().map_err(|f| MediaFailure { at: timestamps.first().copied(), ..f })?;
        let layout = chat::Part::Image { grid_thw: [1, 2, 2 * self.image_tokens.max(1)] };
        let items = timestamps.iter().map(|_| MediaItem::layout_only(layout.clone())).collect();
        Ok(Observation { items, video_seconds: None, audio_seconds: None })
    }

    fn audio(&self, start: f64, end: f64) -> Result<Observation, MediaFailure> {
        self.wait()?;
        let seconds = (end - start).max(0.0);
        let tokens = (seconds * self.audio_tokens_per_second).round() as usize;
        let items = vec![MediaItem::layout_only(chat::Part::Audio { tokens })];
        Ok(Observation { items, video_seconds: None, audio_seconds: Some(seconds) })
    }

    fn clip(&self, start: f64, end: f64) -> Result<Observation, MediaFailure> {
        self.wait()?;
        let seconds = (end - start).max(0.0);
        // Two frames per temporal grid at 2 fps: one grid per second.
        let grid_t = (seconds.ceil() as usize).max(1);
        let grid_thw = [grid_t, 2, 2 * self.video_tokens_per_second.max(1)];
        let layout = if self.has_audio {
            let audio_tokens = (seconds * self.audio_tokens_per_second).round() as usize;
            chat::Part::VideoWithAudio { grid_thw, second_per_grid: 1.0, audio_tokens }
        } else {
            chat::Part::Video { grid_thw }
        };
        let audio_seconds = self.has_audio.then_some(seconds);
        Ok(Observation { items: vec![MediaItem::layout_only(layout)], video_seconds: Some(seconds), audio_seconds })
    }
}
