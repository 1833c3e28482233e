//! The media layer's error type and its mapping onto the environment error taxonomy
//! (docs/reference.md#error-codes).
//!
//! Every error says which action failed (probe, frames, audio, clip), and where it can, which
//! file, stream and timestamp. [`MediaError::env_code`] gives the code the episode reports:
//! argument errors map to the validation codes (`FRAME_TS_OOB`, `CLIP_NEG_LEN`, `AUDIO_RANGE`,
//! `CLIP_RANGE`, `INVALID_FRAME_NUM`, `TOO_MANY_FRAMES`, `AUDIO_TOO_SHORT`, `NO_AUDIO`), and
//! everything that goes wrong with the file itself maps to the action's extraction-failure
//! code (`FFMPEG_FRAME_FAIL`, `FFMPEG_AUDIO_FAIL`, `FFMPEG_CLIP_FAIL`). A probe has no code in
//! the reference (it probes nothing); ours is `MEDIA_PROBE_FAIL`.
//!
//! Left out: the order in which an episode validates (step limits first, then arguments); that
//! is the episode state machine's, which calls into this layer only with checked arguments
//! but still gets a clear error, never a panic, when it does not.

use std::fmt;
use std::path::PathBuf;

/// The media action an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaAction {
    Probe,
    Frames,
    Audio,
    Clip,
}

impl MediaAction {
    /// The extraction-failure code of this action (docs/reference.md#error-codes).
    pub fn fail_code(self) -> &'static str {
        match self {
            MediaAction::Probe => "MEDIA_PROBE_FAIL",
            MediaAction::Frames => "FFMPEG_FRAME_FAIL",
            MediaAction::Audio => "FFMPEG_AUDIO_FAIL",
            MediaAction::Clip => "FFMPEG_CLIP_FAIL",
        }
    }

    /// The code for a start/end outside `[0, duration]`.
    fn range_code(self) -> &'static str {
        match self {
            MediaAction::Frames => "FRAME_TS_OOB",
            MediaAction::Audio => "AUDIO_RANGE",
            MediaAction::Clip => "CLIP_RANGE",
            MediaAction::Probe => "MEDIA_PROBE_FAIL",
        }
    }
}

impl fmt::Display for MediaAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaAction::Probe => "probe",
            MediaAction::Frames => "get_frames",
            MediaAction::Audio => "get_audio",
            MediaAction::Clip => "get_clip",
        })
    }
}

/// Why a `[start, end]` range was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeProblem {
    /// A bound is NaN or infinite.
    NotFinite,
    /// `end < start` (frames) or `end <= start` (audio, clip).
    Reversed,
    /// `start < 0`.
    BeforeStart,
    /// `end > duration`.
    BeyondEnd,
    /// After clamping to `duration - 0.2` nothing is left (`start >= duration - 0.2`).
    EmptyAfterClamp,
}

impl fmt::Display for RangeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RangeProblem::NotFinite => "bounds must be finite numbers",
            RangeProblem::Reversed => "end is not after start",
            RangeProblem::BeforeStart => "start is before 0",
            RangeProblem::BeyondEnd => "end is beyond the video's duration",
            RangeProblem::EmptyAfterClamp => "nothing is left after clamping the end to duration - 0.2 s",
        })
    }
}

/// Everything that can go wrong in the media layer. No function of `media` panics.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{action}: video file not found: {}", path.display())]
    NotFound { action: MediaAction, path: PathBuf },
    #[error("{action}: cannot open {} as media: {reason}", path.display())]
    Unreadable { action: MediaAction, path: PathBuf, reason: String },
    #[error("{action}: {} is truncated or corrupt: {detail}", path.display())]
    Truncated { action: MediaAction, path: PathBuf, detail: String },
    #[error("{action}: {} has no video stream", path.display())]
    NoVideoStream { action: MediaAction, path: PathBuf },
    #[error("{action}: {} has no audio stream", path.display())]
    NoAudioStream { action: MediaAction, path: PathBuf },
    #[error("{action}: range [{start}, {end}] refused ({problem}; duration {duration:.3}s)")]
    Range { action: MediaAction, start: f64, end: f64, duration: f64, problem: RangeProblem },
    #[error("get_frames: num {num} must be >= 1")]
    FrameCountTooSmall { num: i64 },
    #[error("get_frames: num {num} > max {max}")]
    TooManyFrames { num: i64, max: usize },
    #[error("get_audio: {length:.3}s < {min}s")]
    AudioTooShort { length: f64, min: f64 },
    #[error("{action}: {}: {stream} stream: {detail} (at {at:.3}s)", path.display())]
    Decode { action: MediaAction, path: PathBuf, stream: &'static str, at: f64, detail: String },
    #[error("{action}: {}: no frame at {at:.2}s (the video stream ends at {last:.3}s)", path.display())]
    NoFrame { action: MediaAction, path: PathBuf, at: f64, last: f64 },
    #[error("get_clip: the clip has no frames")]
    EmptyClip,
    #[error("image of {width}x{height}: {reason}")]
    BadImage { width: usize, height: usize, reason: String },
    #[error("pixel rows: {len} values are not rows of {patch_dim} (3 channel blocks each)")]
    PixelRows { len: usize, patch_dim: usize },
    #[error("{action}: built without FFmpeg (the rollout crate's `ffmpeg` feature is off)")]
    Unsupported { action: MediaAction },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

impl MediaError {
    /// The action this error belongs to, when it belongs to one.
    pub fn action(&self) -> Option<MediaAction> {
        match self {
            MediaError::NotFound { action, .. }
            | MediaError::Unreadable { action, .. }
            | MediaError::Truncated { action, .. }
            | MediaError::NoVideoStream { action, .. }
            | MediaError::NoAudioStream { action, .. }
            | MediaError::Range { action, .. }
            | MediaError::Decode { action, .. }
            | MediaError::NoFrame { action, .. }
            | MediaError::Unsupported { action } => Some(*action),
            MediaError::FrameCountTooSmall { .. } | MediaError::TooManyFrames { .. } => Some(MediaAction::Frames),
            MediaError::AudioTooShort { .. } => Some(MediaAction::Audio),
            MediaError::EmptyClip => Some(MediaAction::Clip),
            MediaError::BadImage { .. } | MediaError::PixelRows { .. } | MediaError::Write { .. } => None,
        }
    }

    /// The same error re-attributed to `action` (e.g. an open failure surfacing in a later
    /// `get_frames`).
    pub fn for_action(mut self, new: MediaAction) -> Self {
        match &mut self {
            MediaError::NotFound { action, .. }
            | MediaError::Unreadable { action, .. }
            | MediaError::Truncated { action, .. }
            | MediaError::NoVideoStream { action, .. }
            | MediaError::NoAudioStream { action, .. }
            | MediaError::Range { action, .. }
            | MediaError::Decode { action, .. }
            | MediaError::NoFrame { action, .. }
            | MediaError::Unsupported { action } => *action = new,
            _ => {}
        }
        self
    }

    /// The environment error code (docs/reference.md#error-codes) this error is reported as.
    pub fn env_code(&self) -> &'static str {
        match self {
            MediaError::Range { action, problem, .. } => match problem {
                RangeProblem::Reversed => "CLIP_NEG_LEN",
                RangeProblem::BeforeStart | RangeProblem::BeyondEnd | RangeProblem::NotFinite => action.range_code(),
                RangeProblem::EmptyAfterClamp => action.fail_code(),
            },
            MediaError::FrameCountTooSmall { .. } => "INVALID_FRAME_NUM",
            MediaError::TooManyFrames { .. } => "TOO_MANY_FRAMES",
            MediaError::AudioTooShort { .. } => "AUDIO_TOO_SHORT",
            MediaError::NoAudioStream { action: MediaAction::Audio, .. } => "NO_AUDIO",
            MediaError::BadImage { .. } | MediaError::PixelRows { .. } | MediaError::Write { .. } => {
                "MEDIA_PREPROCESS_FAIL"
            }
            other => other.action().unwrap_or(MediaAction::Probe).fail_code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_taxonomy() {
        let p = PathBuf::from("v.mp4");
        let range = |action, problem| MediaError::Range { action, start: 1.0, end: 0.0, duration: 10.0, problem };
        let cases: Vec<(MediaError, &str)> = vec![
            (range(MediaAction::Frames, RangeProblem::Reversed), "CLIP_NEG_LEN"),
            (range(MediaAction::Audio, RangeProblem::Reversed), "CLIP_NEG_LEN"),
            (range(MediaAction::Clip, RangeProblem::Reversed), "CLIP_NEG_LEN"),
            (range(MediaAction::Frames, RangeProblem::BeyondEnd), "FRAME_TS_OOB"),
            (range(MediaAction::Frames, RangeProblem::BeforeStart), "FRAME_TS_OOB"),
            (range(MediaAction::Audio, RangeProblem::BeyondEnd), "AUDIO_RANGE"),
            (range(MediaAction::Clip, RangeProblem::BeforeStart), "CLIP_RANGE"),
            (range(MediaAction::Audio, RangeProblem::EmptyAfterClamp), "FFMPEG_AUDIO_FAIL"),
            (MediaError::FrameCountTooSmall { num: 0 }, "INVALID_FRAME_NUM"),
            (MediaError::TooManyFrames { num: 900, max: 768 }, "TOO_MANY_FRAMES"),
            (MediaError::AudioTooShort { length: 0.05, min: 0.1 }, "AUDIO_TOO_SHORT"),
            (MediaError::NoAudioStream { action: MediaAction::Audio, path: p.clone() }, "NO_AUDIO"),
            (MediaError::NoAudioStream { action: MediaAction::Clip, path: p.clone() }, "FFMPEG_CLIP_FAIL"),
            (MediaError::NotFound { action: MediaAction::Frames, path: p.clone() }, "FFMPEG_FRAME_FAIL"),
            (MediaError::NoVideoStream { action: MediaAction::Clip, path: p.clone() }, "FFMPEG_CLIP_FAIL"),
            (MediaError::Unsupported { action: MediaAction::Audio }, "FFMPEG_AUDIO_FAIL"),
            (
                MediaError::Truncated { action: MediaAction::Probe, path: p.clone(), detail: String::new() },
                "MEDIA_PROBE_FAIL",
            ),
        ];
        for (err, code) in cases {
            assert_eq!(err.env_code(), code, "{err}");
        }
        let moved = MediaError::NotFound { action: MediaAction::Probe, path: p }.for_action(MediaAction::Clip);
        assert_eq!(moved.env_code(), "FFMPEG_CLIP_FAIL");
        assert!(moved.to_string().contains("get_clip"), "{moved}");
    }
}
