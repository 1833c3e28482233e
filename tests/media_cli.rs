#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `omnirl media`: one JSON object per run, files with `--out`, env error codes on failure.
//! Videos are generated here with the `ffmpeg` CLI (missing: a failure under CI=true, a loud skip elsewhere).

use omnirl_tests::{omnirl, stderr, stdout};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn make_video(path: &Path, audio: bool) -> bool {
    if !Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success()) {
        omnirl_tests::missing_prerequisite("the `ffmpeg` CLI", "scripts/setup.sh (apt-get install ffmpeg)");
        return false;
    }
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=128x96:r=25:d=6"]);
    if audio {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=6", "-c:a", "aac"]);
    }
    let out = cmd.args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "50"]).arg(path).output().expect("ffmpeg");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    true
}

fn run_json(args: &[&str]) -> Value {
    let out = omnirl().args(args).output().expect("run omnirl");
    assert!(out.status.success(), "omnirl {args:?} failed: {}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&out)))
}

#[test]
fn every_action_prints_one_json_summary_and_writes_files() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("v.mp4");
    if !make_video(&video, true) {
        return;
    }
    let v = video.to_str().unwrap();
    let probe = run_json(&["media", "probe", v]);
    assert_eq!(probe["action"], "probe");
    assert_eq!(probe["info"]["width"], 128);
    assert_eq!(probe["info"]["has_audio"], true);
    assert!((probe["info"]["duration_s"].as_f64().unwrap() - 6.0).abs() < 0.1);

    let out = dir.path().join("frames");
    let frames =
        run_json(&["media", "frames", v, "--start", "1", "--end", "5", "--num", "5", "--out", out.to_str().unwrap()]);
    assert_eq!(frames["count"], 5);
    assert_eq!(frames["timestamps"], serde_json::json!([1.0, 2.0, 3.0, 4.0, 5.0]));
    // 128x96 -> smart_resize(96, 128) = (84, 140)... exact values from the formula:
    // round(96/28)=3 -> 84, round(128/28)=5 -> 140; 84*140 = 11,760 within [3,136, 802,816].
    assert_eq!(frames["sizes"][0], serde_json::json!([84, 140]));
    assert_eq!(frames["grid_thw"][0], serde_json::json!([1, 6, 10]));
    assert_eq!(frames["tokens"][0], 15);
    assert!(frames["ms"].as_f64().unwrap() >= 0.0);
    let mut pngs: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    pngs.sort();
    assert_eq!(pngs.first().map(String::as_str), Some("frame_0000_1.000.png"));
    assert_eq!(pngs.len(), 5);

    let aout = dir.path().join("audio");
    let audio = run_json(&["media", "audio", v, "--start", "0.5", "--end", "2.5", "--out", aout.to_str().unwrap()]);
    assert_eq!((audio["count"].as_u64(), audio["sample_rate"].as_u64()), (Some(32_000), Some(16_000)));
    assert_eq!(audio["tokens"], 50);
    assert_eq!(std::fs::metadata(aout.join("audio.wav")).unwrap().len(), 44 + 64_000);

    let clip = run_json(&["media", "clip", v, "--start", "1", "--end", "4"]);
    // 3 s at 25 fps = 75 source frames -> 6 kept at 2 fps.
    assert_eq!((clip["source_frames"].as_u64(), clip["count"].as_u64()), (Some(75), Some(6)));
    assert_eq!(clip["grid_thw"][0][0], 3);
    assert!(clip["audio_samples"].as_u64().unwrap() >= 48_000);
}

#[test]
fn errors_carry_the_env_code_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("silent.mp4");
    if !make_video(&video, false) {
        return;
    }
    let v = video.to_str().unwrap();
    let missing = dir.path().join("missing.mp4");
    let cases: &[(&[&str], &str)] = &[
        (&["media", "audio", v, "--start", "0", "--end", "2"], "NO_AUDIO"),
        (&["media", "frames", v, "--start", "0", "--end", "9"], "FRAME_TS_OOB"),
        (&["media", "frames", v, "--start", "3", "--end", "1"], "CLIP_NEG_LEN"),
        (&["media", "frames", v, "--num", "0"], "INVALID_FRAME_NUM"),
        (&["media", "clip", v, "--start", "-1", "--end", "2"], "CLIP_RANGE"),
        (&["media", "frames", missing.to_str().unwrap()], "FFMPEG_FRAME_FAIL"),
    ];
    for (args, code) in cases {
        let out = omnirl().args(*args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.starts_with("omnirl: error: ") && err.contains(code), "{args:?}: {err}");
        assert!(stdout(&out).is_empty(), "{args:?}: nothing on stdout");
    }
}
