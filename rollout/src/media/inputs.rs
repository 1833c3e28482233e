//! Model-ready inputs for one observation: the `multi_modal_inputs` of
//! docs/reference.md#training-rows as plain buffers plus shapes (the trainer turns them into
//! tensors), and the placeholder token counts the prompt needs. Pixel rows are the processor's
//! `[rows, 1176]` matrix held as source bytes (`pixels`), expanded to CLIP-normalised floats
//! where the model runs.
//!
//! * `get_frames` -> one image per frame: `pixel_values` rows concatenated over images,
//!   `image_grid_thw` per image, `grid_h * grid_w / 4` tokens each. Frames not yet at a
//!   `smart_resize` size are resized first (Pillow bicubic, as `fetch_image` does).
//! * `get_clip` -> one video (`pixel_values_videos`, `video_grid_thw`, `grid_t * grid_h *
//!   grid_w / 4` tokens, `video_second_per_grid`) plus, when the video has audio, its log-mel
//!   features.
//! * `get_audio` -> log-mel features `[128, F]`, `F = ceil(samples / 160)` valid frames (what
//!   the model keeps after the feature attention mask), and the audio token count.
//!
//! Left out: the 30,000-frame padded feature tensor and its attention mask (only the valid
//! frames are ever used), and the TMRoPE position ids (they need the prompt).

use super::clip::ImageSizing;
use super::error::MediaError;
use super::mel::{MelFeatures, log_mel};
use super::patches::{PATCH_DIM, Patches, fill_patches, patch_grid};
use super::pixels::PixelRows;
use super::resize::{RgbImage, resize_pil_bicubic};
use super::types::{AudioClip, Clip, Frames};
use rayon::prelude::*;

/// Images or a video, patchified.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VisionInputs {
    /// `[rows, 1176]` row-major, the items' rows one after another.
    pub pixels: PixelRows,
    /// `(grid_t, grid_h, grid_w)` per item.
    pub grid_thw: Vec<[usize; 3]>,
}

impl VisionInputs {
    pub fn rows(&self) -> usize {
        self.pixels.len() / PATCH_DIM
    }

    /// Placeholder tokens per item.
    pub fn tokens(&self) -> Vec<usize> {
        self.grid_thw.iter().map(|g| g.iter().product::<usize>() / 4).collect()
    }

    fn one(p: &Patches) -> VisionInputs {
        VisionInputs { pixels: PixelRows::Codes(std::sync::Arc::clone(&p.codes)), grid_thw: vec![p.grid_thw] }
    }
}

/// Everything one media observation contributes to the model's input.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelInputs {
    pub images: Option<VisionInputs>,
    pub video: Option<VisionInputs>,
    /// `video_second_per_grid` (1.0 with the processor's default fps).
    pub video_second_per_grid: Option<f64>,
    pub audio: Option<MelFeatures>,
}

impl ModelInputs {
    /// Placeholder tokens of the images, in order.
    pub fn image_tokens(&self) -> Vec<usize> {
        self.images.as_ref().map(VisionInputs::tokens).unwrap_or_default()
    }

    /// Placeholder tokens of the video.
    pub fn video_tokens(&self) -> usize {
        self.video.as_ref().map_or(0, |v| v.tokens().iter().sum())
    }

    /// Placeholder tokens of the audio.
    pub fn audio_tokens(&self) -> usize {
        self.audio.as_ref().map_or(0, MelFeatures::tokens)
    }
}

/// Resizes `img` to its `smart_resize` size with Pillow's bicubic when it is not there yet.
pub fn fit_image(img: &RgbImage, sizing: &ImageSizing) -> Result<Option<RgbImage>, MediaError> {
    let (h, w) = sizing.target(img.height, img.width)?;
    Ok(if (h, w) == (img.height, img.width) { None } else { Some(resize_pil_bicubic(img, w, h)) })
}

/// `get_frames` -> images (in parallel, straight into one `pixel_values` buffer).
pub fn frames_inputs(frames: &Frames, sizing: &ImageSizing) -> Result<ModelInputs, MediaError> {
    let resized: Vec<Option<RgbImage>> =
        frames.frames.par_iter().map(|f| fit_image(&f.image, sizing)).collect::<Result<_, _>>()?;
    let images: Vec<&RgbImage> =
        frames.frames.iter().zip(&resized).map(|(f, r)| r.as_ref().unwrap_or(&f.image)).collect();
    let grid_thw: Vec<[usize; 3]> = images.iter().map(|img| patch_grid(&[img])).collect::<Result<_, _>>()?;
    let lens: Vec<usize> = grid_thw.iter().map(|g| g.iter().product::<usize>() * PATCH_DIM).collect();
    let mut codes = vec![0u8; lens.iter().sum()];
    let mut parts = Vec::with_capacity(images.len());
    let mut rest = codes.as_mut_slice();
    for ((img, grid), &len) in images.iter().zip(&grid_thw).zip(&lens) {
        let (part, tail) = rest.split_at_mut(len);
        parts.push((*img, *grid, part));
        rest = tail;
    }
    parts.into_par_iter().for_each(|(img, grid, part)| fill_patches(&[img], grid, part));
    let pixels = PixelRows::codes(codes);
    Ok(ModelInputs { images: Some(VisionInputs { pixels, grid_thw }), ..ModelInputs::default() })
}

/// `get_audio` -> log-mel features.
pub fn audio_inputs(audio: &AudioClip) -> ModelInputs {
    ModelInputs { audio: Some(log_mel(&audio.samples)), ..ModelInputs::default() }
}

/// `get_clip` -> a video (its rows are the clip's, shared) + its audio's features.
pub fn clip_inputs(clip: &Clip) -> ModelInputs {
    let audio = clip.audio.as_ref().map(|a| log_mel(&a.samples));
    let v = VisionInputs::one(&clip.video);
    ModelInputs { video: Some(v), video_second_per_grid: Some(clip.second_per_grid), audio, images: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::patches::patchify;
    use crate::media::types::Frame;

    fn frame(w: usize, h: usize) -> Frame {
        Frame { requested_s: 0.0, pts_s: 0.0, image: RgbImage { width: w, height: h, data: vec![90; w * h * 3] } }
    }

    #[test]
    fn frames_become_images_with_token_counts() {
        let frames = Frames { frames: vec![frame(97, 61), frame(56, 56)], gops_decoded: 1, frames_decoded: 2 };
        let inputs = frames_inputs(&frames, &ImageSizing::default()).unwrap_or_else(|e| panic!("{e}"));
        let images = inputs.images.as_ref().map(|i| i.grid_thw.clone());
        // 97x61 -> smart_resize -> 84x56 -> grid (1, 4, 6); 56x56 -> (1, 4, 4).
        assert_eq!(images, Some(vec![[1, 4, 6], [1, 4, 4]]));
        assert_eq!(inputs.image_tokens(), vec![6, 4]);
        assert_eq!(inputs.images.map(|i| i.rows()), Some(24 + 16));
    }

    #[test]
    fn clips_and_audio() {
        let frames: Vec<RgbImage> = (0..4).map(|_| frame(56, 28).image).collect();
        let clip = Clip {
            start_s: 0.0,
            end_s: 2.0,
            timestamps: vec![0.0, 0.5, 1.0, 1.5],
            video: patchify(&frames.iter().collect::<Vec<_>>()).unwrap_or_else(|e| panic!("{e}")),
            audio: Some(AudioClip { samples: vec![0.0; 32_000], sample_rate: 16_000, start_s: 0.0, end_s: 2.0 }),
            source_frames: 50,
            sample_fps: 2.0,
            second_per_grid: 1.0,
            gops_decoded: 1,
            frames_decoded: 50,
        };
        let inputs = clip_inputs(&clip);
        assert_eq!(inputs.video.as_ref().map(|v| v.grid_thw.clone()), Some(vec![[2, 2, 4]]));
        assert_eq!(inputs.video_tokens(), 4);
        assert_eq!(inputs.audio.as_ref().map(|a| a.frames), Some(200));
        assert_eq!(inputs.audio_tokens(), 50);
        let a = audio_inputs(&AudioClip { samples: vec![0.0; 64_512], sample_rate: 16_000, start_s: 0.0, end_s: 4.0 });
        assert_eq!((a.audio.as_ref().map(|m| m.frames), a.audio_tokens()), (Some(404), 101));
    }
}
