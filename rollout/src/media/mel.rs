//! Whisper log-mel features as Qwen2.5-Omni's `WhisperFeatureExtractor` computes them
//! (docs/reference.md#mel): 16 kHz mono, periodic Hann window of 400, hop 160, centred STFT
//! with reflect padding, the last frame dropped, power spectrum, 128 slaney-scale
//! slaney-normalised mel filters over 0-8000 Hz, `log10(max(x, 1e-10))`, floored at the
//! waveform's maximum minus 8, then `(x + 4) / 4`.
//!
//! The processor pads every waveform with zeros to `chunk_length` = 300 s (4,800,000 samples)
//! and truncates longer ones; the model keeps only the valid frames, `ceil(samples / 160)`.
//! This computes exactly those frames without the 30,000-frame padded spectrogram: the signal
//! is zero-extended, every frame that sees any sample takes part in the maximum (frames past
//! the valid ones still do in the reference), and frames of pure padding cannot raise it.
//! Arithmetic is f64 (the reference runs float32; differences are ~1e-6).
//!
//! Left out: batching several waveforms (each is computed on its own, which is what the
//! per-waveform maximum means) and dithering (0.0 in the config).

use super::frames::linspace;
use realfft::RealFftPlanner;

pub const SAMPLE_RATE: u32 = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const N_MELS: usize = 128;
pub const N_FREQ: usize = N_FFT / 2 + 1;
/// `chunk_length` (300 s) in samples and in feature frames.
pub const MAX_SAMPLES: usize = 300 * SAMPLE_RATE as usize;
pub const MAX_FRAMES: usize = MAX_SAMPLES / HOP;

/// Log-mel features of one waveform.
#[derive(Debug, Clone, PartialEq)]
pub struct MelFeatures {
    /// `[128, frames]`, row-major (mel bin major).
    pub data: Vec<f32>,
    /// Valid feature frames: `ceil(min(samples, 4.8M) / 160)`.
    pub frames: usize,
}

impl MelFeatures {
    /// Audio placeholder tokens: `((F - 1) // 2 + 1 - 2) // 2 + 1`.
    pub fn tokens(&self) -> usize {
        audio_tokens(self.frames)
    }
}

/// Audio tokens for `frames` valid feature frames (two convolutions, then pooling by 2).
pub fn audio_tokens(frames: usize) -> usize {
    if frames == 0 {
        return 0;
    }
    let after_conv = (frames - 1) / 2 + 1;
    (after_conv.saturating_sub(2)) / 2 + 1
}

fn hertz_to_mel(f: f64) -> f64 {
    let (min_log_hz, min_log_mel, logstep) = (1000.0, 15.0, 27.0 / 6.4f64.ln());
    if f >= min_log_hz { min_log_mel + (f / min_log_hz).ln() * logstep } else { 3.0 * f / 200.0 }
}

fn mel_to_hertz(m: f64) -> f64 {
    let (min_log_hz, min_log_mel, logstep) = (1000.0, 15.0, 6.4f64.ln() / 27.0);
    if m >= min_log_mel { min_log_hz * (logstep * (m - min_log_mel)).exp() } else { 200.0 * m / 3.0 }
}

/// transformers' `mel_filter_bank(201, 128, 0, 8000, 16000, norm="slaney",
/// mel_scale="slaney")`, stored `[mel][freq]`.
pub fn mel_filters() -> Vec<[f64; N_FREQ]> {
    let (lo, hi) = (hertz_to_mel(0.0), hertz_to_mel(8000.0));
    let n = N_MELS + 2;
    let filter_hz: Vec<f64> = linspace(lo, hi, n).into_iter().map(mel_to_hertz).collect();
    let fft_hz = linspace(0.0, f64::from(SAMPLE_RATE / 2), N_FREQ);
    let mut out = vec![[0f64; N_FREQ]; N_MELS];
    for (m, row) in out.iter_mut().enumerate() {
        let (f0, f1, f2) = (filter_hz[m], filter_hz[m + 1], filter_hz[m + 2]);
        let enorm = 2.0 / (f2 - f0);
        for (k, v) in row.iter_mut().enumerate() {
            let down = -(f0 - fft_hz[k]) / (f1 - f0);
            let up = (f2 - fft_hz[k]) / (f2 - f1);
            *v = down.min(up).max(0.0) * enorm;
        }
    }
    out
}

/// Log-mel features of a 16 kHz mono waveform (values as decoded, about [-1, 1]).
pub fn log_mel(samples: &[f32]) -> MelFeatures {
    let len = samples.len().min(MAX_SAMPLES);
    let x = &samples[..len];
    let frames = len.div_ceil(HOP);
    if frames == 0 {
        return MelFeatures { data: Vec::new(), frames: 0 };
    }
    // Frames whose window [160 i - 200, 160 i + 200) touches the signal; at most the 30,000
    // frames the padded reference has.
    let computed = (len + N_FFT / 2).div_ceil(HOP).clamp(frames, MAX_FRAMES);
    let half = (N_FFT / 2) as i64;
    // Sample at index j of the zero-padded waveform (length 4.8M), reflect-padded by 200.
    let padded_len = MAX_SAMPLES as i64;
    let at = |j: i64| -> f64 {
        let j = if j < 0 {
            -j
        } else if j >= padded_len {
            2 * (padded_len - 1) - j
        } else {
            j
        };
        usize::try_from(j).ok().and_then(|j| x.get(j)).map_or(0.0, |&v| f64::from(v))
    };
    let window: Vec<f64> =
        (0..N_FFT).map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos()).collect();
    let filters = mel_filters();
    // Non-zero frequency range of each filter.
    let ranges: Vec<(usize, usize)> = filters
        .iter()
        .map(|row| {
            let lo = row.iter().position(|&v| v != 0.0).unwrap_or(0);
            let hi = row.iter().rposition(|&v| v != 0.0).map_or(0, |p| p + 1);
            (lo, hi.max(lo))
        })
        .collect();
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(N_FFT);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let mut power = vec![0f64; N_FREQ];
    let mut logmel = vec![0f64; N_MELS * computed];
    let mut max = f64::NEG_INFINITY;
    for i in 0..computed {
        let start = (i * HOP) as i64 - half;
        for (n, v) in input.iter_mut().enumerate() {
            *v = at(start + n as i64) * window[n];
        }
        // Lengths are fixed by the plan, so this cannot fail.
        if fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch).is_err() {
            spectrum.iter_mut().for_each(|c| *c = realfft::num_complex::Complex::new(0.0, 0.0));
        }
        for (p, c) in power.iter_mut().zip(&spectrum) {
            *p = c.re * c.re + c.im * c.im;
        }
        for (m, (row, &(lo, hi))) in filters.iter().zip(&ranges).enumerate() {
            let e: f64 = (lo..hi).map(|k| row[k] * power[k]).sum();
            let v = e.max(1e-10).log10();
            max = max.max(v);
            logmel[m * computed + i] = v;
        }
    }
    // Frames made only of padding (when the reference has any) sit at log10(1e-10) = -10,
    // never above the maximum of the computed ones, which are all >= -10 too.
    let floor = max - 8.0;
    let mut data = Vec::with_capacity(N_MELS * frames);
    for m in 0..N_MELS {
        data.extend(logmel[m * computed..m * computed + frames].iter().map(|&v| ((v.max(floor) + 4.0) / 4.0) as f32));
    }
    MelFeatures { data, frames }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_counts_match_the_processor() {
        // docs/reference.md#mel: 1 s -> 25, 30 s -> 750, 300 s -> 7500, 404 frames -> 101.
        for (frames, tokens) in [(100, 25), (3000, 750), (30000, 7500), (404, 101), (400, 100), (1, 1), (0, 0)] {
            assert_eq!(audio_tokens(frames), tokens, "{frames} frames");
        }
    }

    #[test]
    fn filters_are_slaney_triangles() {
        let f = mel_filters();
        assert_eq!(f.len(), N_MELS);
        // Every filter is non-negative with a single peak; the first starts at bin 0.
        for row in &f {
            assert!(row.iter().all(|&v| v >= 0.0));
            assert!(row.iter().any(|&v| v > 0.0));
        }
        assert_eq!(f[0][0], 0.0);
        assert!(f[0][1] > 0.0);
    }

    #[test]
    fn frame_count_silence_and_a_tone() {
        let silent = log_mel(&vec![0.0; 16_000]);
        assert_eq!(silent.frames, 100);
        assert_eq!(silent.data.len(), 128 * 100);
        // All at log10(1e-10) = -10 -> (-10 + 4) / 4.
        assert!(silent.data.iter().all(|&v| (v + 1.5).abs() < 1e-6));
        assert_eq!(log_mel(&vec![0.0; 16_001]).frames, 101);
        assert_eq!(log_mel(&[]).frames, 0);
        // A 1 kHz tone peaks in the mel bin whose centre is nearest 1 kHz.
        let tone: Vec<f32> = (0..16_000)
            .map(|n| (0.5 * (2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 16_000.0).sin()) as f32)
            .collect();
        let m = log_mel(&tone);
        let col = 50;
        let best = (0..N_MELS).max_by(|&a, &b| m.data[a * 100 + col].total_cmp(&m.data[b * 100 + col]));
        let centre_mel = hertz_to_mel(1000.0);
        let (lo, hi) = (hertz_to_mel(0.0), hertz_to_mel(8000.0));
        let expect = ((centre_mel - lo) / ((hi - lo) / 129.0)).round() as usize - 1;
        assert!(best.is_some_and(|b| b.abs_diff(expect) <= 1), "{best:?} vs {expect}");
    }
}
