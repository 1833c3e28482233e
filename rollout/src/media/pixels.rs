//! Pixel rows as the environment hands them to the model: `[rows, patch_dim]` in the
//! processor's row order (`patches`), held as the source bytes rather than as floats.
//!
//! Every CLIP-normalised input value is `(byte / 255 - mean[c]) / std[c]` for the byte of
//! channel `c`, so a row of bytes plus one 3 x 256 table ([`clip_lut`]) is the same matrix the
//! processor writes in float32, at a quarter of the memory: a 30 s clip at 2 fps is 101 MB of
//! bytes instead of 406 MB of floats. Writing and page-faulting those floats was the largest
//! cost of `get_clip` after decoding, every stored observation carried them, and a GPU upload
//! moved four times the bytes. The model expands the bytes where it runs: on the CPU with
//! [`PixelRows::to_values`], on a GPU by uploading the bytes and indexing the same table
//! there (`trainer::model::pixels`); both give bit-identical floats.
//!
//! Within a row the channel is the slowest index (`channel, time, y, x`), so column `j` of a
//! `patch_dim`-wide row belongs to channel `j / (patch_dim / 3)`.
//!
//! Left out: other normalisations (the model family has only CLIP's).

use super::error::MediaError;
use rayon::prelude::*;
use std::sync::Arc;

pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// `byte -> (byte / 255 - mean) / std` per channel, computed in f64 and rounded once.
pub fn clip_lut() -> [[f32; 256]; 3] {
    let mut t = [[0f32; 256]; 3];
    for (c, row) in t.iter_mut().enumerate() {
        for (v, out) in row.iter_mut().enumerate() {
            *out = ((v as f64 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]) as f32;
        }
    }
    t
}

/// `[rows, patch_dim]` pixel inputs, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum PixelRows {
    /// Source bytes, shared (a clip's rows are never copied on their way to the model); the
    /// model's input is `clip_lut()[channel][byte]`.
    Codes(Arc<Vec<u8>>),
    /// Values already normalised (fixtures, tests, inputs made by other processors).
    Values(Vec<f32>),
}

impl Default for PixelRows {
    fn default() -> Self {
        PixelRows::codes(Vec::new())
    }
}

impl PixelRows {
    pub fn codes(codes: Vec<u8>) -> PixelRows {
        PixelRows::Codes(Arc::new(codes))
    }

    /// Number of values (rows x patch_dim).
    pub fn len(&self) -> usize {
        match self {
            PixelRows::Codes(c) => c.len(),
            PixelRows::Values(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values `a..b` (a whole number of rows when `a` and `b` are row bounds); all of them
    /// are shared, not copied.
    pub fn slice(&self, a: usize, b: usize) -> Option<PixelRows> {
        Some(match self {
            PixelRows::Codes(c) if a == 0 && b == c.len() => PixelRows::Codes(Arc::clone(c)),
            PixelRows::Codes(c) => PixelRows::codes(c.get(a..b)?.to_vec()),
            PixelRows::Values(v) => PixelRows::Values(v.get(a..b)?.to_vec()),
        })
    }

    /// The normalised float32 values (a copy for `Values`).
    pub fn to_values(&self, patch_dim: usize) -> Result<Vec<f32>, MediaError> {
        match self {
            PixelRows::Values(v) => Ok(v.clone()),
            PixelRows::Codes(c) => {
                let mut out = vec![0f32; c.len()];
                expand_codes(c, patch_dim, &mut out)?;
                Ok(out)
            }
        }
    }
}

/// Writes the normalised values of `codes` (rows of `patch_dim`) into `out`, rows in parallel.
pub fn expand_codes(codes: &[u8], patch_dim: usize, out: &mut [f32]) -> Result<(), MediaError> {
    if patch_dim == 0 || !patch_dim.is_multiple_of(3) || !codes.len().is_multiple_of(patch_dim) {
        return Err(MediaError::PixelRows { len: codes.len(), patch_dim });
    }
    if out.len() != codes.len() {
        return Err(MediaError::PixelRows { len: out.len(), patch_dim });
    }
    let lut = clip_lut();
    let per_channel = patch_dim / 3;
    // Chunks of whole rows, large enough to amortise the task overhead.
    let rows_per_task = (1 << 16) / patch_dim + 1;
    out.par_chunks_mut(rows_per_task * patch_dim).zip(codes.par_chunks(rows_per_task * patch_dim)).for_each(
        |(dst, src)| {
            for (drow, srow) in dst.chunks_exact_mut(patch_dim).zip(src.chunks_exact(patch_dim)) {
                for ((d, s), table) in drow.chunks_exact_mut(per_channel).zip(srow.chunks_exact(per_channel)).zip(&lut)
                {
                    for (d, &s) in d.iter_mut().zip(s) {
                        *d = table[usize::from(s)];
                    }
                }
            }
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_expand_to_clip_normalised_values() {
        // Two rows of 6: channel blocks of 2.
        let codes = vec![0u8, 255, 128, 1, 7, 200, 255, 255, 0, 0, 10, 10];
        let v = PixelRows::codes(codes.clone()).to_values(6).unwrap_or_else(|e| panic!("{e}"));
        for (j, (&c, &x)) in codes.iter().zip(&v).enumerate() {
            let ch = (j % 6) / 2;
            let want = (f64::from(c) / 255.0 - CLIP_MEAN[ch]) / CLIP_STD[ch];
            assert_eq!(x, want as f32, "value {j}");
        }
        assert!((v[1] - ((1.0 - CLIP_MEAN[0]) / CLIP_STD[0]) as f32).abs() < 1e-7);
    }

    #[test]
    fn values_pass_through_and_slices_copy_rows() {
        let v = PixelRows::Values(vec![0.5; 12]);
        assert_eq!(v.to_values(6).ok(), Some(vec![0.5; 12]));
        let all = PixelRows::codes((0..12).collect());
        assert_eq!(all.slice(6, 12), Some(PixelRows::codes((6..12).collect())));
        match (&all, all.slice(0, 12)) {
            (PixelRows::Codes(a), Some(PixelRows::Codes(b))) => assert!(Arc::ptr_eq(a, &b), "shared, not copied"),
            other => panic!("{other:?}"),
        }
        assert_eq!(v.slice(6, 18), None);
        assert_eq!((v.len(), PixelRows::default().is_empty()), (12, true));
    }

    #[test]
    fn widths_that_are_not_rows_of_three_channels_are_errors() {
        assert!(PixelRows::codes(vec![0; 12]).to_values(4).is_err());
        assert!(PixelRows::codes(vec![0; 13]).to_values(6).is_err());
        assert!(PixelRows::codes(vec![0; 12]).to_values(0).is_err());
        assert!(expand_codes(&[0; 12], 6, &mut [0.0; 6]).is_err());
    }
}
