//! Files for people, not for the model: PNG frames and a 16-bit mono WAV, written by
//! `omnirl media --out` so a person can see and hear what the agent receives; the PNG and WAV
//! bytes, base64-encoded for `data:` URIs, also serve the run report's pages and the teacher's
//! image and audio inputs (one encoder of each for the whole repository).
//!
//! Left out: any other format, and anything on the rollout hot path (which never writes
//! media to disk).

use super::error::MediaError;
use super::resize::RgbImage;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> MediaError + '_ {
    move |source| MediaError::Write { path: path.to_path_buf(), source }
}

/// Writes `img` as an 8-bit RGB PNG.
pub fn write_png(path: &Path, img: &RgbImage) -> Result<(), MediaError> {
    let err = write_err(path);
    let bytes = png_bytes(img, png::Compression::Fast).map_err(|e| err(std::io::Error::other(e)))?;
    let mut out = BufWriter::new(File::create(path).map_err(&err)?);
    out.write_all(&bytes).map_err(&err)?;
    out.flush().map_err(&err)
}

/// `img` as the bytes of an 8-bit RGB PNG file, encoded by `png` with `compression`.
pub fn png_bytes(img: &RgbImage, compression: png::Compression) -> Result<Vec<u8>, png::EncodingError> {
    let too_large = |_| png::EncodingError::LimitsExceeded;
    let (w, h) = (u32::try_from(img.width).map_err(too_large)?, u32::try_from(img.height).map_err(too_large)?);
    let mut buf = Vec::new();
    let mut enc = png::Encoder::new(&mut buf, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(compression);
    let mut writer = enc.write_header()?;
    writer.write_image_data(&img.data)?;
    writer.finish()?;
    Ok(buf)
}

/// `bytes` in standard base64 with padding (RFC 4648), for `data:` URIs.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Writes mono `samples` (in [-1, 1]) as 16-bit PCM WAV.
pub fn write_wav(path: &Path, samples: &[f32], sample_rate: u32) -> Result<(), MediaError> {
    let err = write_err(path);
    let bytes = wav_bytes(samples, sample_rate).map_err(|e| err(std::io::Error::other(e)))?;
    let mut out = BufWriter::new(File::create(path).map_err(&err)?);
    out.write_all(&bytes).map_err(&err)?;
    out.flush().map_err(&err)
}

/// Mono `samples` (in [-1, 1]) as the bytes of a 16-bit PCM WAV file, encoded by `hound`.
pub fn wav_bytes(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>, hound::Error> {
    let spec =
        hound::WavSpec { channels: 1, sample_rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut buf = std::io::Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    let mut writer = hound::WavWriter::new(&mut buf, spec)?;
    for &s in samples {
        writer.write_sample((f64::from(s) * 32768.0).round().clamp(-32768.0, 32767.0) as i16)?;
    }
    writer.finalize()?;
    Ok(buf.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_uri_payloads_are_standard_base64() {
        for (plain, enc) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn wav_and_png_round_trip_sizes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let wav = dir.path().join("a.wav");
        write_wav(&wav, &[0.0, 0.5, -1.0], 16_000).unwrap_or_else(|e| panic!("{e}"));
        let bytes = std::fs::read(&wav).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bytes.len(), 44 + 6);
        assert_eq!(&bytes[44..], &[0, 0, 0, 0x40, 0, 0x80]);
        let png = dir.path().join("f.png");
        let img = RgbImage { width: 3, height: 2, data: vec![7; 18] };
        write_png(&png, &img).unwrap_or_else(|e| panic!("{e}"));
        assert!(std::fs::read(&png).is_ok_and(|b| b.starts_with(b"\x89PNG")));
        assert!(write_wav(&dir.path().join("missing/a.wav"), &[0.0], 16_000).is_err());
    }
}
