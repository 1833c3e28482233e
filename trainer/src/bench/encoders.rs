//! `omnirl bench encoders`: forward throughput of the vision encoder (a video of `frames` frames
//! at `height × width`, already patchified) and of the audio encoder (`audio_seconds` of log-mel
//! features), under `no_grad`, inputs already on the device, as the rollout uses them frozen.
//!
//! Only the encoders' weights are allocated (the LLM is not needed). Vision throughput is given in
//! patches, merged tokens (what reaches the LLM) and frames per second; audio throughput in
//! seconds of audio and tokens (25 per second) per second.
//!
//! Left out: preprocessing (decoding, resizing, patchify and log-mel run in the rollout crate on
//! the CPU and are measured by its own benchmarks), FLOP counts and a transformers peer for the
//! encoders.

use super::hw::{DeviceInfo, MemReport, probe_for};
use super::{BResult, BenchError, Placement, RecordHeader, Shape, ShapeInfo, mean_min, random_weights, sync};
use crate::model::Component;
use crate::model::audio::{AudioEncoder, audio_output_len};
use crate::model::vision::VisionEncoder;
use serde::Serialize;
use std::time::Instant;
use tch::{Kind, Tensor};

/// What to measure.
#[derive(Debug, Clone)]
pub struct EncoderOptions {
    pub shape: Shape,
    pub placement: Placement,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub audio_seconds: f64,
    pub steps: usize,
    pub seed: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VisionRow {
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub grid_thw: [usize; 3],
    pub patches: usize,
    pub tokens: usize,
    pub s_per_call: f64,
    pub s_per_call_min: f64,
    pub patches_per_s: f64,
    pub tokens_per_s: f64,
    pub frames_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AudioRow {
    pub seconds: f64,
    pub mel_frames: usize,
    pub tokens: usize,
    pub s_per_call: f64,
    pub s_per_call_min: f64,
    pub audio_seconds_per_s: f64,
    pub tokens_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EncodersRecord {
    #[serde(flatten)]
    pub header: RecordHeader,
    pub vision: VisionRow,
    pub audio: AudioRow,
    pub memory: Option<MemReport>,
    pub note: Option<String>,
}

/// Mean and best seconds of `f` over `steps` calls after one warm-up.
fn time(device: tch::Device, steps: usize, f: impl Fn() -> BResult<Tensor>) -> BResult<(f64, f64)> {
    let _warm = f()?;
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        sync(device);
        let t0 = Instant::now();
        let _out = f()?;
        sync(device);
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(mean_min(&times))
}

/// Runs the encoder benchmark.
pub fn run(o: &EncoderOptions) -> BResult<EncodersRecord> {
    let p = o.placement;
    let cfg = o.shape.config()?;
    let v = cfg.vision();
    let px = v.patch_size * v.spatial_merge_size;
    if o.steps == 0 || o.frames == 0 || !o.frames.is_multiple_of(v.temporal_patch_size) {
        return Err(BenchError::Options(format!(
            "--steps must be positive and --frames a positive multiple of {}",
            v.temporal_patch_size
        )));
    }
    if o.height == 0 || o.width == 0 || !o.height.is_multiple_of(px) || !o.width.is_multiple_of(px) {
        return Err(BenchError::Options(format!("--height and --width must be positive multiples of {px}")));
    }
    let mel_frames = (o.audio_seconds * 100.0).round() as usize;
    if mel_frames < 2 {
        return Err(BenchError::Options("--audio-seconds must be at least 0.02".into()));
    }
    let info = ShapeInfo::new(o.shape, &cfg);
    let device = DeviceInfo::new(p.device, None, None);
    let probe = probe_for(p.device);
    let w = random_weights(&cfg, p, o.seed, &[Component::Vision, Component::Audio], p.device)?;
    let vision = VisionEncoder::new(&cfg, &w)?;
    let audio = AudioEncoder::new(&cfg, &w)?;
    let grid = [o.frames / v.temporal_patch_size, o.height / v.patch_size, o.width / v.patch_size];
    let patches = grid.iter().product::<usize>();
    let tokens = patches / (v.spatial_merge_size * v.spatial_merge_size);
    let pixels = Tensor::f_randn([patches as i64, vision.patch_dim], (p.compute, p.device))?;
    let mel = Tensor::f_randn([audio.mel_bins, mel_frames as i64], (Kind::Float, p.device))?.f_to_kind(p.compute)?;
    let (vs, vs_min) = tch::no_grad(|| time(p.device, o.steps, || Ok(vision.forward(&pixels, &[grid])?)))?;
    let (aus, aus_min) = tch::no_grad(|| time(p.device, o.steps, || Ok(audio.forward(&mel, &[mel_frames])?)))?;
    let audio_tokens = audio_output_len(mel_frames);
    Ok(EncodersRecord {
        vision: VisionRow {
            frames: o.frames,
            height: o.height,
            width: o.width,
            grid_thw: grid,
            patches,
            tokens,
            s_per_call: vs,
            s_per_call_min: vs_min,
            patches_per_s: patches as f64 / vs,
            tokens_per_s: tokens as f64 / vs,
            frames_per_s: o.frames as f64 / vs,
        },
        audio: AudioRow {
            seconds: mel_frames as f64 / 100.0,
            mel_frames,
            tokens: audio_tokens,
            s_per_call: aus,
            s_per_call_min: aus_min,
            audio_seconds_per_s: mel_frames as f64 / 100.0 / aus,
            tokens_per_s: audio_tokens as f64 / aus,
        },
        memory: probe.map(|m| m.finish()),
        note: p.note(),
        header: RecordHeader::new("encoders", device, info, &p),
    })
}
