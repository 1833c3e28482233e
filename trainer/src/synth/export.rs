//! A kept trajectory as SFT lines (docs/reference.md#data-sft) with real media files, for
//! `omnirl synth`.
//!
//! The lines are [`Trajectory::sft_lines`] (the reference export's filter: won trajectories,
//! turns with `FFMPEG_*`, `STEP_LIMIT_REACHED` or `TOKEN_LIMIT_EXCEEDED` left out), with their
//! media parts pointing at `<media dir>/<traj_id>/<name>` relative to the output file's
//! directory, plus `extra_info.synth` (policy, attempt, attempts). The SFT checker requires every
//! media path to exist, so [`write_media`] produces the files from the source video:
//! frames as PNG at the video's native size (in process; the name's `.jpg` becomes `.png`),
//! audio as 16 kHz mono WAV (in process), clips as MP4 with the `ffmpeg` binary (`$OMNIRL_FFMPEG`
//! or `ffmpeg` on the `PATH`) and the reference's arguments (docs/reference.md#environment:
//! libx264 superfast, crf 20, AAC 48 kHz), falling back to the always-built `mpeg4` encoder.
//!
//! Left out: JPEG frames (no JPEG encoder is linked; PNG is lossless and every loader reads it)
//! and encoding clips in process (FFmpeg's encoders are not part of the linked feature set).

use super::SynthError;
use super::teacher::{NamedMedia, parse_name};
use rollout::data::PartKind;
use rollout::media::output::{write_png, write_wav};
use rollout::media::{FrameRequest, MediaSource};
use rollout::trajectory::{SftFilter, Trajectory};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One media file to produce, inside the media directory.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaJob {
    /// `<traj_id>/<file name>`.
    pub sub: PathBuf,
    pub what: NamedMedia,
}

/// The SFT lines of `t` and the media files they reference. `media_rel` is the media
/// directory's name relative to the output file's directory.
pub fn lines_and_jobs(t: &Trajectory, media_rel: &str, synth: &Value) -> (Vec<Value>, Vec<MediaJob>) {
    let mut lines = t.sft_lines(&SftFilter::default(), Path::new(media_rel), "synth");
    let mut jobs: Vec<MediaJob> = Vec::new();
    for line in &mut lines {
        if let Some(extra) = line.get_mut("extra_info").and_then(Value::as_object_mut) {
            extra.insert("synth".into(), synth.clone());
        }
        let Some(messages) = line.get_mut("raw_input").and_then(Value::as_array_mut) else { continue };
        for part in messages.iter_mut().filter_map(|m| m.get_mut("content")).filter_map(Value::as_array_mut).flatten() {
            let kind = match part.get("type").and_then(Value::as_str) {
                Some("image") => PartKind::Image,
                Some("audio") => PartKind::Audio,
                Some("video") => PartKind::Video,
                _ => continue,
            };
            let Some(name) = part
                .get(kind.as_str())
                .and_then(Value::as_str)
                .and_then(|p| Path::new(p).file_name())
                .map(|n| n.to_string_lossy().into_owned())
            else {
                continue;
            };
            let Some(what) = parse_name(kind, &name) else { continue };
            let png = name.strip_suffix(".jpg").filter(|_| kind == PartKind::Image).map(|stem| format!("{stem}.png"));
            let name = png.unwrap_or(name);
            let sub = Path::new(&t.traj_uid).join(&name);
            if let Some(obj) = part.as_object_mut() {
                obj.insert(kind.as_str().into(), json!(format!("{media_rel}/{}", sub.display())));
            }
            if !jobs.iter().any(|j| j.sub == sub) {
                jobs.push(MediaJob { sub, what });
            }
        }
    }
    (lines, jobs)
}

/// Writes the files of `jobs` for `t`'s video under `root` (the media directory).
pub fn write_media(t: &Trajectory, jobs: &[MediaJob], root: &Path) -> Result<(), SynthError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let video = &t.spec.video;
    let fail = |message: String| SynthError::Media { path: video.display().to_string(), message };
    let dir = root.join(&t.traj_uid);
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let mut source: Option<MediaSource> = None;
    for job in jobs {
        let dest = root.join(&job.sub);
        if let NamedMedia::Clip(s, e) = job.what {
            clip_with_ffmpeg(video, s, e, &dest)?;
            continue;
        }
        if source.is_none() {
            let mut src = MediaSource::open(video).map_err(|e| fail(e.to_string()))?;
            src.set_duration(t.spec.meta.duration);
            source = Some(src);
        }
        let Some(src) = source.as_mut() else { continue };
        match job.what {
            NamedMedia::Frame(at) => {
                let frames = src.frames(&FrameRequest::new(at, at, 1), None).map_err(|err| fail(err.to_string()))?;
                let frame = frames.frames.first().ok_or_else(|| fail(format!("no frame at {at}s")))?;
                write_png(&dest, &frame.image).map_err(|e| fail(e.to_string()))?;
            }
            NamedMedia::Audio(s, e) => {
                let a = src.audio(s, e).map_err(|err| fail(err.to_string()))?;
                write_wav(&dest, &a.samples, a.sample_rate).map_err(|err| fail(err.to_string()))?;
            }
            NamedMedia::Clip(..) => {}
        }
    }
    Ok(())
}

/// `[start, end]` of `video` as an MP4 at `dest`, with the `ffmpeg` binary.
pub fn clip_with_ffmpeg(video: &Path, start: f64, end: f64, dest: &Path) -> Result<(), SynthError> {
    let bin = std::env::var("OMNIRL_FFMPEG").ok().filter(|b| !b.trim().is_empty()).unwrap_or_else(|| "ffmpeg".into());
    let length = (end - start).max(0.0);
    let codecs: [&[&str]; 2] = [
        &["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "superfast", "-crf", "20"],
        &["-c:v", "mpeg4", "-q:v", "3"],
    ];
    let mut last = String::new();
    for video_codec in codecs {
        let out = Command::new(&bin)
            .args(["-nostdin", "-y", "-loglevel", "error", "-ss", &format!("{start:.3}"), "-i"])
            .arg(video)
            .args(["-ss", "0", "-t", &format!("{length:.3}"), "-map", "0:v:0?", "-map", "0:a:0?"])
            .args(video_codec)
            .args(["-movflags", "+faststart", "-c:a", "aac", "-b:a", "128k", "-ar", "48000"])
            .arg(dest)
            .output();
        match out {
            Ok(o) if o.status.success() && std::fs::metadata(dest).is_ok_and(|m| m.len() > 0) => return Ok(()),
            Ok(o) => last = String::from_utf8_lossy(&o.stderr).trim().chars().take(300).collect(),
            Err(e) => {
                return Err(SynthError::Media {
                    path: video.display().to_string(),
                    message: format!("cannot run `{bin}` for a clip (set OMNIRL_FFMPEG): {e}"),
                });
            }
        }
    }
    Err(SynthError::Media {
        path: video.display().to_string(),
        message: format!("ffmpeg could not cut {start:.3}-{end:.3}s into {}: {last}", dest.display()),
    })
}
