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
    let mut rw = RopeWalk {
        ids,
        spec,
        media,
        merge: spec.spatial_merge_size.max(1),
        wk: Walker { out: Positions { t: vec![], h: vec![], w: vec![], delta: 0 }, next: 0 },
        used: [0; 3],
    };
    let mut i = 0usize;
    while i < ids.len() {
        let Some(j) = (i..ids.len()).find(|&j| [spec.image, spec.video, spec.audio].contains(&ids[j])) else {
            rw.wk.text(ids.len() - i);
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
        rw.wk.text(j - bos - i);
        let bos_pos = [rw.wk.next; 2];
        rw.wk.block(&bos_pos[..bos], &bos_pos[..bos], &bos_pos[..bos]);
        let k = if tok == spec.audio {
            rw.audio(j)?
        } else if tok == spec.image || !with_audio {
            rw.vision(j, tok == spec.image)?
        } else {
            rw.video_with_audio(j)?
        };
        if k + bos > ids.len() {
            return Err(layout(k, "the sequence ends before the media's eos marker".into()));
        }
        let eos_pos = [rw.wk.next; 2];
        rw.wk.block(&eos_pos[..bos], &eos_pos[..bos], &eos_pos[..bos]);
        i = k + bos;
    }
    let given = [media.image_grids.len(), media.video_grids.len(), media.audio_tokens.len()];
    if rw.used != given {
        let ([img, vid, aud], [ni, nv, na]) = (rw.used, given);
        return Err(RopeError::Media(format!(
            "the tokens hold {img} image(s), {vid} video(s), {aud} audio(s) but {ni}, {nv}, {na} were given"
        )));
    }
    let mut out = rw.wk.out;
    out.delta = out.max() + 1 - out.len() as i64;
    Ok(out)
}

fn layout(index: usize, message: String) -> RopeError {
    RopeError::Layout { index, message }
}

/// The walk over one sequence: its positions so far and the media inputs used.
struct RopeWalk<'a> {
    ids: &'a [u32],
    spec: &'a RopeSpec,
    media: &'a MediaGrids,
    merge: usize,
    wk: Walker,
    /// Inputs consumed, indexed by `IMAGE`, `VIDEO`, `AUDIO`.
    used: [usize; 3],
}

/// Indices of [`RopeWalk::used`].
const IMAGE: usize = 0;
const VIDEO: usize = 1;
const AUDIO: usize = 2;

impl RopeWalk<'_> {
    fn expect_run(&self, from: usize, n: usize, id: u32, what: &str) -> Result<(), RopeError> {
        let ok = self.ids.get(from..from + n).is_some_and(|s| s.iter().all(|&x| x == id));
        if ok { Ok(()) } else { Err(layout(from, format!("expected {n} {what} placeholder tokens here"))) }
    }

    /// The next input of kind `kind` (`IMAGE`, `VIDEO` or `AUDIO`) from `list`.
    fn take<T: Copy>(&mut self, kind: usize, list: &[T]) -> Result<T, RopeError> {
        let n = self.used[kind];
        let what = ["image", "video", "audio"][kind];
        let x = *list.get(n).ok_or_else(|| RopeError::Media(format!("{what} placeholder {n} has no {what} input")))?;
        self.used[kind] += 1;
        Ok(x)
    }

    /// The next video's grid and seconds per grid step.
    fn next_video(&mut self) -> Result<([usize; 3], f64), RopeError> {
        let n = self.used[VIDEO];
        let media = self.media;
        let g = self.take(VIDEO, &media.video_grids)?;
        Ok((g, *media.video_second_per_grid.get(n).unwrap_or(&1.0)))
    }

    /// An audio placeholder run at `k`: text-like positions; returns the index after it.
    fn audio(&mut self, k: usize) -> Result<usize, RopeError> {
        let media = self.media;
        let n = self.take(AUDIO, &media.audio_tokens)?;
        self.expect_run(k, n, self.spec.audio, "audio")?;
        self.wk.text(n);
        Ok(k + n)
    }

    /// An image, or a video without its audio, at `k`; returns the index after it.
    fn vision(&mut self, k: usize, image: bool) -> Result<usize, RopeError> {
        let (pps, st) = (self.spec.position_id_per_seconds, self.wk.next);
        let (grid, t_index, what, id) = if image {
            let media = self.media;
            let g = self.take(IMAGE, &media.image_grids)?;
            let t: Vec<i64> = (0..g[0] as i64).map(|x| x * i64::from(pps)).collect();
            (g, t, "image", self.spec.image)
        } else {
            let (g, spg) = self.next_video()?;
            (g, video_t_index(g[0], spg, pps), "video", self.spec.video)
        };
        check_grid(grid, self.merge)?;
        let [t, h, w] = vision_block(st, grid, self.merge, &t_index);
        self.expect_run(k, t.len(), id, what)?;
        self.wk.block(&t, &h, &w);
        Ok(k + t.len())
    }

    /// A video with its audio at `k`: the two interleaved in chunks of `seconds_per_chunk`;
    /// returns the index after them.
    fn video_with_audio(&mut self, mut k: usize) -> Result<usize, RopeError> {
        let (pps, st) = (self.spec.position_id_per_seconds, self.wk.next);
        let (g, spg) = self.next_video()?;
        check_grid(g, self.merge)?;
        let media = self.media;
        let n_audio = self.take(AUDIO, &media.audio_tokens)?;
        let [vt, vh, vw] = vision_block(st, g, self.merge, &video_t_index(g[0], spg, pps));
        let at: Vec<i64> = (0..n_audio as i64).map(|x| st + x).collect();
        let per = i64::from(pps) * i64::from(self.spec.seconds_per_chunk);
        let (vc, ac) = (chunks(&vt, per, st), chunks(&at, per, st));
        for c in 0..vc.len().max(ac.len()) {
            if let Some(&(s, e)) = vc.get(c) {
                self.expect_run(k, e - s, self.spec.video, "video")?;
                k += e - s;
                self.wk.block(&vt[s..e], &vh[s..e], &vw[s..e]);
            }
            if let Some(&(s, e)) = ac.get(c) {
                self.expect_run(k, e - s, self.spec.audio, "audio")?;
                k += e - s;
                self.wk.block(&at[s..e], &at[s..e], &at[s..e]);
            }
        }
        Ok(k)
    }
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

    #[test]
    fn malformed_layouts_and_media_counts_are_errors_naming_the_place() {
        let image = MediaGrids { image_grids: vec![[1, 4, 6]], ..Default::default() };
        let audio = MediaGrids { audio_tokens: vec![3], ..Default::default() };
        let none = MediaGrids::default();
        let mut six = vec![1, VB];
        six.extend([10; 6]);
        six.push(VE);
        let cases: Vec<(Vec<u32>, &MediaGrids, &str)> = vec![
            (vec![10, 10], &image, "token 0: a placeholder without its bos marker"),
            (vec![1, VB, 10, 10, 10, 10, 10, 10], &image, "token 8: the sequence ends before the media's eos marker"),
            (vec![1, VB, 10, 10, 10, VE], &image, "token 2: expected 6 image placeholder tokens here"),
            (six, &none, "image placeholder 0 has no image input"),
            (vec![1, AB, 12, 12, 12, AE], &audio, ""),
            (vec![1, AB, 12, 12, AE], &audio, "token 2: expected 3 audio placeholder tokens here"),
            (vec![1, 2], &image, "the tokens hold 0 image(s), 0 video(s), 0 audio(s) but 1, 0, 0 were given"),
        ];
        for (ids, media, want) in cases {
            let got = rope_index(&ids, &spec(), media).map(|_| String::new()).unwrap_or_else(|e| e.to_string());
            assert_eq!(got, want, "{ids:?}");
        }
    }
}
