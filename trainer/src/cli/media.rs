//! `omnirl media probe|frames|audio|clip VIDEO [--start S] [--end E] [--num N] [--duration D]
//! [--out DIR] [--expand]`: runs one media action exactly as the environment would (rollout's
//! `media::MediaSource`, then the model preprocessing) and prints one JSON object on stdout.
//!
//! Fields, by action (times in seconds, `ms` = milliseconds from the opened video to
//! model-ready inputs, `open_ms` = opening and probing the file):
//! * every action: `action`, `video`, `duration` (the one ranges are checked against),
//!   `open_ms`, `ms`;
//! * `probe`: `info` (duration_s, fps, width, height, has_audio, codecs, frame_count, ...);
//! * `frames` (defaults: `--start 0 --end <duration> --num 8`): `start`, `end`, `num`,
//!   `count`, `timestamps` (requested, the labels), `pts` (decoded frames' times), `sizes`
//!   (`[h, w]` after the processor's resize), `grid_thw`, `tokens`, `gops_decoded`,
//!   `frames_decoded`, `seconds` (`end - start`);
//! * `audio` (defaults: `--start 0 --end <duration>`): `start`, `end` (after clamping),
//!   `count` (samples), `sample_rate`, `seconds`, `mel_frames`, `tokens`;
//! * `clip` (same defaults): `start`, `end` (after clamping), `count` (frames kept),
//!   `source_frames`, `sample_fps`, `timestamps`, `sizes`, `grid_thw`, `video_tokens`,
//!   `audio_samples`, `audio_tokens`, `gops_decoded`, `frames_decoded`, `seconds`.
//!
//! Model-ready inputs hold pixel rows as bytes (`rollout::media::pixels`); `--expand`
//! (frames, clip) also reports `expand_ms`, the time a model on the CPU then spends turning
//! them into float32 (`null` without the flag).
//!
//! With `--out DIR`: `frame_XXXX_<t>.png` per frame (as the model gets it) and, for audio and
//! clips with sound, `audio.wav` (16 kHz mono). `--duration D` checks and clamps against a
//! dataset's `duration_seconds` instead of the probed duration. Errors print
//! `omnirl: error: <ENV_CODE>: <message>` and exit 2.
//!
//! Left out: several actions per run (the environment's episode does that), remote URLs.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use rollout::media::inputs::{audio_inputs, clip_inputs, frames_inputs};
use rollout::media::output::{write_png, write_wav};
use rollout::media::patches::PATCH_DIM;
use rollout::media::{FrameRequest, ImageSizing, MediaError, MediaSource, VideoSampling, VisionInputs};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct MediaArgs {
    #[command(subcommand)]
    pub action: MediaAction,
}

#[derive(Debug, Subcommand)]
pub enum MediaAction {
    /// Stream facts (duration, fps, size, audio) and a readability check; nothing decoded.
    Probe(Target),
    /// `get_frames`: NUM frames evenly spaced over [START, END], as the model's images.
    Frames(Target),
    /// `get_audio`: [START, END] as 16 kHz mono, and its log-mel features.
    Audio(Target),
    /// `get_clip`: [START, END] sampled at 2 fps (frames and audio) as the model's video.
    Clip(Target),
}

#[derive(Debug, Args)]
pub struct Target {
    /// The video file.
    pub video: PathBuf,
    /// Range start in seconds (default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub start: Option<f64>,
    /// Range end in seconds (default: the duration).
    #[arg(long, allow_negative_numbers = true)]
    pub end: Option<f64>,
    /// Frames for `frames` (default 8).
    #[arg(long, allow_negative_numbers = true)]
    pub num: Option<i64>,
    /// Duration to check and clamp against (a dataset's `duration_seconds`).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Write PNG frames / audio.wav here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// `frames`/`clip`: also time expanding the pixel rows (bytes) to the float32 values a
    /// model on the CPU feeds its vision tower, reported as `expand_ms` (not part of `ms`).
    #[arg(long)]
    pub expand: bool,
}

/// `expand_ms` for [`Target::expand`]: the time to turn `v`'s rows into float32 values.
fn time_expansion(t: &Target, v: Option<&VisionInputs>) -> Result<Option<f64>, MediaError> {
    let (true, Some(v)) = (t.expand, v) else { return Ok(None) };
    let began = Instant::now();
    let values = v.pixels.to_values(PATCH_DIM)?;
    let elapsed = ms(began);
    drop(values);
    Ok(Some(elapsed))
}

fn media_err(e: MediaError) -> anyhow::Error {
    anyhow!("{}: {e}", e.env_code())
}

fn ms(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

fn frame_name(dir: &Path, i: usize, t: f64) -> PathBuf {
    dir.join(format!("frame_{i:04}_{t:.3}.png"))
}

fn prepare_out(out: Option<&PathBuf>) -> anyhow::Result<()> {
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    Ok(())
}

pub fn run(args: &MediaArgs) -> anyhow::Result<ExitCode> {
    let (name, t) = match &args.action {
        MediaAction::Probe(t) => ("probe", t),
        MediaAction::Frames(t) => ("frames", t),
        MediaAction::Audio(t) => ("audio", t),
        MediaAction::Clip(t) => ("clip", t),
    };
    let opened = Instant::now();
    let action = match &args.action {
        MediaAction::Probe(_) => rollout::media::MediaAction::Probe,
        MediaAction::Frames(_) => rollout::media::MediaAction::Frames,
        MediaAction::Audio(_) => rollout::media::MediaAction::Audio,
        MediaAction::Clip(_) => rollout::media::MediaAction::Clip,
    };
    // One-shot: a file that cannot be opened fails the action asked for.
    let mut src = MediaSource::open(&t.video).map_err(|e| media_err(e.for_action(action)))?;
    if let Some(d) = t.duration {
        src.set_duration(d);
    }
    let open_ms = ms(opened);
    let duration = src.duration();
    let start = t.start.unwrap_or(0.0);
    let end = t.end.unwrap_or(duration);
    prepare_out(t.out.as_ref())?;
    let began = Instant::now();
    let mut report = match &args.action {
        MediaAction::Probe(_) => json!({ "info": src.info() }),
        MediaAction::Frames(_) => frames_report(&mut src, t, (start, end), began)?,
        MediaAction::Audio(_) => audio_report(&mut src, t, (start, end), began)?,
        MediaAction::Clip(_) => clip_report(&mut src, t, (start, end), began)?,
    };
    if let Value::Object(map) = &mut report {
        map.insert("action".into(), json!(name));
        map.insert("video".into(), json!(t.video));
        map.insert("duration".into(), json!(duration));
        map.insert("open_ms".into(), json!(open_ms));
        if !map.contains_key("ms") {
            map.insert("ms".into(), json!(ms(began)));
        }
    }
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// `omnirl media frames`: the frames, their model inputs, and the PNGs under `--out`.
fn frames_report(src: &mut MediaSource, t: &Target, (start, end): (f64, f64), began: Instant) -> anyhow::Result<Value> {
    let num = t.num.unwrap_or(8);
    let sizing = ImageSizing::default();
    let frames = src.frames(&FrameRequest::new(start, end, num), Some(&sizing)).map_err(media_err)?;
    let inputs = frames_inputs(&frames, &sizing).map_err(media_err)?;
    let elapsed = ms(began);
    let expand_ms = time_expansion(t, inputs.images.as_ref()).map_err(media_err)?;
    if let Some(dir) = &t.out {
        for (i, f) in frames.frames.iter().enumerate() {
            write_png(&frame_name(dir, i, f.requested_s), &f.image).map_err(media_err)?;
        }
    }
    let grids = inputs.images.as_ref().map(|i| i.grid_thw.clone()).unwrap_or_default();
    Ok(json!({
        "start": start, "end": end, "num": num,
        "count": frames.frames.len(),
        "timestamps": frames.frames.iter().map(|f| f.requested_s).collect::<Vec<_>>(),
        "pts": frames.frames.iter().map(|f| f.pts_s).collect::<Vec<_>>(),
        "sizes": frames.frames.iter().map(|f| [f.image.height, f.image.width]).collect::<Vec<_>>(),
        "grid_thw": grids,
        "tokens": inputs.image_tokens(),
        "gops_decoded": frames.gops_decoded,
        "frames_decoded": frames.frames_decoded,
        "seconds": end - start,
        "ms": elapsed,
        "expand_ms": expand_ms,
    }))
}

/// `omnirl media audio`: the samples, their log-mel frames, and `audio.wav` under `--out`.
fn audio_report(src: &mut MediaSource, t: &Target, (start, end): (f64, f64), began: Instant) -> anyhow::Result<Value> {
    let audio = src.audio(start, end).map_err(media_err)?;
    let inputs = audio_inputs(&audio);
    let elapsed = ms(began);
    if let Some(dir) = &t.out {
        write_wav(&dir.join("audio.wav"), &audio.samples, audio.sample_rate).map_err(media_err)?;
    }
    Ok(json!({
        "start": audio.start_s, "end": audio.end_s,
        "count": audio.samples.len(),
        "sample_rate": audio.sample_rate,
        "seconds": audio.seconds(),
        "mel_frames": inputs.audio.as_ref().map_or(0, |m| m.frames),
        "tokens": inputs.audio_tokens(),
        "ms": elapsed,
    }))
}

/// `omnirl media clip`: the sampled frames and audio, their model inputs, and the files under
/// `--out`.
fn clip_report(src: &mut MediaSource, t: &Target, (start, end): (f64, f64), began: Instant) -> anyhow::Result<Value> {
    let clip = src.clip(start, end, &VideoSampling::default()).map_err(media_err)?;
    let inputs = clip_inputs(&clip);
    let elapsed = ms(began);
    let expand_ms = time_expansion(t, inputs.video.as_ref()).map_err(media_err)?;
    if let Some(dir) = &t.out {
        for (i, &pts) in clip.timestamps.iter().enumerate() {
            let image = clip.video.frame(i).ok_or_else(|| anyhow!("clip frame {i} is missing"))?;
            write_png(&frame_name(dir, i, pts), &image).map_err(media_err)?;
        }
        if let Some(a) = &clip.audio {
            write_wav(&dir.join("audio.wav"), &a.samples, a.sample_rate).map_err(media_err)?;
        }
    }
    Ok(json!({
        "start": clip.start_s, "end": clip.end_s,
        "count": clip.frame_count(),
        "source_frames": clip.source_frames,
        "sample_fps": clip.sample_fps,
        "timestamps": clip.timestamps,
        "sizes": vec![<[usize; 2]>::from(clip.video.frame_size()); clip.frame_count()],
        "grid_thw": inputs.video.as_ref().map(|v| v.grid_thw.clone()).unwrap_or_default(),
        "video_tokens": inputs.video_tokens(),
        "audio_samples": clip.audio.as_ref().map(|a| a.samples.len()),
        "audio_tokens": inputs.audio_tokens(),
        "gops_decoded": clip.gops_decoded,
        "frames_decoded": clip.frames_decoded,
        "seconds": clip.end_s - clip.start_s,
        "ms": elapsed,
        "expand_ms": expand_ms,
    }))
}
