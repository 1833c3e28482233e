#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `omnirl generate` and `omnirl logprobs` end to end: exact JSON keys and lengths, transformers'
//! greedy tokens and log-probs on the tiny fixture checkpoint (trainer/tests/fixtures/model), a
//! bf16 checkpoint in the released layout, chat prompts and media files (with the real tokenizer
//! when `scripts/fetch_qwen_tokenizer.sh` has cached it), and clear errors with exit status 2.

use omnirl_tests::{omnirl, repo_root, stderr, stdout};
use serde_json::Value;
use std::path::PathBuf;

/// The fixture's text case and what transformers produced for it.
const TEXT_IDS: [u32; 20] =
    [83, 338, 338, 143, 105, 459, 455, 195, 111, 439, 412, 382, 191, 9, 28, 83, 105, 289, 305, 38];
const GREEDY: [u32; 8] = [332, 332, 332, 314, 307, 124, 327, 25];
const FIRST_LOGPROBS: [f64; 3] = [-7.30886, -7.33566, -6.7836];

fn tiny() -> PathBuf {
    repo_root().join("trainer/tests/fixtures/model/tiny")
}

fn csv(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn run_json(args: &[&str]) -> Value {
    let out = omnirl().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn logprobs_scores_every_token_after_the_first() {
    let m = tiny();
    let v = run_json(&["logprobs", "--model", m.to_str().unwrap(), "--ids", &csv(&TEXT_IDS), "--json"]);
    assert_eq!(keys(&v), ["entropies", "logprobs"]);
    let (lp, ent) = (floats(&v["logprobs"]), floats(&v["entropies"]));
    assert_eq!((lp.len(), ent.len()), (19, 19));
    for (a, b) in lp.iter().zip(FIRST_LOGPROBS) {
        assert!((a - b).abs() < 1e-4, "{a} vs transformers {b}");
    }
    assert!(ent.iter().all(|e| *e > 0.0 && *e <= (512f64).ln() + 1e-4));
    // Text mode: one line per scored token.
    let out = omnirl().args(["logprobs", "--model", m.to_str().unwrap(), "--ids", "1,2,3"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out).lines().count(), 2);
}

#[test]
fn greedy_generation_matches_transformers_and_logprobs_agree() {
    let m = tiny();
    let m = m.to_str().unwrap();
    let ids = csv(&TEXT_IDS);
    let v = run_json(&[
        "generate",
        "--model",
        m,
        "--prompt-ids",
        &ids,
        "--max-new-tokens",
        "8",
        "--greedy",
        "--ignore-eos",
        "--json",
    ]);
    assert_eq!(keys(&v), ["ids", "logprobs"]);
    let got: Vec<u32> = v["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    assert_eq!(got, GREEDY);
    // The greedy log-probs are the teacher-forced ones of the same tokens.
    let full: Vec<u32> = TEXT_IDS.iter().chain(&GREEDY).copied().collect();
    let lp = run_json(&["logprobs", "--model", m, "--ids", &csv(&full), "--json"]);
    let tf = floats(&lp["logprobs"]);
    for (a, b) in floats(&v["logprobs"]).iter().zip(&tf[TEXT_IDS.len() - 1..]) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    // Sampling: seeded, reproducible, log-probs <= 0.
    let args = ["generate", "--model", m, "--prompt-ids", &ids, "--max-new-tokens", "6", "--seed", "5", "--json"];
    let (a, b) = (run_json(&args), run_json(&args));
    assert_eq!(a, b);
    assert_eq!(floats(&a["logprobs"]).len(), 6);
    assert!(floats(&a["logprobs"]).iter().all(|x| *x <= 0.0));
}

#[test]
fn bad_requests_fail_with_a_message() {
    let m = tiny();
    let m = m.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["logprobs", "--model", m, "--ids", "1"], "at least two tokens"),
        (&["logprobs", "--model", m, "--ids", "1,2,99999"], "outside the vocabulary"),
        (&["logprobs", "--model", "/nonexistent/model", "--ids", "1,2"], "config.json"),
        (&["generate", "--model", m, "--prompt", "hi", "--max-new-tokens", "2"], "tokenizer.json"),
        (
            &["generate", "--model", m, "--prompt-ids", "1,2", "--max-new-tokens", "2", "--image", "/nonexistent.png"],
            "nonexistent",
        ),
        (
            &["generate", "--model", m, "--prompt-ids", "1,505,500,506,2", "--max-new-tokens", "2"],
            "image placeholder 0 has no image input",
        ),
    ];
    for (args, want) in cases {
        let out = omnirl().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn bf16_checkpoint_with_chat_prompt_and_media_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = trainer::model::tiny_test_config();
    trainer::checkpoint::write_random_checkpoint(&cfg, dir.path(), 2).unwrap();
    let m = dir.path().to_str().unwrap();
    // Stored bf16, real vocabulary and ids, thinker.-prefixed shards.
    let v = run_json(&[
        "generate",
        "--model",
        m,
        "--prompt-ids",
        "9707,11,1879",
        "--max-new-tokens",
        "3",
        "--greedy",
        "--json",
    ]);
    // Three greedy tokens, fewer only when an end token comes first; every id in the vocabulary.
    let ids = v["ids"].as_array().unwrap();
    assert!((1..=3).contains(&ids.len()), "{v}");
    assert!(ids.iter().all(|i| i.as_u64().is_some_and(|i| i < cfg.text().vocab_size as u64)), "{v}");
    let Some(tok) = rollout::prerequisite::require_qwen_tokenizer() else { return };
    std::fs::copy(tok, dir.path().join("tokenizer.json")).unwrap();
    let media = repo_root().join("data/examples/media");
    let image = media.join("STEP_1_frame_0.000.jpg");
    let audio = media.join("STEP_2_audio_8.000_16.000.wav");
    let video = media.join("STEP_3_clip_11.000_15.000.mp4");
    for extra in [
        vec![],
        vec!["--image", image.to_str().unwrap()],
        vec!["--audio", audio.to_str().unwrap()],
        vec!["--video", video.to_str().unwrap()],
    ] {
        let mut args = vec!["generate", "--model", m, "--prompt", "What happens?", "--max-new-tokens", "2", "--json"];
        args.extend(extra.iter().copied());
        let v = run_json(&args);
        assert_eq!(keys(&v), ["ids", "logprobs"], "{extra:?}");
    }
    let out = omnirl().args(["generate", "--model", m, "--prompt", "Hi", "--max-new-tokens", "2"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let raw = run_json(&["generate", "--model", m, "--prompt", "Hi", "--raw", "--max-new-tokens", "1", "--json"]);
    assert_eq!(raw["ids"].as_array().unwrap().len(), 1);
}
