//! TMRoPE: the 3-axis (t, h, w) position ids of a token sequence (transformers'
//! `get_rope_index`, docs/reference.md#tmrope) and the M-RoPE cos/sin tables of the LLM
//! (docs/reference.md#mrope).
//!
//! Positions are computed per sequence in plain Rust from the token ids and the media grid sizes
//! (pads are the caller's business: a left-padded batch uses each sequence's own positions). The
//! walk mirrors the reference segment by segment: a text run gets `st + arange(n)` on all rows; a
//! bos / eos marker one position; an image `(st + t*25, st + row, st + col)` over the merged grid; a
//! video the same with `t_index = trunc(k * second_per_grid * 25)` computed in f32 like torch; an
//! audio `st + arange(T)`; a video with its audio (recognised by `<|vision_bos|><|audio_bos|>` before
//! the first `<|VIDEO|>`) both streams from the same start, chunk-interleaved every
//! `position_id_per_seconds * seconds_per_chunk` ids, both bos tokens at one position and both eos
//! tokens at the last appended chunk's maximum + 1. `st` is always the maximum of the last appended
//! block + 1, and `rope_delta = max + 1 - len`. The token layout is checked against the grids, so a
//! placeholder count that does not match is an error, not a silent misalignment.
//!
//! Decision (docs/reference.md#rope-silent-clips): the Omni rule (25 ids per second) is used for
//! every video, silent or not, in rollouts and training alike; the Qwen2-VL rule the reference's
//! training path applied to silent clips (2 per second) is not reproduced. fps
//! (docs/reference.md#fps-mismatch): `second_per_grid` is whatever
//! the caller passes (the processor's `temporal_patch_size / fps`, 1.0 at the default 2 fps); the
//! same value must be used by rollout and training, which this module guarantees by being the one
//! implementation both call.

use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RopeError {
    #[error("token {index}: {message}")]
    Layout { index: usize, message: String },
    #[error("{0}")]
    Media(String),
}

/// The ids and constants `get_rope_index` reads from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeSpec {
    pub image: u32,
    pub video: u32,
    pub audio: u32,
    pub vision_start: u32,
    pub audio_start: u32,
    pub spatial_merge_size: usize,
    pub position_id_per_seconds: u32,
    pub seconds_per_chunk: u32,
}

/// Media sizes in order of appearance. `audio_tokens` lists every audio, standalone or inside a
/// video, in the order their tokens appear.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaGrids {
    pub image_grids: Vec<[usize; 3]>,
    pub video_grids: Vec<[usize; 3]>,
    pub video_second_per_grid: Vec<f64>,
    pub audio_tokens: Vec<usize>,
}

/// Position ids of one sequence: rows t, h, w, and `rope_delta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positions {
    pub t: Vec<i64>,
    pub h: Vec<i64>,
    pub w: Vec<i64>,
    pub delta: i64,
}

impl Positions {
    pub fn len(&self) -> usize {
        self.t.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    /// The largest id on any row (-1 when empty).
    pub fn max(&self) -> i64 {
        self.t.iter().chain(&self.h).chain(&self.w).copied().max().unwrap_or(-1)
    }

    /// Text positions: `start + arange(n)` on all rows.
    pub fn text(start: i64, n: usize) -> Positions {
        let v: Vec<i64> = (0..n as i64).map(|i| start + i).collect();
        Positions { t: v.clone(), h: v.clone(), w: v, delta: start }
    }
}

struct Walker {
    out: Positions,
    /// Max of the last appended block + 1.
    next: i64,
}

impl Walker {
    fn block(&mut self, t: &[i64], h: &[i64], w: &[i64]) {
        if t.is_empty() {
            return;
        }
        let m = t.iter().chain(h).chain(w).copied().max().unwrap_or(self.next - 1);
        self.out.t.extend_from_slice(t);
        self.out.h.extend_from_slice(h);
        self.out.w.extend_from_slice(w);
        self.next = m + 1;
    }

    fn text(&mut self, n: usize) {
        let v: Vec<i64> = (0..n as i64).map(|i| self.next + i).collect();
        self.block(&v, &v, &v);
    }
}

/// Vision positions of one grid from `st` (merged raster order), t ids given.
fn vision_block(st: i64, grid: [usize; 3], merge: usize, t_index: &[i64]) -> [Vec<i64>; 3] {
    let (hh, ww) = (grid[1] / merge, grid[2] / merge);
    let n = t_index.len() * hh * ww;
    let (mut t, mut h, mut w) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for &ti in t_index {
        for r in 0..hh {
            for c in 0..ww {
                t.push(st + ti);
                h.push(st + r as i64);
                w.push(st + c as i64);
            }
        }
    }
    [t, h, w]
}

/// `trunc(k * second_per_grid * pps)` in f32, as torch computes it.
fn video_t_index(grid_t: usize, second_per_grid: f64, pps: u32) -> Vec<i64> {
    (0..grid_t).map(|k| ((k as f32 * second_per_grid as f32) * pps as f32) as i64).collect()
}

/// transformers' `get_chunked_index` on values minus `remove`.
fn chunks(values: &[i64], per_chunk: i64, remove: i64) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut start, mut chunk) = (0usize, 1i64);
    for (i, &v) in values.iter().enumerate() {
        if v - remove >= chunk * per_chunk {
            out.push((start, i));
            start = i;
            chunk += 1;
        }
    }
    out.push((start, values.len()));
    out
}

/// The 3-axis positions of `ids` (see the module doc).
pub fn rope_index(ids: &[u32], spec: &RopeSpec, media: &MediaGrids) -> Result<Positions, RopeError> {
    let merge = spec.spatial_merge_size.max(1);
    let mut wk = Walker { out: Positions { t: vec![], h: vec![], w: vec![], delta: 0 }, next: 0 };
    let (mut img, mut vid, mut aud) = (0usize, 0usize, 0usize);
    let layout = |index: usize, message: String| RopeError::Layout { index, message };
    let expect_run = |from: usize, n: usize, id: u32, what: &str| -> Result<(), RopeError> {
        let ok = ids.get(from..from + n).is_some_and(|s| s.iter().all(|&x| x == id));
        if ok { Ok(()) } else { Err(layout(from, format!("expected {n} {what} placeholder tokens here"))) }
    };
    // The next video's grid and seconds per grid step.
    let next_video = |vid: &mut usize| -> Result<([usize; 3], f64), RopeError> {
        let g = *media
            .video_grids
            .get(*vid)
            .ok_or_else(|| RopeError::Media(format!("video placeholder {vid} has no video input")))?;
        let spg = *media.video_second_per_grid.get(*vid).unwrap_or(&1.0);
        *vid += 1;
        Ok((g, spg))
    };
    let mut i = 0usize;
    while i < ids.len() {
        let Some(j) = (i..ids.len()).find(|&j| [spec.image, spec.video, spec.audio].contains(&ids[j])) else {
            wk.text(ids.len() - i);
            break;
        };
        let tok = ids[j];
        let with_audio = tok == spec.video
            && j >= 2
            && ids[j - 1] == spec.audio_start
            && ids[j - 2] == spec.vision_start
            && j > i + 1;
        let bos = if with_audio { 2 } else { 1 };
        if j < i + bos {
            return Err(layout(j, "a placeholder without its bos marker".into()));
        }
        wk.text(j - bos - i);
        let st = wk.next;
        let bos_pos = [st; 2];
        wk.block(&bos_pos[..bos], &bos_pos[..bos], &bos_pos[..bos]);
        let st = wk.next;
        let mut k = j;
        if tok == spec.audio {
            let n = *media
                .audio_tokens
                .get(aud)
                .ok_or_else(|| RopeError::Media(format!("audio placeholder {aud} has no audio input")))?;
            aud += 1;
            expect_run(k, n, spec.audio, "audio")?;
            wk.text(n);
            k += n;
        } else if tok == spec.image || !with_audio {
            let (grid, t_index, what, id) = if tok == spec.image {
                let g = *media
                    .image_grids
                    .get(img)
                    .ok_or_else(|| RopeError::Media(format!("image placeholder {img} has no image input")))?;
                img += 1;
                let t: Vec<i64> = (0..g[0] as i64).map(|x| x * i64::from(spec.position_id_per_seconds)).collect();
                (g, t, "image", spec.image)
            } else {
                let (g, spg) = next_video(&mut vid)?;
                (g, video_t_index(g[0], spg, spec.position_id_per_seconds), "video", spec.video)
            };
            check_grid(grid, merge)?;
            let [t, h, w] = vision_block(st, grid, merge, &t_index);
            expect_run(k, t.len(), id, what)?;
            k += t.len();
            wk.block(&t, &h, &w);
        } else {
            let (g, spg) = next_video(&mut vid)?;
            check_grid(g, merge)?;
            let n_audio = *media
                .audio_tokens
                .get(aud)
                .ok_or_else(|| RopeError::Media(format!("audio placeholder {aud} has no audio input")))?;
            aud += 1;
            let [vt, vh, vw] = vision_block(st, g, merge, &video_t_index(g[0], spg, spec.position_id_per_seconds));
            let at: Vec<i64> = (0..n_audio as i64).map(|x| st + x).collect();
            let per = i64::from(spec.position_id_per_seconds) * i64::from(spec.seconds_per_chunk);
            let (vc, ac) = (chunks(&vt, per, st), chunks(&at, per, st));
            for c in 0..vc.len().max(ac.len()) {
                if let Some(&(s, e)) = vc.get(c) {
                    expect_run(k, e - s, spec.video, "video")?;
                    k += e - s;
                    wk.block(&vt[s..e], &vh[s..e], &vw[s..e]);
                }
                if let Some(&(s, e)) = ac.get(c) {
                    expect_run(k, e - s, spec.audio, "audio")?;
                    k += e - s;
                    wk.block(&at[s..e], &at[s..e], &at[s..e]);
                }
            }
        }
        if k + bos > ids.len() {
            return Err(layout(k, "the sequence ends before the media's eos marker".into()));
        }
        let e = wk.next;
        let eos_pos = [e; 2];
        wk.block(&eos_pos[..bos], &eos_pos[..bos], &eos_pos[..bos]);
        i = k + bos;
    }
    let (ni, nv, na) = (media.image_grids.len(), media.video_grids.len(), media.audio_tokens.len());
    if (img, vid, aud) != (ni, nv, na) {
        return Err(RopeError::Media(format!(
            "the tokens hold {img} image(s), {vid} video(s), {aud} audio(s) but {ni}, {nv}, {na} were given"
        )));
    }
    let mut out = wk.out;
    out.delta = out.max() + 1 - out.len() as i64;
    Ok(out)
}

fn check_grid(g: [usize; 3], merge: usize) -> Result<(), RopeError> {
    if g.contains(&0) || !g[1].is_multiple_of(merge) || !g[2].is_multiple_of(merge) {
        return Err(RopeError::Media(format!("grid {g:?} is empty or not divisible by the merge size {merge}")));
    }
    Ok(())
}

/// `1 / theta^(arange(0, dim, 2) / dim)` in f32 (torch's op order).
pub fn inv_freq(dim: usize, theta: f64, device: Device) -> Result<Tensor, tch::TchError> {
    let exp = Tensor::f_arange_start_step(0, dim as i64, 2, (Kind::Int64, device))?.f_to_kind(Kind::Float)?;
    let exp = exp.f_div_scalar(dim as f64)?;
    let base = Tensor::f_from_slice(&[theta as f32])?.f_to_device(device)?;
    base.f_pow(&exp)?.f_reciprocal()
}

/// M-RoPE tables for `pos [3, B, L]` (int64): `(cos, sin)`, each `[B, 1, L, head_dim]` in `kind`.
/// Frequency pair f takes its angle from row `r(f)` given by `section` (t, h, w), then the half is
/// duplicated (rotate_half layout).
pub fn mrope_cos_sin(
    pos: &Tensor,
    inv: &Tensor,
    section: &[usize],
    kind: Kind,
) -> Result<(Tensor, Tensor), tch::TchError> {
    let pos = pos.f_to_kind(Kind::Float)?;
    let mut parts = Vec::with_capacity(section.len());
    let mut start = 0i64;
    for (row, &n) in section.iter().enumerate() {
        let f = inv.f_narrow(0, start, n as i64)?;
        // [B, L, 1] * [n] -> [B, L, n]
        parts.push(pos.f_get(row as i64)?.f_unsqueeze(-1)?.f_mul(&f)?);
        start += n as i64;
    }
    let freqs = Tensor::f_cat(&parts, -1)?;
    let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?.f_unsqueeze(1)?;
    Ok((emb.f_cos()?.f_to_kind(kind)?, emb.f_sin()?.f_to_kind(kind)?))
}

/// `x * cos + rotate_half(x) * sin` over the last dimension.
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor, tch::TchError> {
    let d = x.size().last().copied().unwrap_or(0);
    let x1 = x.f_narrow(-1, 0, d / 2)?;
    let x2 = x.f_narrow(-1, d / 2, d - d / 2)?;
    let rot = Tensor::f_cat(&[&x2.f_neg()?, &x1], -1)?;
    x.f_mul(cos)?.f_add(&rot.f_mul(sin)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RopeSpec {
        RopeSpec {
            image: 10,
            video: 11,
            audio: 12,
            vision_start: 20,
            audio_start: 21,
            spatial_merge_size: 2,
            position_id_per_seconds: 25,
            seconds_per_chunk: 2,
        }
    }
    const VB: u32 = 20;
    const VE: u32 = 22;
    const AB: u32 = 21;
    const AE: u32 = 23;

    #[test]
    fn text_only_is_arange() {
        let p = rope_index(&[1, 2, 3], &spec(), &MediaGrids::default()).unwrap();
        assert_eq!((p.t.clone(), p.h.clone(), p.delta), (vec![0, 1, 2], vec![0, 1, 2], 0));
    }

    #[test]
    fn image_then_text() {
        // text, vbos, 2x3 merged image (grid 1x4x6), veos, text
        let mut ids = vec![1, VB];
        ids.extend([10; 6]);
        ids.extend([VE, 5, 6]);
        let media = MediaGrids { image_grids: vec![[1, 4, 6]], ..Default::default() };
        let p = rope_index(&ids, &spec(), &media).unwrap();
        assert_eq!(p.t, [0, 1, 2, 2, 2, 2, 2, 2, 5, 6, 7]);
        assert_eq!(p.h, [0, 1, 2, 2, 2, 3, 3, 3, 5, 6, 7]);
        assert_eq!(p.w, [0, 1, 2, 3, 4, 2, 3, 4, 5, 6, 7]);
        assert_eq!(p.delta, 8 - 11);
        let bad = MediaGrids { image_grids: vec![[1, 4, 4]], ..Default::default() };
        assert!(rope_index(&ids, &spec(), &bad).is_err());
    }

    #[test]
    fn audio_in_video_interleaves_and_shares_bos_eos() {
        // video grid (3, 2, 2): 1 merged token per grid, t ids 0, 25, 50; 60 audio tokens.
        let mut ids = vec![VB, AB, 11, 11];
        ids.extend([12; 50]);
        ids.push(11);
        ids.extend([12; 10]);
        ids.extend([AE, VE, 7]);
        let media = MediaGrids {
            video_grids: vec![[3, 2, 2]],
            video_second_per_grid: vec![1.0],
            audio_tokens: vec![60],
            ..Default::default()
        };
        let p = rope_index(&ids, &spec(), &media).unwrap();
        assert_eq!(&p.t[..4], [0, 0, 1, 26]);
        assert_eq!(p.t[4], 1);
        assert_eq!(p.t[53], 50);
        assert_eq!(p.t[54], 51); // third video grid
        assert_eq!(p.t[55], 51); // audio chunk 2 starts at 50 + st
        // eos: last chunk (audio 50..59 -> 51..60) max + 1 = 61, both eos.
        assert_eq!(&p.t[65..], [61, 61, 62]);
    }
}
