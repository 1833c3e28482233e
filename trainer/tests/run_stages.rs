#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The stage runner's pieces on the quickstart: the small byte tokenizer round-trips text and lays
//! out media by a config's ids; the quickstart's BPE is trained on the expert's trajectories with
//! the control tokens at the config's ids; and after a few SFT steps on one expert row, greedy
//! generation from that row's prompt reproduces the target as far as teacher forcing is sure of
//! every token (the sampler and the training forward agree).

use rollout::episode::PromptEncoder;
use std::path::PathBuf;
use tch::Device;
use trainer::checkpoint::{RandomCheckpointOptions, write_random_checkpoint_with};
use trainer::learner::LocalSteps;
use trainer::learner::TrainablePolicy;
use trainer::learner::thinker::TrainableParts;
use trainer::learner::{SftLearner, SftOptions};
use trainer::model::generate::{Prompt, SamplingParams, generate};
use trainer::model::{FloatDtype, KeyLayout, OmniThinkerConfig};
use trainer::recipe::resolved::{Optimizer, ResolvedStage};
use trainer::recipe::{Dtype, LrSchedule};
use trainer::run::bpe::{config_wants_trained_bpe, train_bpe};
use trainer::run::episodes::rl_specs;
use trainer::run::model::{Loading, Model, encoder_for};
use trainer::run::sft::{expert_corpus, expert_rows};
use trainer::run::tokenizer::SmallTokenizer;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The quickstart config with its control ids moved above the byte range (4000-4010).
fn byte_tokenizer_config(dir: &std::path::Path) -> OmniThinkerConfig {
    let text = std::fs::read_to_string(root().join("data/quickstart/tiny_thinker.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let th = v["thinker_config"].as_object_mut().unwrap();
    for (key, id) in [
        ("pad_token_id", 4000),
        ("bos_token_id", 4001),
        ("eos_token_id", 4002),
        ("audio_token_index", 4003),
        ("audio_start_token_id", 4004),
        ("audio_end_token_id", 4005),
        ("vision_start_token_id", 4006),
        ("vision_end_token_id", 4007),
        ("vision_token_id", 4008),
        ("image_token_index", 4009),
        ("video_token_index", 4010),
    ] {
        th.insert(key.into(), id.into());
    }
    th.get_mut("text_config").unwrap()["vocab_size"] = 4096.into();
    let path = dir.join("config.json");
    std::fs::write(&path, v.to_string()).unwrap();
    OmniThinkerConfig::from_file(&path).unwrap()
}

#[test]
fn small_tokenizer_uses_the_config_ids() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = byte_tokenizer_config(dir.path());
    assert!(!config_wants_trained_bpe(&cfg));
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
    let recipe = dry.resolved_recipe.unwrap();
    let Some(ResolvedStage::Rl(rl)) = recipe.stages.iter().find(|s| matches!(s, ResolvedStage::Rl(_))) else {
        panic!("the quickstart has an rl stage")
    };
    let Some(ResolvedStage::Sft(sft)) = recipe.stages.iter().find(|s| matches!(s, ResolvedStage::Sft(_))) else {
        panic!("the quickstart has an sft stage")
    };
    let cfg = OmniThinkerConfig::from_file(&root().join("data/quickstart/tiny_thinker.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = RandomCheckpointOptions {
        layout: KeyLayout::ThinkerPrefixed,
        dtype: FloatDtype::F32,
        seed: Some(1),
        write_config: true,
    };
    write_random_checkpoint_with(&cfg, dir.path(), 1, &opts).unwrap();
    assert!(config_wants_trained_bpe(&cfg));
    let specs = rl_specs(&rl.data.train_files, rl.data.media_root.as_deref(), None).unwrap();
    let corpus = expert_corpus(&rl.episodes, &rl.preprocess, &specs[..16], 1).unwrap();
    let json = train_bpe(&corpus, cfg.text().vocab_size).unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), json).unwrap();
    let (tok, vocab) = encoder_for(dir.path(), None).unwrap();
    let limit = vocab.unwrap();
    assert!(limit <= cfg.text().vocab_size);
    let ids = tok.encode_text("{\"observation\": \"Nothing seen yet.\"}").unwrap();
    assert!(ids.len() <= 12, "34 bytes of the expert's phrasing are a few tokens: {ids:?}");
    assert_eq!(tok.stop_ids()[0], 2, "<|im_end|> is id 2, as the config says");
    let how = Loading { parts: TrainableParts::rl(), ..Loading::eval(Device::Cpu, Dtype::F32) };
    let model = Model::load(dir.path(), &how, tok.clone(), Some(limit)).unwrap();
    let rows = expert_rows(&model, &rl.episodes, &rl.preprocess, &specs[..1], 1).unwrap();
    assert!(rows.len() >= 2, "{} rows", rows.len());
    let row = rows[0].clone();
    let th = model.thinker();
    let options = SftOptions {
        per_device_batch_size: 1,
        gradient_accumulation_steps: 1,
        ..SftOptions::from_schedule(&sft.schedule)
    };
    let optimizer = Optimizer { lr_schedule: LrSchedule::Constant, warmup_ratio: 0.0, ..sft.optimizer.clone() };
    let mut learner = SftLearner::new(th, options, &optimizer, 60).unwrap();
    let mut loss = f64::MAX;
    for _ in 0..60 {
        loss = learner.step(th, std::slice::from_ref(&row), &mut LocalSteps).unwrap().loss;
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
    assert!(sure > 0, "after 60 steps on one row teacher forcing is sure of its first target token: {bad:?}");
    assert!(
        same >= sure,
        "loss {loss:.4}; greedy agrees on {same} of {} target tokens; low teacher-forced log-probs at {bad:?}\n gen {:?}\n want {:?}",
        target.len(),
        tok.decode(&out[0].ids).unwrap(),
        tok.decode(target).unwrap(),
    );
}
