//! Throughput of learner steps on CPU (ignored by default; numbers, not assertions):
//! `cargo test -p trainer --release --test learner_bench -- --ignored --nocapture`.
//! Reports tokens per second through the training forward/backward (prompt + response tokens)
//! and the scoring pass, for the RL on-policy flow and the SFT step, on the toy LM and on the
//! tiny fixture thinker (vocabulary 512, hidden 32).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod learner_support;

use learner_support::*;
use std::time::Instant;
use trainer::learner::LocalSteps;
use trainer::learner::thinker::TrainableParts;
use trainer::learner::{RlLearner, RlRow, SftLearner, SftOptions, SftRow, SplitMix64};
use trainer::metrics::Phase;
use trainer::model::thinker::MediaInput;
use trainer::recipe::{AlgorithmConfig, LossAggregation};

fn report(what: &str, stats: &trainer::learner::RlStepStats) {
    println!(
        "{what}: {} rows, {} update tokens in {:.3}s = {:.0} tok/s; scoring {:.0} tok/s",
        stats.rows,
        stats.update_tokens,
        stats.times.get(Phase::Update),
        stats.update_tokens_per_second(),
        stats.logprob_tokens as f64 / stats.times.get(Phase::Logprobs).max(1e-9)
    );
}

#[test]
#[ignore]
fn rl_and_sft_steps_per_second() {
    let mut rng = SplitMix64::new(1);
    // Toy LM: 8 groups x 8 trajectories.
    let model = toy();
    let mut rows = Vec::new();
    for g in 0..8 {
        rows.extend(group_rows(
            &mut rng,
            &format!("g{g}"),
            &[1.0, 0.0, 0.5, 0.0, 1.0, 0.2, 0.0, 0.7],
            TOY_VOCAB as u32,
            TOY_END,
            24,
        ));
    }
    let mut learner = RlLearner::new(&model, &AlgorithmConfig::default(), &optimizer(1e-3), 10).unwrap();
    learner.step(&model, &rows, &mut LocalSteps).unwrap();
    report("toy LM, RL on-policy (TAURA)", &learner.step(&model, &rows, &mut LocalSteps).unwrap());

    // Tiny thinker: 2 groups x 8 trajectories, prompts of ~120 tokens.
    let policy = tiny_thinker(TrainableParts::rl());
    let mut rows: Vec<RlRow<MediaInput>> = Vec::new();
    for g in 0..2 {
        for r in group_rows(&mut rng, &format!("t{g}"), &[1.0, 0.0, 0.5, 0.0, 1.0, 0.2, 0.0, 0.7], 500, TINY_EOS, 120) {
            rows.push(with_media(r, MediaInput::default()));
        }
    }
    let mut learner = RlLearner::new(&policy, &AlgorithmConfig::default(), &optimizer(1e-3), 10).unwrap();
    learner.step(&policy, &rows, &mut LocalSteps).unwrap();
    report("tiny thinker, RL on-policy (TAURA)", &learner.step(&policy, &rows, &mut LocalSteps).unwrap());

    let sft: Vec<SftRow<MediaInput>> = rows
        .iter()
        .map(|r| SftRow::new(&r.ids[..r.prompt_len], &r.ids[r.prompt_len..], &[TINY_EOS], MediaInput::default()))
        .collect();
    let opts = SftOptions {
        per_device_batch_size: 1,
        gradient_accumulation_steps: sft.len() as u32,
        aggregation: LossAggregation::TokenMean,
    };
    let mut learner = SftLearner::new(&policy, opts, &optimizer(1e-3), 10).unwrap();
    learner.step(&policy, &sft, &mut LocalSteps).unwrap();
    let t = Instant::now();
    let s = learner.step(&policy, &sft, &mut LocalSteps).unwrap();
    println!(
        "tiny thinker, SFT: {} rows, {} tokens in {:.3}s = {:.0} tok/s",
        s.rows,
        s.tokens,
        t.elapsed().as_secs_f64(),
        s.tokens_per_second()
    );
}
