#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `omnirl demo` over HTTP on loopback, with a tiny random thinker (byte tokenizer) and videos
//! generated with the `ffmpeg` CLI; every test sends a bounded number of requests and waits a
//! bounded time:
//!
//! * the page and the config are served; a run on an example streams `queued`, `started`, one
//!   `turn` per step and `done`, whose trajectory equals the JSON `omnirl infer` writes for the
//!   same inputs;
//! * an upload that is not a video is refused (400, `not_a_video`), an oversized one too (413),
//!   an example name that tries to escape (`../`) is refused (400) and an unknown one is 404,
//!   unknown routes and runs are 404; no upload is left behind, and a stop removes the private
//!   upload directory;
//! * with `--queue 1`, a third run is answered 503 `busy`; closing the running run's event stream
//!   cancels it (the log says so) and the queued run starts and finishes;
//! * a port in use exits 2 naming the port.

use omnirl_tests::demo::{DemoProcess, EventReader, make_video, quickstart_run_checkpoint, tiny_model};
use omnirl_tests::{omnirl, stderr};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const START: Duration = Duration::from_secs(60);

/// The private upload directories under `tmpdir` (the server's TMPDIR).
fn upload_dirs(tmpdir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmpdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("omnirl-demo-")))
        .collect()
}

fn text_form(fields: &[(&str, &str)]) -> Form {
    fields.iter().fold(Form::new(), |f, (k, v)| f.text(k.to_string(), v.to_string()))
}

async fn post(client: &reqwest::Client, url: &str, form: Form) -> (u16, Value) {
    let r = client.post(format!("{url}/api/runs")).multipart(form).send().await.unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().await.unwrap()).unwrap())
}

async fn open_events(client: &reqwest::Client, url: &str, created: &Value) -> EventReader {
    let r = client.get(format!("{url}{}", created["events"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    EventReader::new(r)
}

/// An examples directory holding one example on `video`.
fn examples_dir(root: &Path, video: &Path) -> PathBuf {
    let dir = root.join("examples");
    std::fs::create_dir_all(dir.join("videos")).unwrap();
    std::fs::copy(video, dir.join("videos/v.mp4")).unwrap();
    let line = r#"{"video": "videos/v.mp4", "question_type": "MCQ", "question": "Which pattern fills the screen?", "options": ["A. colour bars", "B. a cat"], "answer": "A"}"#;
    std::fs::write(dir.join("eval.jsonl"), format!("{line}\n")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_runs_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let video = tmp.path().join("v.mp4");
    if !make_video(&video, "testsrc2=s=96x64:r=10:d=6", true) {
        return;
    }
    let model = tiny_model(tmp.path());
    let examples = examples_dir(tmp.path(), &video);
    let tmpdir = tmp.path().join("server-tmp");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let m = model.display().to_string();
    let e = examples.display().to_string();
    let mut server = DemoProcess::start(&["--model", &m, "--examples", &e, "--max-upload-mib", "1"], &tmpdir, START);
    let (url, client) = (server.url.clone(), reqwest::Client::new());
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<title>omnirl demo</title>"));
    let cfg = client.get(format!("{url}/api/config")).send().await.unwrap().text().await.unwrap();
    let cfg: Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["examples"][0]["id"], "examples-1", "{cfg}");
    assert_eq!(cfg["max_upload_bytes"], 1 << 20);
    for bad in ["/api/runs/nope/events", "/../../etc/passwd", "/api/examples/..%2F..%2Fetc%2Fpasswd"] {
        let r = client.get(format!("{url}{bad}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{bad}");
    }

    // Bad uploads and example names.
    let junk =
        Form::new().text("question", "q?").part("video", Part::bytes(b"not a video".to_vec()).file_name("x.mp4"));
    let (status, body) = post(&client, &url, junk).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("not_a_video")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("not a playable video"), "{body}");
    let big = Form::new().text("question", "q?").part("video", Part::bytes(vec![7u8; 2 << 20]).file_name("big.mp4"));
    let (status, body) = post(&client, &url, big).await;
    assert_eq!((status, body["error"].as_str()), (413, Some("too_large")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("1 MiB"), "{body}");
    let (status, body) = post(&client, &url, text_form(&[("example", "../../etc/passwd"), ("question", "q?")])).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_form")), "{body}");
    let (status, body) = post(&client, &url, text_form(&[("example", "examples-9"), ("question", "q?")])).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("no_example")), "{body}");
    let (status, body) = post(&client, &url, text_form(&[("example", "examples-1"), ("max_frames", "100000")])).await;
    assert_eq!(status, 400, "{body}");
    let dirs = upload_dirs(&tmpdir);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert_eq!(std::fs::read_dir(&dirs[0]).unwrap().count(), 0, "a refused upload was left behind");

    // A run on the example: the same trajectory as `omnirl infer`.
    let fields = [("example", "examples-1"), ("greedy", "on"), ("max_steps", "2"), ("max_response_tokens", "12")];
    let (status, created) = post(&client, &url, text_form(&fields)).await;
    assert_eq!(status, 202, "{created}");
    let mut events = open_events(&client, &url, &created).await;
    let seen = events.until("done", Duration::from_secs(120)).await;
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"queued"), "{names:?}");
    assert!(names.contains(&"started") && names.last() == Some(&"done"), "{names:?}\n{}", server.drain_log());
    let turns = seen.iter().filter(|(n, _)| n == "turn").count();
    let traj = seen.last().unwrap().1["trajectory"].clone();
    assert_eq!(turns, traj["steps"].as_array().unwrap().len());
    let out = tmp.path().join("infer.json");
    let infer = omnirl()
        .args(["infer", "--model", &m, "--video"])
        .arg(examples.join("videos/v.mp4").canonicalize().unwrap())
        .args(["--question", "Which pattern fills the screen?", "--options", "A. colour bars", "--options", "B. a cat"])
        .args([
            "--question-type",
            "MCQ",
            "--answer",
            "A",
            "--greedy",
            "--max-steps",
            "2",
            "--max-response-tokens",
            "12",
        ])
        .arg("--out")
        .arg(&out)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(infer.status.success(), "{}", stderr(&infer));
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(traj, expected, "the demo's trajectory differs from omnirl infer's");

    let status = server.stop(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", server.drain_log());
    assert!(upload_dirs(&tmpdir).is_empty(), "the upload directory outlived the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_busy_and_a_closed_stream_cancels_its_run() {
    let tmp = tempfile::tempdir().unwrap();
    let video = tmp.path().join("v.mp4");
    if !make_video(&video, "testsrc2=s=96x64:r=10:d=6", false) {
        return;
    }
    let model = tiny_model(tmp.path());
    let examples = examples_dir(tmp.path(), &video);
    let (m, e) = (model.display().to_string(), examples.display().to_string());
    let mut server = DemoProcess::start(&["--model", &m, "--examples", &e, "--queue", "1"], tmp.path(), START);
    let (url, client) = (server.url.clone(), reqwest::Client::new());

    // A: long turns (the random model never stops before the token limit).
    let long = [("example", "examples-1"), ("max_steps", "5"), ("max_response_tokens", "1500")];
    let (status, a) = post(&client, &url, text_form(&long)).await;
    assert_eq!(status, 202, "{a}");
    let mut a_events = open_events(&client, &url, &a).await;
    let started = a_events.until("started", Duration::from_secs(60)).await;
    assert_eq!(started.last().map(|(n, _)| n.as_str()), Some("started"), "{started:?}");

    // B waits; C finds the queue full.
    let short = [("example", "examples-1"), ("max_steps", "1"), ("max_response_tokens", "8")];
    let (status, b) = post(&client, &url, text_form(&short)).await;
    assert_eq!((status, b["position"].as_u64()), (202, Some(1)), "{b}");
    let mut b_events = open_events(&client, &url, &b).await;
    let (status, c) = post(&client, &url, text_form(&short)).await;
    assert_eq!((status, c["error"].as_str()), (503, Some("busy")), "{c}");
    assert!(c["message"].as_str().unwrap().contains("busy"), "{c}");

    // A's tab closes: A stops before its next turn, and B runs to its end.
    drop(a_events);
    let seen = b_events.until("done", Duration::from_secs(120)).await;
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"queued"), "{names:?}");
    assert_eq!(names.last(), Some(&"done"), "{names:?}\n{}", server.drain_log());
    let log = server.drain_log();
    let a_id = a["run_id"].as_str().unwrap();
    assert!(log.contains(&format!("run {a_id} cancelled")), "{log}");

    // The queue has room again.
    let (status, d) = post(&client, &url, text_form(&short)).await;
    assert_eq!(status, 202, "{d}");
    let status = server.stop(Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{}", server.drain_log());
}

#[test]
fn a_port_in_use_exits_2_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = omnirl().args(["demo", "--model"]).arg(&model).args(["--port", &port]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("port {port}")) && stderr(&out).contains("in use"), "{}", stderr(&out));
    let missing = omnirl().args(["demo", "--model"]).arg(tmp.path()).args(["--port", "0"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("config.json"), "{}", stderr(&missing));
}

/// A checkpoint inside a run directory (`RUN/rl/final`) started without `--recipe` takes stage
/// `rl` of the run's resolved `recipe.yaml` (the quickstart's: 4 steps, 8 frames, 128 tokens,
/// not a default eval stage's 32 steps and 60 frames), and the log says so; a run recipe that
/// cannot be read is reported and the default stage used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_checkpoint_takes_its_stage_of_the_run_recipe() {
    let tmp = tempfile::tempdir().unwrap();
    let m = quickstart_run_checkpoint(tmp.path()).display().to_string();
    let run = tmp.path().join("run");
    let limits = |server: &DemoProcess| {
        let url = format!("{}/api/config", server.url);
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            serde_json::from_str::<Value>(&text).unwrap()["limits"].clone()
        }
    };
    let mut server = DemoProcess::start(&["--model", &m], tmp.path(), START);
    let l = limits(&server).await;
    assert_eq!((l["max_steps"].as_u64(), l["max_frames"].as_u64()), (Some(4), Some(8)), "{l}");
    assert_eq!(l["max_response_tokens"].as_u64(), Some(128), "{l}");
    let log = server.drain_log();
    assert!(log.contains("settings of stage `rl` of the run's recipe"), "{log}");
    server.stop(Duration::from_secs(10));

    std::fs::write(run.join("recipe.yaml"), "stages: [").unwrap();
    let mut server = DemoProcess::start(&["--model", &m], tmp.path(), START);
    let l = limits(&server).await;
    assert_eq!((l["max_steps"].as_u64(), l["max_frames"].as_u64()), (Some(32), Some(60)), "{l}");
    let log = server.drain_log();
    assert!(log.contains("not using the run's recipe"), "{log}");
    server.stop(Duration::from_secs(10));
}
