#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `omnirl replay` end to end on generated videos (with and without an audio track): the
//! per-step JSON lines (exact keys, in order), RL and eval samples, train and eval settings,
//! retry semantics in `stored_turns`, error codes across the taxonomy, the prompt-length guard
//! with a real tokenizer, and input errors.

use omnirl_tests::{omnirl, stderr, stdout};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KEYS: [&str; 12] = [
    "step",
    "action_type",
    "is_action_valid",
    "error_code",
    "done",
    "reward",
    "won",
    "n_raw_media",
    "n_frames",
    "audio_seconds",
    "clip_range",
    "max_steps",
];

fn ffmpeg(args: &[&str]) {
    let out =
        Command::new("ffmpeg").args(["-nostdin", "-y", "-loglevel", "error"]).args(args).output().expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
}

/// A 10 s 25 fps video with a tone, and an 8 s 30 fps silent one.
fn videos(dir: &Path) -> (PathBuf, PathBuf) {
    let tone = dir.join("tone.mp4");
    let silent = dir.join("silent.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=64x48:r=25:d=10",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=330:sample_rate=16000:duration=10",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-ac",
        "1",
        "-shortest",
        tone.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=64x48:r=30:d=8",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-preset",
        "ultrafast",
        silent.to_str().unwrap(),
    ]);
    (tone, silent)
}

fn act(action: Value) -> String {
    json!({"observation": "o", "think": "t", "confidence": 0.5, "action": action}).to_string()
}

fn replay(dir: &Path, sample: &Value, responses: &[String], extra: &[&str]) -> Output {
    let s = dir.join("sample.json");
    let r = dir.join("responses.json");
    std::fs::write(&s, sample.to_string()).unwrap();
    std::fs::write(&r, serde_json::to_string(responses).unwrap()).unwrap();
    let mut cmd = omnirl();
    cmd.arg("replay").arg("--sample").arg(&s).arg("--responses").arg(&r).args(extra);
    cmd.output().unwrap()
}

/// The step lines (key order checked) and the final line.
fn lines(out: &Output) -> (Vec<Value>, Value) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    let text = stdout(out);
    let mut all: Vec<&str> = text.lines().collect();
    let last: Value = serde_json::from_str(all.pop().unwrap()).unwrap();
    assert_eq!(last.as_object().unwrap().keys().cloned().collect::<Vec<_>>(), ["episode_reward", "stored_turns"]);
    let steps = all
        .iter()
        .map(|l| {
            let keys: Vec<String> = l
                .trim_matches(['{', '}'])
                .split(',')
                .filter_map(|kv| kv.split_once(':'))
                .map(|(k, _)| k.trim_matches('"').to_string())
                .filter(|k| KEYS.contains(&k.as_str()))
                .collect();
            assert_eq!(keys, KEYS, "key order: {l}");
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v.as_object().unwrap().len(), KEYS.len(), "{l}");
            v
        })
        .collect();
    (steps, last)
}

fn rl_sample(video: &Path, qtype: &str, answer: &str, duration: f64, fps: f64, has_audio: bool) -> Value {
    json!({"prompt": [{"content": "", "role": "user"}], "question_type": qtype, "question": "Which colour?", "answer": answer,
        "options": ["A. red", "B. green", "C. blue"], "video": video, "fps": fps, "duration_seconds": duration, "has_audio": has_audio,
        "data_source": "agent", "ability": "agent"})
}

fn pick(v: &Value) -> (String, bool, String, bool, f64, bool, u64) {
    (
        v["action_type"].as_str().unwrap().into(),
        v["is_action_valid"].as_bool().unwrap(),
        v["error_code"].as_str().unwrap().into(),
        v["done"].as_bool().unwrap(),
        v["reward"].as_f64().unwrap(),
        v["won"].as_bool().unwrap(),
        v["n_raw_media"].as_u64().unwrap(),
    )
}

fn row(
    a: &str,
    valid: bool,
    code: &str,
    done: bool,
    reward: f64,
    won: bool,
    raw: u64,
) -> (String, bool, String, bool, f64, bool, u64) {
    (a.into(), valid, code.into(), done, reward, won, raw)
}

#[test]
fn a_train_episode_on_a_video_with_audio() {
    let dir = tempfile::tempdir().unwrap();
    let (tone, _) = videos(dir.path());
    let responses = vec![
        act(json!({"type": "get_frames", "start": 0, "end": 10, "num": 5})),
        "Let me think about it.".to_string(),
        act(json!({"type": "get_audio", "start": 2, "end": 6.5})),
        act(json!({"type": "get_clip", "start": 3, "end": 3.1})),
        act(json!({"type": "get_clip", "start": 3, "end": 5})),
        act(json!({"type": "answer", "content": "B"})),
    ];
    let mut settings_six = rl_sample(&tone, "MCQ_Test", "B", 10.0, 25.0, true);
    settings_six["duration_seconds"] = json!(10.0);
    let (steps, last) = lines(&replay(dir.path(), &settings_six, &responses, &[]));
    // 10 s: budget min(5 + 0, 22) = 5, so the answer at step 6 is past the end: step 5 must answer.
    let got: Vec<_> = steps.iter().map(pick).collect();
    assert_eq!(
        got,
        [
            row("get_frames", true, "OK", false, 0.0, false, 1),
            row("ERROR", false, "INVALID_JSON", false, 0.0, false, 0),
            row("get_audio", true, "OK", false, 0.0, false, 1),
            row("ERROR", true, "CLIP_TOO_SHORT", false, 0.0, false, 1),
            row("ERROR", false, "STEP_LIMIT_REACHED", true, 0.0, false, 0),
            row("ERROR", false, "ENV_ALREADY_DONE", true, 0.0, false, 0),
        ]
    );
    assert_eq!(steps[0]["n_frames"], 5);
    assert_eq!(steps[0]["clip_range"], json!([0.0, 10.0]));
    assert_eq!(steps[2]["audio_seconds"], 4.5);
    assert_eq!(steps[2]["clip_range"], Value::Null);
    assert!(steps.iter().all(|s| s["max_steps"] == 5));
    let nums: Vec<u64> = steps.iter().map(|s| s["step"].as_u64().unwrap()).collect();
    assert_eq!(nums, [1, 2, 3, 4, 5, 6]);
    // Stored: frames, audio, CLIP_TOO_SHORT (valid), STEP_LIMIT (terminal); not the retry.
    assert_eq!(last, json!({"episode_reward": 0.0, "stored_turns": 4}));
}

#[test]
fn eval_sample_on_a_silent_video_is_probed() {
    let dir = tempfile::tempdir().unwrap();
    videos(dir.path());
    let sample = json!({"video": "silent.mp4", "question_type": "TR_Demo", "question": "When?", "options": [], "answer": "[[1.0, 4.0]]"});
    let responses = vec![
        act(json!({"type": "answer", "content": "[[1, 4]]"})),
        act(json!({"type": "get_audio", "start": 0, "end": 2})),
        act(json!({"type": "get_clip", "start": 1, "end": 3})),
        act(json!({"type": "get_frames", "start": 2.5, "end": 2.5, "num": 1})),
        act(json!({"type": "answer", "content": "[[1, 3]]"})),
    ];
    let media_root = dir.path().to_str().unwrap();
    let out = replay(dir.path(), &sample, &responses, &["--settings", "eval", "--media-root", media_root]);
    let (steps, last) = lines(&out);
    let got: Vec<_> = steps.iter().map(pick).collect();
    assert_eq!(
        got,
        [
            row("ERROR", false, "EARLY_ANSWER", false, 0.0, false, 0),
            row("ERROR", false, "NO_AUDIO", false, 0.0, false, 0),
            row("get_clip", true, "OK", false, 0.0, false, 1),
            row("get_frames", true, "OK", false, 0.0, false, 1),
            row("answer", true, "OK", true, 2.0 / 3.0, true, 1),
        ]
    );
    assert_eq!(steps[2]["clip_range"], json!([1.0, 3.0]));
    assert_eq!(steps[3]["n_frames"], 1);
    assert_eq!(last, json!({"episode_reward": 2.0 / 3.0, "stored_turns": 3}));
    assert!(stderr(&out).contains("prompt-length guard"), "{}", stderr(&out));
}

#[test]
fn strict_confidence_differs_between_train_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let (tone, _) = videos(dir.path());
    let no_conf =
        json!({"observation": "", "think": "", "action": {"type": "get_frames", "start": 0, "end": 1, "num": 2}})
            .to_string();
    let sample = rl_sample(&tone, "MCQ", "A", 10.0, 25.0, true);
    let (train, _) = lines(&replay(dir.path(), &sample, std::slice::from_ref(&no_conf), &["--settings", "train"]));
    assert_eq!(train[0]["error_code"], "INVALID_JSON");
    let (eval, _) = lines(&replay(dir.path(), &sample, &[no_conf], &["--settings", "eval"]));
    assert_eq!(eval[0]["error_code"], "OK");
    // The budget: 10 s at train and eval is 5; a stated 1700 s gives 22 (train cap) and 32 (eval).
    let long = rl_sample(&tone, "MCQ", "A", 1700.0, 25.0, true);
    let frames = act(json!({"type": "get_frames", "start": 0, "end": 9, "num": 2}));
    let (train, _) = lines(&replay(dir.path(), &long, std::slice::from_ref(&frames), &["--settings", "train"]));
    let (eval, _) = lines(&replay(dir.path(), &long, &[frames], &["--settings", "eval"]));
    assert_eq!((train[0]["max_steps"].as_u64(), eval[0]["max_steps"].as_u64()), (Some(22), Some(32)));
}

#[test]
fn range_and_extraction_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (tone, silent) = videos(dir.path());
    let sample = rl_sample(&tone, "NUM_Test", "3", 10.0, 25.0, true);
    let responses: Vec<String> = [
        json!({"type": "get_frames", "start": 0, "end": 10.5, "num": 2}),
        json!({"type": "get_frames", "start": 0, "end": 10, "num": 61}),
        json!({"type": "get_frames", "start": 0, "end": 10, "num": 0}),
        json!({"type": "get_frames", "start": 6, "end": 2, "num": 3}),
        json!({"type": "get_audio", "start": 1, "end": 1.05}),
        json!({"type": "get_audio", "start": -1, "end": 3}),
        json!({"type": "get_clip", "start": 0, "end": 11}),
        json!({"type": "zoom"}),
        json!({"type": "get_clip", "start": "a", "end": 1}),
        json!({"type": "get_audio", "end": 1}),
    ]
    .into_iter()
    .map(act)
    .collect();
    // Budget 5: replay four at a time so no chunk reaches the last step; at eval, invalid
    // actions never terminate before it and are not stored.
    let mut codes = Vec::new();
    for chunk in responses.chunks(4) {
        let (steps, last) = lines(&replay(dir.path(), &sample, chunk, &["--settings", "eval"]));
        assert!(steps.iter().all(|s| s["done"] == false && s["is_action_valid"] == false), "{steps:?}");
        assert_eq!(last, json!({"episode_reward": 0.0, "stored_turns": 0}));
        codes.extend(steps.iter().map(|s| s["error_code"].as_str().unwrap().to_string()));
    }
    assert_eq!(
        codes,
        [
            "FRAME_TS_OOB",
            "TOO_MANY_FRAMES",
            "INVALID_FRAME_NUM",
            "CLIP_NEG_LEN",
            "AUDIO_TOO_SHORT",
            "AUDIO_RANGE",
            "CLIP_RANGE",
            "UNKNOWN_ACTION_TYPE",
            "CLIP_ARG_TYPE",
            "AUDIO_ARG_TYPE",
        ]
    );
    // At the last step an invalid action ends the episode and is stored.
    let mut five = responses[..5].to_vec();
    five[4] = "nope".into();
    let (steps, last) = lines(&replay(dir.path(), &sample, &five, &["--settings", "eval"]));
    assert_eq!(pick(&steps[4]), row("ERROR", false, "INVALID_JSON", true, 0.0, false, 0));
    assert_eq!(last, json!({"episode_reward": 0.0, "stored_turns": 1}));

    // The dataset says there is audio, the file has none: extraction fails (terminal, valid).
    let lying = rl_sample(&silent, "MCQ", "A", 8.0, 30.0, true);
    let (steps, _) =
        lines(&replay(dir.path(), &lying, &[act(json!({"type": "get_audio", "start": 0, "end": 4}))], &[]));
    assert_eq!(pick(&steps[0]), row("ERROR", true, "FFMPEG_AUDIO_FAIL", true, 0.0, false, 0));
    // A missing video: every media action fails as ffmpeg would.
    let gone = rl_sample(&dir.path().join("gone.mp4"), "MCQ", "A", 8.0, 30.0, true);
    let out = replay(dir.path(), &gone, &[act(json!({"type": "get_frames", "start": 0, "end": 4, "num": 2}))], &[]);
    let (steps, _) = lines(&out);
    assert_eq!(pick(&steps[0]), row("ERROR", true, "FFMPEG_FRAME_FAIL", true, 0.0, false, 0));
    assert!(stderr(&out).contains("cannot open"), "{}", stderr(&out));
}

#[test]
fn the_token_guard_runs_with_a_tokenizer() {
    let Some(tok) = rollout::prerequisite::require_qwen_tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (tone, _) = videos(dir.path());
    let sample = rl_sample(&tone, "MCQ", "B", 10.0, 25.0, true);
    let frames = act(json!({"type": "get_frames", "start": 0, "end": 10, "num": 8}));
    let tok = tok.to_str().unwrap();
    let (steps, last) = lines(&replay(
        dir.path(),
        &sample,
        std::slice::from_ref(&frames),
        &["--tokenizer", tok, "--max-prompt-tokens", "1200"],
    ));
    assert_eq!(pick(&steps[0]), row("ERROR", true, "TOKEN_LIMIT_EXCEEDED", true, 0.0, false, 1));
    assert_eq!(last, json!({"episode_reward": 0.0, "stored_turns": 1}));
    let out = replay(dir.path(), &sample, &[frames], &["--tokenizer", tok]);
    assert_eq!(lines(&out).0[0]["error_code"], "OK");
    assert!(!stderr(&out).contains("guard"));
}

#[test]
fn bad_inputs_exit_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let sample = json!({"video": "v.mp4", "question_type": "MCQ"});
    let out = replay(dir.path(), &sample, &[], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a valid eval sample"), "{}", stderr(&out));
    let r = dir.path().join("r.json");
    std::fs::write(&r, "{\"responses\": []}").unwrap();
    let s = dir.path().join("s.json");
    std::fs::write(&s, rl_sample(Path::new("v.mp4"), "MCQ", "A", 10.0, 25.0, true).to_string()).unwrap();
    let out = omnirl().args(["replay", "--sample"]).arg(&s).arg("--responses").arg(&r).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("expected a JSON array"), "{}", stderr(&out));
    // A non-string element is a step, as a non-string action is in the reference.
    std::fs::write(&r, "[3, null]").unwrap();
    let out = omnirl().args(["replay", "--sample"]).arg(&s).arg("--responses").arg(&r).output().unwrap();
    let (steps, _) = lines(&out);
    assert_eq!(pick(&steps[0]), row("ERROR", false, "INVALID_JSON", false, 0.0, false, 0));
    assert_eq!(steps.len(), 2);
    let out = omnirl().args(["replay", "--sample", "/nonexistent.json", "--responses"]).arg(&r).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read sample file"), "{}", stderr(&out));
}
