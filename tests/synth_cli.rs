#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `omnirl synth` end to end: the rule-based expert on quickstart videos (one with sound, one
//! silent, so frames, audio and a clip are exported) gives a file that `omnirl validate`'s SFT
//! checks accept, with duplicates counted; a local OpenAI-compatible teacher (a std TcpListener
//! thread answering chat-completions with canned replies) drives synthesis, receives the key
//! and the frames as base64 PNG data URIs, and the rule-based check drops answers without media
//! or with empty reasoning; an audit judge vetoes; a random checkpoint runs and keeps nothing.

use omnirl_tests::{omnirl, repo_root, stderr, stdout};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The first quickstart MCQ prompt with (and one without) sound, as generic questions (no
/// timeline annotations), with absolute video paths.
fn questions(dir: &Path, with_audio: &[bool]) -> (PathBuf, Vec<Value>) {
    let text = std::fs::read_to_string(repo_root().join("data/quickstart/sft_prompts.jsonl")).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut out = Vec::new();
    for want in with_audio {
        let mut v = lines
            .iter()
            .find(|v| v["has_audio"] == *want && v["question_type"].as_str().unwrap().starts_with("MCQ"))
            .unwrap()
            .clone();
        let obj = v.as_object_mut().unwrap();
        obj.remove("extra_info");
        let video = repo_root().join("data/quickstart").join(obj["video"].as_str().unwrap());
        obj.insert("video".into(), json!(video.display().to_string()));
        out.push(v);
    }
    let path = dir.join("questions.jsonl");
    let body: String = out.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(&path, body).unwrap();
    (path, out)
}

fn synth(args: &[&str]) -> (Value, String) {
    let out = omnirl().arg("synth").args(args).output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{args:?}\n{err}");
    let line = stdout(&out);
    (serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}")), err)
}

fn sft_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `omnirl validate` on a one-stage SFT recipe training on `file` with media under `root`.
fn validate_sft(dir: &Path, file: &Path, root: &Path) -> Value {
    let recipe = dir.join("check.yaml");
    let config = repo_root().join("data/quickstart/tiny_thinker.json");
    std::fs::write(
        &recipe,
        format!(
            "name: synthcheck\nstages:\n  - name: sft\n    kind: sft\n    model: {{init: random, config: {}}}\n    \
             data: {{train_files: [{}], media_root: {}}}\n",
            config.display(),
            file.display(),
            root.display()
        ),
    )
    .unwrap();
    let out = omnirl().args(["validate", recipe.to_str().unwrap(), "--json"]).output().unwrap();
    serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)))
}

fn files_with(dir: &Path, ext: &str) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            n += files_with(&e.path(), ext);
        } else if e.path().extension().is_some_and(|x| x == ext) && e.metadata().unwrap().len() > 0 {
            n += 1;
        }
    }
    n
}

#[test]
fn expert_synthesis_passes_the_sft_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = questions(tmp.path(), &[true, false]);
    let out = tmp.path().join("sft.jsonl");
    let (summary, _) = synth(&[
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--expert",
        "--n",
        "2",
        "--recipe",
        "recipes/quickstart.yaml",
        "--set",
        "stages.rl.rollout.max_prompt_length=16384",
    ]);
    assert_eq!(summary["questions"], 2, "{summary}");
    assert_eq!(summary["attempts"], 4, "{summary}");
    assert_eq!(summary["successful"], 4, "{summary}");
    assert_eq!(summary["kept"], 2, "{summary}");
    assert_eq!(summary["dropped"], json!({"duplicate": 2}), "the expert is deterministic: {summary}");
    let lines = sft_lines(&out);
    assert_eq!(summary["lines"], lines.len());
    assert!(lines.len() >= 4, "{summary}");
    for l in &lines {
        assert_eq!(l["extra_info"]["synth"]["policy"], "expert");
        assert!(l["output"].as_str().unwrap().starts_with('{'));
    }
    let media = tmp.path().join("sft_media");
    assert_eq!(summary["media_dir"], media.display().to_string());
    assert!(files_with(&media, "png") > 0, "frames are written");
    assert!(files_with(&media, "wav") > 0, "the video with sound was listened to");
    assert!(files_with(&media, "mp4") > 0, "the silent video was watched as a clip");
    assert!(!tmp.path().join("sft_media.tmp-synth").exists());
    let v = validate_sft(tmp.path(), &out, tmp.path());
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["plan"]["stages"][0]["data"][0]["samples"], lines.len(), "{v}");

    // Keep 2 of 2 identical attempts: still one per question, the copy is a duplicate.
    let again = tmp.path().join("again.jsonl");
    let (s2, _) = synth(&["--data", data.to_str().unwrap(), "--out", again.to_str().unwrap(), "--expert", "--n", "1"]);
    assert_eq!((s2["kept"].as_u64(), s2["attempts"].as_u64()), (Some(2), Some(2)), "{s2}");
    assert_eq!(validate_sft(tmp.path(), &again, tmp.path())["ok"], true);
}

/// A chat-completions server: `reply(model, request)` gives the assistant text.
struct Server {
    url: String,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
}

fn handle(mut s: TcpStream, reply: &(dyn Fn(&str, &Value) -> String + Sync), log: &Mutex<Vec<(String, Value)>>) {
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let (mut len, mut auth) = (0usize, String::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        if lower.starts_with("authorization:") {
            auth = line["authorization:".len()..].trim().to_string();
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let req: Value = serde_json::from_slice(&body).unwrap();
    let text = reply(req["model"].as_str().unwrap(), &req);
    log.lock().unwrap().push((auth, req));
    let body = json!({"id": "c", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
    .to_string();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
}

fn serve(reply: impl Fn(&str, &Value) -> String + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (log, reply) = (requests.clone(), Arc::new(reply));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (log, reply) = (log.clone(), reply.clone());
            std::thread::spawn(move || handle(stream, reply.as_ref(), &log));
        }
    });
    Server { url, requests }
}

/// The step a request is for: one more than the assistant messages it holds.
fn step(req: &Value) -> usize {
    req["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "assistant").count() + 1
}

fn answer(observation: &str, think: &str, letter: &str) -> String {
    json!({"observation": observation, "think": think, "confidence": 0.9,
        "action": {"type": "answer", "content": letter}})
    .to_string()
}

fn look() -> String {
    json!({"observation": "Nothing seen yet.", "think": "Look at two frames.", "confidence": 0.2,
        "action": {"type": "get_frames", "start": 0.0, "end": 1.0, "num": 2}})
    .to_string()
}

fn teacher_args<'a>(data: &'a str, out: &'a str, url: &'a str) -> Vec<&'a str> {
    vec!["--data", data, "--out", out, "--teacher-url", url, "--teacher-model", "canned", "--n", "1"]
}

#[test]
fn a_local_teacher_drives_synthesis_and_rules_drop_bad_reasoning() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, qs) = questions(tmp.path(), &[true]);
    let letter = qs[0]["answer"].as_str().unwrap().to_string();
    let data = data.to_str().unwrap();

    // A good teacher: look, then answer with reasoning.
    let l = letter.clone();
    let good =
        serve(move |_, req| if step(req) == 1 { look() } else { answer("Two frames seen.", "They show it.", &l) });
    let out = tmp.path().join("good.jsonl");
    let mut args = teacher_args(data, out.to_str().unwrap(), &good.url);
    args.extend(["--api-key-env", "SYNTH_TEST_TEACHER_KEY", "--top-k", "5", "--temperature", "0.7"]);
    let o = omnirl().arg("synth").args(&args).env("SYNTH_TEST_TEACHER_KEY", "sk-test-123").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!((summary["kept"].as_u64(), summary["requests"].as_u64()), (Some(1), Some(2)), "{summary}");
    assert_eq!(summary["policy"], "teacher:canned");
    let reqs = good.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    for (auth, req) in &reqs {
        assert_eq!(auth, "Bearer sk-test-123");
        assert_eq!(req["model"], "canned");
        assert_eq!((req["top_k"].as_u64(), req["temperature"].as_f64()), (Some(5), Some(0.7)));
        assert_eq!(req["messages"][0]["role"], "system");
    }
    let second = reqs.iter().find(|(_, r)| step(r) == 2).unwrap().1.to_string();
    assert_eq!(second.matches("data:image/png;base64,").count(), 2, "the two frames are sent as images");
    let lines = sft_lines(&out);
    assert_eq!(lines.len(), 2);
    assert_eq!(validate_sft(tmp.path(), &out, tmp.path())["ok"], true);

    // Answering without ever looking (the first answer is refused as EARLY_ANSWER and retried).
    let l = letter.clone();
    let blind = serve(move |_, _| answer("I know it.", "No need to look.", &l));
    let out = tmp.path().join("blind.jsonl");
    let (s, _) = synth(&teacher_args(data, out.to_str().unwrap(), &blind.url));
    assert_eq!(s["kept"], 0, "{s}");
    assert_eq!(s["dropped"], json!({"no_media": 1}), "{s}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "", "an empty file, never a missing one");

    // Looking, then answering with an empty thought.
    let l = letter.clone();
    let terse = serve(move |_, req| if step(req) == 1 { look() } else { answer("Two frames seen.", "", &l) });
    let out = tmp.path().join("terse.jsonl");
    let (s, _) = synth(&teacher_args(data, out.to_str().unwrap(), &terse.url));
    assert_eq!(s["dropped"], json!({"empty_reasoning": 1}), "{s}");

    // A wrong answer is not successful.
    let wrong = if letter == "A" { "B" } else { "A" }.to_string();
    let bad = serve(move |_, req| if step(req) == 1 { look() } else { answer("Seen.", "Guess.", &wrong) });
    let out = tmp.path().join("bad.jsonl");
    let (s, _) = synth(&teacher_args(data, out.to_str().unwrap(), &bad.url));
    assert_eq!(s["dropped"], json!({"not_successful": 1}), "{s}");

    // The audit judge vetoes a trajectory the rules would keep.
    let l = letter.clone();
    let judged = serve(move |model, req| match model {
        "judge" => "TURN 1: SUPPORTED\nTURN 2: UNSUPPORTED\nVERDICT: UNSUPPORTED".to_string(),
        _ if step(req) == 1 => look(),
        _ => answer("Two frames seen.", "They show it.", &l),
    });
    let out = tmp.path().join("audited.jsonl");
    let mut args = teacher_args(data, out.to_str().unwrap(), &judged.url);
    args.extend(["--audit-url", &judged.url, "--audit-model", "judge"]);
    let (s, _) = synth(&args);
    assert_eq!((s["kept"].as_u64(), s["audit_requests"].as_u64()), (Some(0), Some(1)), "{s}");
    assert_eq!(s["dropped"], json!({"audit_unsupported": 1}), "{s}");
    let audit = judged.requests.lock().unwrap().iter().find(|(_, r)| r["model"] == "judge").unwrap().1.to_string();
    assert!(audit.contains("Frames 0.00s-1.00s") && audit.contains("They show it."), "{audit}");

    // A teacher nobody answers for: the episode is dropped as a runtime error, the run goes on.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = tmp.path().join("down.jsonl");
    let (s, err) = synth(&teacher_args(data, out.to_str().unwrap(), &format!("http://{closed}/v1")));
    assert_eq!(s["dropped"], json!({"runtime_error": 1}), "{s}\n{err}");
}

#[test]
fn a_random_checkpoint_runs_and_keeps_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = questions(tmp.path(), &[true]);
    let model = tmp.path().join("model");
    trainer::checkpoint::write_random_checkpoint(&trainer::model::tiny_test_config(), &model, 1).unwrap();
    let out = tmp.path().join("model.jsonl");
    let (s, _) = synth(&[
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--n",
        "2",
        "--max-response-tokens",
        "6",
        "--recipe",
        "recipes/quickstart.yaml",
        "--set",
        "stages.rl.environment.max_steps=2",
        "--set",
        "stages.rl.environment.min_max_steps=2",
    ]);
    assert_eq!((s["questions"].as_u64(), s["attempts"].as_u64(), s["kept"].as_u64()), (Some(1), Some(2), Some(0)));
    assert!(out.is_file());
    // A run that fails leaves an earlier output as it was, and no temporary directory.
    std::fs::write(&out, "earlier\n").unwrap();
    let o = omnirl()
        .args(["synth", "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--expert"])
        .args(["--tokenizer", "/nonexistent/tokenizer.json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--tokenizer"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "earlier\n");
    assert!(!tmp.path().join("model_media.tmp-synth").exists());
    // Bad flags are refused with a clear error and exit status 2.
    let o = omnirl().args(["synth", "--data", "x.jsonl", "--out", "y.jsonl", "--expert", "--n", "0"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = omnirl()
        .args(["synth", "--data", data.to_str().unwrap(), "--out", "y.jsonl", "--expert", "--n", "0"])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("--n and --keep"), "{}", stderr(&o));
}
