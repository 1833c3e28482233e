//! Shared helpers of the episode and driver tests: small generated videos (ffmpeg lavfi, made
//! once per test binary), episode specs, and response builders.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rewards::QuestionType;
use rollout::episode::{
    Episode, EpisodeSettings, EpisodeSpec, MediaEnv, PromptEncoder, Response, StepOutcome, VideoEnv, VideoMeta,
};
use rollout::prompt::PromptTemplate;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

/// The generated test videos.
pub struct Videos {
    _dir: tempfile::TempDir,
    /// 12 s, 25 fps, 64x48, a 440 Hz tone.
    pub with_audio: PathBuf,
    /// 12 s, 30 fps, 64x48, no audio stream.
    pub silent: PathBuf,
}

fn ffmpeg(args: &[&str]) {
    let out =
        Command::new("ffmpeg").args(["-nostdin", "-y", "-loglevel", "error"]).args(args).output().expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn videos() -> &'static Videos {
    static VIDEOS: OnceLock<Videos> = OnceLock::new();
    VIDEOS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let with_audio = dir.path().join("tone.mp4");
        let silent = dir.path().join("silent.mp4");
        let wa = with_audio.to_str().unwrap();
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=64x48:r=25:d=12",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=16000:duration=12",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-b:a",
            "32k",
            "-ac",
            "1",
            "-shortest",
            wa,
        ]);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=64x48:r=30:d=12",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-preset",
            "ultrafast",
            "-g",
            "30",
            silent.to_str().unwrap(),
        ]);
        Videos { _dir: dir, with_audio, silent }
    })
}

/// A spec for `video` with the given type and ground truth; duration/fps/audio as the
/// dataset would state them.
pub fn spec(video: &Path, qtype: QuestionType, answer: &str, duration: f64, fps: f64, has_audio: bool) -> EpisodeSpec {
    let options = if qtype == QuestionType::Mcq {
        ["A. red", "B. green", "C. blue"].map(String::from).to_vec()
    } else {
        Vec::new()
    };
    EpisodeSpec {
        question_id: "q0".into(),
        video: video.to_path_buf(),
        question_type: format!("{}_Test", qtype.as_str()),
        qtype,
        question: "What is shown?".into(),
        options,
        answer: answer.into(),
        meta: VideoMeta { duration, fps: Some(fps), has_audio },
        data_source: None,
        annotations: None,
    }
}

pub fn mcq_tone() -> EpisodeSpec {
    spec(&videos().with_audio, QuestionType::Mcq, "B", 12.0, 25.0, true)
}

pub fn mcq_silent() -> EpisodeSpec {
    spec(&videos().silent, QuestionType::Mcq, "B", 12.0, 30.0, false)
}

pub fn env_for(spec: &EpisodeSpec) -> VideoEnv {
    VideoEnv::open(&spec.video, Some(spec.meta.duration), spec.meta.has_audio).unwrap()
}

pub fn episode(spec: EpisodeSpec, settings: EpisodeSettings, encoder: Option<Arc<dyn PromptEncoder>>) -> Episode {
    Episode::new(Arc::new(spec), Arc::new(settings), &PromptTemplate::default_template().unwrap(), encoder)
}

/// A well-formed response with `action` (a JSON object text).
pub fn act(action: &str) -> String {
    format!(r#"{{"observation": "seen", "think": "next", "confidence": 0.5, "action": {action}}}"#)
}

pub fn frames(start: f64, end: f64, num: i64) -> String {
    act(&format!(r#"{{"type": "get_frames", "start": {start:?}, "end": {end:?}, "num": {num}}}"#))
}

pub fn audio(start: f64, end: f64) -> String {
    act(&format!(r#"{{"type": "get_audio", "start": {start:?}, "end": {end:?}}}"#))
}

pub fn clip(start: f64, end: f64) -> String {
    act(&format!(r#"{{"type": "get_clip", "start": {start:?}, "end": {end:?}}}"#))
}

pub fn answer(content: &str) -> String {
    act(&format!(r#"{{"type": "answer", "content": {}}}"#, serde_json::to_string(content).unwrap()))
}

/// Steps `ep` through `responses` on `env`, returning every outcome.
pub fn run(ep: &mut Episode, env: &dyn MediaEnv, responses: &[String]) -> Vec<StepOutcome> {
    responses.iter().map(|r| ep.step(Response::text(r.clone()), env)).collect()
}

/// The text of the last message.
pub fn last_text(ep: &Episode) -> String {
    ep.history().last().map(|m| m.joined_text()).unwrap_or_default()
}
