//! Media files as the processor reads them: the frame images, WAV audio and MP4 clips that SFT
//! data lines reference (the reference's environment wrote them as temporary files; `omnirl
//! synth` exports them next to its output).
//!
//! * An image (JPEG or PNG, decoded by the `image` crate) is one frame, resized to the
//!   processor's image size by [`inputs::frames_inputs`](super::inputs::frames_inputs) like a
//!   `get_frames` frame.
//! * A WAV file (read by `hound`) must be 16 kHz, the processor's rate and what the reference's
//!   `get_audio` wrote (mono 16-bit PCM); several channels are averaged to mono, integer samples
//!   are scaled to [-1, 1) (`i16 / 32768` for 16-bit, as the reference's loader reads them).
//! * A clip is the whole file sampled like a `get_clip` of its full length: every frame of the
//!   file is a candidate (no end margin: the file was already cut), and its audio track comes
//!   along when it has one.
//!
//! Left out: resampling WAV files at other rates (an error names the rate found), compressed
//! audio files (MP3, AAC) and other image formats.

use super::error::{MediaAction, MediaError};
use super::resize::RgbImage;
use super::types::{AudioClip, Clip};
use super::{MediaSource, VideoSampling};
use std::path::Path;

/// The sample rate the audio processor expects.
pub const WAV_SAMPLE_RATE: u32 = super::mel::SAMPLE_RATE;

fn unreadable(action: MediaAction, path: &Path, reason: impl ToString) -> MediaError {
    MediaError::Unreadable { action, path: path.to_path_buf(), reason: reason.to_string() }
}

fn exists(action: MediaAction, path: &Path) -> Result<(), MediaError> {
    if path.is_file() { Ok(()) } else { Err(MediaError::NotFound { action, path: path.to_path_buf() }) }
}

/// Decodes an image file (JPEG or PNG) to RGB.
pub fn read_image(path: &Path) -> Result<RgbImage, MediaError> {
    let action = MediaAction::Frames;
    exists(action, path)?;
    let img = image::ImageReader::open(path)
        .map_err(|e| unreadable(action, path, e))?
        .with_guessed_format()
        .map_err(|e| unreadable(action, path, e))?
        .decode()
        .map_err(|e| unreadable(action, path, e))?
        .into_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    RgbImage::new(w, h, img.into_raw())
}

/// Reads a 16 kHz WAV file as mono samples in [-1, 1).
pub fn read_wav(path: &Path) -> Result<AudioClip, MediaError> {
    let action = MediaAction::Audio;
    exists(action, path)?;
    let mut reader = hound::WavReader::open(path).map_err(|e| unreadable(action, path, e))?;
    let spec = reader.spec();
    if spec.sample_rate != WAV_SAMPLE_RATE {
        return Err(unreadable(
            action,
            path,
            format!(
                "{} Hz audio; the audio processor needs {WAV_SAMPLE_RATE} Hz (resample the file)",
                spec.sample_rate
            ),
        ));
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / f64::from(1u32 << spec.bits_per_sample.saturating_sub(1).min(31));
            reader.samples::<i32>().map(|s| s.map(|v| (f64::from(v) * scale) as f32)).collect::<Result<_, _>>()
        }
    }
    .map_err(|e| unreadable(action, path, e))?;
    let channels = usize::from(spec.channels.max(1));
    let samples: Vec<f32> = if channels == 1 {
        interleaved
    } else {
        interleaved.chunks_exact(channels).map(|c| c.iter().sum::<f32>() / channels as f32).collect()
    };
    let end_s = samples.len() as f64 / f64::from(WAV_SAMPLE_RATE);
    Ok(AudioClip { samples, sample_rate: WAV_SAMPLE_RATE, start_s: 0.0, end_s })
}

/// A whole video file sampled as the video processor samples a file, with its audio track.
pub fn read_clip(path: &Path, sampling: &VideoSampling) -> Result<Clip, MediaError> {
    exists(MediaAction::Clip, path)?;
    MediaSource::open(path)?.whole_file_clip(sampling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_files_become_mono_16k_samples() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("a.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap_or_else(|e| panic!("{e}"));
        // Two stereo frames: (16384, -16384) averages to 0; (32767, 32767) to 32767 / 32768.
        for v in [16384i16, -16384, 32767, 32767] {
            w.write_sample(v).unwrap_or_else(|e| panic!("{e}"));
        }
        w.finalize().unwrap_or_else(|e| panic!("{e}"));
        let clip = read_wav(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(clip.samples, vec![0.0, 32767.0 / 32768.0]);
        assert_eq!((clip.sample_rate, clip.end_s), (16_000, 2.0 / 16_000.0));

        let spec = hound::WavSpec { channels: 1, sample_rate: 44_100, ..spec };
        let other = dir.path().join("b.wav");
        hound::WavWriter::create(&other, spec).and_then(|w| w.finalize()).unwrap_or_else(|e| panic!("{e}"));
        let err = read_wav(&other).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("44100 Hz") && err.contains("b.wav"), "{err}");
        let err = read_wav(&dir.path().join("missing.wav")).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("not found"), "{err}");
    }

    #[test]
    fn png_and_jpeg_images_decode_to_rgb() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let img = image::RgbImage::from_fn(6, 4, |x, y| image::Rgb([(x * 40) as u8, (y * 60) as u8, 200]));
        let png = dir.path().join("f.png");
        img.save(&png).unwrap_or_else(|e| panic!("{e}"));
        let got = read_image(&png).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((got.width, got.height), (6, 4));
        // PNG is lossless: pixel (x=2, y=3) is (80, 180, 200).
        let at = (3 * 6 + 2) * 3;
        assert_eq!(&got.data[at..at + 3], &[80, 180, 200]);
        let jpg = dir.path().join("f.jpg");
        img.save(&jpg).unwrap_or_else(|e| panic!("{e}"));
        let got = read_image(&jpg).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((got.width, got.height, got.data.len()), (6, 4, 72));
        let text = dir.path().join("t.jpg");
        std::fs::write(&text, "not an image").unwrap_or_else(|e| panic!("{e}"));
        assert!(read_image(&text).is_err());
    }
}
