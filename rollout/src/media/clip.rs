//! How the model's processor samples and sizes a clip (docs/reference.md#video-preprocessing,
//! docs/reference.md#processor-observations), free of FFmpeg: the frame count (`smart_nframes`),
//! which source frames are kept, the per-frame pixel budget, and the length of the clip's audio.
//!
//! * `nframes = floor_even(min(max(total / src_fps * 2, min_frames), floor_even(min(768, total)), total))`
//!   with `min_frames` = 2 as in OmniAgent's vendored `qwen_vl_utils` (docs/reference.md#limits);
//!   qwen-omni-utils 0.0.9 uses 4 (`ceil_even(FPS_MIN_FRAMES)`), settable here.
//! * Kept frames: `round(linspace(0, total - 1, nframes))` (torch float32 `linspace`, round
//!   half to even), e.g. 16 frames -> 0, 2, 4, 6, 9, 11, 13, 15.
//! * Pixels per frame: `smart_resize(h, w, 28, 128*28*28, max(min(768*28*28,
//!   total_pixels / nframes * 2), int(1.05 * 128*28*28)))` with `total_pixels` =
//!   0.9 * 128000 * 28 * 28; the frames are resized with torchvision's antialiased bicubic.
//! * `video_second_per_grid = 2 / fps` with the processor's default fps 2.0 (no fps is passed,
//!   docs/reference.md#preprocessing), i.e. 1.0, not the sampled rate.
//! * Audio: the reference re-encodes the clip to AAC and decodes it again, which keeps the
//!   last AAC frame's padding (4.0 s gives 64,512 samples at 16 kHz, not 64,000). With
//!   [`VideoSampling::pad_audio_like_reference`] the clip's exact audio is zero-padded to that
//!   length so token counts match the reference; the samples themselves are the source's, not
//!   a lossy re-encode.
//!
//! Left out: reproducing the reference's constant-frame-rate re-encode for variable-frame-rate
//! sources (we sample the frames the source actually has in `[start, end)`).

use super::error::MediaError;
use super::resize::{FACTOR, smart_resize};

/// Sampling and sizing of `get_clip` frames (defaults: the OmniAgent pipeline).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct VideoSampling {
    /// Target sampling rate (`FPS`).
    pub fps: f64,
    /// Lower bound before flooring to even (2 in OmniAgent's copy, 4 in qwen-omni-utils).
    pub min_frames: usize,
    /// `FPS_MAX_FRAMES`.
    pub max_frames: usize,
    /// Per-frame pixel floor (`VIDEO_MIN_PIXELS`).
    pub min_pixels: usize,
    /// Per-frame pixel cap (`VIDEO_MAX_PIXELS`, env `OMNI_VIDEO_FRAME_MAX_PIXELS`).
    pub max_pixels: usize,
    /// Pixel budget of the whole clip (`VIDEO_TOTAL_PIXELS`).
    pub total_pixels: f64,
    /// Zero-pad the clip's audio to the length the reference's AAC round trip gives.
    pub pad_audio_like_reference: bool,
}

impl Default for VideoSampling {
    fn default() -> Self {
        VideoSampling {
            fps: 2.0,
            min_frames: 2,
            max_frames: 768,
            min_pixels: 128 * FACTOR * FACTOR,
            max_pixels: 768 * FACTOR * FACTOR,
            total_pixels: 0.9 * 128_000.0 * (FACTOR * FACTOR) as f64,
            pad_audio_like_reference: true,
        }
    }
}

/// Pixel budget of `get_frames` images (`OMNI_IMAGE_MAX_PIXELS`,
/// docs/reference.md#image-preprocessing).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ImageSizing {
    pub min_pixels: usize,
    pub max_pixels: usize,
}

impl Default for ImageSizing {
    fn default() -> Self {
        ImageSizing { min_pixels: 4 * FACTOR * FACTOR, max_pixels: 1024 * FACTOR * FACTOR }
    }
}

impl ImageSizing {
    /// `(h', w')` for a `height x width` frame.
    pub fn target(&self, height: usize, width: usize) -> Result<(usize, usize), MediaError> {
        smart_resize(height, width, FACTOR, self.min_pixels, self.max_pixels)
    }
}

fn floor_even(x: f64) -> f64 {
    (x / 2.0).floor() * 2.0
}

impl VideoSampling {
    /// `smart_nframes`: how many of `total` source frames at `src_fps` are kept. `None` when
    /// fewer than 2 could be (the processor raises then).
    pub fn nframes(&self, total: usize, src_fps: f64) -> Option<usize> {
        if total < 2 || !src_fps.is_finite() || src_fps <= 0.0 || src_fps.is_nan() {
            return None;
        }
        let t = total as f64;
        let min_frames = ((self.min_frames as f64) / 2.0).ceil() * 2.0;
        let max_frames = floor_even((self.max_frames as f64).min(t));
        let n = floor_even((t / src_fps * self.fps).max(min_frames).min(max_frames).min(t));
        (n >= 2.0 && n <= t).then_some(n as usize)
    }

    /// Indices of the kept frames among `total`: torch `linspace(0, total - 1, n)` in float32,
    /// rounded half to even.
    pub fn indices(total: usize, n: usize) -> Vec<usize> {
        if n == 0 || total == 0 {
            return Vec::new();
        }
        if n == 1 {
            return vec![0];
        }
        let (start, end) = (0f32, (total - 1) as f32);
        let step = (end - start) / (n - 1) as f32;
        let halfway = n / 2;
        (0..n)
            .map(|i| {
                let v = if i < halfway { start + step * i as f32 } else { end - step * (n - i - 1) as f32 };
                (v.round_ties_even().max(0.0) as usize).min(total - 1)
            })
            .collect()
    }

    /// Per-frame `(min_pixels, max_pixels)` for a clip of `nframes` frames.
    pub fn pixel_budget(&self, nframes: usize) -> (usize, usize) {
        let per_frame = self.total_pixels / nframes.max(1) as f64 * 2.0;
        let floor = (self.min_pixels as f64 * 1.05) as usize;
        let max = (self.max_pixels as f64).min(per_frame).max(floor as f64) as usize;
        (self.min_pixels, max)
    }

    /// `(h', w')` of the clip's frames.
    pub fn frame_size(&self, height: usize, width: usize, nframes: usize) -> Result<(usize, usize), MediaError> {
        let (lo, hi) = self.pixel_budget(nframes);
        smart_resize(height, width, FACTOR, lo, hi)
    }

    /// The rate the kept frames represent: `nframes / total * src_fps`.
    pub fn sample_fps(nframes: usize, total: usize, src_fps: f64) -> f64 {
        if total == 0 { 0.0 } else { nframes as f64 / total as f64 * src_fps }
    }

    /// Seconds of video per temporal grid step as the processor records it (2 / fps).
    pub fn second_per_grid(&self) -> f64 {
        2.0 / self.fps
    }
}

/// 16 kHz samples the reference's clip audio decodes to for `length_s` seconds: the clip is
/// encoded as 48 kHz AAC (1024-sample frames) and decoded with the priming removed but the
/// last frame's padding kept, i.e. `(ceil(n48 / 1024) + 1) * 1024` samples at 48 kHz, then
/// resampled to 16 kHz.
pub fn reference_clip_audio_samples(length_s: f64) -> usize {
    let n48 = (length_s * 48_000.0).round().max(0.0) as usize;
    if n48 == 0 {
        return 0;
    }
    let decoded48 = (n48.div_ceil(1024) + 1) * 1024;
    decoded48.div_ceil(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nframes_table() {
        let s = VideoSampling::default();
        // (total, fps) -> n
        let table: &[(usize, f64, Option<usize>)] = &[
            (750, 25.0, Some(60)),  // 30 s at 25 fps -> 2 fps
            (300, 30.0, Some(20)),  // 10 s at 30 fps
            (16, 4.0, Some(8)),     // 4 s at 4 fps (docs/reference.md#video-preprocessing)
            (45, 30.0, Some(2)),    // 1.5 s -> 3 -> floor_even -> 2
            (3, 30.0, Some(2)),     // clamped up to min 2
            (1, 30.0, None),        // too short
            (2000, 1.0, Some(768)), // capped at FPS_MAX_FRAMES... 4000 -> min(768, total)
            (7, 1.0, Some(6)),      // 14 > total -> min(.., floor_even(7)=6, 7) = 6
            (60, 0.0, None),
        ];
        for &(total, fps, want) in table {
            assert_eq!(s.nframes(total, fps), want, "total {total} fps {fps}");
        }
        let qwen_utils = VideoSampling { min_frames: 4, ..VideoSampling::default() };
        assert_eq!(qwen_utils.nframes(45, 30.0), Some(4));
    }

    #[test]
    fn kept_frames_follow_torch_linspace() {
        assert_eq!(VideoSampling::indices(16, 8), vec![0, 2, 4, 6, 9, 11, 13, 15]);
        assert_eq!(VideoSampling::indices(750, 2), vec![0, 749]);
        // 0, 2.5, 5 -> round half to even -> 0, 2, 5
        assert_eq!(VideoSampling::indices(6, 3), vec![0, 2, 5]);
        let idx = VideoSampling::indices(750, 60);
        assert_eq!((idx.len(), idx[0], idx[59]), (60, 0, 749));
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn pixel_budget_and_frame_size() {
        let s = VideoSampling::default();
        assert_eq!(s.pixel_budget(60), (100_352, 602_112));
        // 1500 frames: 90,316,800 / 1500 * 2 = 120,422 per frame.
        assert_eq!(s.pixel_budget(1500), (100_352, 120_422));
        // 4000 frames: below 1.05 * min -> int(105,369.6) = 105,369.
        assert_eq!(s.pixel_budget(4000), (100_352, 105_369));
        assert_eq!(s.frame_size(720, 1280, 20).ok(), Some((560, 1008)));
        assert_eq!(s.frame_size(84, 112, 8).ok(), Some((280, 392)));
        assert_eq!(s.second_per_grid(), 1.0);
        assert!((VideoSampling::sample_fps(60, 750, 25.0) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn reference_audio_length() {
        // docs/reference.md#mel: 4.0 s -> 64,512 samples.
        assert_eq!(reference_clip_audio_samples(4.0), 64_512);
        assert_eq!(reference_clip_audio_samples(0.0), 0);
    }
}
