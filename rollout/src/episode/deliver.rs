//! The second half of a media step: what the environment extracted becomes the next user
//! message. The extraction is checked as the reference checks it (one image per requested
//! frame; audio and clip lengths within five times the duration tolerance of the request, a
//! clip's audio within one tolerance of its video), and a mismatch fails the step with
//! `FFMPEG_FRAME_FAIL`, `FFMPEG_AUDIO_FAIL` or `FFMPEG_CLIP_FAIL` and the reference's detail
//! text. Each media part carries the file-style name the reference gives its temporary files
//! (`STEP_1_frame_2.500.jpg`).

use super::format::{self, fixed3};
use super::memory::{self, MediaPart, Message};
use super::validate::{ErrorCode, Failure, MediaRequest};
use super::{Delivered, Episode, MediaFailure, MediaItem, Observation};
use crate::chat;
use crate::data::PartKind;
use std::sync::Arc;

impl Episode {
    /// The user message carrying `request`'s media and what it delivered, or why the
    /// extraction fails the step.
    pub(super) fn deliver(
        &self,
        request: &MediaRequest,
        result: Result<Observation, MediaFailure>,
    ) -> Result<(Message, Delivered), Failure> {
        let tol = 5.0 * self.settings.duration_tolerance();
        let min_audio = self.settings.limits.min_audio_seconds;
        match request {
            MediaRequest::Frames { start, end, timestamps } => {
                let obs = match result {
                    Ok(obs) if obs.items.len() == timestamps.len() => obs,
                    Ok(_) => return Err(Failure::new(ErrorCode::FfmpegFrameFail, None)),
                    Err(f) => {
                        let detail = f.at.map(|t| format!("Bad frame {}s", format::fixed2(t)));
                        return Err(Failure::new(ErrorCode::FfmpegFrameFail, detail));
                    }
                };
                let d = self.spec.meta.duration;
                let images = timestamps
                    .iter()
                    .zip(obs.items)
                    .map(|(t, item)| {
                        let ts = t.max(0.0).min(d - 0.2);
                        self.part(PartKind::Image, format!("STEP_{}_frame_{}.jpg", self.step, fixed3(ts)), Some(item))
                    })
                    .collect();
                let delivered = Delivered {
                    n_frames: timestamps.len(),
                    frames_range: Some((*start, *end)),
                    ..Delivered::default()
                };
                Ok((memory::frames_message(*start, timestamps, *end, images), delivered))
            }
            MediaRequest::Audio { start, end } => {
                let expect = end.minus(*start);
                let obs = match result {
                    Ok(obs) if obs.items.len() == 1 => obs,
                    _ => return Err(Failure::new(ErrorCode::FfmpegAudioFail, None)),
                };
                let a = obs.audio_seconds;
                if a.is_none_or(|a| !positive(a) || (a - expect.value()).abs() > tol || a < min_audio) {
                    let detail = format!("Bad audio duration {} (expect {})", py_opt(a), expect.py_repr());
                    return Err(Failure::new(ErrorCode::FfmpegAudioFail, Some(detail)));
                }
                let (s, e) = (start.value(), end.value());
                let name = format!("STEP_{}_audio_{}.wav", self.step, self.range_name(s, e));
                let part = self.part(PartKind::Audio, name, obs.items.into_iter().next());
                let delivered = Delivered { audio_range: Some((s, e)), ..Delivered::default() };
                Ok((memory::audio_message(s, e, part), delivered))
            }
            MediaRequest::Clip { start, end } => {
                let expect = end.minus(*start);
                let obs = match result {
                    Ok(obs) if obs.items.len() == 1 => obs,
                    _ => return Err(Failure::new(ErrorCode::FfmpegClipFail, None)),
                };
                let (v, a) = (obs.video_seconds, obs.audio_seconds);
                let bad = match v {
                    Some(v) if v != 0.0 && (v - expect.value()).abs() > tol => true,
                    None => true,
                    Some(v) if !positive(v) => true,
                    Some(v) => {
                        self.spec.meta.has_audio
                            && a.is_none_or(|a| !positive(a) || a < min_audio || (a - v).abs() > tol / 5.0)
                    }
                };
                if bad {
                    let detail =
                        format!("Bad clip duration v={}, a={}, expect {}", py_opt(v), py_opt(a), expect.py_repr());
                    return Err(Failure::new(ErrorCode::FfmpegClipFail, Some(detail)));
                }
                let (s, e) = (start.value(), end.value());
                let name = format!("STEP_{}_clip_{}.mp4", self.step, self.range_name(s, e));
                let part = self.part(PartKind::Video, name, obs.items.into_iter().next());
                let delivered = Delivered { clip_range: Some((s, e)), ..Delivered::default() };
                Ok((memory::clip_message(s, e, part), delivered))
            }
        }
    }

    fn part(&self, kind: PartKind, name: String, item: Option<MediaItem>) -> MediaPart {
        let layout = match kind {
            PartKind::Audio => chat::Part::Audio { tokens: 0 },
            _ => chat::Part::Image { grid_thw: [1, 2, 2] },
        };
        let item = item.unwrap_or_else(|| MediaItem::layout_only(layout));
        MediaPart { kind, name, item: Arc::new(item) }
    }

    /// `{s:.3f}_{e:.3f}` of the range the reference would extract (end clamped to d - 0.2).
    fn range_name(&self, s: f64, e: f64) -> String {
        let e = e.min(self.spec.meta.duration - 0.2).max(s);
        format!("{}_{}", fixed3(s), fixed3(e))
    }
}

/// `x > 0` (false for NaN).
fn positive(x: f64) -> bool {
    x > 0.0
}

/// `repr` of an optional float (`None` for a missing duration).
fn py_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "None".to_string(), format::py_float_repr)
}
