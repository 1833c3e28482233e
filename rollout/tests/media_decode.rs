//! The media environment on videos generated at test time with the `ffmpeg` CLI: frames at
//! exact timestamps (grey levels encode the frame index, losslessly), audio sample counts and
//! the RMS of a sine, clip frame counts per the 2-fps rule, variable frame rate, odd sizes,
//! and every error path (no audio, no video, truncated, missing, not media, bad ranges).
//!
//! Needs the `ffmpeg` feature and the `ffmpeg` CLI (the tests are skipped, loudly, without
//! the CLI).
#![cfg(feature = "ffmpeg")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rollout::media::inputs::{audio_inputs, clip_inputs, frames_inputs};
use rollout::media::{FrameRequest, ImageSizing, MediaError, MediaSource, VideoSampling, probe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

struct Videos {
    _dir: tempfile::TempDir,
    /// 64x48, 10 fps, 4 s, grey level 16 + 5 N, GOP 10 with B-frames, 440 Hz sine (AAC).
    grey: PathBuf,
    /// Same without audio.
    silent: PathBuf,
    /// 97x61 lossless (FFV1 in Matroska), 2 s.
    odd: PathBuf,
    /// Frames at 0.0, 0.1, ... 1.0, then every 0.3 s; grey-coded.
    vfr: PathBuf,
    /// `grey` written with +faststart, cut to 60 %: the index survives, the data does not.
    truncated_indexed: PathBuf,
    /// `grey` cut to 60 % without +faststart: the index is lost.
    truncated_plain: PathBuf,
    /// Audio only.
    audio_only: PathBuf,
    /// Not media.
    text: PathBuf,
}

fn ffmpeg(args: &[&str]) {
    let out =
        Command::new("ffmpeg").args(["-nostdin", "-loglevel", "error", "-y"]).args(args).output().expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn have_ffmpeg() -> bool {
    rollout::prerequisite::require_ffmpeg_cli()
}

fn videos() -> Option<&'static Videos> {
    static V: OnceLock<Option<Videos>> = OnceLock::new();
    V.get_or_init(|| {
        if !have_ffmpeg() {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let p = |n: &str| dir.path().join(n);
        let grey_src = "color=c=black:s=64x48:r=10:d=4";
        let grey_vf = "geq=lum='16+5*N':cb=128:cr=128";
        let x264 = ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", "-g", "10", "-bf", "2"];
        let sine = "sine=frequency=440:sample_rate=48000:duration=4";
        let mut a: Vec<&str> = vec!["-f", "lavfi", "-i", grey_src, "-f", "lavfi", "-i", sine, "-vf", grey_vf];
        a.extend(x264);
        let grey = p("grey.mp4");
        let grey_fast = p("grey_fast.mp4");
        ffmpeg(&[&a[..], &["-c:a", "aac", "-b:a", "128k", "-shortest", grey.to_str().unwrap()]].concat());
        ffmpeg(&[&a[..], &["-c:a", "aac", "-movflags", "+faststart", grey_fast.to_str().unwrap()]].concat());
        let silent = p("silent.mp4");
        ffmpeg(&[&["-f", "lavfi", "-i", grey_src, "-vf", grey_vf][..], &x264, &[silent.to_str().unwrap()]].concat());
        let odd = p("odd.mkv");
        ffmpeg(&["-f", "lavfi", "-i", "testsrc=s=97x61:r=10:d=2", "-c:v", "ffv1", odd.to_str().unwrap()]);
        let vfr = p("vfr.mp4");
        let vfr_vf = "geq=lum='16+5*N':cb=128:cr=128,setpts='if(lte(N,10),N*0.1,1+(N-10)*0.3)/TB'";
        ffmpeg(
            &[
                &["-f", "lavfi", "-i", "color=c=black:s=64x48:r=10:d=2", "-vf", vfr_vf, "-fps_mode", "vfr"][..],
                &x264,
                &[vfr.to_str().unwrap()],
            ]
            .concat(),
        );
        let cut = |src: &Path, dst: &Path| {
            let bytes = std::fs::read(src).expect("read");
            std::fs::write(dst, &bytes[..bytes.len() * 6 / 10]).expect("write");
        };
        let truncated_indexed = p("truncated_indexed.mp4");
        cut(&grey_fast, &truncated_indexed);
        let truncated_plain = p("truncated_plain.mp4");
        cut(&grey, &truncated_plain);
        let audio_only = p("audio.m4a");
        ffmpeg(&["-f", "lavfi", "-i", sine, "-c:a", "aac", audio_only.to_str().unwrap()]);
        let text = p("notes.mp4");
        std::fs::write(&text, "this is not a video\n").expect("write");
        Some(Videos { _dir: dir, grey, silent, odd, vfr, truncated_indexed, truncated_plain, audio_only, text })
    })
    .as_ref()
}

/// Frame index encoded in a grey frame (R = G = B = (Y - 16) * 255 / 219, Y = 16 + 5 N).
fn grey_index(img: &rollout::media::RgbImage) -> usize {
    let n = img.data.len() as f64;
    let mean = img.data.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let y = mean * 219.0 / 255.0 + 16.0;
    ((y - 16.0) / 5.0).round() as usize
}

fn open(p: &Path) -> MediaSource {
    MediaSource::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
}

fn code<T: std::fmt::Debug>(r: Result<T, MediaError>) -> &'static str {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.env_code(),
    }
}

#[test]
fn probe_reports_streams() {
    let Some(v) = videos() else { return };
    let table: &[(&Path, u32, u32, bool, f64)] =
        &[(&v.grey, 64, 48, true, 4.0), (&v.silent, 64, 48, false, 4.0), (&v.odd, 97, 61, false, 2.0)];
    for &(path, w, h, audio, d) in table {
        let info = probe(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((info.width, info.height, info.has_audio), (w, h, audio), "{}", path.display());
        assert!((info.duration_s - d).abs() < 0.1, "{}: duration {}", path.display(), info.duration_s);
        assert!((info.fps - 10.0).abs() < 1e-6, "{}: fps {}", path.display(), info.fps);
    }
    let info = probe(&v.grey).unwrap();
    assert_eq!(info.video_codec, "h264");
    assert_eq!(info.audio_codec.as_deref(), Some("aac"));
    assert_eq!(info.frame_count, Some(40));
}

#[test]
fn frames_are_the_first_at_or_after_each_time() {
    let Some(v) = videos() else { return };
    for path in [&v.grey, &v.silent] {
        let mut src = open(path);
        src.set_duration(4.0);
        // (start, end, num) -> frame indices: first frame with pts >= t, t clamped to d - 0.2.
        let table: &[(f64, f64, i64, &[usize])] = &[
            (0.0, 3.9, 14, &[0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 38]),
            (0.35, 0.35, 1, &[4]),
            (1.0, 1.25, 3, &[10, 12, 13]),
            (3.7, 4.0, 2, &[37, 38]),
            (2.05, 0.05 + 2.0 + 1e-9, 2, &[21, 21]),
            (0.0, 4.0, 2, &[0, 38]),
        ];
        for &(s, e, n, want) in table {
            let frames = src.frames(&FrameRequest::new(s, e, n), None).unwrap_or_else(|err| panic!("{s}-{e}: {err}"));
            let got: Vec<usize> = frames.frames.iter().map(|f| grey_index(&f.image)).collect();
            assert_eq!(got, want, "{} [{s}, {e}] x{n}", path.display());
            assert!(frames.frames.iter().all(|f| (f.image.width, f.image.height) == (64, 48)));
            assert_eq!(frames.frames[0].requested_s, s, "labels are the requested times");
        }
        // Decoded once per GOP: 14 frames over 4 GOPs of 10.
        let f = src.frames(&FrameRequest::new(0.0, 3.9, 14), None).unwrap();
        assert_eq!(f.gops_decoded, 4);
        assert!(f.frames_decoded <= 40, "{}", f.frames_decoded);
    }
}

#[test]
fn frames_at_the_processor_size_become_model_inputs() {
    let Some(v) = videos() else { return };
    let mut src = open(&v.grey);
    let sizing = ImageSizing::default();
    let frames = src.frames(&FrameRequest::new(0.0, 2.0, 3), Some(&sizing)).unwrap();
    assert!(frames.frames.iter().all(|f| (f.image.width, f.image.height) == (56, 56)));
    let inputs = frames_inputs(&frames, &sizing).unwrap();
    assert_eq!(inputs.images.as_ref().map(|i| i.grid_thw.clone()), Some(vec![[1, 4, 4]; 3]));
    assert_eq!(inputs.image_tokens(), vec![4, 4, 4]);
    // Odd size: 97x61 -> 84x56.
    let mut odd = open(&v.odd);
    let native = odd.frames(&FrameRequest::new(0.0, 1.5, 2), None).unwrap();
    assert!(native.frames.iter().all(|f| (f.image.width, f.image.height) == (97, 61)));
    let resized = odd.frames(&FrameRequest::new(0.0, 1.5, 2), Some(&sizing)).unwrap();
    assert!(resized.frames.iter().all(|f| (f.image.width, f.image.height) == (84, 56)));
    let inputs = frames_inputs(&resized, &sizing).unwrap();
    assert_eq!(inputs.image_tokens(), vec![6, 6]);
}

#[test]
fn variable_frame_rate_uses_real_timestamps() {
    let Some(v) = videos() else { return };
    // The frame times as stored (the muxer rounds the setpts values), from ffprobe.
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(&v.vfr)
        .output()
        .expect("ffprobe");
    let mut times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    times.sort_by(f64::total_cmp);
    assert_eq!(times.len(), 20);
    assert!(times[11] - times[10] > 0.25 && times[1] - times[0] < 0.15, "variable intervals: {times:?}");
    let mut src = open(&v.vfr);
    for t in [0.0, 0.55, 1.0, 1.05, 1.3, 2.0, 3.5] {
        let f = src.frames(&FrameRequest::new(t, t, 1), None).unwrap_or_else(|e| panic!("{t}: {e}"));
        let want = times.iter().position(|&x| x >= t - 1e-9).unwrap();
        assert_eq!(grey_index(&f.frames[0].image), want, "t = {t}");
        assert!((f.frames[0].pts_s - times[want]).abs() < 1e-3, "pts at {t}: {} vs {}", f.frames[0].pts_s, times[want]);
    }
}

#[test]
fn audio_is_16k_mono_of_the_requested_length() {
    let Some(v) = videos() else { return };
    let mut src = open(&v.grey);
    src.set_duration(4.0);
    for (s, e, n) in [(1.0, 3.0, 32_000usize), (0.0, 4.0, 60_800), (0.5, 0.7, 3_200), (2.25, 3.5, 20_000)] {
        let a = src.audio(s, e).unwrap_or_else(|err| panic!("[{s}, {e}]: {err}"));
        assert_eq!((a.samples.len(), a.sample_rate), (n, 16_000), "[{s}, {e}]");
        // lavfi's sine has amplitude 1/8: RMS 0.0884 (AAC keeps it within a few per cent).
        let rms = (a.samples.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / n as f64).sqrt();
        assert!((rms - 0.125 / 2f64.sqrt()).abs() < 0.005, "[{s}, {e}] rms {rms}");
    }
    let inputs = audio_inputs(&src.audio(1.0, 3.0).unwrap());
    assert_eq!((inputs.audio.as_ref().map(|m| m.frames), inputs.audio_tokens()), (Some(200), 50));
}

#[test]
fn clips_sample_two_frames_per_second_with_audio() {
    let Some(v) = videos() else { return };
    let mut src = open(&v.grey);
    src.set_duration(4.0);
    let sampling = VideoSampling::default();
    // [0.5, 3.5): 30 source frames -> 6 kept: round(linspace(0, 29, 6)) = 0 6 12 17 23 29.
    let clip = src.clip(0.5, 3.5, &sampling).unwrap();
    assert_eq!(clip.source_frames, 30);
    let images: Vec<_> = (0..clip.frame_count()).map(|i| clip.video.frame(i).expect("frame")).collect();
    let idx: Vec<usize> = images.iter().map(grey_index).collect();
    assert_eq!(idx, vec![5, 11, 17, 22, 28, 34]);
    assert!(images.iter().all(|f| (f.width, f.height) == (392, 280)));
    for (t, i) in clip.timestamps.iter().zip(&idx) {
        assert!((t - *i as f64 / 10.0).abs() < 1e-3, "frame {i} shown at {t}");
    }
    assert!((clip.sample_fps - 2.0).abs() < 1e-9);
    let audio = clip.audio.as_ref().expect("audio");
    assert_eq!(audio.samples.len(), 48_470, "3 s padded like the reference's AAC round trip");
    let inputs = clip_inputs(&clip);
    assert_eq!(inputs.video.as_ref().map(|x| x.grid_thw.clone()), Some(vec![[3, 20, 28]]));
    assert_eq!(inputs.video_tokens(), 420);
    assert_eq!(inputs.video_second_per_grid, Some(1.0));
    // End clamped to d - 0.2; silent videos give no audio.
    let mut silent = open(&v.silent);
    let c = silent.clip(3.0, 4.0, &sampling).unwrap();
    assert_eq!((c.source_frames, c.frame_count(), c.audio.is_none()), (8, 2, true));
    assert!((c.end_s - 3.8).abs() < 1e-12);
}

#[test]
fn argument_errors_map_to_env_codes() {
    let Some(v) = videos() else { return };
    let mut src = open(&v.grey);
    src.set_duration(4.0);
    let frames: &[(f64, f64, i64, &str)] = &[
        (-1.0, 2.0, 2, "FRAME_TS_OOB"),
        (0.0, 4.5, 2, "FRAME_TS_OOB"),
        (2.0, 1.0, 2, "CLIP_NEG_LEN"),
        (0.0, 1.0, 0, "INVALID_FRAME_NUM"),
        (0.0, 1.0, 1000, "TOO_MANY_FRAMES"),
    ];
    for &(s, e, n, want) in frames {
        assert_eq!(code(src.frames(&FrameRequest::new(s, e, n), None)), want, "frames [{s}, {e}] x{n}");
    }
    for (s, e, want) in [
        (2.0, 2.0, "CLIP_NEG_LEN"),
        (-0.5, 1.0, "AUDIO_RANGE"),
        (1.0, 1.05, "AUDIO_TOO_SHORT"),
        (3.9, 4.0, "FFMPEG_AUDIO_FAIL"),
    ] {
        assert_eq!(code(src.audio(s, e)), want, "audio [{s}, {e}]");
    }
    let sampling = VideoSampling::default();
    for (s, e, want) in [(2.0, 1.0, "CLIP_NEG_LEN"), (0.0, 5.0, "CLIP_RANGE"), (f64::NAN, 1.0, "CLIP_RANGE")] {
        assert_eq!(code(src.clip(s, e, &sampling)), want, "clip [{s}, {e}]");
    }
    let mut silent = open(&v.silent);
    assert_eq!(code(silent.audio(0.0, 1.0)), "NO_AUDIO");
}

#[test]
fn file_errors_name_the_file_and_never_panic() {
    let Some(v) = videos() else { return };
    let missing = v.grey.with_file_name("missing.mp4");
    let cases: &[(&Path, &str)] = &[
        (&missing, "video file not found"),
        (&v.text, "cannot open"),
        (&v.truncated_plain, "cannot open"),
        (&v.audio_only, "no video stream"),
        (&v.truncated_indexed, "truncated"),
    ];
    for &(path, what) in cases {
        let err = probe(path).expect_err("probe must fail");
        let msg = err.to_string();
        assert!(msg.contains(what) && msg.contains(&*path.file_name().unwrap().to_string_lossy()), "{msg}");
        assert_eq!(err.env_code(), "MEDIA_PROBE_FAIL");
    }
    assert!(MediaSource::open(&missing).is_err_and(|e| e.to_string().contains("not found")));
    // A truncated file whose index survived opens; its start decodes, its end fails clearly.
    let mut src = open(&v.truncated_indexed);
    let ok = src.frames(&FrameRequest::new(0.0, 0.5, 2), None).unwrap();
    assert_eq!(ok.frames.iter().map(|f| grey_index(&f.image)).collect::<Vec<_>>(), vec![0, 5]);
    let err = src.frames(&FrameRequest::new(3.5, 3.5, 1), None).expect_err("past the cut");
    assert_eq!(err.env_code(), "FFMPEG_FRAME_FAIL", "{err}");
    assert!(err.to_string().contains("truncated_indexed.mp4"), "{err}");
    let err = src.clip(2.5, 3.5, &VideoSampling::default()).expect_err("past the cut");
    assert_eq!(err.env_code(), "FFMPEG_CLIP_FAIL", "{err}");
}

#[test]
fn a_source_answers_many_actions_in_any_order() {
    let Some(v) = videos() else { return };
    let mut src = open(&v.grey);
    src.set_duration(4.0);
    for round in 0..3 {
        let f = src.frames(&FrameRequest::new(3.0, 0.5 + round as f64, 2), None);
        assert!(f.is_err(), "reversed ranges fail (round {round})");
        let f = src.frames(&FrameRequest::new(0.2 * round as f64, 3.7, 5), None).unwrap();
        assert_eq!(f.frames.len(), 5);
        assert_eq!(src.audio(0.1, 1.1).unwrap().samples.len(), 16_000);
        assert_eq!(src.clip(1.0, 2.0, &VideoSampling::default()).unwrap().frame_count(), 2);
    }
}
