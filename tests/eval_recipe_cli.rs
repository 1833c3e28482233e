#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `omnirl eval RECIPE`: a small recipe whose eval stage names a tiny random checkpoint is
//! validated, evaluated with a `--max-steps 2,3` sweep (one directory per value with
//! results.jsonl / summary.json / summary.csv, plus sweep.csv and sweep.json), and the summary
//! carries per-source figures, frames, seconds of media and the runtime error rate. A broken
//! recipe is refused with exit status 1 before anything is written; an eval stage that follows a
//! training stage takes that stage's result from the newest run of the recipe, and says so when
//! there is none; a run's own resolved `recipe.yaml` validates as it is and evaluates that run's
//! result, not a newer run's; the plain `--model --data` form accepts the comma list too.

use omnirl_tests::{omnirl, repo_root, stderr};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn random_model(dir: &Path) -> PathBuf {
    let m = dir.join("model");
    trainer::checkpoint::write_random_checkpoint(&trainer::model::tiny_test_config(), &m, 1).unwrap();
    m
}

const SECTIONS: &str = "    environment: {max_steps: 3, min_max_steps: 2, max_frames: 4}
    preprocess: {image_max_pixels: 12544, video_frame_max_pixels: 12544, video_min_pixels: 3136, video_total_pixels: 200704}
    rollout: {max_response_length: 6, val_sampling: {temperature: 1.0, top_p: 1.0, top_k: 1}}
";

fn write_recipe(dir: &Path, body: &str) -> PathBuf {
    let q = repo_root().join("data/quickstart");
    let text = format!(
        "name: evalcheck\nseed: 7\noutput_dir: {}\ndistributed: {{device: cpu}}\nstages:\n{body}",
        dir.join("runs").display()
    )
    .replace("{Q}", &q.display().to_string());
    let path = dir.join("recipe.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn eval_stage(model: &str) -> String {
    format!(
        "  - name: eval\n    kind: eval\n    model: {model}\n    data: {{val_files: [{{Q}}/eval.jsonl], media_root: {{Q}}, max_samples: 2}}\n{SECTIONS}"
    )
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_recipe_form_evaluates_its_eval_stage_with_a_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let model = random_model(tmp.path());
    let recipe = write_recipe(tmp.path(), &eval_stage(&format!("{{path: {}, dtype: f32}}", model.display())));
    let ev = tmp.path().join("ev");
    let out = omnirl()
        .args(["eval", recipe.to_str().unwrap(), "--out", ev.to_str().unwrap(), "--max-steps", "2,3"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&model.display().to_string()), "names the model it evaluates: {err}");
    for n in [2, 3] {
        let dir = ev.join(format!("max_steps_{n}"));
        let results = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
        assert_eq!(results.lines().count(), 2, "max_samples of the stage applies");
        for line in results.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            for k in ["question_id", "type", "prediction", "reward", "error_codes", "turns", "frames_used"] {
                assert!(v.get(k).is_some(), "{k} missing in {line}");
            }
            assert!(v["turns"].as_u64().unwrap() <= n);
        }
        let s = json(&dir.join("summary.json"));
        for k in ["per_type", "per_source", "mean_turns", "mean_frames", "mean_audio_seconds", "runtime_error_rate"] {
            assert!(s.get(k).is_some(), "existing key {k} kept: {s}");
        }
        for k in ["mean_media_seconds", "total_media_seconds", "total_frames", "runtime_errors", "consumption"] {
            assert!(s.get(k).is_some(), "{k} missing: {s}");
        }
        assert!(s["per_source"]["quickstart"]["all"]["accuracy"].is_number(), "{s}");
        assert!(s["consumption"]["per_source"]["quickstart"]["all"]["mean_media_seconds"].is_number(), "{s}");
        let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
        let header = csv.lines().next().unwrap();
        assert!(header.starts_with("group,type,episodes,accuracy,mean_reward,mean_turns,no_answer_rate"), "{csv}");
        assert!(header.ends_with("mean_frames,mean_media_seconds,runtime_error_rate"), "{csv}");
        assert!(csv.contains("\nsource:quickstart,all,2,"), "{csv}");
    }
    let sweep = std::fs::read_to_string(ev.join("sweep.csv")).unwrap();
    assert_eq!(sweep.lines().count(), 3, "{sweep}");
    assert!(sweep.starts_with("max_steps,samples,accuracy,mean_reward,mean_turns"));
    let sj = json(&ev.join("sweep.json"));
    assert_eq!(sj["sweep"].as_array().unwrap().len(), 2);
    assert_eq!(sj["sweep"][1]["max_steps"], 3);

    // --set overrides apply; one budget writes no sweep table.
    let one = tmp.path().join("one");
    let out = omnirl()
        .args(["eval", recipe.to_str().unwrap(), "--set", "stages.eval.data.max_samples=1", "--out"])
        .arg(&one)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(one.join("results.jsonl")).unwrap().lines().count(), 1);
    assert!(!one.join("sweep.csv").exists());

    // A broken recipe is refused like `omnirl validate` refuses it.
    let bad = tmp.path().join("bad");
    let out = omnirl()
        .args(["eval", recipe.to_str().unwrap(), "--set", "stages.eval.rollout.max_response_length=lots", "--out"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not evaluating"));
    assert!(!bad.exists());

    // The plain form takes the comma list too.
    let plain = tmp.path().join("plain");
    let out = omnirl()
        .args(["eval", "--model", model.to_str().unwrap(), "--data", "data/quickstart/eval.jsonl"])
        .args(["--media-root", "data/quickstart", "--max-samples", "1", "--max-response-tokens", "4", "--greedy"])
        .args(["--max-steps", "2,3", "--out", plain.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(plain.join("max_steps_3/summary.json").is_file() && plain.join("sweep.csv").is_file());
}

#[test]
fn an_eval_stage_after_training_takes_the_newest_runs_result() {
    let tmp = tempfile::tempdir().unwrap();
    let model = random_model(tmp.path());
    let config = repo_root().join("data/quickstart/tiny_thinker.json");
    let rl = format!(
        "  - name: rl\n    kind: rl\n    model: {{init: random, config: {}, dtype: f32}}\n    \
         data: {{train_files: [{{Q}}/rl.jsonl], media_root: {{Q}}}}\n{SECTIONS}",
        config.display()
    );
    let recipe = write_recipe(tmp.path(), &format!("{rl}{}", eval_stage("{from_stage: rl, dtype: f32}")));
    let ev = tmp.path().join("ev");
    let args = ["eval", recipe.to_str().unwrap(), "--max-samples", "1", "--out", ev.to_str().unwrap()];

    // No run yet: a clear error naming what is missing.
    let out = omnirl().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("omnirl train"), "{}", stderr(&out));

    // A finished run of the recipe: its rl/final is evaluated.
    let run = tmp.path().join("runs/evalcheck");
    std::fs::create_dir_all(run.join("rl")).unwrap();
    std::fs::write(run.join("recipe.yaml"), "name: evalcheck\n").unwrap();
    std::fs::rename(&model, run.join("rl/final")).unwrap();
    let out = omnirl().args(args).output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&run.join("rl/final").display().to_string()), "{err}");
    assert_eq!(std::fs::read_to_string(ev.join("results.jsonl")).unwrap().lines().count(), 1);

    // The run's recipe.yaml is the resolved recipe: it passes `omnirl validate` as it is, and
    // `omnirl eval` on it evaluates that run's result even when a newer run of the recipe exists.
    let out = omnirl().args(["validate", recipe.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let resolved: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run_recipe = run.join("recipe.yaml");
    std::fs::write(&run_recipe, serde_json::to_string_pretty(&resolved["recipe"]).unwrap()).unwrap();
    let out = omnirl().args(["validate", run_recipe.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let newer = tmp.path().join("runs/evalcheck-2");
    std::fs::create_dir_all(newer.join("rl")).unwrap();
    std::fs::write(newer.join("recipe.yaml"), "name: evalcheck\n").unwrap();
    random_model(&newer);
    std::fs::rename(newer.join("model"), newer.join("rl/final")).unwrap();
    let out = omnirl()
        .args(["eval", run_recipe.to_str().unwrap(), "--max-samples", "1", "--out", ev.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&run.join("rl/final").display().to_string()), "{}", stderr(&out));
    let out = omnirl().args(args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&newer.join("rl/final").display().to_string()), "{}", stderr(&out));
}
