//! The media environment: a video opened once per episode answers `get_frames`, `get_audio`
//! and `get_clip` in process (FFmpeg through `ffmpeg-next`), straight to the model's inputs.
//! The reference instead spawns `ffmpeg` per frame, writes JPEGs and re-encodes clips
//! (docs/reference.md#environment); this keeps its arguments, clamps and error codes.
//!
//! ```text
//! MediaSource::open(path)            probe + demuxer        -> info(): VideoInfo
//!   .set_duration(dataset_duration)  checks/clamps use the dataset's duration, like the reference
//!   .frames(&FrameRequest, Some(&ImageSizing::default())) -> Frames   (RGB at the image size)
//!   .audio(start, end)                                    -> AudioClip (16 kHz mono f32)
//!   .clip(start, end, &VideoSampling::default())          -> Clip      (2-fps frames + audio)
//! inputs::frames_inputs / audio_inputs / clip_inputs      -> ModelInputs (pixel patches,
//!                                   grid_thw, log-mel [128, F], placeholder token counts)
//! probe(path)                                            -> VideoInfo (no decoding)
//! ```
//!
//! Modules: `cache` (decoded media shared by the episodes on one video), `error` (MediaError -> env codes), `frames` (timestamps, range checks, clamps),
//! `clip` (the processor's frame sampling and pixel budgets), `resize` (smart_resize, Pillow
//! and torchvision bicubic), `patches` (patchify), `pixels` (pixel rows as bytes, CLIP
//! normalisation), `mel` (Whisper
//! log-mel), `inputs` (ModelInputs), `output` (PNG/WAV for people), `types` (plain data), and
//! with the `ffmpeg` feature `probe`, `decode` (seeking, GOP-parallel decoding) and `audio`
//! (decode + resample). Without the feature the pure parts work and every decoding entry
//! point returns [`MediaError::Unsupported`].
//!
//! Left out: the episode's validation order and limits (episode state machine), prompt text
//! and TMRoPE positions (prompt renderer), and writing media files on the hot path.

pub mod cache;
pub mod clip;
pub mod error;
pub mod files;
pub mod frames;
pub mod inputs;
pub mod mel;
pub mod output;
pub mod patches;
pub mod pixels;
pub mod resize;
mod source;
pub mod types;

#[cfg(feature = "ffmpeg")]
mod audio;
#[cfg(feature = "ffmpeg")]
mod decode;
#[cfg(feature = "ffmpeg")]
mod probe;

pub use cache::{CacheStats, MediaCache, SharedVideo};
pub use clip::{ImageSizing, VideoSampling};
pub use error::{MediaAction, MediaError, RangeProblem};
pub use frames::FrameRequest;
pub use inputs::{ModelInputs, VisionInputs};
pub use pixels::PixelRows;
pub use resize::RgbImage;
pub use source::{MediaSource, probe};
pub use types::{AudioClip, Clip, Frame, Frames, VideoInfo};

/// True when this build can decode (the `ffmpeg` feature).
pub const DECODING_AVAILABLE: bool = cfg!(feature = "ffmpeg");
