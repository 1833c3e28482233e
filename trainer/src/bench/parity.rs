//! `omnirl bench parity`: the same random thinker on the test device in the test dtype (CUDA bf16
//! by default) against fp32 on the CPU, on one multimodal prompt (text, an image, an audio clip,
//! text), so the LLM, both encoders, the feature scatter and TMRoPE are all covered.
//!
//! The weights are drawn once in f32 on the CPU (seeded), then copied and rounded for the device
//! side. Reported over every position's logits: the largest and mean absolute difference, the
//! largest absolute reference logit, their ratio (`rel_max_diff`), exact argmax agreement, and the
//! near-tie agreement: the share of positions where the device's argmax has a reference logit
//! within the tolerance band (`tolerance · max|ref|`) of the reference maximum. Random weights
//! give nearly flat logits, so exact argmax flips between near-equal tokens are expected in bf16;
//! a flip outside the band is a bug. `pass` = `rel_max_diff ≤ tolerance` and every argmax within
//! the band. Greedy generation from the prompt is compared too (the agreeing prefix, for reading).
//!
//! Default tolerances (relative to max|ref|): 1e-4 in f32, 0.05 in bf16, 0.02 in f16; override
//! with `--tolerance`. On the CPU the device side is the CPU itself (half precision rounded, then
//! computed in f32), which checks the harness and the rounding error alone.
//!
//! Left out: video inputs (the same vision path as images, plus the time axis of TMRoPE that the
//! TMRoPE unit tests cover) and real checkpoints.

use super::hw::DeviceInfo;
use super::{BResult, BenchError, Placement, RecordHeader, Shape, ShapeInfo, plain_ids, random_weights};
use crate::model::Component;
use crate::model::audio::audio_output_len;
use crate::model::generate::{Prompt, SamplingParams, generate};
use crate::model::thinker::{Audio, MediaInput, Thinker, Visual};
use crate::model::weights::Weights;
use serde::Serialize;
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// What to compare.
#[derive(Debug, Clone)]
pub struct ParityOptions {
    pub shape: Shape,
    pub placement: Placement,
    pub text_tokens: usize,
    pub gen_tokens: usize,
    pub tolerance: Option<f64>,
    pub seed: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParityRecord {
    #[serde(flatten)]
    pub header: RecordHeader,
    pub reference: &'static str,
    pub tokens: usize,
    pub image_grid_thw: [usize; 3],
    pub audio_mel_frames: usize,
    pub max_abs_diff: f64,
    pub mean_abs_diff: f64,
    pub ref_max_abs: f64,
    pub rel_max_diff: f64,
    pub tolerance: f64,
    pub argmax_agreement: f64,
    pub argmax_within_tolerance: f64,
    pub greedy_tokens: usize,
    pub greedy_prefix_agreement: usize,
    pub pass: bool,
    pub note: Option<String>,
}

/// The default tolerance of a dtype (see the module doc).
pub fn default_tolerance(k: Kind) -> f64 {
    match k {
        Kind::BFloat16 => 0.05,
        Kind::Half => 0.02,
        _ => 1e-4,
    }
}

/// Text, `<vision_bos> image… <vision_eos>`, `<audio_bos> audio… <audio_eos>`, text.
fn prompt(th: &Thinker, text: usize, image_tokens: usize, audio_tokens: usize) -> Vec<u32> {
    let ids = &th.ids;
    let mut out = plain_ids(text / 2, 11);
    out.push(ids.vision_start);
    out.extend(std::iter::repeat_n(ids.image, image_tokens));
    out.push(ids.vision_end);
    out.push(ids.audio_start);
    out.extend(std::iter::repeat_n(ids.audio, audio_tokens));
    out.push(ids.audio_end);
    out.extend(plain_ids(text - text / 2, 13));
    out
}

/// The same tensors on `p` (copied, rounded to `p.storage`, held in `p.compute`).
fn place(w: &Weights, p: Placement) -> BResult<Weights> {
    let mut map = BTreeMap::new();
    for name in w.names() {
        let t = w.get(name)?.f_to_device(p.device)?.f_to_kind(p.storage)?.f_to_kind(p.compute)?;
        map.insert(name.to_string(), t);
    }
    Ok(Weights::from_map(map, p.compute, p.device))
}

/// Runs the comparison.
pub fn run(o: &ParityOptions) -> BResult<ParityRecord> {
    if o.text_tokens < 2 {
        return Err(BenchError::Options("--text-tokens must be at least 2".into()));
    }
    let p = o.placement;
    let cfg = o.shape.config()?;
    let info = ShapeInfo::new(o.shape, &cfg);
    let device = DeviceInfo::new(p.device, None, None);
    let all = [Component::Llm, Component::Vision, Component::Audio];
    let cpu = Placement { device: Device::Cpu, storage: Kind::Float, compute: Kind::Float };
    let ref_w = random_weights(&cfg, cpu, o.seed, &all, Device::Cpu)?;
    let dev_w = place(&ref_w, p)?;
    let reference = Thinker::new(cfg.clone(), ref_w)?;
    let tested = Thinker::new(cfg.clone(), dev_w)?;
    // One 56×56 image (2 frames of 4×4 patches → 4 tokens) and one second of audio (25 tokens).
    let v = cfg.vision();
    let merge = v.spatial_merge_size;
    let grid = [1, 2 * merge, 2 * merge];
    let patches = grid.iter().product::<usize>();
    let pd = reference.vision.patch_dim;
    let mel_frames = 100;
    let px = Tensor::f_randn([patches as i64, pd], (Kind::Float, Device::Cpu))?;
    let mel = Tensor::f_randn([reference.audio.mel_bins, mel_frames as i64], (Kind::Float, Device::Cpu))?;
    let media = MediaInput {
        images: vec![Visual::values(Vec::<f32>::try_from(&px.f_flatten(0, -1)?)?, grid)],
        videos: vec![],
        audios: vec![Audio { mel: Vec::<f32>::try_from(&mel.f_flatten(0, -1)?)?, frames: mel_frames }],
    };
    let ids = prompt(&reference, o.text_tokens, patches / (merge * merge), audio_output_len(mel_frames));
    let a = reference.logits(&ids, &media)?;
    let b = tested.logits(&ids, &media)?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?;
    let diff = a.f_sub(&b)?.f_abs()?;
    let max_abs_diff = diff.f_max()?.f_double_value(&[])?;
    let mean_abs_diff = diff.f_mean(Kind::Float)?.f_double_value(&[])?;
    let ref_max_abs = a.f_abs()?.f_max()?.f_double_value(&[])?;
    let rel_max_diff = max_abs_diff / ref_max_abs.max(f64::MIN_POSITIVE);
    let tolerance = o.tolerance.unwrap_or_else(|| default_tolerance(p.storage));
    let arg_a = a.f_argmax(-1, false)?;
    let arg_b = b.f_argmax(-1, false)?;
    let n = ids.len() as f64;
    let argmax_agreement = arg_a.f_eq_tensor(&arg_b)?.f_sum(Kind::Float)?.f_double_value(&[])? / n;
    let ref_best = a.f_amax([-1], false)?;
    let ref_at_b = a.f_gather(1, &arg_b.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?;
    let band = tolerance * ref_max_abs;
    let within = ref_best.f_sub(&ref_at_b)?.f_le(band)?.f_sum(Kind::Float)?.f_double_value(&[])? / n;
    let params =
        SamplingParams { greedy: true, ignore_eos: true, max_new_tokens: o.gen_tokens, ..SamplingParams::default() };
    let (ga, gb) = if o.gen_tokens > 0 {
        let pr = [Prompt { ids: &ids, media: &media, seed: None }];
        let ga = generate(&reference, &pr, &params)?.pop().map(|g| g.ids).unwrap_or_default();
        let gb = generate(&tested, &pr, &params)?.pop().map(|g| g.ids).unwrap_or_default();
        (ga, gb)
    } else {
        (vec![], vec![])
    };
    let prefix = ga.iter().zip(&gb).take_while(|(x, y)| x == y).count();
    Ok(ParityRecord {
        reference: "cpu f32",
        tokens: ids.len(),
        image_grid_thw: grid,
        audio_mel_frames: mel_frames,
        max_abs_diff,
        mean_abs_diff,
        ref_max_abs,
        rel_max_diff,
        tolerance,
        argmax_agreement,
        argmax_within_tolerance: within,
        greedy_tokens: ga.len(),
        greedy_prefix_agreement: prefix,
        pass: rel_max_diff <= tolerance && within >= 1.0,
        note: p.note(),
        header: RecordHeader::new("parity", device, info, &p),
    })
}
