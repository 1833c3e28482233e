#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The `omnirl demo` page driven in headless Chromium (chromedriver, WebDriver via fantoccini)
//! against a demo server on a loopback port: upload a generated video, ask the question, wait
//! for the final answer, then check that a turn with media was rendered (frame thumbnails), that
//! no console error occurred, that the downloadable trajectory parses and holds that turn, and
//! that the upload is removed when its run ends and the upload directory when the server stops.
//! A screenshot of the finished page is saved (`$CARGO_TARGET_TMPDIR/demo.png`, and the path in
//! `OMNIRL_DEMO_SCREENSHOT` when set: `docs/demo.png` is taken this way).
//!
//! The model must write a valid media action, which a random model never does. So, unless
//! `OMNIRL_DEMO_MODEL=DIR` (with `OMNIRL_DEMO_RECIPE=R` for its environment) names one, the test
//! trains one: an SFT-only recipe on a handful of the quickstart's "What colour fills the screen
//! when the video starts?" prompts, played by the scripted expert (first turn `get_frames`, then
//! `answer`), with a high learning rate for enough epochs that the tiny thinker reproduces the
//! turns; the page then asks that question with greedy decoding. The model lives in the test's
//! temporary directory, and the demo is started without `--recipe`: it must find the trained
//! stage's settings in the run's own `recipe.yaml`. Missing Chromium or chromedriver fails the
//! test under `CI=true` (with the install step) and skips it elsewhere.

use fantoccini::{ClientBuilder, Locator};
use omnirl_tests::demo::{DemoProcess, make_video};
use omnirl_tests::{missing_prerequisite, omnirl, repo_root, stderr};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const QUESTION: &str = "What colour fills the screen when the video starts?";
const OPTIONS: &str = "A. red\nB. green\nC. blue\nD. yellow\nE. white\nF. purple";
/// Expert prompts the test model is trained on, and its SFT schedule.
const PROMPTS: usize = 6;
const EPOCHS: u32 = 100;

/// The SFT-only recipe (the quickstart's sft stage on `prompts`, constant high learning rate).
fn recipe(dir: &Path, prompts: &Path) -> PathBuf {
    let q = repo_root().join("data/quickstart");
    let text = format!(
        r#"name: demo-model
seed: 42
output_dir: {out}
distributed: {{device: cpu, backend: auto}}
stages:
  - name: sft
    kind: sft
    model: {{init: random, config: {q}/tiny_thinker.json, dtype: f32, gradient_checkpointing: false,
             freeze_vision_encoder: false, freeze_audio_encoder: false}}
    data: {{source: expert, train_files: [{prompts}], media_root: {q}}}
    environment: {{max_steps: 4, min_max_steps: 3, max_frames: 8, max_audio_seconds: 10, max_clip_seconds: 8,
                  system_prompt: {q}/system_prompt.txt}}
    preprocess: {{image_max_pixels: 3136, video_frame_max_pixels: 3136, video_min_pixels: 3136,
                 video_total_pixels: 200704}}
    rollout: {{micro_ratio: 8, max_prompt_length: 1536, max_response_length: 128}}
    optimizer: {{lr: 5.0e-3, lr_schedule: linear, warmup_ratio: 0.05, weight_decay: 0.0}}
    schedule: {{epochs: {EPOCHS}, per_device_batch_size: {PROMPTS}, gradient_accumulation_steps: 1, max_seq_length: 1024}}
    checkpoint: {{save_every: 100000, keep_last: 1}}
    logging: {{log_every: 20}}
"#,
        out = dir.display(),
        q = q.display(),
        prompts = prompts.display(),
    );
    let path = dir.join("demo_model.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Trains the test model; returns its directory (`RUN/sft/final`).
fn train_model(dir: &Path) -> PathBuf {
    let all = std::fs::read_to_string(repo_root().join("data/quickstart/sft_prompts.jsonl")).unwrap();
    let picked: Vec<&str> = all.lines().filter(|l| l.contains(QUESTION)).take(PROMPTS).collect();
    assert_eq!(picked.len(), PROMPTS);
    let prompts = dir.join("prompts.jsonl");
    std::fs::write(&prompts, picked.join("\n") + "\n").unwrap();
    let recipe = recipe(dir, &prompts);
    let t0 = Instant::now();
    let out = omnirl().arg("train").arg(&recipe).env("OMP_NUM_THREADS", "1").output().unwrap();
    assert!(out.status.success(), "training the test model failed:\n{}", stderr(&out));
    eprintln!("demo_browser: trained the test model in {:.0} s", t0.elapsed().as_secs_f64());
    dir.join("demo-model/sft/final")
}

fn chromedriver() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("chromedriver")).find(|p| p.is_file()))
}

/// A started chromedriver on a free loopback port (killed when dropped).
struct Driver(std::process::Child, String);

impl Driver {
    fn start(bin: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Its own process group, so that dropping it also ends the browser it started even when
        // the test fails before closing the WebDriver session.
        let child = Command::new(bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver(child, format!("http://127.0.0.1:{port}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `script` (a JS expression) until it is `want`, at most `wait`; returns the last value.
async fn wait_for(c: &fantoccini::Client, script: &str, want: &[&str], wait: Duration) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let v = c.execute(&format!("return {script};"), vec![]).await.unwrap();
        if want.iter().any(|w| v.as_str() == Some(w)) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_runs_an_episode_with_media_in_headless_chromium() {
    let chromium = Path::new("/usr/bin/chromium");
    let Some(driver_bin) = chromedriver().filter(|_| chromium.is_file()) else {
        missing_prerequisite(
            "chromium and chromedriver",
            "scripts/setup.sh (apt-get install chromium chromium-driver)",
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Shaped like the quickstart's videos (64x48 at 4 fps, 17 s): the same vision tokens and
    // turn budget as the trajectories the model was trained on.
    let video = tmp.path().join("green.mp4");
    if !make_video(&video, "color=c=green:s=64x48:r=4:d=17", false) {
        return;
    }
    let (model, recipe) = match std::env::var_os("OMNIRL_DEMO_MODEL") {
        Some(m) => (PathBuf::from(m), std::env::var_os("OMNIRL_DEMO_RECIPE").map(PathBuf::from)),
        // No --recipe: the demo takes the trained stage's settings from the run's own
        // recipe.yaml (without them the model would see another system prompt and fail).
        None => (train_model(tmp.path()), None),
    };
    let mut args = vec!["--model".to_string(), model.display().to_string()];
    if let Some(r) = &recipe {
        args.extend(["--recipe".into(), r.display().to_string()]);
    }
    args.extend(["--examples".into(), repo_root().join("data/examples").display().to_string()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = DemoProcess::start(&argv, tmp.path(), Duration::from_secs(60));
    let driver = Driver::start(&driver_bin);

    let mut caps = serde_json::Map::new();
    let chrome = json!({"binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
        "--disable-dev-shm-usage", "--window-size=1280,1100", "--no-first-run"]});
    caps.insert("goog:chromeOptions".into(), chrome);
    let http = hyper_util::client::legacy::connect::HttpConnector::new();
    let c = ClientBuilder::new(http).capabilities(caps).connect(&driver.1).await.expect("WebDriver session");
    c.goto(&server.url).await.unwrap();
    wait_for(&c, "String(document.getElementById('example').options.length > 0)", &["true"], Duration::from_secs(20))
        .await;
    c.find(Locator::Css("input[name=source][value=upload]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("video")).await.unwrap().send_keys(&video.display().to_string()).await.unwrap();
    let fill = "document.getElementById('question').value = arguments[0];
                document.getElementById('options').value = arguments[1];
                document.getElementById('question_type').value = 'MCQ';
                document.getElementById('answer').value = 'B';
                document.getElementById('greedy').checked = true;";
    c.execute(fill, vec![json!(QUESTION), json!(OPTIONS)]).await.unwrap();
    c.find(Locator::Id("start")).await.unwrap().click().await.unwrap();
    let state = wait_for(&c, "window.__demoState", &["done", "error", "cancelled"], Duration::from_secs(180)).await;
    let status = c.find(Locator::Id("status")).await.unwrap().text().await.unwrap();
    assert_eq!(state, "done", "status: {status}\n{}", server.drain_log());

    let shot = c.screenshot().await.unwrap();
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo.png");
    std::fs::write(&target, &shot).unwrap();
    if let Some(p) = std::env::var_os("OMNIRL_DEMO_SCREENSHOT") {
        std::fs::write(repo_root().join(p), &shot).unwrap();
    }

    let thumbs = c.execute("return document.querySelectorAll('.turn img.thumb').length;", vec![]).await.unwrap();
    assert!(thumbs.as_u64().is_some_and(|n| n > 0), "no frame thumbnail rendered; screenshot {}", target.display());
    let errors = c.execute("return window.__demoErrors;", vec![]).await.unwrap();
    assert_eq!(errors, json!([]), "console errors on the page");
    let fetch = "const done = arguments[arguments.length - 1];
                 fetch(document.getElementById('download').href).then(r => r.text()).then(done, e => done('ERR ' + e));";
    let text = c.execute_async(fetch, vec![]).await.unwrap();
    let traj: Value = serde_json::from_str(text.as_str().unwrap())
        .unwrap_or_else(|e| panic!("the trajectory download does not parse ({e}): {text}"));
    let steps = traj["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| s["action_type"] == "get_frames" && s["error_code"] == "OK"), "{traj}");
    assert_eq!(traj["question"], QUESTION);
    assert!(traj["prediction"].is_string(), "no final answer: {traj}");
    c.close().await.unwrap();
    drop(driver);
    // The upload went with its run; the private directory goes with the server.
    let uploads = || -> Vec<PathBuf> {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("omnirl-demo-")))
            .collect()
    };
    let dirs = uploads();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&dirs[0]).unwrap().count() > 0 {
        assert!(Instant::now() < deadline, "the upload outlived its run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.stop(Duration::from_secs(30)).is_some_and(|s| s.success()), "{}", server.drain_log());
    assert!(uploads().is_empty(), "the upload directory outlived the server");
}
