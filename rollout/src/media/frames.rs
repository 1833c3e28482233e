//! Request arithmetic, free of FFmpeg: which timestamps a `get_frames` asks for, and how a
//! `[start, end]` range is checked and clamped before anything is decoded
//! (docs/reference.md#error-codes, docs/reference.md#environment).
//!
//! * `get_frames(start, end, num)`: `num` timestamps from numpy's `linspace(start, end, num)`
//!   (`start + i*step`, the last forced to exactly `end`; a single frame at `start` when
//!   `num == 1`). These requested values are the labels shown to the model. Each is then
//!   clamped to `[0, d - 0.2]` for decoding.
//! * `get_audio` / `get_clip(start, end)`: after the checks, `end` is clamped to
//!   `max(min(end, d - 0.2), start)`; the extracted length is `end' - start` and must be > 0.
//!
//! `d` is the episode's duration: the dataset's `duration_seconds` when the episode knows it
//! (the reference checks and clamps against that value, with no tolerance), else the probed
//! one.
//!
//! Left out: the episode's own limits (`max_frames_len`, `max_audio_len`, `max_clip_len`,
//! `CLIP_TOO_SHORT`), which depend on the run's configuration and belong to the episode state
//! machine. Only a hard cap on frames per request ([`MAX_FRAMES_PER_REQUEST`]) is enforced
//! here, so that no request can exhaust memory.

use super::error::{MediaAction, MediaError, RangeProblem};

/// Frames one request may ask for at most, whatever the episode's limit (the processor's own
/// ceiling on video frames).
pub const MAX_FRAMES_PER_REQUEST: usize = 768;
/// How far before the end frame times and range ends are clamped (docs/reference.md#environment).
pub const END_MARGIN_S: f64 = 0.2;
/// Shortest audio the reference accepts (`AUDIO_TOO_SHORT`, docs/reference.md#error-codes).
pub const MIN_AUDIO_S: f64 = 0.1;

/// A `get_frames` request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameRequest {
    pub start: f64,
    pub end: f64,
    pub num: i64,
}

impl FrameRequest {
    pub fn new(start: f64, end: f64, num: i64) -> Self {
        FrameRequest { start, end, num }
    }

    /// Checks the request against `duration` (in the order of docs/reference.md#error-codes:
    /// range, reversed, count) and
    /// returns the requested timestamps (the labels).
    pub fn timestamps(&self, duration: f64) -> Result<Vec<f64>, MediaError> {
        let (s, e) = (self.start, self.end);
        let refuse = |problem| MediaError::Range { action: MediaAction::Frames, start: s, end: e, duration, problem };
        if !s.is_finite() || !e.is_finite() {
            return Err(refuse(RangeProblem::NotFinite));
        }
        if s < 0.0 {
            return Err(refuse(RangeProblem::BeforeStart));
        }
        if e > duration {
            return Err(refuse(RangeProblem::BeyondEnd));
        }
        if e < s {
            return Err(refuse(RangeProblem::Reversed));
        }
        if self.num < 1 {
            return Err(MediaError::FrameCountTooSmall { num: self.num });
        }
        let num = usize::try_from(self.num).unwrap_or(usize::MAX);
        if num > MAX_FRAMES_PER_REQUEST {
            return Err(MediaError::TooManyFrames { num: self.num, max: MAX_FRAMES_PER_REQUEST });
        }
        Ok(linspace(s, e, num))
    }
}

/// numpy's `linspace(start, stop, num)` (endpoint included): `start + i*step` with the last
/// element set to exactly `stop`; `[start]` for `num == 1`, empty for 0.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (stop - start) / (num - 1) as f64;
            let mut out: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
            if let Some(last) = out.last_mut() {
                *last = stop;
            }
            out
        }
    }
}

/// The time a frame is decoded at: `t` clamped to `[0, d - 0.2]` (and to 0 when `d < 0.2`).
pub fn clamp_frame_time(t: f64, duration: f64) -> f64 {
    let hi = (duration - END_MARGIN_S).max(0.0);
    t.max(0.0).min(hi)
}

/// A checked and clamped `[start, end)` span of the source, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// As requested (the label).
    pub start: f64,
    /// As requested (the label).
    pub end: f64,
    /// The end actually extracted: `max(min(end, d - 0.2), start)`.
    pub clamped_end: f64,
}

impl Span {
    /// Checks `[start, end]` for `get_audio` or `get_clip` against `duration` and clamps it.
    pub fn new(action: MediaAction, start: f64, end: f64, duration: f64) -> Result<Span, MediaError> {
        let refuse = |problem| MediaError::Range { action, start, end, duration, problem };
        if !start.is_finite() || !end.is_finite() {
            return Err(refuse(RangeProblem::NotFinite));
        }
        if end - start <= 0.0 {
            return Err(refuse(RangeProblem::Reversed));
        }
        if start < 0.0 {
            return Err(refuse(RangeProblem::BeforeStart));
        }
        if end > duration {
            return Err(refuse(RangeProblem::BeyondEnd));
        }
        if action == MediaAction::Audio && end - start < MIN_AUDIO_S {
            return Err(MediaError::AudioTooShort { length: end - start, min: MIN_AUDIO_S });
        }
        let clamped_end = end.min(duration - END_MARGIN_S).max(start);
        if clamped_end - start <= 0.0 {
            return Err(refuse(RangeProblem::EmptyAfterClamp));
        }
        Ok(Span { start, end, clamped_end })
    }

    /// Length actually extracted, in seconds.
    pub fn length(&self) -> f64 {
        self.clamped_end - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy() {
        // numpy.linspace(0, 10, 4) -> [0, 3.3333333333333335, 6.666666666666667, 10]
        let v = linspace(0.0, 10.0, 4);
        assert_eq!(v, vec![0.0, 3.3333333333333335, 6.666666666666667, 10.0]);
        assert_eq!(linspace(2.5, 7.0, 1), vec![2.5]);
        assert_eq!(linspace(1.0, 1.0, 3), vec![1.0, 1.0, 1.0]);
        // numpy.linspace(0.1, 0.7, 7)[3] == 0.4 (0.1 + 3*0.09999999999999999)
        let w = linspace(0.1, 0.7, 7);
        assert_eq!(w[3], 3.0 * ((0.7 - 0.1) / 6.0) + 0.1);
        assert_eq!(w[6], 0.7);
    }

    #[test]
    fn frame_requests_are_checked_like_the_reference() {
        let d = 30.0;
        let code = |r: FrameRequest| r.timestamps(d).err().map(|e| e.env_code());
        let table: &[(f64, f64, i64, Option<&str>)] = &[
            (0.0, 30.0, 8, None),
            (-0.1, 5.0, 2, Some("FRAME_TS_OOB")),
            (0.0, 30.01, 2, Some("FRAME_TS_OOB")),
            (5.0, 4.0, 2, Some("CLIP_NEG_LEN")),
            (5.0, 5.0, 1, None),
            (0.0, 5.0, 0, Some("INVALID_FRAME_NUM")),
            (0.0, 5.0, -3, Some("INVALID_FRAME_NUM")),
            (0.0, 5.0, 769, Some("TOO_MANY_FRAMES")),
            (f64::NAN, 5.0, 2, Some("FRAME_TS_OOB")),
        ];
        for &(s, e, n, want) in table {
            assert_eq!(code(FrameRequest::new(s, e, n)), want, "({s}, {e}, {n})");
        }
    }

    #[test]
    fn frame_times_clamp_to_the_end_margin() {
        for (t, d, want) in [(29.9, 30.0, 29.8), (-1.0, 30.0, 0.0), (12.0, 30.0, 12.0), (0.1, 0.15, 0.0)] {
            assert_eq!(clamp_frame_time(t, d), want, "t={t} d={d}");
        }
    }

    #[test]
    fn spans_are_checked_then_clamped() {
        let d = 20.0;
        let ok = Span::new(MediaAction::Audio, 10.0, 20.0, d).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.clamped_end, 19.8);
        assert!((ok.length() - 9.8).abs() < 1e-12);
        let table: &[(MediaAction, f64, f64, &str)] = &[
            (MediaAction::Audio, 5.0, 5.0, "CLIP_NEG_LEN"),
            (MediaAction::Clip, 6.0, 5.0, "CLIP_NEG_LEN"),
            (MediaAction::Audio, -1.0, 5.0, "AUDIO_RANGE"),
            (MediaAction::Audio, 1.0, 20.5, "AUDIO_RANGE"),
            (MediaAction::Clip, -1.0, 5.0, "CLIP_RANGE"),
            (MediaAction::Clip, 1.0, 21.0, "CLIP_RANGE"),
            (MediaAction::Audio, 1.0, 1.05, "AUDIO_TOO_SHORT"),
            (MediaAction::Audio, 19.85, 20.0, "FFMPEG_AUDIO_FAIL"),
            (MediaAction::Clip, 19.9, 20.0, "FFMPEG_CLIP_FAIL"),
            (MediaAction::Clip, f64::INFINITY, 20.0, "CLIP_RANGE"),
        ];
        for &(action, s, e, code) in table {
            match Span::new(action, s, e, d) {
                Ok(span) => panic!("{action} [{s}, {e}] accepted: {span:?}"),
                Err(err) => assert_eq!(err.env_code(), code, "{action} [{s}, {e}]: {err}"),
            }
        }
    }
}
