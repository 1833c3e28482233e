//! Observability end to end: RL steps of the toy LM log their scalars (losses, grad norm, LR,
//! advantage and entropy statistics, tokens/s, the time split) to TensorBoard and JSONL, and the
//! event file is read back record by record (CRC-checked) with the same values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod learner_support;

use learner_support::*;
use trainer::learner::LocalSteps;
use trainer::learner::{RlLearner, SplitMix64};
use trainer::metrics::tensorboard::read_events;
use trainer::metrics::{MetricsLogger, Phase, PhaseTimes, Scalars};
use trainer::recipe::AlgorithmConfig;
use trainer::recipe::resolved::MetricSinks;

#[test]
fn tensorboard_and_jsonl_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MetricSinks { tensorboard: true, tensorboard_dir: None, jsonl: true };
    let mut logger = MetricsLogger::open(dir.path(), &cfg, 1, None).unwrap();
    let model = toy();
    let mut learner = RlLearner::new(&model, &AlgorithmConfig::default(), &optimizer(1e-3), 3).unwrap();
    let mut rng = SplitMix64::new(9);
    let mut logged: Vec<Scalars> = Vec::new();
    for step in 1..=3u64 {
        let rows = group_rows(&mut rng, "q", &[1.0, 0.0, 0.5], TOY_VOCAB as u32, TOY_END, 4);
        let mut times = PhaseTimes::default();
        times.add(Phase::Generation, 0.5);
        let stats = learner.step(&model, &rows, &mut LocalSteps).unwrap();
        times.merge(&stats.times);
        let mut s = stats.scalars();
        s.extend(times.scalars());
        logger.log(step, step == 3, &s).unwrap();
        logged.push(s);
    }
    let tb_dir = dir.path().join("tensorboard");
    if let Some(keep) = std::env::var_os("OMNIRL_KEEP_TB") {
        // For checking the file with TensorBoard itself (`EventAccumulator`).
        std::fs::create_dir_all(&keep).unwrap();
        for e in std::fs::read_dir(&tb_dir).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), std::path::Path::new(&keep).join(e.file_name())).unwrap();
        }
    }
    let files: Vec<_> = std::fs::read_dir(&tb_dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."));
    let events = read_events(&files[0]).unwrap();
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    assert_eq!(events.len(), 4);
    for (ev, (step, s)) in events[1..].iter().zip(logged.iter().enumerate()) {
        assert_eq!(ev.step, step as i64 + 1);
        assert_eq!(ev.scalars.len(), s.0.len());
        for ((tag, v), (name, want)) in ev.scalars.iter().zip(&s.0) {
            assert_eq!(tag, name);
            assert!(*v == *want as f32 || (v.is_nan() && want.is_nan()), "{tag}: {v} vs {want}");
        }
        let tags: Vec<&str> = ev.scalars.iter().map(|(t, _)| t.as_str()).collect();
        for want in [
            "actor/pg_loss",
            "actor/grad_norm",
            "actor/lr",
            "training/advantage/mean",
            "training/entropy_weight/mean",
            "training/turn_entropy/mean",
            "perf/update_tokens_per_s",
            "timing_s/generation",
            "timing_s/update",
            "timing_frac/logprobs",
        ] {
            assert!(tags.contains(&want), "{want} missing");
        }
    }
    // JSONL holds the same values (as f64).
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["step"], 3);
    assert_eq!(lines[1]["actor/lr"].as_f64(), logged[1].get("actor/lr"));

    // A resumed run (from a checkpoint at step 2) trims the JSONL and starts a second event file.
    let mut resumed = MetricsLogger::open(dir.path(), &cfg, 1, Some(2)).unwrap();
    resumed.log(3, true, &logged[2]).unwrap();
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![1, 2, 3]);
    assert_eq!(std::fs::read_dir(&tb_dir).unwrap().count(), 2);
}
