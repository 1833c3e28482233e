//! The SFT learner: loss = mean NLL of the agent's own tokens through the end token, gradient
//! accumulation equal to one big batch, warm-up then linear decay, and frozen encoders on the
//! tiny fixture thinker (with an image in the prompt).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod learner_support;

use learner_support::*;
use tch::{Kind, Tensor};
use trainer::learner::LocalSteps;
use trainer::learner::thinker::TrainableParts;
use trainer::learner::{SftLearner, SftOptions, SftRow, TrainablePolicy};
use trainer::recipe::{LossAggregation, LrSchedule};

fn options(per_device: u32, accumulation: u32) -> SftOptions {
    SftOptions {
        per_device_batch_size: per_device,
        gradient_accumulation_steps: accumulation,
        aggregation: LossAggregation::TokenMean,
    }
}

fn sft_rows() -> Vec<SftRow<()>> {
    vec![
        SftRow::new(&[1, 2, 3], &[4, 5, TOY_END], &[TOY_END], ()),
        SftRow::new(&[2, 2], &[9, TOY_END], &[TOY_END], ()),
        SftRow::new(&[3, 1, 4, 1, 5], &[9, 2, 6, 5, TOY_END], &[TOY_END], ()),
        SftRow::new(&[6], &[5, 3, TOY_END, 8, 8], &[TOY_END], ()),
    ]
}

#[test]
fn loss_is_the_mean_nll_of_target_tokens() {
    let model = toy();
    let rows = sft_rows();
    // By hand: −Σ log p over unmasked target tokens / their count (3 + 2 + 5 + 3 = 13).
    let (mut sum, mut n) = (0.0f64, 0usize);
    for r in &rows {
        let lp = Vec::<f32>::try_from(&model.score(&r.ids, &(), r.prompt_len).unwrap().logprobs).unwrap();
        for (x, m) in lp.iter().zip(&r.mask) {
            if *m {
                sum -= f64::from(*x);
                n += 1;
            }
        }
    }
    assert_eq!(n, 13);
    let mut learner = SftLearner::new(&model, options(1, 4), &optimizer(0.0), 10).unwrap();
    let stats = learner.step(&model, &rows, &mut LocalSteps).unwrap();
    assert!((stats.loss - sum / 13.0).abs() < 1e-5, "{} vs {}", stats.loss, sum / 13.0);
    assert_eq!(stats.target_tokens, 13);
    // Tokens after the end token take no loss: dropping them leaves the gradient unchanged.
    let g_with = grads(&model);
    zero_grads(&model);
    let mut trimmed = rows.clone();
    trimmed[3] = SftRow::new(&[6], &[5, 3, TOY_END], &[TOY_END], ());
    SftLearner::new(&model, options(1, 4), &optimizer(0.0), 10)
        .unwrap()
        .step(&model, &trimmed, &mut LocalSteps)
        .unwrap();
    // Not bitwise: the shorter row changes the shapes of its matmuls and gradient reductions, and
    // libtorch / MKL choose blocking and summation order by shape and CPU. Each gradient entry sums
    // a few dozen f32 products (n·eps ≈ 4e-6 of the scale at worst, ~1e-7 seen), while loss on the
    // two dropped tokens moves the gradient by ~50% of its scale.
    assert!(max_abs_diff(&g_with, &grads(&model)) < 1e-5 * max_abs(&g_with));
}

#[test]
fn accumulation_equals_one_batch_and_per_row_means_are_an_option() {
    let rows = sft_rows();
    // Reference gradient of −Σ m·lp / 13 in one backward per row, built directly.
    let model = toy();
    for r in &rows {
        let mask: Vec<f32> = r.mask.iter().map(|&m| if m { 1.0 / 13.0 } else { 0.0 }).collect();
        let mut f = |off: usize, lp: &Tensor, _e: &Tensor| -> Result<Tensor, tch::TchError> {
            let w = Tensor::from_slice(&mask[off..off + lp.size()[0] as usize]);
            Ok((lp * w).sum(Kind::Float).neg())
        };
        model.forward_backward(&r.ids, &(), r.prompt_len, &mut f).unwrap();
    }
    let want = grads(&model);
    for (per_device, accumulation) in [(1, 4), (2, 2), (4, 1)] {
        zero_grads(&model);
        let mut l = SftLearner::new(&model, options(per_device, accumulation), &optimizer(0.0), 10).unwrap();
        l.step(&model, &rows, &mut LocalSteps).unwrap();
        assert!(max_abs_diff(&grads(&model), &want) < 1e-6 * max_abs(&want), "{per_device}x{accumulation}");
    }
    // seq-mean-token-mean: (1/4) Σ_r mean_t(−lp) — a different gradient.
    zero_grads(&model);
    let opts = SftOptions { aggregation: LossAggregation::SeqMeanTokenMean, ..options(1, 4) };
    let stats =
        SftLearner::new(&model, opts, &optimizer(0.0), 10).unwrap().step(&model, &rows, &mut LocalSteps).unwrap();
    assert!(max_abs_diff(&grads(&model), &want) > 1e-4 * max_abs(&want));
    let per_row: f64 = rows
        .iter()
        .map(|r| {
            let lp = Vec::<f32>::try_from(&model.score(&r.ids, &(), r.prompt_len).unwrap().logprobs).unwrap();
            let v: Vec<f64> = lp.iter().zip(&r.mask).filter(|(_, m)| **m).map(|(x, _)| -f64::from(*x)).collect();
            v.iter().sum::<f64>() / v.len() as f64
        })
        .sum::<f64>()
        / 4.0;
    assert!((stats.loss - per_row).abs() < 1e-5);
}

#[test]
fn linear_warmup_then_decay() {
    // 8 steps, warm-up ratio 0.25 → 2 warm-up steps: factors 0, ½, then (8 − s)/6.
    let model = toy();
    let cfg = optimizer_with(1e-2, LrSchedule::Linear, 0.25);
    let mut l = SftLearner::new(&model, options(1, 2), &cfg, 8).unwrap();
    let rows = sft_rows();
    let before = snapshot(&model);
    let mut lrs = Vec::new();
    for s in 0..8 {
        let st = l.step(&model, &rows[(s % 2) * 2..(s % 2) * 2 + 2], &mut LocalSteps).unwrap();
        lrs.push(st.report.unwrap().lr);
        if s == 0 {
            // lr 0 on the first step: nothing moves (decay is lr·wd = 0 too).
            let now = snapshot(&model);
            assert!(before.iter().zip(&now).all(|((_, a), (_, b))| a.equal(b)));
        }
    }
    let want = [0.0, 0.5, 1.0, 5.0 / 6.0, 4.0 / 6.0, 3.0 / 6.0, 2.0 / 6.0, 1.0 / 6.0].map(|f| f * 1e-2);
    for (g, w) in lrs.iter().zip(want) {
        assert!((g - w).abs() < 1e-15, "{lrs:?}");
    }
}

#[test]
fn frozen_encoders_get_no_update_on_the_tiny_thinker() {
    let (ids, media) = image_case();
    let row = SftRow::new(&ids[..ids.len() - 4], &ids[ids.len() - 4..], &[TINY_EOS], media);
    let visual = "visual.patch_embed.proj.weight";
    let llm = "model.layers.0.mlp.up_proj.weight";
    for (parts, vision_moves) in [(TrainableParts::sft(), false), (TrainableParts::rl(), true)] {
        let policy = tiny_thinker(parts);
        let names: Vec<String> = policy.trainable_variables().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.iter().any(|n| n.starts_with("visual.")), vision_moves);
        assert_eq!(names.iter().any(|n| n.starts_with("audio_tower.")), vision_moves);
        let v0 = policy.thinker.weights.get(visual).unwrap().copy();
        let l0 = policy.thinker.weights.get(llm).unwrap().copy();
        let mut learner = SftLearner::new(&policy, options(1, 1), &optimizer(1e-3), 4).unwrap();
        let stats = learner.step(&policy, std::slice::from_ref(&row), &mut LocalSteps).unwrap();
        assert!(stats.loss.is_finite() && stats.loss > 0.0);
        assert!(!policy.thinker.weights.get(llm).unwrap().equal(&l0));
        assert_eq!(!policy.thinker.weights.get(visual).unwrap().equal(&v0), vision_moves, "{parts:?}");
    }
}
