//! Parity with the Python pipeline: fixtures written by `scripts/make_media_fixtures.py` with
//! transformers' processors, Pillow and torchvision (versions in the manifest). Pure code
//! only, so this runs with and without the `ffmpeg` feature.
//!
//! Asserted: resized pixels equal (u8), grid sizes equal, pixel values within 1e-2 (after
//! CLIP normalisation), log-mel features within 1e-4.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rollout::media::mel::{N_MELS, log_mel};
use rollout::media::patches::{PATCH_DIM, patchify};
use rollout::media::resize::{RgbImage, resize_pil_bicubic, resize_torch_bicubic_aa, smart_resize};
use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/media")
}

fn manifest() -> Value {
    serde_json::from_slice(&std::fs::read(dir().join("manifest.json")).expect("manifest")).expect("json")
}

fn bytes(name: &Value) -> Vec<u8> {
    std::fs::read(dir().join(name.as_str().expect("file name"))).expect("fixture file")
}

fn f32s(name: &Value) -> Vec<f32> {
    bytes(name).chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn num(v: &Value, key: &str) -> usize {
    v[key].as_u64().unwrap_or_else(|| panic!("{key}")) as usize
}

fn grid(v: &Value) -> [usize; 3] {
    let g: Vec<usize> =
        v["grid_thw"].as_array().expect("grid").iter().map(|x| x.as_u64().expect("n") as usize).collect();
    [g[0], g[1], g[2]]
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn mismatched(a: &[u8], b: &[u8]) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

#[test]
fn images_match_pillow_and_the_image_processor() {
    for img in manifest()["images"].as_array().expect("images") {
        let (h, w) = (num(img, "height"), num(img, "width"));
        let src = RgbImage::new(w, h, bytes(&img["input"])).expect("input");
        let (th, tw) = smart_resize(h, w, 28, 4 * 28 * 28, 1024 * 28 * 28).expect("smart_resize");
        assert_eq!((th, tw), (num(img, "resized_height"), num(img, "resized_width")));
        let ours = resize_pil_bicubic(&src, tw, th);
        let theirs = bytes(&img["resized"]);
        assert_eq!(mismatched(&ours.data, &theirs), 0, "Pillow bicubic {w}x{h} -> {tw}x{th}");
        let p = patchify(&[&ours]).expect("patchify");
        assert_eq!(p.grid_thw, grid(img));
        if !img["pixel_values"].is_null() {
            let expected = f32s(&img["pixel_values"]);
            assert_eq!(expected.len(), num(img, "pixel_rows") * PATCH_DIM);
            let d = max_diff(&p.values().expect("values"), &expected);
            eprintln!("image {w}x{h}: max |pixel diff| = {d:e}");
            assert!(d <= 1e-2, "max abs diff {d}");
        }
    }
}

#[test]
fn video_frames_match_torchvision_and_the_video_processor() {
    for v in manifest()["videos"].as_array().expect("videos") {
        let (n, h, w) = (num(v, "frames"), num(v, "height"), num(v, "width"));
        let (th, tw) = (num(v, "resized_height"), num(v, "resized_width"));
        let input = bytes(&v["input"]);
        let expected_resized = bytes(&v["resized"]);
        let torch_float = f32s(&v["resized_float"]);
        let (mut resized, mut ties, mut tie_idx) = (Vec::new(), 0, Vec::new());
        for f in 0..n {
            let src = RgbImage::new(w, h, input[f * w * h * 3..(f + 1) * w * h * 3].to_vec()).expect("frame");
            let ours = resize_torch_bicubic_aa(&src, tw, th);
            let off = f * tw * th * 3;
            let theirs = &expected_resized[off..off + tw * th * 3];
            for (i, (a, b)) in ours.data.iter().zip(theirs).enumerate() {
                if a != b {
                    // Only where torch's own float value sits on a rounding tie (its last bit
                    // depends on the CPU's fused multiply-adds), and only by one level.
                    let x = torch_float[off + i];
                    assert!(
                        (x - x.floor() - 0.5).abs() < 1e-4 && a.abs_diff(*b) == 1,
                        "frame {f} value {i}: {a} vs {b} ({x})"
                    );
                    ties += 1;
                    tie_idx.push(off + i);
                }
            }
            resized.push(ours);
        }
        let total = n * tw * th * 3;
        eprintln!("video: {ties} of {total} resized values differ by one level, all at rounding ties");
        assert!(ties * 1000 <= total, "{ties} tie differences");
        let refs: Vec<&RgbImage> = resized.iter().collect();
        let p = patchify(&refs).expect("patchify");
        assert_eq!(p.grid_thw, grid(v));
        let expected = f32s(&v["pixel_values"]);
        assert_eq!(expected.len(), num(v, "pixel_rows") * PATCH_DIM);
        let values = p.values().expect("values");
        // Pixel values: <= 1e-2 everywhere except the tie pixels (one level = ~0.015).
        let tie_values: std::collections::HashSet<u32> =
            expected.iter().zip(&values).map(|(a, b)| (a - b).abs()).filter(|d| *d > 1e-2).map(f32::to_bits).collect();
        let over = expected.iter().zip(&values).filter(|(a, b)| (*a - *b).abs() > 1e-2).count();
        assert!(over <= tie_idx.len() * 2, "{over} pixel values over 1e-2 for {} tie pixels", tie_idx.len());
        assert!(tie_values.iter().all(|&b| f32::from_bits(b) < 0.02), "a pixel differs by more than one level");
        let d = expected.iter().zip(&values).map(|(a, b)| (a - b).abs()).filter(|d| *d <= 1e-2).fold(0.0, f32::max);
        eprintln!("video {n}x{w}x{h}: max |pixel diff| = {d:e} away from the {over} tie value(s)");
        assert!(d <= 1e-2, "max abs diff {d}");
    }
}

#[test]
fn log_mel_matches_the_whisper_feature_extractor() {
    for a in manifest()["audio"].as_array().expect("audio") {
        let pcm: Vec<f32> =
            bytes(&a["input"]).chunks_exact(2).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0).collect();
        assert_eq!(pcm.len(), num(a, "samples"));
        let mel = log_mel(&pcm);
        assert_eq!(mel.frames, num(a, "frames"));
        let expected = f32s(&a["features"]);
        assert_eq!(expected.len(), N_MELS * mel.frames);
        let d = max_diff(&mel.data, &expected);
        eprintln!("audio {} samples: max |mel diff| = {d:e}", pcm.len());
        assert!(d <= 1e-4, "max abs diff {d}");
    }
}
