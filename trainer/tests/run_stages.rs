#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The stage runner's pieces on the quickstart: the small tokenizer round-trips text and lays out
//! media by the config's ids; and after a few SFT steps on one expert row, greedy generation from
//! that row's prompt reproduces the target as far as teacher forcing is sure of every token (the
//! sampler and the training forward agree).

use rollout::episode::PromptEncoder;
use std::path::PathBuf;
use std::sync::Arc;
use tch::Device;
use trainer::checkpoint::{RandomCheckpointOptions, write_random_checkpoint_with};
use trainer::learner::TrainablePolicy;
use trainer::learner::thinker::TrainableParts;
use trainer::learner::{SftLearner, SftOptions};
use trainer::model::generate::{Prompt, SamplingParams, generate};
use trainer::model::{FloatDtype, KeyLayout, OmniThinkerConfig};
use trainer::recipe::StageKind;
use trainer::run::episodes::rl_specs;
use trainer::run::stages::{Model, expert_rows};
use trainer::run::tokenizer::SmallTokenizer;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn small_tokenizer_uses_the_config_ids() {
    let cfg = OmniThinkerConfig::from_file(&root().join("data/quickstart/tiny_thinker.json")).unwrap();
    let t = SmallTokenizer::from_config(&cfg).unwrap();
    assert_eq!((t.im_start, t.im_end, t.end_of_text), (4001, 4002, 4000));
    assert_eq!(t.vocab_limit(), 4011);
    let ids = t.encode_text("{\"a\": 1}").unwrap();
    assert_eq!(t.decode(&ids).unwrap(), "{\"a\": 1}");
    assert_eq!(t.end_of_turn().unwrap(), vec![4002, 10]);
}

#[test]
fn sft_on_expert_rows_is_what_greedy_generation_reproduces() {
    std::env::set_current_dir(root()).unwrap();
    let dry = trainer::dry_run::run(std::path::Path::new("recipes/quickstart.yaml"), &[], &|_| None);
    let recipe = dry.recipe.unwrap();
    let rl = recipe.stages.iter().find(|s| s.kind == Some(StageKind::Rl)).unwrap();
    let cfg = OmniThinkerConfig::from_file(&root().join("data/quickstart/tiny_thinker.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = RandomCheckpointOptions {
        layout: KeyLayout::ThinkerPrefixed,
        dtype: FloatDtype::F32,
        seed: Some(1),
        write_config: true,
    };
    write_random_checkpoint_with(&cfg, dir.path(), 1, &opts).unwrap();
    let tok = SmallTokenizer::from_config(&cfg).unwrap();
    let limit = tok.vocab_limit();
    let model = Model::load(dir.path(), TrainableParts::rl(), Device::Cpu, Arc::new(tok), Some(limit)).unwrap();
    let specs = rl_specs(&rl.data.train_files, rl.data.media_root.as_deref()).unwrap();
    let rows = expert_rows(&model, rl, &specs[..1], 1).unwrap();
    assert!(rows.len() >= 2, "{} rows", rows.len());
    let row = rows[0].clone();
    let th = model.thinker().unwrap();
    let stage = recipe.stages.iter().find(|s| s.kind == Some(StageKind::Sft)).unwrap();
    let options = SftOptions {
        per_device_batch_size: 1,
        gradient_accumulation_steps: 1,
        ..SftOptions::from_schedule(&stage.schedule)
    };
    let optimizer = trainer::recipe::sections::OptimizerConfig {
        lr_schedule: Some(trainer::recipe::sections::LrSchedule::Constant),
        warmup_ratio: Some(0.0),
        ..stage.optimizer.clone()
    };
    let mut learner = SftLearner::new(th, options, &optimizer, 60).unwrap();
    let mut loss = f64::MAX;
    for _ in 0..60 {
        loss = learner.step(th, std::slice::from_ref(&row)).unwrap().loss;
    }
    let target = &row.ids[row.prompt_len..];
    let scores = th.score(&row.ids, &row.media, row.prompt_len).unwrap();
    let lp: Vec<f32> = Vec::try_from(scores.logprobs).unwrap();
    let prompt = Prompt { ids: &row.ids[..row.prompt_len], media: &row.media, seed: None };
    let params = SamplingParams {
        max_new_tokens: target.len(),
        greedy: true,
        vocab_limit: Some(limit),
        ..SamplingParams::default()
    };
    let out = tch::no_grad(|| generate(&th.thinker, &[prompt], &params)).unwrap();
    let same = out[0].ids.iter().zip(target).take_while(|(a, b)| a == b).count();
    let bad: Vec<(usize, f32)> = lp.iter().copied().enumerate().filter(|(_, x)| *x < -0.7).take(10).collect();
    // Every token before the first one teacher forcing is unsure of (p < 1/2) is the argmax, so
    // greedy decoding must reproduce the target at least that far.
    let sure = lp.iter().take_while(|&&x| f64::from(x) > 0.5f64.ln()).count();
    assert!(loss < 1.0, "SFT learned nothing: loss {loss:.4}, {bad:?}");
    assert!(
        same >= sure,
        "loss {loss:.4}; greedy agrees on {same} of {} target tokens; low teacher-forced log-probs at {bad:?}\n gen {:?}\n want {:?}",
        target.len(),
        String::from_utf8_lossy(&out[0].ids.iter().filter_map(|&x| u8::try_from(x).ok()).collect::<Vec<u8>>()),
        String::from_utf8_lossy(&target.iter().filter_map(|&x| u8::try_from(x).ok()).collect::<Vec<u8>>()),
    );
}
