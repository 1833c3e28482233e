//! `smart_resize` and the two bicubic resamplers the Qwen2.5-Omni input pipeline uses
//! (docs/reference.md#image-preprocessing, docs/reference.md#video-preprocessing), on packed
//! RGB24 images.
//!
//! * Images (`get_frames`): qwen-omni-utils' `fetch_image` resizes with PIL's
//!   `Image.resize(size)` (bicubic, a = -0.5, support scaled by the downscale factor, i.e.
//!   antialiased), after which the HF image processor's own resize is a no-op because the size
//!   already satisfies its `smart_resize`. [`resize_pil_bicubic`] reproduces Pillow's
//!   `ImagingResample` for 8-bit images exactly: double-precision coefficients normalised and
//!   converted to 22-bit fixed point, a horizontal pass over the needed rows, then a vertical
//!   pass, each rounding and clipping to `u8`.
//! * Video frames (`get_clip`): `fetch_video` resizes the uint8 frames with torchvision's
//!   `resize(..., BICUBIC, antialias=True)`, i.e. `torch._upsample_bicubic2d_aa` in float32,
//!   horizontal then vertical, then `round` (half to even) and a cast back to `u8`.
//!   [`resize_torch_bicubic_aa`] follows that kernel's float32 arithmetic, with the weights
//!   bit-exact to torch's vectorised CPU build (fused multiply-adds); its sums can still
//!   differ from torch's in the last bit, which changes a `u8` only where torch's own value is
//!   within ~1e-4 of a rounding tie (the reference itself is CPU-dependent there).
//!
//! Left out: every other interpolation mode, images with alpha (frames decoded from video
//! have none) and the `reducing_gap` optimisation (the pipeline does not use it).

use super::error::MediaError;

/// Spatial factor of the model: patch 14 x merge 2.
pub const FACTOR: usize = 28;
/// Largest accepted aspect ratio (`MAX_RATIO`).
pub const MAX_RATIO: f64 = 200.0;

/// A packed RGB24 image, row-major, `data.len() == width * height * 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Checks the buffer length.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<RgbImage, MediaError> {
        if width == 0 || height == 0 || data.len() != width * height * 3 {
            return Err(MediaError::BadImage {
                width,
                height,
                reason: format!("expected {} bytes of RGB24, got {}", width * height * 3, data.len()),
            });
        }
        Ok(RgbImage { width, height, data })
    }
}

/// qwen-omni-utils' `smart_resize(height, width, factor, min_pixels, max_pixels)`:
/// returns `(h', w')`, multiples of `factor`, with `h'*w'` within the budget and the aspect
/// ratio kept as well as possible. Python's `round` (half to even) is used, and results are
/// never below `factor`.
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize), MediaError> {
    let bad = |reason: String| MediaError::BadImage { width, height, reason };
    if height == 0 || width == 0 || factor == 0 {
        return Err(bad("empty image".into()));
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    if h.max(w) / h.min(w) > MAX_RATIO {
        return Err(bad(format!("absolute aspect ratio must be smaller than {MAX_RATIO}")));
    }
    let at_least = |v: f64| (v as usize).max(factor);
    let mut h_bar = at_least((h / f).round_ties_even() * f);
    let mut w_bar = at_least((w / f).round_ties_even() * f);
    if h_bar * w_bar > max_pixels {
        let beta = (h * w / max_pixels as f64).sqrt();
        h_bar = at_least((h / beta / f).floor() * f);
        w_bar = at_least((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = at_least((h * beta / f).ceil() * f);
        w_bar = at_least((w * beta / f).ceil() * f);
    }
    Ok((h_bar, w_bar))
}

// ---------------------------------------------------------------- Pillow (8-bit, bicubic)

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn pil_bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: first input index, tap count, and the fixed-point weights (`ksize` each).
struct PilCoeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    kk: Vec<i32>,
}

fn pil_coeffs(in_size: usize, out_size: usize) -> PilCoeffs {
    // Pillow keeps the box as float32; integer sizes are exact.
    let scale = (in_size as f32 as f64) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut kk = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let (xmin, xmax) = (xmin as usize, xmax.clamp(0, ksize as i64) as usize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = pil_bicubic(((x + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut kk[xx * ksize..(xx + 1) * ksize];
        for x in 0..xmax {
            let w = if ww != 0.0 { k[x] / ww } else { k[x] };
            let scaled = w * f64::from(1u32 << PRECISION_BITS);
            row[x] = if w < 0.0 { (-0.5 + scaled) as i32 } else { (0.5 + scaled) as i32 };
        }
        bounds.push((xmin, xmax));
    }
    PilCoeffs { bounds, ksize, kk }
}

#[inline]
fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize((out_w, out_h), Image.BICUBIC)` for an RGB image, bit-exact.
pub fn resize_pil_bicubic(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    if out_w == 0 || out_h == 0 {
        return RgbImage { width: out_w, height: out_h, data: Vec::new() };
    }
    let need_h = out_w != img.width;
    let need_v = out_h != img.height;
    if !need_h && !need_v {
        return img.clone();
    }
    let horiz = pil_coeffs(img.width, out_w);
    let vert = pil_coeffs(img.height, out_h);
    let round = 1i64 << (PRECISION_BITS - 1);
    // Rows of the source the vertical pass reads.
    let y_first = vert.bounds[0].0;
    let y_last = vert.bounds.last().map_or(img.height, |&(lo, n)| lo + n);
    let (mid_w, mid_h, mid, row_off) = if need_h {
        let rows = y_last - y_first;
        let mut out = vec![0u8; out_w * rows * 3];
        for y in 0..rows {
            let src = &img.data[(y + y_first) * img.width * 3..(y + y_first + 1) * img.width * 3];
            let dst = &mut out[y * out_w * 3..(y + 1) * out_w * 3];
            for (xx, &(xmin, n)) in horiz.bounds.iter().enumerate() {
                let k = &horiz.kk[xx * horiz.ksize..xx * horiz.ksize + n];
                let (mut s0, mut s1, mut s2) = (round, round, round);
                for (x, &kx) in k.iter().enumerate() {
                    let p = (xmin + x) * 3;
                    let kx = i64::from(kx);
                    s0 += i64::from(src[p]) * kx;
                    s1 += i64::from(src[p + 1]) * kx;
                    s2 += i64::from(src[p + 2]) * kx;
                }
                dst[xx * 3] = clip8(s0);
                dst[xx * 3 + 1] = clip8(s1);
                dst[xx * 3 + 2] = clip8(s2);
            }
        }
        (out_w, rows, std::borrow::Cow::Owned(out), y_first)
    } else {
        (img.width, img.height, std::borrow::Cow::Borrowed(&img.data), 0)
    };
    if !need_v {
        return RgbImage { width: mid_w, height: mid_h, data: mid.into_owned() };
    }
    // Vertical pass, a whole row at a time (integer sums: the order does not matter; |sum|
    // stays below 2^31 as in Pillow's own `int` arithmetic).
    let mut out = vec![0u8; mid_w * out_h * 3];
    let stride = mid_w * 3;
    let mut acc = vec![0i32; stride];
    for (yy, &(ymin, n)) in vert.bounds.iter().enumerate() {
        let k = &vert.kk[yy * vert.ksize..yy * vert.ksize + n];
        let ymin = ymin - row_off;
        acc.fill(round as i32);
        for (y, &ky) in k.iter().enumerate() {
            let src = &mid[(ymin + y) * stride..(ymin + y + 1) * stride];
            for (a, &v) in acc.iter_mut().zip(src) {
                *a += i32::from(v) * ky;
            }
        }
        for (d, &a) in out[yy * stride..(yy + 1) * stride].iter_mut().zip(&acc) {
            *d = clip8(i64::from(a));
        }
    }
    RgbImage { width: mid_w, height: out_h, data: out }
}

// ------------------------------------------------- torch `_upsample_bicubic2d_aa` (float32)

/// Keys cubic (a = -0.5) as PyTorch's AVX2/AVX512 CPU kernels evaluate it: the compiler
/// contracts the polynomial into fused multiply-adds, which changes the weights in their last
/// bit (checked against torch 2.15 by probing its weights with unit impulses).
fn torch_aa_cubic(x: f32) -> f32 {
    const A: f32 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        let t = (A + 2.0).mul_add(x, -(A + 3.0)) * x;
        t.mul_add(x, 1.0)
    } else if x < 2.0 {
        let u = A.mul_add(x, -5.0 * A).mul_add(x, 8.0 * A);
        u.mul_add(x, -4.0 * A)
    } else {
        0.0
    }
}

/// Per output index: first input index, tap count, weights (`max_size` each).
struct AaCoeffs {
    bounds: Vec<(usize, usize)>,
    max_size: usize,
    w: Vec<f32>,
}

fn torch_aa_coeffs(in_size: usize, out_size: usize) -> AaCoeffs {
    let scale = in_size as f32 / out_size as f32;
    let support: f32 = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
    let max_size = support.ceil() as usize * 2 + 1;
    let invscale: f32 = if scale >= 1.0 { (1.0 / f64::from(scale)) as f32 } else { 1.0 };
    let mut bounds = Vec::with_capacity(out_size);
    let mut w = vec![0f32; out_size * max_size];
    for i in 0..out_size {
        let center = (f64::from(scale) * (i as f64 + 0.5)) as f32;
        let xmin = ((f64::from(center - support) + 0.5) as i64).max(0);
        let xsize = ((f64::from(center + support) + 0.5) as i64).min(in_size as i64) - xmin;
        let (xmin, xsize) = (xmin as usize, xsize.clamp(0, max_size as i64) as usize);
        let row = &mut w[i * max_size..(i + 1) * max_size];
        let mut total = 0f32;
        for (j, wj) in row.iter_mut().enumerate().take(xsize) {
            let x = (f64::from((j + xmin) as f32 - center) + 0.5) * f64::from(invscale);
            *wj = torch_aa_cubic(x as f32);
            total += *wj;
        }
        if total != 0.0 {
            for wj in row.iter_mut().take(xsize) {
                *wj /= total;
            }
        }
        bounds.push((xmin, xsize));
    }
    AaCoeffs { bounds, max_size, w }
}

/// Source rows the horizontal pass handles together (interleaved, so that the same tap of
/// `ROWS` rows x 3 channels is one run of adjacent floats the compiler vectorises).
const ROWS: usize = 8;
const LANES: usize = ROWS * 3;

/// Round half to even of a value clamped to `[0, 255]`: adding 2^23 leaves no fractional
/// bits, so the FPU's round-to-nearest-even does the rounding and the low byte of the sum's
/// bits is the result (NaN gives 0, as the cast does). Unlike a float-to-int cast this is a
/// plain bit operation, so whole rows of it vectorise.
#[inline]
fn round_u8(v: f32) -> u8 {
    const MAGIC: f32 = 8_388_608.0;
    ((v.clamp(0.0, 255.0) + MAGIC).to_bits() & 0xff) as u8
}

/// `w0 * x0 + w1 * x1 + ...` (left to right, separate multiplies and adds) for all
/// `LANES` values of a tap at once.
#[inline(always)]
fn tap_sums(tile: &[[f32; LANES]], wts: &[f32]) -> [f32; LANES] {
    let mut acc = [[0f32; 4]; LANES / 4];
    if let Some((first, rest)) = tile.split_first() {
        let w0 = wts[0];
        for (a, x) in acc.iter_mut().zip(first.as_chunks::<4>().0) {
            *a = [x[0] * w0, x[1] * w0, x[2] * w0, x[3] * w0];
        }
        for (t, &wt) in rest.iter().zip(&wts[1..]) {
            for (a, x) in acc.iter_mut().zip(t.as_chunks::<4>().0) {
                *a = [a[0] + x[0] * wt, a[1] + x[1] * wt, a[2] + x[2] * wt, a[3] + x[3] * wt];
            }
        }
    }
    let mut out = [0f32; LANES];
    out.copy_from_slice(acc.as_flattened());
    out
}

/// Horizontally resized source rows (`out_w * 3` floats each), kept in a ring just deep
/// enough for the vertical taps, so that the intermediate image never leaves the cache.
#[derive(Default)]
struct RowRing {
    data: Vec<f32>,
    rows: usize,
    stride: usize,
    /// Source rows `< done` have been computed.
    done: usize,
    bytes: Vec<[u8; LANES]>,
    tile: Vec<[f32; LANES]>,
}

impl RowRing {
    fn reset(&mut self, rows: usize, stride: usize) {
        self.data.resize(rows * stride, 0.0);
        (self.rows, self.stride, self.done) = (rows, stride, 0);
    }

    fn row(&self, y: usize) -> &[f32] {
        let at = (y % self.rows) * self.stride;
        &self.data[at..at + self.stride]
    }

    /// Computes source rows up to `end` (exclusive), `ROWS` at a time.
    fn fill_to(&mut self, img: &RgbImage, k: Option<&AaCoeffs>, end: usize) {
        while self.done < end.min(img.height) {
            let rows = ROWS.min(img.height - self.done);
            self.block(img, k, self.done, rows);
            self.done += rows;
        }
    }

    fn block(&mut self, img: &RgbImage, k: Option<&AaCoeffs>, y0: usize, rows: usize) {
        let w3 = img.width * 3;
        let slots: Vec<usize> = (0..rows).map(|r| ((y0 + r) % self.rows) * self.stride).collect();
        let src = |r: usize| &img.data[(y0 + r) * w3..(y0 + r + 1) * w3];
        let Some(k) = k else {
            for (r, &at) in slots.iter().enumerate() {
                for (d, &s) in self.data[at..at + w3].iter_mut().zip(src(r)) {
                    *d = f32::from(s);
                }
            }
            return;
        };
        // Interleave the rows per source column as bytes, then convert in one long run.
        self.bytes.resize(img.width, [0; LANES]);
        self.tile.resize(img.width, [0.0; LANES]);
        for r in 0..rows {
            for (b, px) in self.bytes.iter_mut().zip(src(r).chunks_exact(3)) {
                b[r * 3..r * 3 + 3].copy_from_slice(px);
            }
        }
        for (t, &b) in self.tile.as_flattened_mut().iter_mut().zip(self.bytes.as_flattened()) {
            *t = f32::from(b);
        }
        for (xx, (&(xmin, n), wts)) in k.bounds.iter().zip(k.w.chunks_exact(k.max_size)).enumerate() {
            // `black_box` keeps LLVM from fusing the sums with the 3-float stores below into
            // strided scalar loads (measured 1.5x slower on the whole resize).
            let acc = std::hint::black_box(tap_sums(&self.tile[xmin..xmin + n], &wts[..n]));
            for (r, &at) in slots.iter().enumerate() {
                self.data[at + xx * 3..at + xx * 3 + 3].copy_from_slice(&acc[r * 3..r * 3 + 3]);
            }
        }
    }
}

thread_local! {
    /// Each thread's ring and tiles, reused across frames (fresh ones cost page faults).
    static TORCH_RING: std::cell::RefCell<RowRing> = std::cell::RefCell::new(RowRing::default());
}

/// torchvision `resize(frame, [out_h, out_w], BICUBIC, antialias=True)` on a uint8 RGB frame
/// (float32 arithmetic, horizontal pass then vertical, round half to even, clamp to u8).
/// Every output value is `w0 * x0 + w1 * x1 + ...` summed left to right with separate
/// multiplies and adds, as torch does. The horizontal pass works on `ROWS` rows at a time and
/// the vertical pass on whole rows, so that this vectorises without changing any sum; the
/// horizontal rows are made just before the vertical pass needs them.
pub fn resize_torch_bicubic_aa(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    if out_w == 0 || out_h == 0 {
        return RgbImage { width: out_w, height: out_h, data: Vec::new() };
    }
    if out_w == img.width && out_h == img.height {
        return img.clone();
    }
    let horiz = (out_w != img.width).then(|| torch_aa_coeffs(img.width, out_w));
    let vert = (out_h != img.height).then(|| torch_aa_coeffs(img.height, out_h));
    let ow3 = out_w * 3;
    let mut out = vec![0u8; ow3 * out_h];
    let mut row = vec![0f32; ow3];
    TORCH_RING.with_borrow_mut(|ring| {
        ring.reset(vert.as_ref().map_or(1, |k| k.max_size) + ROWS, ow3);
        for (yy, dst) in out.chunks_exact_mut(ow3).enumerate() {
            match &vert {
                None => {
                    ring.fill_to(img, horiz.as_ref(), yy + 1);
                    row.copy_from_slice(ring.row(yy));
                }
                Some(k) => {
                    let (ymin, n) = k.bounds[yy];
                    ring.fill_to(img, horiz.as_ref(), ymin + n);
                    let wts = &k.w[yy * k.max_size..yy * k.max_size + n];
                    match wts.split_first() {
                        None => row.fill(0.0),
                        Some((&w0, rest)) => {
                            for (r, &x) in row.iter_mut().zip(ring.row(ymin)) {
                                *r = x * w0;
                            }
                            for (j, &wt) in rest.iter().enumerate() {
                                for (r, &x) in row.iter_mut().zip(ring.row(ymin + j + 1)) {
                                    *r += x * wt;
                                }
                            }
                        }
                    }
                }
            }
            for (d, &v) in dst.iter_mut().zip(&row) {
                *d = round_u8(v);
            }
        }
    });
    RgbImage { width: out_w, height: out_h, data: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_table() {
        // (h, w, min, max) -> (h', w'); values worked by hand from the formula.
        let img_min = 4 * 28 * 28;
        let img_max = 1024 * 28 * 28;
        let vid_min = 128 * 28 * 28;
        let vid_max = 768 * 28 * 28;
        type Case = (usize, usize, usize, usize, (usize, usize));
        let table: &[Case] = &[
            (720, 1280, vid_min, vid_max, (560, 1008)), // worked example of docs/reference.md#tmrope
            (720, 1280, img_min, img_max, (672, 1176)),
            (61, 97, img_min, img_max, (56, 84)),
            (84, 112, vid_min, vid_max, (280, 392)), // video-preprocessing: 112x84 clip -> 280x392 (h, w)
            (10, 10, img_min, img_max, (56, 56)),
            (28, 28, 0, img_max, (28, 28)),
            (42, 42, 0, img_max, (56, 56)), // round(1.5) = 2 (half to even)
            (70, 70, 0, img_max, (56, 56)), // round(2.5) = 2 (half to even)
            (1080, 1920, img_min, img_max, (672, 1176)),
        ];
        for &(h, w, lo, hi, want) in table {
            let got = smart_resize(h, w, FACTOR, lo, hi).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got, want, "{h}x{w} in [{lo}, {hi}]");
        }
        assert!(smart_resize(1, 300, FACTOR, img_min, img_max).is_err());
        assert!(smart_resize(0, 3, FACTOR, img_min, img_max).is_err());
    }

    fn gradient(w: usize, h: usize) -> RgbImage {
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                data.extend([(x * 255 / w.max(2)) as u8, (y * 255 / h.max(2)) as u8, ((x + y) % 256) as u8]);
            }
        }
        RgbImage { width: w, height: h, data }
    }

    #[test]
    fn resamplers_keep_constant_images_constant() {
        let flat = RgbImage { width: 37, height: 23, data: [200u8, 17, 90].repeat(37 * 23) };
        for (w, h) in [(56, 28), (28, 56), (112, 84), (14, 14)] {
            let a = resize_pil_bicubic(&flat, w, h);
            let b = resize_torch_bicubic_aa(&flat, w, h);
            assert_eq!(a.data, [200u8, 17, 90].repeat(w * h), "pil {w}x{h}");
            assert_eq!(b.data, [200u8, 17, 90].repeat(w * h), "torch {w}x{h}");
        }
    }

    #[test]
    fn same_size_is_identity_and_sizes_are_right() {
        let g = gradient(40, 30);
        assert_eq!(resize_pil_bicubic(&g, 40, 30), g);
        assert_eq!(resize_torch_bicubic_aa(&g, 40, 30), g);
        let a = resize_pil_bicubic(&g, 56, 28);
        assert_eq!((a.width, a.height, a.data.len()), (56, 28, 56 * 28 * 3));
        let b = resize_torch_bicubic_aa(&g, 28, 56);
        assert_eq!((b.width, b.height, b.data.len()), (28, 56, 28 * 56 * 3));
        // Both are close to each other on smooth content (different rounding only).
        let a = resize_pil_bicubic(&g, 28, 28);
        let b = resize_torch_bicubic_aa(&g, 28, 28);
        let worst = a.data.iter().zip(&b.data).map(|(x, y)| (i32::from(*x) - i32::from(*y)).abs()).max();
        assert!(worst <= Some(2), "{worst:?}");
    }

    /// The scalar form (one dot product per output pixel) the vectorised passes must equal.
    fn scalar_torch_bicubic_aa(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
        if out_w == 0 || out_h == 0 {
            return RgbImage { width: out_w, height: out_h, data: Vec::new() };
        }
        if out_w == img.width && out_h == img.height {
            return img.clone();
        }
        let (w, h) = (img.width, img.height);
        let planes: Vec<Vec<f32>> =
            (0..3).map(|c| img.data.iter().skip(c).step_by(3).map(|&v| f32::from(v)).collect()).collect();
        let horiz = (out_w != w).then(|| torch_aa_coeffs(w, out_w));
        let vert = (out_h != h).then(|| torch_aa_coeffs(h, out_h));
        let mut out = vec![0u8; out_w * out_h * 3];
        for (c, plane) in planes.iter().enumerate() {
            // Horizontal pass: one dot product per output pixel over contiguous input.
            let mid: std::borrow::Cow<'_, [f32]> = match &horiz {
                None => std::borrow::Cow::Borrowed(plane),
                Some(k) => {
                    let mut m = vec![0f32; out_w * h];
                    for (src, dst) in plane.chunks_exact(w).zip(m.chunks_exact_mut(out_w)) {
                        for (d, (&(xmin, n), wts)) in
                            dst.iter_mut().zip(k.bounds.iter().zip(k.w.chunks_exact(k.max_size)))
                        {
                            let taps = &src[xmin..xmin + n];
                            let mut acc = taps[0] * wts[0];
                            for (x, wt) in taps[1..].iter().zip(&wts[1..n]) {
                                acc += x * wt;
                            }
                            *d = acc;
                        }
                    }
                    std::borrow::Cow::Owned(m)
                }
            };
            // Vertical pass: whole rows at a time (acc = w0 * row0, then += w_j * row_j).
            let mut row = vec![0f32; out_w];
            for yy in 0..out_h {
                match &vert {
                    None => row.copy_from_slice(&mid[yy * out_w..(yy + 1) * out_w]),
                    Some(k) => {
                        let (ymin, n) = k.bounds[yy];
                        let wts = &k.w[yy * k.max_size..yy * k.max_size + n];
                        let first = &mid[ymin * out_w..(ymin + 1) * out_w];
                        for (r, &x) in row.iter_mut().zip(first) {
                            *r = x * wts[0];
                        }
                        for (j, &wt) in wts.iter().enumerate().skip(1) {
                            let src = &mid[(ymin + j) * out_w..(ymin + j + 1) * out_w];
                            for (r, &x) in row.iter_mut().zip(src) {
                                *r += x * wt;
                            }
                        }
                    }
                }
                let dst = &mut out[yy * out_w * 3..(yy + 1) * out_w * 3];
                for (d, &v) in dst.iter_mut().skip(c).step_by(3).zip(&row) {
                    *d = v.clamp(0.0, 255.0).round_ties_even() as u8;
                }
            }
        }
        RgbImage { width: out_w, height: out_h, data: out }
    }

    #[test]
    fn vectorised_torch_resize_equals_the_scalar_sums() {
        let noisy = |w: usize, h: usize| {
            let mut s = 0x2545_f491u32;
            let data = (0..w * h * 3)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    (s >> 24) as u8
                })
                .collect();
            RgbImage { width: w, height: h, data }
        };
        for (w, h, ow, oh) in [
            (1280, 720, 1008, 560),
            (128, 72, 100, 56),
            (37, 23, 56, 28),
            (40, 30, 40, 17),
            (40, 30, 13, 30),
            (9, 5, 3, 2),
            (600, 340, 28, 20), // taps deeper than one row block
            (50, 500, 50, 100), // vertical only, many taps
            (64, 48, 128, 96),  // upscaling
        ] {
            for img in [noisy(w, h), gradient(w, h)] {
                assert_eq!(
                    resize_torch_bicubic_aa(&img, ow, oh),
                    scalar_torch_bicubic_aa(&img, ow, oh),
                    "{w}x{h}->{ow}x{oh}"
                );
            }
        }
    }
}
