//! Rollout driver throughput with a scripted policy on real (generated) videos: episodes per
//! second, media time per episode and the share of wall time spent on media, with the shared
//! decode cache (`media::cache`) off and on, for two request mixes (a GRPO group's overlapping
//! requests, and every request unique), with media extraction overlapping generation
//! (pool-async) and without it (every batch waits for all media, as the reference's
//! synchronous chunk loop does).
//!
//! Generation is simulated: the scripted policy sleeps `base + per_context * batch` per call,
//! so the numbers isolate the driver and the media environment. Two settings run by default
//! (`GEN`, `base_ms:per_context_ms` pairs, default `3000:10,200:2`): a 7B model's wave on one
//! H100 (a wave of 64 contexts and ~200 tokens each takes seconds), where overlapped media is
//! hidden behind generation on this machine; and a fast GPU (a small model), where rollouts wait
//! on media, the case the cache is for.
//! Media is real: `VideoEnv` decodes frames, audio and clips in process and builds the model
//! inputs (pixel patches, log-mel features). Tokens: the real Qwen tokenizer when
//! scripts/fetch_qwen_tokenizer.sh has fetched it, else the byte tokenizer.
//!
//! Run: `scripts/bench_rollout.sh` (or `cargo bench -p rollout --bench rollout_driver`).
//! Knobs (environment): PROMPTS (16), GROUP (8), VIDEOS (8; prompt i uses video i mod VIDEOS),
//! MAX_BATCH (64), MEDIA_THREADS (2), GEN (3000:10,200:2), SECONDS (60, video length),
//! CACHE_MIB (2048).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rewards::QuestionType;
use rollout::chat::{ChatConfig, ChatTokenizer};
use rollout::driver::{Driver, DriverConfig, MediaOpener, RolloutStats};
use rollout::episode::{
    ByteTokenizer, EpisodeSettings, EpisodeSpec, MediaEnv, MediaFailure, PromptEncoder, VideoEnv, VideoMeta,
};
use rollout::media::{CacheStats, MediaCache};
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

/// Which requests the episodes make.
#[derive(Clone, Copy, PartialEq)]
enum Mix {
    /// A policy's: the same overview in every episode of a group, then targeted requests at
    /// one of three moments of the prompt (the ones the question points at), so episodes of a
    /// group overlap the way sampled copies of one policy do.
    Group,
    /// Every request unique: overviews and targets shifted per episode.
    Unique,
}

static MIX: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// A typical five-step inspection: wide scan, listen or watch, watch, zoom, answer.
fn respond(info: &ContextInfo<'_>) -> String {
    let d = info.spec.meta.duration;
    let unique = MIX.load(std::sync::atomic::Ordering::Relaxed) == 1;
    let (shift, at) = if unique {
        let e = info.episode as f64;
        (0.013 * (e + 1.0), (e * 0.37) % (d - 12.0))
    } else {
        (0.0, ((info.sample * 3 + info.copy % 3) % 8) as f64 * (d / 10.0))
    };
    let action = match info.step {
        1 => json!({"type": "get_frames", "start": shift, "end": d, "num": 16}),
        2 if info.spec.meta.has_audio => json!({"type": "get_audio", "start": at, "end": (at + 10.0).min(d)}),
        2 | 3 => json!({"type": "get_clip", "start": at, "end": (at + 4.0).min(d)}),
        4 => json!({"type": "get_frames", "start": at + shift, "end": at + 2.0, "num": 8}),
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

/// One rollout of `specs`: its stats, and the cache's when it was on.
fn run(
    specs: &[Arc<EpisodeSpec>],
    mix: Mix,
    cache: bool,
    overlap: bool,
    cost: (u64, u64),
) -> (RolloutStats, CacheStats) {
    MIX.store(u8::from(mix == Mix::Unique), std::sync::atomic::Ordering::Relaxed);
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
        base: Duration::from_millis(cost.0),
        per_ctx: Duration::from_millis(cost.1),
    };
    let shared = cache.then(|| MediaCache::new(knob("CACHE_MIB", 2048) << 20));
    let opener_cache = shared.clone();
    let opener: Arc<MediaOpener> = Arc::new(move |spec: &EpisodeSpec| {
        let (path, duration, audio) = (&spec.video, Some(spec.meta.duration), spec.meta.has_audio);
        let env = match &opener_cache {
            Some(c) => VideoEnv::open_shared(c, path, duration, audio),
            None => VideoEnv::open(path, duration, audio),
        }
        .map_err(|e| MediaFailure::new(e.to_string()))?;
        Ok(Arc::new(env) as Arc<dyn MediaEnv>)
    });
    let batch = driver.run(&mut policy, specs, opener).unwrap();
    assert!(batch.trajectories.iter().all(|t| t.dropped.is_none() && t.won), "every scripted episode wins");
    (batch.stats, shared.map(|c| c.take_stats()).unwrap_or_default())
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let secs = knob("SECONDS", 60);
    let n_videos = knob("VIDEOS", 8).max(1) as usize;
    let videos: Vec<(PathBuf, bool)> =
        (0..n_videos).map(|i| (make_video(dir.path(), &format!("v{i}.mp4"), secs, i % 2 == 0), i % 2 == 0)).collect();
    let prompts = knob("PROMPTS", 16) as usize;
    let specs: Vec<Arc<EpisodeSpec>> = (0..prompts)
        .map(|i| {
            let (video, has_audio) = &videos[i % n_videos];
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
    let costs: Vec<(u64, u64)> = std::env::var("GEN")
        .unwrap_or_else(|_| "3000:10,200:2".into())
        .split(',')
        .filter_map(|p| p.split_once(':').and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?))))
        .collect();
    println!(
        "rollout driver: {prompts} prompts x {} copies on {n_videos} {secs} s 320x240 videos, max_batch {}, {} media threads, {tokenizer} tokenizer, {} cores",
        knob("GROUP", 8),
        knob("MAX_BATCH", 64),
        knob("MEDIA_THREADS", 2),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    for cost in costs {
        table(&specs, cost);
    }
}

/// The six runs at one generation cost, and the ratios against the goals.
fn table(specs: &[Arc<EpisodeSpec>], cost: (u64, u64)) {
    println!("\nsimulated generation {} ms + {} ms/context per call", cost.0, cost.1);
    println!(
        "{:<36} {:>6} {:>8} {:>7} {:>8} {:>12} {:>11} {:>9} {:>9} {:>9}",
        "run", "eps", "wall s", "ep/s", "media s", "media/ep ms", "media share", "hit rate", "peak MiB", "wait"
    );
    let mut by_run = Vec::new();
    for (label, mix, cache, overlap) in [
        ("group mix, cache off, overlapped", Mix::Group, false, true),
        ("group mix, cache on, overlapped", Mix::Group, true, true),
        ("unique mix, cache off, overlapped", Mix::Unique, false, true),
        ("unique mix, cache on, overlapped", Mix::Unique, true, true),
        ("group mix, cache off, synchronous", Mix::Group, false, false),
        ("group mix, cache on, synchronous", Mix::Group, true, false),
    ] {
        let (s, c) = run(specs, mix, cache, overlap, cost);
        let per_ep_ms = 1e3 * s.media_busy_s / s.episodes.max(1) as f64;
        println!(
            "{label:<36} {:>6} {:>8.2} {:>7.2} {:>8.2} {:>12.1} {:>10.1}% {:>8.1}% {:>9.1} {:>8.1}%",
            s.episodes,
            s.wall_s,
            s.episodes_per_s(),
            s.media_busy_s,
            per_ep_ms,
            100.0 * s.media_busy_s / s.wall_s.max(1e-9),
            100.0 * c.hit_rate(),
            c.bytes_peak as f64 / f64::from(1u32 << 20),
            100.0 * s.media_wait_share()
        );
        by_run.push((per_ep_ms, s.episodes_per_s()));
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    println!(
        "group mix: media time per episode {:.1}x lower with the cache (goal >= 4x); episodes/s {:.2}x overlapped (goal >= 1.5x), {:.2}x synchronous",
        ratio(by_run[0].0, by_run[1].0),
        ratio(by_run[1].1, by_run[0].1),
        ratio(by_run[5].1, by_run[4].1)
    );
    println!(
        "unique mix: episodes/s {:.3}x with the cache (goal >= 0.97x: no slowdown beyond 3%)",
        ratio(by_run[3].1, by_run[2].1)
    );
}
