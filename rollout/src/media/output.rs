//! Files for people, not for the model: PNG frames and a 16-bit mono WAV, written by
//! `omnirl media --out` so a person can see and hear what the agent receives.
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
    let file = File::create(path).map_err(&err)?;
    let (w, h) = (u32::try_from(img.width), u32::try_from(img.height));
    let (Ok(w), Ok(h)) = (w, h) else {
        return Err(err(std::io::Error::other("image too large for PNG")));
    };
    let mut enc = png::Encoder::new(BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().map_err(|e| err(std::io::Error::other(e)))?;
    writer.write_image_data(&img.data).map_err(|e| err(std::io::Error::other(e)))?;
    writer.finish().map_err(|e| err(std::io::Error::other(e)))
}

/// Writes mono `samples` (in [-1, 1]) as 16-bit PCM WAV.
pub fn write_wav(path: &Path, samples: &[f32], sample_rate: u32) -> Result<(), MediaError> {
    let err = write_err(path);
    let data_len =
        u32::try_from(samples.len() * 2).map_err(|_| err(std::io::Error::other("audio too long for WAV")))?;
    let mut out = BufWriter::new(File::create(path).map_err(&err)?);
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&(36 + data_len).to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes()); // PCM
    header.extend_from_slice(&1u16.to_le_bytes()); // mono
    header.extend_from_slice(&sample_rate.to_le_bytes());
    header.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&16u16.to_le_bytes());
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data_len.to_le_bytes());
    out.write_all(&header).map_err(&err)?;
    let mut body = Vec::with_capacity(samples.len() * 2);
    for &s in samples {
        let v = (f64::from(s) * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        body.extend_from_slice(&v.to_le_bytes());
    }
    out.write_all(&body).map_err(&err)?;
    out.flush().map_err(&err)
}

#[cfg(test)]
mod tests {
    use super::*;

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
