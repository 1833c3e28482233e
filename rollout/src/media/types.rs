//! What the media layer hands out: probed stream facts and decoded media, as plain data
//! (no FFmpeg types), so the rest of the crate and the trainer need no decoder to use them.
//!
//! Left out: tensors. Pixels stay `u8` (RGB images, or a clip's patch rows) and `inputs`
//! hands them on as bytes + shapes; rollout does not depend on tch.

use super::patches::Patches;
use super::resize::RgbImage;
use serde::Serialize;
use std::path::PathBuf;

/// Facts about a video file, from the container and stream headers plus a check that the
/// file's tail can be read (no frame is decoded).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoInfo {
    pub path: PathBuf,
    /// Container duration (else the longest stream's), seconds.
    pub duration_s: f64,
    /// Average frame rate of the video stream (frames / duration for variable rates).
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub has_audio: bool,
    pub video_codec: String,
    pub audio_codec: Option<String>,
    pub audio_sample_rate: Option<u32>,
    pub audio_channels: Option<u16>,
    /// Frame count from the container index, when it has one.
    pub frame_count: Option<u64>,
    /// Start time of the file (timestamps shown and requested are relative to it), seconds.
    pub start_time_s: f64,
    /// Duration of the video stream alone, when known.
    pub video_duration_s: Option<f64>,
}

/// One decoded `get_frames` frame, converted to RGB.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The timestamp asked for (the label the model sees).
    pub requested_s: f64,
    /// Presentation time of the decoded frame, seconds from the file's start.
    pub pts_s: f64,
    /// Pixels as handed to the model (after the processor's resize when one was asked for).
    pub image: RgbImage,
}

/// The answer to `get_frames`.
#[derive(Debug, Clone, PartialEq)]
pub struct Frames {
    pub frames: Vec<Frame>,
    /// Key-frame intervals (GOPs) decoded to serve the request.
    pub gops_decoded: usize,
    /// Frames the decoder produced (not counting skipped non-reference frames).
    pub frames_decoded: usize,
}

/// Mono audio.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioClip {
    /// Samples in [-1, 1): 16-bit values / 32768, as the reference's WAV round trip gives.
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// Requested start, seconds.
    pub start_s: f64,
    /// End actually extracted (after clamping), seconds.
    pub end_s: f64,
}

impl AudioClip {
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// The answer to `get_clip`: the processor's 2-fps frames (at its size, patchified) and audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pub start_s: f64,
    /// End actually extracted (after clamping), seconds.
    pub end_s: f64,
    /// Presentation times of the kept frames, seconds from the file's start.
    pub timestamps: Vec<f64>,
    /// The kept frames as the model's rows (`Patches::frame` gives one back as an image).
    pub video: Patches,
    /// `None` when the video has no audio stream.
    pub audio: Option<AudioClip>,
    /// Source frames in `[start, end)`.
    pub source_frames: usize,
    /// `nframes / total * src_fps`.
    pub sample_fps: f64,
    /// What the processor records per temporal grid step (2 / fps).
    pub second_per_grid: f64,
    pub gops_decoded: usize,
    pub frames_decoded: usize,
}

impl Clip {
    /// Frames kept (before the processor's repeat of an odd last frame).
    pub fn frame_count(&self) -> usize {
        self.timestamps.len()
    }
}
