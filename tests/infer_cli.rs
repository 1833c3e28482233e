#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `omnirl infer` end to end on a tiny random thinker (byte tokenizer, no tokenizer.json) and a
//! video generated with the `ffmpeg` CLI: the live trace has one block per physical step, in
//! order, and the trajectory JSON has the keys of an eval `results.jsonl` line plus every step's
//! prompt text and feedback; without `--answer` nothing is scored; a bad model directory or video
//! exits 2 with a message naming it. A random model writes no valid action, so the episode ends
//! at the step limit (media actions are covered by the report tests and `omnirl replay`'s).

use omnirl_tests::demo::{self, tiny_model};
use omnirl_tests::{omnirl, stderr, stdout};
use serde_json::Value;
use std::path::Path;

/// A 6 s test pattern with a 440 Hz tone.
fn make_video(path: &Path) -> bool {
    demo::make_video(path, "testsrc2=s=96x64:r=10:d=6", true)
}

fn infer(model: &Path, video: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    omnirl()
        .arg("infer")
        .arg("--model")
        .arg(model)
        .arg("--video")
        .arg(video)
        .args(["--question", "Which pattern fills the screen?", "--options", "A. colour bars", "--options"])
        .args(["B. a cat, sitting", "--max-steps", "3", "--max-response-tokens", "12", "--greedy", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn one_episode_is_traced_live_and_written_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let video = tmp.path().join("v.mp4");
    if !make_video(&video) {
        return;
    }
    let model = tiny_model(tmp.path());
    let out_file = tmp.path().join("out/traj.json");
    let out = infer(&model, &video, &out_file, &["--answer", "A"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    assert!(text.starts_with("video: "), "{text}");
    assert!(text.contains("B. a cat, sitting"), "options keep their commas:\n{text}");

    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    for k in [
        "question_id",
        "video",
        "question_type",
        "type",
        "question",
        "answer",
        "prediction",
        "reward",
        "correct",
        "turns",
        "actions",
        "error_codes",
        "runtime_error",
        "frames_used",
        "audio_seconds",
        "clip_seconds",
        "steps",
        "scored",
        "max_steps",
        "video_meta",
        "sampling",
    ] {
        assert!(v.get(k).is_some(), "{k} missing in {v}");
    }
    assert_eq!((v["answer"].as_str(), v["type"].as_str(), v["scored"].as_bool()), (Some("A"), Some("MCQ"), Some(true)));
    assert!(v["video_meta"]["has_audio"].as_bool().unwrap());
    assert!((v["video_meta"]["duration"].as_f64().unwrap() - 6.0).abs() < 0.2, "{}", v["video_meta"]);
    let steps = v["steps"].as_array().unwrap();
    assert!(!steps.is_empty());
    assert!(steps.len() <= v["max_steps"].as_u64().unwrap() as usize + 1);
    // The live trace: one block per physical step, in step order, as many as the JSON holds.
    let heads: Vec<&str> = text.lines().filter(|l| l.starts_with("── step ")).collect();
    assert_eq!(heads.len(), steps.len(), "{text}");
    for (i, (h, s)) in heads.iter().zip(steps).enumerate() {
        assert_eq!(s["step"].as_u64(), Some(i as u64 + 1));
        assert!(h.starts_with(&format!("── step {}/", i + 1)), "{h}");
        assert!(h.contains(s["action_type"].as_str().unwrap()) && h.contains(s["error_code"].as_str().unwrap()), "{h}");
        for k in ["stored", "prompt_text", "feedback", "response", "observation", "think", "action", "media", "done"] {
            assert!(s.get(k).is_some(), "step {k} missing in {s}");
        }
        let prompt = s["prompt_text"].as_str().unwrap();
        assert!(prompt.starts_with("[system]") && prompt.contains("Which pattern fills the screen?"), "{prompt}");
        assert!(!s["feedback"].as_str().unwrap().is_empty());
    }
    assert_eq!(steps.last().unwrap()["done"], true);
    assert!(text.trim_end().ends_with(&format!("trajectory: {}", out_file.display())), "{text}");
    assert!(text.contains("correct"), "{text}");

    // Without --answer: the same keys, nothing scored.
    let unscored = tmp.path().join("unscored.json");
    let out = infer(&model, &video, &unscored, &["--question-type", "MCQ"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&unscored).unwrap()).unwrap();
    assert_eq!(
        (v["answer"].clone(), v["reward"].clone(), v["scored"].clone()),
        (Value::Null, Value::Null, Value::Bool(false))
    );
    assert!(stdout(&out).contains("not scored"));
}

#[test]
fn bad_inputs_exit_2_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let missing_model = tmp.path().join("no-model");
    std::fs::create_dir_all(&missing_model).unwrap();
    let video = tmp.path().join("missing.mp4");
    let out = infer(&missing_model, &video, &tmp.path().join("t.json"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&missing_model.display().to_string()) && stderr(&out).contains("config.json"));

    let model = tiny_model(tmp.path());
    let out = infer(&model, &video, &tmp.path().join("t.json"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&video.display().to_string()), "{}", stderr(&out));
    let junk = tmp.path().join("junk.mp4");
    std::fs::write(&junk, b"not a video").unwrap();
    let out = infer(&model, &junk, &tmp.path().join("t.json"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot probe video") && stderr(&out).contains(&junk.display().to_string()));
    assert!(!tmp.path().join("t.json").exists());
}

/// A checkpoint inside a run directory takes its stage's settings from the run's `recipe.yaml`
/// without `--recipe` (here the quickstart's one-line system prompt); a run recipe that does not
/// load is reported and the default eval stage used.
#[test]
fn a_run_checkpoint_takes_its_stage_of_the_run_recipe() {
    let tmp = tempfile::tempdir().unwrap();
    let video = tmp.path().join("v.mp4");
    if !make_video(&video) {
        return;
    }
    let model = demo::quickstart_run_checkpoint(tmp.path());
    let run = tmp.path().join("run");
    let quickstart_prompt = "Answer the question about the video in at most";
    let first_prompt = |out: &Path| {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
        v["steps"][0]["prompt_text"].as_str().unwrap().to_owned()
    };

    let out_file = tmp.path().join("a.json");
    let out = infer(&model, &video, &out_file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("omnirl infer: settings of stage `rl` of the run's recipe"), "{}", stderr(&out));
    assert!(first_prompt(&out_file).contains(quickstart_prompt), "{}", first_prompt(&out_file));

    std::fs::write(run.join("recipe.yaml"), "stages: [").unwrap();
    let out_file = tmp.path().join("b.json");
    let out = infer(&model, &video, &out_file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("not using the run's recipe"), "{}", stderr(&out));
    assert!(!first_prompt(&out_file).contains(quickstart_prompt), "{}", first_prompt(&out_file));
}
