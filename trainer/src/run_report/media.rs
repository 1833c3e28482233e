//! The media of a trajectory step, re-extracted from the video with the rollout crate's media
//! code and embedded as data URIs: frames as small PNG thumbnails, audio as a WAV, a clip as a
//! strip of frames (evenly over its range) plus its audio.
//!
//! Everything is bounded so the page stays small: at most `max_frames` thumbnails per step (an
//! even subset of the step's frames), thumbnails at most `thumb_width` pixels wide, the first
//! `audio_seconds` of each audio (resampled 16 kHz -> 8 kHz, 16-bit mono), and a total budget of
//! `budget_bytes` of data URIs, after which media is replaced by a note. Videos are opened once.
//! Left out: the model's exact clip sampling (2 fps, pixel budgets): a strip shows what the clip
//! covers, not the tensor the model received.

use rollout::media::resize::resize_pil_bicubic;
use rollout::media::{FrameRequest, ImageSizing, MediaSource, RgbImage};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Bounds of the embedded media.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaOptions {
    /// Embed media at all.
    pub enabled: bool,
    pub thumb_width: usize,
    pub max_frames: usize,
    pub audio_seconds: f64,
    pub budget_bytes: usize,
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions { enabled: true, thumb_width: 160, max_frames: 8, audio_seconds: 6.0, budget_bytes: 4 << 20 }
    }
}

/// One embedded image: the time it shows and its data URI.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumb {
    pub t: f64,
    pub uri: String,
}

/// An embedded audio: its data URI and the seconds it holds (maybe fewer than requested).
#[derive(Debug, Clone, PartialEq)]
pub struct Sound {
    pub uri: String,
    pub seconds: f64,
}

/// Extracts and encodes media, within the budget.
pub struct MediaEmbedder {
    pub opts: MediaOptions,
    sources: HashMap<PathBuf, Result<MediaSource, String>>,
    used: usize,
    /// Items embedded, and items left out because the budget was spent.
    pub embedded: usize,
    pub over_budget: usize,
}

pub use rollout::media::output::{base64, wav_bytes};

/// `img` as PNG bytes.
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>, String> {
    rollout::media::output::png_bytes(img, png::Compression::Balanced).map_err(|e| e.to_string())
}

/// `n` indices spread evenly over `0..len` (all of them when `len <= n`).
pub fn even_subset(len: usize, n: usize) -> Vec<usize> {
    if len <= n {
        return (0..len).collect();
    }
    if n <= 1 {
        return vec![0];
    }
    (0..n).map(|i| (i * (len - 1) + (n - 1) / 2) / (n - 1)).collect()
}

impl MediaEmbedder {
    pub fn new(opts: MediaOptions) -> MediaEmbedder {
        MediaEmbedder { opts, sources: HashMap::new(), used: 0, embedded: 0, over_budget: 0 }
    }

    /// Bytes of data URIs so far.
    pub fn used(&self) -> usize {
        self.used
    }

    fn spent(&self) -> bool {
        self.used >= self.opts.budget_bytes
    }

    fn source(&mut self, video: &Path) -> Result<&mut MediaSource, String> {
        let entry = self
            .sources
            .entry(video.to_path_buf())
            .or_insert_with(|| MediaSource::open(video).map_err(|e| format!("cannot open {}: {e}", video.display())));
        entry.as_mut().map_err(|e| e.clone())
    }

    fn admit(&mut self, uri: String) -> Option<String> {
        if self.used + uri.len() > self.opts.budget_bytes {
            self.over_budget += 1;
            self.used = self.used.max(self.opts.budget_bytes);
            return None;
        }
        self.used += uri.len();
        self.embedded += 1;
        Some(uri)
    }

    fn thumb(&self, img: &RgbImage) -> Result<String, String> {
        let tw = self.opts.thumb_width.max(16);
        let small = if img.width > tw {
            let th = ((img.height * tw) as f64 / img.width as f64).round().max(1.0) as usize;
            resize_pil_bicubic(img, tw, th)
        } else {
            img.clone()
        };
        Ok(format!("data:image/png;base64,{}", base64(&png_bytes(&small)?)))
    }

    /// Thumbnails of `num` frames over `[start, end]` (an even subset of at most `max_frames`).
    /// `Ok(None)` when the budget is spent.
    pub fn frames(&mut self, video: &Path, start: f64, end: f64, num: usize) -> Result<Option<Vec<Thumb>>, String> {
        if self.spent() {
            self.over_budget += 1;
            return Ok(None);
        }
        let tw = self.opts.thumb_width.max(16);
        let sizing = ImageSizing { min_pixels: 28 * 28, max_pixels: (tw * tw).max(28 * 28) };
        let src = self.source(video)?;
        let frames = src
            .frames(&FrameRequest::new(start, end, num.max(1) as i64), Some(&sizing))
            .map_err(|e| format!("{}: {e}", video.display()))?;
        let picked = even_subset(frames.frames.len(), self.opts.max_frames.max(1));
        let mut out = Vec::with_capacity(picked.len());
        for i in picked {
            let f = &frames.frames[i];
            let uri = self.thumb(&f.image)?;
            match self.admit(uri) {
                Some(uri) => out.push(Thumb { t: f.requested_s, uri }),
                None => break,
            }
        }
        Ok(Some(out))
    }

    /// The audio of `[start, end]`, at most `audio_seconds` of it. `Ok(None)` when the budget
    /// is spent.
    pub fn audio(&mut self, video: &Path, start: f64, end: f64) -> Result<Option<Sound>, String> {
        if self.spent() {
            self.over_budget += 1;
            return Ok(None);
        }
        let cap = self.opts.audio_seconds.max(0.1);
        let src = self.source(video)?;
        let stop = end.min(start + cap).min(src.duration());
        let clip = src.audio(start, stop).map_err(|e| format!("{}: {e}", video.display()))?;
        let rate = clip.sample_rate;
        let (samples, out_rate) = if rate >= 16_000 && rate % 2 == 0 {
            (clip.samples.chunks(2).map(|c| c.iter().sum::<f32>() / c.len() as f32).collect::<Vec<_>>(), rate / 2)
        } else {
            (clip.samples.clone(), rate)
        };
        let seconds = clip.seconds();
        let wav = wav_bytes(&samples, out_rate).map_err(|e| format!("{}: {e}", video.display()))?;
        let uri = format!("data:audio/wav;base64,{}", base64(&wav));
        Ok(self.admit(uri).map(|uri| Sound { uri, seconds }))
    }

    /// Whether the video has an audio track (false when it cannot be opened).
    pub fn has_audio(&mut self, video: &Path) -> bool {
        self.source(video).map(|s| s.info().has_audio).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_are_even_and_in_range() {
        assert_eq!(even_subset(3, 8), vec![0, 1, 2]);
        assert_eq!(even_subset(60, 4), vec![0, 20, 39, 59]);
        assert_eq!(even_subset(5, 1), vec![0]);
    }

    #[test]
    fn encoders_write_headers() {
        let img = RgbImage { width: 2, height: 1, data: vec![0, 0, 0, 255, 255, 255] };
        assert!(png_bytes(&img).is_ok_and(|b| b.starts_with(b"\x89PNG")));
        let w = wav_bytes(&[0.0, 0.5], 8000).unwrap();
        assert_eq!((w.len(), &w[..4]), (48, &b"RIFF"[..]));
    }
}
