#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `omnirl train` end to end on a shortened quickstart (a few steps, two held-out samples, short
//! responses): every stage runs, the run directory holds the resolved recipe, each training
//! stage's final checkpoint and metrics (JSONL and TensorBoard), the eval stage's results.jsonl /
//! summary.json / summary.csv, and summary.json has per-type figures before SFT, after SFT and
//! after RL. Then `--resume` skips the finished stages, `omnirl eval` evaluates the result with a
//! `--max-steps` sweep, and a broken recipe is refused before anything is written.

use omnirl_tests::{omnirl, repo_root};
use serde_json::Value;
use std::path::Path;

const SHORT: &[&str] = &[
    "stages.sft.schedule.max_steps=2",
    "stages.sft.data.max_samples=4",
    "stages.rl.schedule.max_steps=1",
    "stages.rl.data.max_samples=8",
    "stages.rl.rollout.prompts_per_step=2",
    "stages.rl.rollout.group_size=2",
    "stages.rl.rollout.max_response_length=24",
    "stages.eval.rollout.max_response_length=24",
    "stages.eval.data.max_samples=2",
];

fn train(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = omnirl();
    cmd.arg("train").arg("recipes/quickstart.yaml");
    for s in SHORT {
        cmd.args(["--set", s]);
    }
    cmd.args(["--set", &format!("output_dir={}", out.display())]);
    cmd.args(extra);
    cmd.output().unwrap()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn shortened_quickstart_runs_every_stage_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = train(tmp.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let run = tmp.path().join("quickstart");
    for f in [
        "recipe.yaml",
        "init/config.json",
        "init/tokenizer.json",
        "sft/final/config.json",
        "sft/final/tokenizer.json",
        "rl/final/tokenizer.json",
        "sft/final/model.safetensors",
        "sft/metrics.jsonl",
        "rl/final/model.safetensors",
        "rl/metrics.jsonl",
        "eval/results.jsonl",
        "eval/summary.json",
        "eval/summary.csv",
        "summary.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing; stderr:\n{err}");
    }
    assert!(std::fs::read_dir(run.join("rl/tensorboard")).unwrap().count() > 0);
    let summary = json(&run.join("summary.json"));
    for key in ["before_sft", "after_sft", "after_rl"] {
        let all = &summary["figures"][key]["all"];
        assert_eq!(all["episodes"], 2, "{key}: {summary}");
        assert!(all["accuracy"].as_f64().unwrap() >= 0.0);
    }
    let kinds: Vec<&str> = summary["stages"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["sft", "rl", "eval"]);
    let results = std::fs::read_to_string(run.join("eval/results.jsonl")).unwrap();
    assert_eq!(results.lines().count(), 2);
    for line in results.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        for k in ["question_id", "type", "prediction", "reward", "error_codes", "turns", "frames_used"] {
            assert!(v.get(k).is_some(), "{k} missing in {line}");
        }
    }
    let csv = std::fs::read_to_string(run.join("eval/summary.csv")).unwrap();
    assert!(csv.starts_with("group,type,episodes,accuracy,mean_reward"), "{csv}");
    assert!(json(&run.join("eval/summary.json")).get("runtime_error_rate").is_some());
    let recipe = std::fs::read_to_string(run.join("recipe.yaml")).unwrap();
    assert!(recipe.contains("max_steps: 2"), "the resolved recipe carries the overrides:\n{recipe}");

    // Resume: the training stages are done and skipped; the eval runs again.
    let again = train(tmp.path(), &["--resume", &run.display().to_string()]);
    let err2 = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err2}");
    assert!(err2.contains("stage `sft`: already done"), "{err2}");
    assert!(err2.contains("stage `rl`: already done"), "{err2}");
    assert!(!tmp.path().join("quickstart-2").exists(), "resume reuses the run directory");

    // `omnirl eval` on the trained checkpoint, with a two-point --max-steps sweep.
    let ev = tmp.path().join("ev");
    let out = omnirl()
        .args(["eval", "--model"])
        .arg(run.join("rl/final"))
        .args(["--data", "data/quickstart/eval.jsonl", "--media-root", "data/quickstart", "--out"])
        .arg(&ev)
        .args(["--max-samples", "1", "--max-steps", "1", "--max-steps", "2", "--greedy", "--max-response-tokens", "8"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["max_steps_1/results.jsonl", "max_steps_2/summary.json", "max_steps_2/summary.csv", "sweep.csv"] {
        assert!(ev.join(f).is_file(), "{f} missing");
    }
    assert_eq!(std::fs::read_to_string(ev.join("sweep.csv")).unwrap().lines().count(), 3);
}

#[test]
fn a_broken_recipe_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = train(tmp.path(), &["--set", "stages.rl.rollout.group_size=0"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not starting"));
    assert!(!tmp.path().join("quickstart").exists());
    let _ = repo_root();
}
