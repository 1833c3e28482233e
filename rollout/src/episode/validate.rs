//! The error taxonomy (docs/reference.md#error-codes, with the reference's code names so logs
//! compare across the two systems) and the range checks a parsed media action must pass before
//! any media is extracted, in the reference's order and with its detail texts.
//!
//! | action | checks, in order |
//! |---|---|
//! | `get_frames` | `FRAME_TS_OOB` (start < 0 or end > duration), `CLIP_NEG_LEN` (end < start), `TOO_MANY_FRAMES`, `INVALID_FRAME_NUM` (num < 1) |
//! | `get_audio` | `NO_AUDIO`, `AUDIO_RANGE` (start, then end), `CLIP_NEG_LEN` (len <= 0), `AUDIO_TOO_SHORT`, `AUDIO_TOO_LONG` |
//! | `get_clip` | `CLIP_RANGE` (start, then end), `CLIP_NEG_LEN` (end <= start), `CLIP_TOO_LONG`, `CLIP_TOO_SHORT` |
//!
//! Bounds are checked against the exact duration of the data (no tolerance) while the model is
//! shown the floored two-decimal value, so `end = shown duration` is always legal.
//!
//! Decisions:
//! * `CLIP_TOO_SHORT` with an unusable fps (0, negative, NaN;
//!   docs/reference.md#clip-too-short-fps): the reference divides by fps before testing it and
//!   crashes; we skip the rule, which only applies to fps >= 2 anyway. The rule is generalised
//!   to `min_clip_frames` (4 in the reference, whose `3.999` threshold becomes
//!   `min_clip_frames - 0.001`).
//! * `NO_AUDIO` with modality masking on carries a detail saying the video has no audio track
//!   (the reference's text is the bare code, which stays when masking is off).
//! * `GT_JSON_PARSE` (docs/reference.md#gt-parse-error) is a data error, not an invalid action:
//!   the episode ends at once (reward 0, `is_action_valid` true) and the trajectory is flagged
//!   so training skips it. The reference retries the "invalid" answer until the budget runs
//!   out. Data loading already rejects unscorable ground truths, so this is a last line of
//!   defence.
//!
//! Left out: the extraction failures (`FFMPEG_*_FAIL`) and the token guard, which need the
//! media and the tokenizer; the episode raises them (`episode/mod.rs`).

use super::action::{Action, Num};
use super::format::{fixed3, limit_number, py_float_repr};
use super::settings::EpisodeSettings;
use std::fmt;

/// Every error code the environment reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    InvalidJson,
    TrailingGarbage,
    UnknownActionType,
    ClipArgType,
    AudioArgType,
    AnswerNotString,
    EnvAlreadyDone,
    StepLimitReached,
    EarlyAnswer,
    FrameTsOob,
    ClipNegLen,
    TooManyFrames,
    InvalidFrameNum,
    NoAudio,
    AudioRange,
    AudioTooShort,
    AudioTooLong,
    ClipRange,
    ClipTooLong,
    ClipTooShort,
    FfmpegFrameFail,
    FfmpegAudioFail,
    FfmpegClipFail,
    AnswerJsonParse,
    GtJsonParse,
    SpanFormat,
    UnknownQtype,
    TokenLimitExceeded,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::InvalidJson,
        ErrorCode::TrailingGarbage,
        ErrorCode::UnknownActionType,
        ErrorCode::ClipArgType,
        ErrorCode::AudioArgType,
        ErrorCode::AnswerNotString,
        ErrorCode::EnvAlreadyDone,
        ErrorCode::StepLimitReached,
        ErrorCode::EarlyAnswer,
        ErrorCode::FrameTsOob,
        ErrorCode::ClipNegLen,
        ErrorCode::TooManyFrames,
        ErrorCode::InvalidFrameNum,
        ErrorCode::NoAudio,
        ErrorCode::AudioRange,
        ErrorCode::AudioTooShort,
        ErrorCode::AudioTooLong,
        ErrorCode::ClipRange,
        ErrorCode::ClipTooLong,
        ErrorCode::ClipTooShort,
        ErrorCode::FfmpegFrameFail,
        ErrorCode::FfmpegAudioFail,
        ErrorCode::FfmpegClipFail,
        ErrorCode::AnswerJsonParse,
        ErrorCode::GtJsonParse,
        ErrorCode::SpanFormat,
        ErrorCode::UnknownQtype,
        ErrorCode::TokenLimitExceeded,
    ];

    /// The reference's name, e.g. `"CLIP_TOO_SHORT"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::TrailingGarbage => "TRAILING_GARBAGE",
            ErrorCode::UnknownActionType => "UNKNOWN_ACTION_TYPE",
            ErrorCode::ClipArgType => "CLIP_ARG_TYPE",
            ErrorCode::AudioArgType => "AUDIO_ARG_TYPE",
            ErrorCode::AnswerNotString => "ANSWER_NOT_STRING",
            ErrorCode::EnvAlreadyDone => "ENV_ALREADY_DONE",
            ErrorCode::StepLimitReached => "STEP_LIMIT_REACHED",
            ErrorCode::EarlyAnswer => "EARLY_ANSWER",
            ErrorCode::FrameTsOob => "FRAME_TS_OOB",
            ErrorCode::ClipNegLen => "CLIP_NEG_LEN",
            ErrorCode::TooManyFrames => "TOO_MANY_FRAMES",
            ErrorCode::InvalidFrameNum => "INVALID_FRAME_NUM",
            ErrorCode::NoAudio => "NO_AUDIO",
            ErrorCode::AudioRange => "AUDIO_RANGE",
            ErrorCode::AudioTooShort => "AUDIO_TOO_SHORT",
            ErrorCode::AudioTooLong => "AUDIO_TOO_LONG",
            ErrorCode::ClipRange => "CLIP_RANGE",
            ErrorCode::ClipTooLong => "CLIP_TOO_LONG",
            ErrorCode::ClipTooShort => "CLIP_TOO_SHORT",
            ErrorCode::FfmpegFrameFail => "FFMPEG_FRAME_FAIL",
            ErrorCode::FfmpegAudioFail => "FFMPEG_AUDIO_FAIL",
            ErrorCode::FfmpegClipFail => "FFMPEG_CLIP_FAIL",
            ErrorCode::AnswerJsonParse => "ANSWER_JSON_PARSE",
            ErrorCode::GtJsonParse => "GT_JSON_PARSE",
            ErrorCode::SpanFormat => "SPAN_FORMAT",
            ErrorCode::UnknownQtype => "UNKNOWN_QTYPE",
            ErrorCode::TokenLimitExceeded => "TOKEN_LIMIT_EXCEEDED",
        }
    }

    /// The code with this name.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Codes whose turn counts as a valid action although it failed: `CLIP_TOO_SHORT`, the
    /// extraction failures, and (our decision) `GT_JSON_PARSE`.
    pub fn is_valid_action(self) -> bool {
        matches!(
            self,
            ErrorCode::ClipTooShort
                | ErrorCode::FfmpegFrameFail
                | ErrorCode::FfmpegAudioFail
                | ErrorCode::FfmpegClipFail
                | ErrorCode::GtJsonParse
        )
    }

    /// How a failure with this code decides termination.
    pub fn termination(self) -> Termination {
        match self {
            ErrorCode::EnvAlreadyDone
            | ErrorCode::StepLimitReached
            | ErrorCode::FfmpegFrameFail
            | ErrorCode::FfmpegAudioFail
            | ErrorCode::FfmpegClipFail
            | ErrorCode::GtJsonParse
            | ErrorCode::TokenLimitExceeded => Termination::Always,
            ErrorCode::ClipTooShort => Termination::Never,
            _ => Termination::Default,
        }
    }

    /// Codes of the parser (docs/reference.md#parsing; their `[ERROR]` marker is always
    /// `INVALID_JSON`).
    pub fn is_parse_error(self) -> bool {
        matches!(
            self,
            ErrorCode::InvalidJson
                | ErrorCode::TrailingGarbage
                | ErrorCode::UnknownActionType
                | ErrorCode::ClipArgType
                | ErrorCode::AudioArgType
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a failure ends the episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// At the last step, or always when invalid actions terminate (`terminate_on_invalid`).
    Default,
    Always,
    Never,
}

/// A failed turn: what `_fail` receives in the reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: ErrorCode,
    /// The `[ERROR] <marker>` shown to the model: `INVALID_JSON` for every parse error.
    pub marker: &'static str,
    /// `error_message`: the detail, or the marker when there is none.
    pub message: String,
}

impl Failure {
    /// A failure with an optional detail text.
    pub fn new(code: ErrorCode, detail: Option<String>) -> Failure {
        let message = detail.unwrap_or_else(|| code.as_str().to_string());
        Failure { code, marker: code.as_str(), message }
    }

    /// A parse failure: marker `INVALID_JSON`, the detail with the reference's final period.
    pub fn parse(code: ErrorCode, detail: &str) -> Failure {
        Failure { code, marker: "INVALID_JSON", message: format!("{detail}.") }
    }

    /// The `[ERROR]` text: `"[ERROR] MARKER: message"`, or `"[ERROR] MARKER"` when the
    /// message is the marker itself.
    pub fn error_text(&self) -> String {
        if self.message.is_empty() || self.message == self.marker {
            format!("[ERROR] {}", self.marker)
        } else {
            format!("[ERROR] {}: {}", self.marker, self.message)
        }
    }
}

/// What the episode knows about its video.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoMeta {
    /// Exact duration in seconds (dataset value or probe), used by every bound check.
    pub duration: f64,
    /// Source frame rate; `None` when unknown.
    pub fps: Option<f64>,
    pub has_audio: bool,
}

/// A validated media action, ready for extraction.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaRequest {
    /// Frames at `timestamps` (numpy `linspace(start, end, num)`; one frame at `start` when
    /// `num == 1`).
    Frames {
        start: f64,
        end: f64,
        timestamps: Vec<f64>,
    },
    Audio {
        start: Num,
        end: Num,
    },
    Clip {
        start: Num,
        end: Num,
    },
}

impl MediaRequest {
    /// Seconds of media requested (frames: the range).
    pub fn range(&self) -> (f64, f64) {
        match self {
            MediaRequest::Frames { start, end, .. } => (*start, *end),
            MediaRequest::Audio { start, end } | MediaRequest::Clip { start, end } => (start.value(), end.value()),
        }
    }

    /// The action that asked for this media.
    pub fn action_type(&self) -> super::ActionType {
        match self {
            MediaRequest::Frames { .. } => super::ActionType::GetFrames,
            MediaRequest::Audio { .. } => super::ActionType::GetAudio,
            MediaRequest::Clip { .. } => super::ActionType::GetClip,
        }
    }
}

/// numpy's `linspace(start, end, num)` as a list of Python floats: `start + i * step`, the
/// last element exactly `end`.
pub fn linspace(start: f64, end: f64, num: usize) -> Vec<f64> {
    match num {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let div = (num - 1) as f64;
            let delta = end - start;
            let step = delta / div;
            let mut out: Vec<f64> = (0..num)
                .map(|i| if step == 0.0 { (i as f64) / div * delta + start } else { (i as f64) * step + start })
                .collect();
            out[num - 1] = end;
            out
        }
    }
}

/// Checks a media action against the video and the episode's limits (the answer action is
/// scored elsewhere). `hide_unavailable_audio` adds the masking message to `NO_AUDIO`;
/// `clamp_frame_range` samples a `get_frames` that runs past the end up to the end.
pub fn check_media_action(
    action: &Action,
    meta: &VideoMeta,
    settings: &EpisodeSettings,
) -> Result<MediaRequest, Failure> {
    let (limits, explain_no_audio) = (&settings.limits, settings.hide_unavailable_audio);
    let d = meta.duration;
    let fail = |code, detail: String| Err(Failure::new(code, Some(detail)));
    match *action {
        Action::GetFrames { start: s, end, num } => {
            let e = if settings.clamp_frame_range && s <= d { end.min(d) } else { end };
            if s < 0.0 || e > d {
                let detail =
                    format!("Range [{}, {}] OOB for {}s", py_float_repr(s), py_float_repr(end), py_float_repr(d));
                return fail(ErrorCode::FrameTsOob, detail);
            }
            if e < s {
                return fail(ErrorCode::ClipNegLen, format!("end {} < start {}", py_float_repr(e), py_float_repr(s)));
            }
            if num > i128::from(limits.max_frames) {
                return fail(ErrorCode::TooManyFrames, format!("num {num} > max {}", limits.max_frames));
            }
            if num < 1 {
                return fail(ErrorCode::InvalidFrameNum, "num must be >= 1".to_string());
            }
            let n = usize::try_from(num).unwrap_or(1);
            Ok(MediaRequest::Frames { start: s, end: e, timestamps: linspace(s, e, n) })
        }
        Action::GetAudio { start, end } => {
            if !meta.has_audio {
                let detail = explain_no_audio.then(|| {
                    "this video has no audio track, so get_audio is not available; use get_frames or get_clip"
                        .to_string()
                });
                return Err(Failure::new(ErrorCode::NoAudio, detail));
            }
            let (s, e) = (start.value(), end.value());
            if s < 0.0 {
                return fail(ErrorCode::AudioRange, format!("start {}s < 0", fixed3(s)));
            }
            if e > d {
                return fail(ErrorCode::AudioRange, format!("end {}s > duration {}s", fixed3(e), fixed3(d)));
            }
            let len = end.minus(start).value();
            if len <= 0.0 {
                return Err(Failure::new(ErrorCode::ClipNegLen, None));
            }
            if len < limits.min_audio_seconds {
                let detail = format!("{}s < {}s", fixed3(len), py_float_repr(limits.min_audio_seconds));
                return fail(ErrorCode::AudioTooShort, detail);
            }
            if len > limits.max_audio_seconds {
                let detail = format!("{}s > {}s", fixed3(len), limit_number(limits.max_audio_seconds));
                return fail(ErrorCode::AudioTooLong, detail);
            }
            Ok(MediaRequest::Audio { start, end })
        }
        Action::GetClip { start, end } => {
            let (s, e) = (start.value(), end.value());
            if s < 0.0 {
                return fail(ErrorCode::ClipRange, format!("start {}s < 0", fixed3(s)));
            }
            if e > d {
                return fail(ErrorCode::ClipRange, format!("end {}s > video duration {}s", fixed3(e), fixed3(d)));
            }
            if e <= s {
                return Err(Failure::new(ErrorCode::ClipNegLen, None));
            }
            let len = end.minus(start).value();
            if len > limits.max_clip_seconds {
                let detail = format!("{}s > {}s", fixed3(len), limit_number(limits.max_clip_seconds));
                return fail(ErrorCode::ClipTooLong, detail);
            }
            let frames = f64::from(limits.min_clip_frames);
            if let Some(fps) = meta.fps.filter(|f| f.is_finite() && *f >= 2.0)
                && frames > 0.0
                && len * fps < frames - 0.001
            {
                let min = fixed3(frames / fps);
                let detail = format!("{}s < {min}s (need ≥ {} frames)", fixed3(len), limits.min_clip_frames);
                return fail(ErrorCode::ClipTooShort, detail);
            }
            Ok(MediaRequest::Clip { start, end })
        }
        Action::Answer { .. } => Err(Failure::new(ErrorCode::UnknownActionType, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: VideoMeta = VideoMeta { duration: 30.0, fps: Some(25.0), has_audio: true };

    /// The reference's training settings with the bare `NO_AUDIO` text.
    fn unexplained() -> EpisodeSettings {
        EpisodeSettings { hide_unavailable_audio: false, ..EpisodeSettings::train() }
    }

    fn check(action: Action, meta: &VideoMeta) -> Result<MediaRequest, (String, String)> {
        check_media_action(&action, meta, &unexplained()).map_err(|f| (f.code.to_string(), f.error_text()))
    }

    fn frames(start: f64, end: f64, num: i128) -> Action {
        Action::GetFrames { start, end, num }
    }

    fn audio(start: Num, end: Num) -> Action {
        Action::GetAudio { start, end }
    }

    fn clip(start: Num, end: Num) -> Action {
        Action::GetClip { start, end }
    }

    use Num::{Float as F, Int as I};

    #[test]
    fn range_checks_in_reference_order_with_reference_texts() {
        // (action, code, [ERROR] text) — texts from video_env.py's f-strings, worked by hand.
        let cases: Vec<(Action, &str, &str)> = vec![
            (frames(-1.0, 40.0, 100), "FRAME_TS_OOB", "[ERROR] FRAME_TS_OOB: Range [-1.0, 40.0] OOB for 30.0s"),
            (frames(5.0, 30.5, 2), "FRAME_TS_OOB", "[ERROR] FRAME_TS_OOB: Range [5.0, 30.5] OOB for 30.0s"),
            (frames(9.0, 3.0, 100), "CLIP_NEG_LEN", "[ERROR] CLIP_NEG_LEN: end 3.0 < start 9.0"),
            (frames(0.0, 30.0, 61), "TOO_MANY_FRAMES", "[ERROR] TOO_MANY_FRAMES: num 61 > max 60"),
            (frames(0.0, 30.0, 0), "INVALID_FRAME_NUM", "[ERROR] INVALID_FRAME_NUM: num must be >= 1"),
            (frames(0.0, 30.0, -5), "INVALID_FRAME_NUM", "[ERROR] INVALID_FRAME_NUM: num must be >= 1"),
            (audio(I(-1), I(50)), "AUDIO_RANGE", "[ERROR] AUDIO_RANGE: start -1.000s < 0"),
            (audio(F(0.0), F(30.0625)), "AUDIO_RANGE", "[ERROR] AUDIO_RANGE: end 30.062s > duration 30.000s"),
            (audio(I(5), I(5)), "CLIP_NEG_LEN", "[ERROR] CLIP_NEG_LEN"),
            (audio(F(5.0), F(5.05)), "AUDIO_TOO_SHORT", "[ERROR] AUDIO_TOO_SHORT: 0.050s < 0.1s"),
            (clip(F(-0.5), F(1.0)), "CLIP_RANGE", "[ERROR] CLIP_RANGE: start -0.500s < 0"),
            (clip(I(1), F(31.0)), "CLIP_RANGE", "[ERROR] CLIP_RANGE: end 31.000s > video duration 30.000s"),
            (clip(I(4), I(4)), "CLIP_NEG_LEN", "[ERROR] CLIP_NEG_LEN"),
            // 4 frames at 25 fps need 0.16 s: 0.1 s * 25 = 2.5 < 3.999.
            (clip(F(1.0), F(1.1)), "CLIP_TOO_SHORT", "[ERROR] CLIP_TOO_SHORT: 0.100s < 0.160s (need ≥ 4 frames)"),
        ];
        for (action, code, text) in cases {
            assert_eq!(check(action.clone(), &META), Err((code.to_string(), text.to_string())), "{action:?}");
        }
        let long = VideoMeta { duration: 1000.0, ..META };
        assert_eq!(
            check(audio(I(0), F(300.5)), &long),
            Err(("AUDIO_TOO_LONG".into(), "[ERROR] AUDIO_TOO_LONG: 300.500s > 300s".into()))
        );
        assert_eq!(
            check(clip(I(0), I(61)), &long),
            Err(("CLIP_TOO_LONG".into(), "[ERROR] CLIP_TOO_LONG: 61.000s > 60s".into()))
        );
    }

    #[test]
    fn boundaries_are_inclusive_where_the_reference_is() {
        assert!(check(frames(0.0, 30.0, 60), &META).is_ok());
        assert!(check(frames(7.0, 7.0, 3), &META).is_ok()); // end == start is fine for frames
        assert!(check(audio(F(29.9), I(30)), &META).is_ok()); // exactly 0.1 s (29.9 -> 0.10000000000000142)
        let long = VideoMeta { duration: 1000.0, ..META };
        assert!(check(audio(I(0), I(300)), &long).is_ok());
        assert!(check(clip(I(0), I(60)), &long).is_ok());
        // 0.16 s at 25 fps = 4 frames exactly (within the 0.001 slack).
        assert!(check(clip(F(1.0), F(1.16)), &META).is_ok());
    }

    #[test]
    fn fps_hazard_and_modality_masking() {
        // fps below 2, zero or unknown: no minimum clip length (the reference crashes on 0).
        for fps in [Some(1.0), Some(0.0), Some(f64::NAN), None] {
            let meta = VideoMeta { fps, ..META };
            assert!(check(clip(F(1.0), F(1.01)), &meta).is_ok(), "{fps:?}");
        }
        let silent = VideoMeta { has_audio: false, ..META };
        assert_eq!(check(audio(I(0), I(5)), &silent), Err(("NO_AUDIO".into(), "[ERROR] NO_AUDIO".into())));
        let explained = check_media_action(&audio(I(-9), I(5)), &silent, &EpisodeSettings::train()).unwrap_err();
        assert_eq!(explained.code, ErrorCode::NoAudio);
        assert!(explained.error_text().starts_with("[ERROR] NO_AUDIO: this video has no audio track"));
    }

    #[test]
    fn clamp_frame_range_samples_up_to_the_end_and_only_past_the_end() {
        let clamped = EpisodeSettings { clamp_frame_range: true, ..unexplained() };
        let timestamps = |r: Result<MediaRequest, Failure>| match r {
            Ok(MediaRequest::Frames { start, end, timestamps }) => Ok((start, end, timestamps)),
            Ok(other) => panic!("{other:?}"),
            Err(f) => Err(f.error_text()),
        };
        let oob = |s: &str, e: &str| Err(format!("[ERROR] FRAME_TS_OOB: Range [{s}, {e}] OOB for 30.0s"));
        let cases = [
            // (start, end, num, with clamp, reference)
            (0.0, 40.0, 3, Ok((0.0, 30.0, vec![0.0, 15.0, 30.0])), oob("0.0", "40.0")),
            (10.0, 20.0, 2, Ok((10.0, 20.0, vec![10.0, 20.0])), Ok((10.0, 20.0, vec![10.0, 20.0]))),
            (30.0, 31.0, 1, Ok((30.0, 30.0, vec![30.0])), oob("30.0", "31.0")),
            (31.0, 35.0, 2, oob("31.0", "35.0"), oob("31.0", "35.0")),
            (-1.0, 35.0, 2, oob("-1.0", "35.0"), oob("-1.0", "35.0")),
        ];
        for (start, end, num, with_clamp, reference) in cases {
            let action = frames(start, end, num);
            let got = timestamps(check_media_action(&action, &META, &clamped));
            assert_eq!(got, with_clamp, "clamped {start}..{end}");
            let got = timestamps(check_media_action(&action, &META, &unexplained()));
            assert_eq!(got, reference, "reference {start}..{end}");
        }
    }

    #[test]
    fn frame_timestamps_follow_numpy_linspace() {
        let got = check(frames(10.0, 12.0, 5), &META).unwrap();
        assert_eq!(
            got,
            MediaRequest::Frames { start: 10.0, end: 12.0, timestamps: vec![10.0, 10.5, 11.0, 11.5, 12.0] }
        );
        assert_eq!(linspace(0.0, 1.0, 4), vec![0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]);
        assert_eq!(linspace(0.1, 0.7, 3), vec![0.1, 0.4, 0.7]); // 0.1 + 0.3 = 0.4 in binary; last forced
        assert_eq!(linspace(5.0, 5.0, 3), vec![5.0, 5.0, 5.0]);
        assert_eq!(linspace(3.0, 9.0, 1), vec![3.0]);
    }

    #[test]
    fn codes_round_trip_and_classify() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_name(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::ClipTooShort.termination(), Termination::Never);
        assert!(
            ErrorCode::FfmpegClipFail.is_valid_action()
                && ErrorCode::FfmpegClipFail.termination() == Termination::Always
        );
        assert_eq!(
            Failure::parse(ErrorCode::TrailingGarbage, "extra characters after JSON").error_text(),
            "[ERROR] INVALID_JSON: extra characters after JSON."
        );
    }
}
