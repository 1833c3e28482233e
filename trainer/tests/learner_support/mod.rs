//! Shared helpers of the learner and checkpoint tests: the toy LM, the tiny fixture thinker, the
//! fixture's image case, deterministic synthetic rows and tensor comparisons.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Kind, Tensor};
use trainer::learner::thinker::{TrainableParts, TrainableThinker};
use trainer::learner::toy::ToyLm;
use trainer::learner::{RlRow, SplitMix64, TrainablePolicy};
use trainer::model::logprobs::TrainOptions;
use trainer::model::thinker::{MediaInput, Visual};
use trainer::model::weights::LoadOptions;
use trainer::recipe::resolved::Optimizer;
use trainer::recipe::{AlgorithmConfig, LrSchedule, OptimizerConfig};

/// The toy model's end token.
pub const TOY_END: u32 = 7;
pub const TOY_VOCAB: i64 = 16;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model")
}

pub fn toy() -> ToyLm {
    ToyLm::new(TOY_VOCAB, 8, 11).unwrap()
}

/// The tiny fixture thinker (vocabulary 512, eos 509), fp32 on CPU.
pub fn tiny_thinker(parts: TrainableParts) -> TrainableThinker {
    let opts = LoadOptions { dtype: Some(Kind::Float), device: tch::Device::Cpu };
    TrainableThinker::load(&fixtures().join("tiny"), opts, parts, TrainOptions { chunk_tokens: 5, checkpoint: false })
        .unwrap()
}

pub const TINY_EOS: u32 = 509;

/// The fixture's image case: ids and media.
pub fn image_case() -> (Vec<u32>, MediaInput) {
    let c: HashMap<String, Tensor> =
        Tensor::read_safetensors(fixtures().join("cases.safetensors")).unwrap().into_iter().collect();
    let ids: Vec<u32> = Vec::<i64>::try_from(&c["image.ids"]).unwrap().into_iter().map(|x| x as u32).collect();
    let g = Vec::<i64>::try_from(&c["image.image_grids"].flatten(0, -1)).unwrap();
    let px = Vec::<f32>::try_from(&c["image.image_pixels"].flatten(0, -1)).unwrap();
    let media = MediaInput {
        images: vec![Visual::values(px, [g[0] as usize, g[1] as usize, g[2] as usize])],
        ..Default::default()
    };
    (ids, media)
}

/// A recipe optimizer section with a constant learning rate (resolved).
pub fn optimizer(lr: f64) -> Optimizer {
    optimizer_with(lr, LrSchedule::Constant, 0.0)
}

/// A resolved optimizer section: the recipe defaults with this rate, schedule and warm-up.
pub fn optimizer_with(lr: f64, lr_schedule: LrSchedule, warmup_ratio: f64) -> Optimizer {
    let cfg = OptimizerConfig {
        lr: Some(lr),
        lr_schedule: Some(lr_schedule),
        warmup_ratio: Some(warmup_ratio),
        ..OptimizerConfig::default()
    };
    Optimizer::from_config(&cfg).unwrap()
}

pub fn algorithm() -> AlgorithmConfig {
    AlgorithmConfig::default()
}

/// One synthetic group of `trajs` trajectories for prompt `uid`: trajectory `t` has `1 + t % 2`
/// turns of `[prompt ++ response]` ids drawn from `rng` in `1..vocab-1` (the response ends with
/// `end`), the reward `rewards[t]`, and sampler log-probs drawn in [-3, -0.1].
pub fn group_rows(
    rng: &mut SplitMix64,
    uid: &str,
    rewards: &[f64],
    vocab: u32,
    end: u32,
    prompt_len: usize,
) -> Vec<RlRow<()>> {
    let mut out = Vec::new();
    for (t, &reward) in rewards.iter().enumerate() {
        for turn in 0..1 + t % 2 {
            let prompt: Vec<u32> = (0..prompt_len + turn).map(|_| 1 + rng.below(u64::from(vocab) - 2) as u32).collect();
            let n = 2 + rng.below(4) as usize;
            let mut response: Vec<u32> =
                (0..n).map(|_| 1 + rng.below(u64::from(vocab) - 2) as u32).filter(|&x| x != end).collect();
            response.push(end);
            let lp: Vec<f32> = response.iter().map(|_| -(0.1 + 2.9 * rng.next_f64()) as f32).collect();
            out.push(
                RlRow::new(&prompt, &response, &[end], (), uid, format!("{uid}-{t}"), reward).with_sampler_logprobs(lp),
            );
        }
    }
    out
}

/// Every trainable tensor of a policy, copied.
pub fn snapshot<P: TrainablePolicy>(p: &P) -> Vec<(String, Tensor)> {
    p.trainable_variables().into_iter().map(|(n, t)| (n, t.detach().copy())).collect()
}

/// Gradients of every trainable tensor, copied (zeros where undefined).
pub fn grads<P: TrainablePolicy>(p: &P) -> Vec<Tensor> {
    p.trainable_variables()
        .into_iter()
        .map(|(_, t)| {
            let g = t.grad();
            if g.defined() { g.copy() } else { t.zeros_like() }
        })
        .collect()
}

pub fn max_abs_diff(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs().max().double_value(&[])).fold(0.0, f64::max)
}

pub fn max_abs(a: &[Tensor]) -> f64 {
    a.iter().map(|x| x.abs().max().double_value(&[])).fold(0.0, f64::max)
}

pub fn zero_grads<P: TrainablePolicy>(p: &P) {
    for (_, t) in p.trainable_variables() {
        let mut g = t.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

/// The same row with other media.
pub fn with_media<M>(r: RlRow<()>, media: M) -> RlRow<M> {
    RlRow {
        ids: r.ids,
        prompt_len: r.prompt_len,
        mask: r.mask,
        sampler_logprobs: r.sampler_logprobs,
        rollout_scores: r.rollout_scores,
        media,
        uid: r.uid,
        traj_uid: r.traj_uid,
        reward: r.reward,
        exceed: r.exceed,
    }
}
