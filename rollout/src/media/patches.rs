//! CLIP normalisation and Qwen2-VL patchification (`qwen-omni.md` §2.2): RGB frames whose
//! sides are multiples of 28 become `pixel_values` rows of 1176 = 3 x 2 x 14 x 14 floats, in
//! the processor's order.
//!
//! Row order is merge-block-major: for each temporal patch `t`, each 2x2 merge block
//! `(bh, bw)` in raster order, each patch `(mh, mw)` inside it; within a row the values run
//! channel, temporal, y, x (the Conv3d weight order). An image is one frame repeated along
//! time (`grid_t = 1`); a video pads its frame count to even by repeating the last frame
//! (`grid_t = frames / 2`). Values are `(x / 255 - mean) / std` with OpenAI CLIP's mean/std.
//!
//! Left out: resizing (see `resize`), which must already have made both sides multiples of
//! 28; other patch or merge sizes (the model has exactly these).

use super::error::MediaError;
use super::resize::{FACTOR, RgbImage};

pub const PATCH: usize = 14;
pub const TEMPORAL_PATCH: usize = 2;
pub const MERGE: usize = 2;
/// Floats per `pixel_values` row.
pub const PATCH_DIM: usize = 3 * TEMPORAL_PATCH * PATCH * PATCH;
pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Patchified pixels of one image or one video.
#[derive(Debug, Clone, PartialEq)]
pub struct Patches {
    /// `[grid_t * grid_h * grid_w, 1176]`, row-major.
    pub pixel_values: Vec<f32>,
    /// `(grid_t, grid_h, grid_w)` in 14-px patches.
    pub grid_thw: [usize; 3],
}

impl Patches {
    pub fn rows(&self) -> usize {
        self.grid_thw.iter().product()
    }

    /// Placeholder tokens in the prompt: `grid_t * grid_h * grid_w / 4`.
    pub fn tokens(&self) -> usize {
        self.rows() / (MERGE * MERGE)
    }
}

/// `u8` -> normalised value, per channel.
fn lut() -> [[f32; 256]; 3] {
    let mut t = [[0f32; 256]; 3];
    for (c, row) in t.iter_mut().enumerate() {
        for (v, out) in row.iter_mut().enumerate() {
            *out = ((v as f64 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]) as f32;
        }
    }
    t
}

/// Patchifies `frames` (all the same size, sides multiples of 28) as one image
/// (`frames.len() == 1`) or one video.
pub fn patchify(frames: &[&RgbImage]) -> Result<Patches, MediaError> {
    let grid_thw = patch_grid(frames)?;
    let mut out = vec![0f32; grid_thw.iter().product::<usize>() * PATCH_DIM];
    fill_patches(frames, grid_thw, &mut out);
    Ok(Patches { pixel_values: out, grid_thw })
}

/// Checks `frames` for [`patchify`] and returns their `(grid_t, grid_h, grid_w)`.
pub(crate) fn patch_grid(frames: &[&RgbImage]) -> Result<[usize; 3], MediaError> {
    let Some(first) = frames.first() else {
        return Err(MediaError::BadImage { width: 0, height: 0, reason: "no frames to patchify".into() });
    };
    let (w, h) = (first.width, first.height);
    if w % FACTOR != 0 || h % FACTOR != 0 || w == 0 || h == 0 {
        return Err(MediaError::BadImage { width: w, height: h, reason: "sides must be multiples of 28".into() });
    }
    if let Some(bad) = frames.iter().find(|f| f.width != w || f.height != h || f.data.len() != w * h * 3) {
        return Err(MediaError::BadImage {
            width: bad.width,
            height: bad.height,
            reason: format!("all frames must be {w}x{h} RGB24"),
        });
    }
    Ok([frames.len().div_ceil(TEMPORAL_PATCH), h / PATCH, w / PATCH])
}

/// Writes the rows of `frames` (checked by [`patch_grid`], which gave `grid`) into `out`
/// (`grid_t * grid_h * grid_w * 1176` floats); temporal patches are filled in parallel.
pub(crate) fn fill_patches(frames: &[&RgbImage], grid: [usize; 3], out: &mut [f32]) {
    use rayon::prelude::*;
    let [_, gh, gw] = grid;
    let Some(first) = frames.first() else { return };
    let w = first.width;
    let lut = lut();
    let last = frames.len() - 1;
    out.par_chunks_mut(gh * gw * PATCH_DIM).enumerate().for_each(|(t, rows)| {
        // Temporal pair; the last frame repeats to fill it.
        let pair = [frames[(t * 2).min(last)], frames[(t * 2 + 1).min(last)]];
        let mut dsts = rows.chunks_exact_mut(PATCH_DIM);
        for bh in 0..gh / MERGE {
            for bw in 0..gw / MERGE {
                for mh in 0..MERGE {
                    for mw in 0..MERGE {
                        let (py0, px0) = ((bh * MERGE + mh) * PATCH, (bw * MERGE + mw) * PATCH);
                        let Some(dst) = dsts.next() else { return };
                        let mut i = 0;
                        for (c, table) in lut.iter().enumerate() {
                            for frame in pair {
                                for y in 0..PATCH {
                                    let base = ((py0 + y) * w + px0) * 3 + c;
                                    for x in 0..PATCH {
                                        dst[i] = table[usize::from(frame.data[base + x * 3])];
                                        i += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixel (x, y) of frame f encodes its own coordinates.
    fn coded(w: usize, h: usize, f: u8) -> RgbImage {
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                data.extend([x as u8, y as u8, f]);
            }
        }
        RgbImage { width: w, height: h, data }
    }

    fn unnorm(v: f32, c: usize) -> u8 {
        ((f64::from(v) * CLIP_STD[c] + CLIP_MEAN[c]) * 255.0).round() as u8
    }

    #[test]
    fn rows_follow_the_merge_block_order() {
        let (a, b, c) = (coded(56, 28, 0), coded(56, 28, 1), coded(56, 28, 2));
        let p = patchify(&[&a, &b, &c]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.grid_thw, [2, 2, 4]);
        assert_eq!(p.pixel_values.len(), 16 * PATCH_DIM);
        assert_eq!(p.tokens(), 4);
        // Row 0: block (0,0), patch (0,0). Row 1: patch (0,1) -> x starts at 14. Row 2: patch
        // (1,0) -> y starts at 14. Row 4: block (0,1) -> x starts at 28.
        for (r, (x0, y0)) in [(0usize, (0u8, 0u8)), (1, (14, 0)), (2, (0, 14)), (3, (14, 14)), (4, (28, 0))] {
            let row = &p.pixel_values[r * PATCH_DIM..];
            assert_eq!(unnorm(row[0], 0), x0, "row {r} x");
            assert_eq!(unnorm(row[2 * 196], 1), y0, "row {r} y");
            // Within a row: channel, then time, then y, then x.
            assert_eq!(unnorm(row[1], 0), x0 + 1);
            assert_eq!(unnorm(row[14], 0), x0);
            assert_eq!(unnorm(row[2 * 196 + 14], 1), y0 + 1);
            assert_eq!(unnorm(row[4 * 196], 2), 0, "t=0 is frame 0");
            assert_eq!(unnorm(row[5 * 196], 2), 1, "t=1 is frame 1");
        }
        // Second temporal patch: frame 2 and its repeat.
        let row = &p.pixel_values[8 * PATCH_DIM..];
        assert_eq!((unnorm(row[4 * 196], 2), unnorm(row[5 * 196], 2)), (2, 2));
    }

    #[test]
    fn an_image_is_one_frame_twice_and_values_are_clip_normalised() {
        let img = RgbImage { width: 28, height: 28, data: [255u8, 0, 128].repeat(28 * 28) };
        let p = patchify(&[&img]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.grid_thw, [1, 2, 2]);
        let want = [
            (1.0 - CLIP_MEAN[0]) / CLIP_STD[0],
            -CLIP_MEAN[1] / CLIP_STD[1],
            (128.0 / 255.0 - CLIP_MEAN[2]) / CLIP_STD[2],
        ];
        for (c, w) in want.iter().enumerate() {
            for v in &p.pixel_values[c * 392..(c + 1) * 392] {
                assert!((f64::from(*v) - w).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(patchify(&[]).is_err());
        let odd = RgbImage { width: 30, height: 28, data: vec![0; 30 * 28 * 3] };
        assert!(patchify(&[&odd]).is_err());
        let a = RgbImage { width: 28, height: 28, data: vec![0; 28 * 28 * 3] };
        let b = RgbImage { width: 56, height: 28, data: vec![0; 56 * 28 * 3] };
        assert!(patchify(&[&a, &b]).is_err());
    }
}
