//! CLIP normalisation and Qwen2-VL patchification (docs/reference.md#patchify): RGB frames whose
//! sides are multiples of 28 become `pixel_values` rows of 1176 = 3 x 2 x 14 x 14 floats, in
//! the processor's order.
//!
//! Row order is merge-block-major: for each temporal patch `t`, each 2x2 merge block
//! `(bh, bw)` in raster order, each patch `(mh, mw)` inside it; within a row the values run
//! channel, temporal, y, x (the Conv3d weight order). An image is one frame repeated along
//! time (`grid_t = 1`); a video pads its frame count to even by repeating the last frame
//! (`grid_t = frames / 2`). Rows hold the source bytes (see `pixels`): the model's value is
//! `(x / 255 - mean) / std` with OpenAI CLIP's mean/std, applied where the model runs.
//!
//! Left out: resizing (see `resize`), which must already have made both sides multiples of
//! 28; other patch or merge sizes (the model has exactly these).

use super::error::MediaError;
use super::pixels::PixelRows;
use super::resize::{FACTOR, RgbImage};
use std::sync::Arc;

pub const PATCH: usize = 14;
pub const TEMPORAL_PATCH: usize = 2;
pub const MERGE: usize = 2;
/// Values per `pixel_values` row.
pub const PATCH_DIM: usize = 3 * TEMPORAL_PATCH * PATCH * PATCH;
/// Values of one channel within a row.
const CHANNEL_BLOCK: usize = PATCH_DIM / 3;
pub use super::pixels::{CLIP_MEAN, CLIP_STD};

/// Patchified pixels of one image or one video.
#[derive(Debug, Clone, PartialEq)]
pub struct Patches {
    /// `[grid_t * grid_h * grid_w, 1176]` source bytes, row-major (shared, never copied).
    pub codes: Arc<Vec<u8>>,
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

    /// `(height, width)` of the frames.
    pub fn frame_size(&self) -> (usize, usize) {
        (self.grid_thw[1] * PATCH, self.grid_thw[2] * PATCH)
    }

    /// The CLIP-normalised `pixel_values` the processor would write.
    pub fn values(&self) -> Result<Vec<f32>, MediaError> {
        PixelRows::Codes(Arc::clone(&self.codes)).to_values(PATCH_DIM)
    }

    /// Frame `i` back from the rows (frame `2t + k` is time step `k` of temporal patch `t`);
    /// `None` past the last temporal patch.
    pub fn frame(&self, i: usize) -> Option<RgbImage> {
        let [_, gh, gw] = self.grid_thw;
        let per_pair = gh * gw * PATCH_DIM;
        let rows = self.codes.get(i / TEMPORAL_PATCH * per_pair..(i / TEMPORAL_PATCH + 1) * per_pair)?;
        let (h, w) = self.frame_size();
        let (k, mut data) = (i % TEMPORAL_PATCH, vec![0u8; w * h * 3]);
        for ((py0, px0), src) in patch_origins(gh, gw).zip(rows.chunks_exact(PATCH_DIM)) {
            for y in 0..PATCH {
                let at = ((py0 + y) * w + px0) * 3;
                for (c, block) in src.chunks_exact(CHANNEL_BLOCK).enumerate() {
                    let run = &block[(k * PATCH + y) * PATCH..(k * PATCH + y + 1) * PATCH];
                    for (x, &v) in run.iter().enumerate() {
                        data[at + x * 3 + c] = v;
                    }
                }
            }
        }
        Some(RgbImage { width: w, height: h, data })
    }
}

/// Patchifies `frames` (all the same size, sides multiples of 28) as one image
/// (`frames.len() == 1`) or one video.
pub fn patchify(frames: &[&RgbImage]) -> Result<Patches, MediaError> {
    let grid_thw = patch_grid(frames)?;
    let mut codes = vec![0u8; grid_thw.iter().product::<usize>() * PATCH_DIM];
    fill_patches(frames, grid_thw, &mut codes);
    Ok(Patches { codes: Arc::new(codes), grid_thw })
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
    Ok(video_grid(frames.len(), (h, w)))
}

/// `(grid_t, grid_h, grid_w)` of `frames` frames of `size` (`(h, w)`, multiples of 28).
pub(crate) fn video_grid(frames: usize, size: (usize, usize)) -> [usize; 3] {
    [frames.div_ceil(TEMPORAL_PATCH), size.0 / PATCH, size.1 / PATCH]
}

/// Top-left pixel `(y, x)` of each patch, in row order: each 2x2 merge block in raster order,
/// each patch inside it in raster order.
fn patch_origins(gh: usize, gw: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..gh / MERGE).flat_map(move |bh| {
        (0..gw / MERGE).flat_map(move |bw| {
            (0..MERGE * MERGE).map(move |m| ((bh * MERGE + m / MERGE) * PATCH, (bw * MERGE + m % MERGE) * PATCH))
        })
    })
}

/// Writes one temporal patch (`gh * gw` rows) from its two frames (checked sizes).
fn fill_pair(pair: [&RgbImage; TEMPORAL_PATCH], gh: usize, gw: usize, rows: &mut [u8]) {
    let w = pair[0].width;
    for ((py0, px0), dst) in patch_origins(gh, gw).zip(rows.chunks_exact_mut(PATCH_DIM)) {
        // dst = [channel][time][y][x]: one pass over each 14-pixel source run writes its three
        // channel runs.
        let (c0, rest) = dst.split_at_mut(CHANNEL_BLOCK);
        let (c1, c2) = rest.split_at_mut(CHANNEL_BLOCK);
        for (t, frame) in pair.iter().enumerate() {
            for y in 0..PATCH {
                let at = ((py0 + y) * w + px0) * 3;
                let Some(src) = frame.data.get(at..at + PATCH * 3) else { return };
                let run = (t * PATCH + y) * PATCH;
                let (r0, r1, r2) = (&mut c0[run..run + PATCH], &mut c1[run..run + PATCH], &mut c2[run..run + PATCH]);
                for (x, px) in src.chunks_exact(3).enumerate() {
                    r0[x] = px[0];
                    r1[x] = px[1];
                    r2[x] = px[2];
                }
            }
        }
    }
}

/// Writes the rows of `frames` (checked by [`patch_grid`], which gave `grid`) into `out`
/// (`grid_t * grid_h * grid_w * 1176` bytes); temporal patches are filled in parallel.
pub(crate) fn fill_patches(frames: &[&RgbImage], grid: [usize; 3], out: &mut [u8]) {
    use rayon::prelude::*;
    let [_, gh, gw] = grid;
    let Some(last) = frames.len().checked_sub(1) else { return };
    out.par_chunks_mut(gh * gw * PATCH_DIM).enumerate().for_each(|(t, rows)| {
        // Temporal pair; the last frame repeats to fill it.
        fill_pair([frames[(t * 2).min(last)], frames[(t * 2 + 1).min(last)]], gh, gw, rows);
    });
}

/// One temporal patch of a [`PairFiller`]: its frames as they arrive, and its rows.
#[cfg_attr(not(feature = "ffmpeg"), allow(dead_code))]
struct PairSlot<'a> {
    frames: [Option<RgbImage>; TEMPORAL_PATCH],
    rows: &'a mut [u8],
    done: bool,
}

/// Fills a video's patch rows one temporal patch at a time as its frames arrive, in any order
/// and from any thread, so that each frame is dropped as soon as its pair is written (a clip's
/// resized frames are never all alive at once).
#[cfg_attr(not(feature = "ffmpeg"), allow(dead_code))] // used by the FFmpeg decoder
pub(crate) struct PairFiller<'a> {
    pairs: Vec<std::sync::Mutex<PairSlot<'a>>>,
    frames: usize,
    size: (usize, usize),
}

#[cfg_attr(not(feature = "ffmpeg"), allow(dead_code))]
impl<'a> PairFiller<'a> {
    /// `codes` must hold the rows of [`video_grid`]`(frames, size)`.
    pub fn new(codes: &'a mut [u8], frames: usize, size: (usize, usize)) -> PairFiller<'a> {
        let [_, gh, gw] = video_grid(frames, size);
        let per_pair = gh * gw * PATCH_DIM;
        let pairs = codes
            .chunks_mut(per_pair.max(1))
            .map(|rows| std::sync::Mutex::new(PairSlot { frames: [None, None], rows, done: false }))
            .collect();
        PairFiller { pairs, frames, size }
    }

    /// Frame `slot` of the video (`size` as given to `new`).
    pub fn put(&self, slot: usize, img: RgbImage) -> Result<(), MediaError> {
        let (h, w) = self.size;
        if (img.height, img.width) != (h, w) || img.data.len() != w * h * 3 {
            let reason = format!("clip frame {slot} must be {w}x{h} RGB24");
            return Err(MediaError::BadImage { width: img.width, height: img.height, reason });
        }
        let bad =
            || MediaError::BadImage { width: w, height: h, reason: format!("no temporal patch for frame {slot}") };
        let pair = self.pairs.get(slot / TEMPORAL_PATCH).ok_or_else(bad)?;
        let mut p = pair.lock().map_err(|_| bad())?;
        if slot + 1 == self.frames && slot.is_multiple_of(TEMPORAL_PATCH) {
            p.frames[1] = Some(img.clone()); // an odd count repeats the last frame
        }
        p.frames[slot % TEMPORAL_PATCH] = Some(img);
        let PairSlot { frames, rows, done } = &mut *p;
        if let [Some(a), Some(b)] = frames {
            fill_pair([&*a, &*b], h / PATCH, w / PATCH, rows);
            *frames = [None, None];
            *done = true;
        }
        Ok(())
    }

    /// The first frame slot whose temporal patch was never written, if any.
    pub fn missing(&self) -> Option<usize> {
        self.pairs.iter().enumerate().find_map(|(t, p)| match p.lock() {
            Ok(p) if p.done => None,
            Ok(p) => Some(t * TEMPORAL_PATCH + usize::from(p.frames[0].is_some())),
            Err(_) => Some(t * TEMPORAL_PATCH),
        })
    }
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

    #[test]
    fn rows_follow_the_merge_block_order() {
        let (a, b, c) = (coded(56, 28, 0), coded(56, 28, 1), coded(56, 28, 2));
        let p = patchify(&[&a, &b, &c]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.grid_thw, [2, 2, 4]);
        assert_eq!(p.codes.len(), 16 * PATCH_DIM);
        assert_eq!(p.tokens(), 4);
        // Row 0: block (0,0), patch (0,0). Row 1: patch (0,1) -> x starts at 14. Row 2: patch
        // (1,0) -> y starts at 14. Row 4: block (0,1) -> x starts at 28.
        for (r, (x0, y0)) in [(0usize, (0u8, 0u8)), (1, (14, 0)), (2, (0, 14)), (3, (14, 14)), (4, (28, 0))] {
            let row = &p.codes[r * PATCH_DIM..];
            assert_eq!(row[0], x0, "row {r} x");
            assert_eq!(row[2 * 196], y0, "row {r} y");
            // Within a row: channel, then time, then y, then x.
            assert_eq!(row[1], x0 + 1);
            assert_eq!(row[14], x0);
            assert_eq!(row[2 * 196 + 14], y0 + 1);
            assert_eq!(row[4 * 196], 0, "t=0 is frame 0");
            assert_eq!(row[5 * 196], 1, "t=1 is frame 1");
        }
        // Second temporal patch: frame 2 and its repeat.
        let row = &p.codes[8 * PATCH_DIM..];
        assert_eq!((row[4 * 196], row[5 * 196]), (2, 2));
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
        let values = p.values().unwrap_or_else(|e| panic!("{e}"));
        for (c, w) in want.iter().enumerate() {
            for v in &values[c * 392..(c + 1) * 392] {
                assert!((f64::from(*v) - w).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn frames_come_back_from_the_rows() {
        let frames: Vec<RgbImage> = (0..3).map(|f| coded(56, 28, f)).collect();
        let refs: Vec<&RgbImage> = frames.iter().collect();
        let p = patchify(&refs).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.frame_size(), (28, 56));
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(p.frame(i).as_ref(), Some(f), "frame {i}");
        }
        assert_eq!(p.frame(3).as_ref(), Some(&frames[2]), "the repeat of an odd count");
        assert_eq!(p.frame(4), None);
    }

    #[test]
    fn pairs_filled_out_of_order_equal_patchify() {
        let frames: Vec<RgbImage> = (0..5).map(|f| coded(56, 28, f)).collect();
        let refs: Vec<&RgbImage> = frames.iter().collect();
        let want = patchify(&refs).unwrap_or_else(|e| panic!("{e}"));
        let mut codes = vec![0u8; want.codes.len()];
        let filler = PairFiller::new(&mut codes, 5, (28, 56));
        for slot in [3, 0, 4, 1] {
            filler.put(slot, frames[slot].clone()).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(filler.missing(), Some(2), "pair 1 still waits for frame 2");
        assert!(filler.put(2, coded(28, 28, 2)).is_err(), "wrong size");
        assert!(filler.put(9, frames[0].clone()).is_err(), "no such slot");
        filler.put(2, frames[2].clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(filler.missing(), None);
        drop(filler);
        assert_eq!(codes, *want.codes);
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
