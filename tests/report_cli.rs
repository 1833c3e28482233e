#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `omnirl report` on a run directory built here (metrics.jsonl of an sft and an rl stage,
//! summary.json with before/after figures, an eval stage's results.jsonl with frames, audio and
//! clip steps on a video generated with the `ffmpeg` CLI, an old-style line without `steps`, and
//! an `omnirl infer` trajectory file): the page is self-contained, escapes every text, embeds the
//! media as data URIs and stays small; the trajectory cap and the errors work. Then the page is
//! rendered by headless Chromium (`/usr/bin/chromium`; without it the test fails under CI=true and is skipped with a note elsewhere):
//! a non-trivial screenshot, the charts in the DOM with the script's `data-ready="1"`, and no
//! uncaught JavaScript error.

use omnirl_tests::{omnirl, stderr, stdout};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

const EVIL: &str = "<script>alert(\"x\")</script> & 'quotes'";

fn make_video(path: &Path) -> bool {
    if !Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success()) {
        omnirl_tests::missing_prerequisite("the `ffmpeg` CLI", "scripts/setup.sh (apt-get install ffmpeg)");
        return false;
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=10:d=8"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=8", "-c:a", "aac"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-shortest"])
        .arg(path)
        .output()
        .expect("ffmpeg");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    true
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn step(n: u32, action: Value, media: Value) -> Value {
    let kind = action["type"].as_str().unwrap().to_string();
    let response =
        json!({"observation": format!("saw {n} {EVIL}"), "think": "look closer", "confidence": 0.5, "action": action});
    json!({"step": n, "action_type": kind, "is_action_valid": true, "error_code": "OK", "error_message": null,
           "reward": 0.0, "done": false, "won": false, "confidence": 0.5, "observation": format!("saw {n} {EVIL}"),
           "think": "look closer", "action": action, "response": response.to_string(), "media": media,
           "prompt_tokens": 100, "response_tokens": 20})
}

/// A run directory as `omnirl train` lays it out, plus an infer trajectory file.
fn build_run(root: &Path) -> Option<(PathBuf, PathBuf)> {
    let run = root.join("run");
    if !make_video(&run.join("videos/v.mp4")) {
        return None;
    }
    let mut sft = String::new();
    let mut rl = String::new();
    for s in 1..=12 {
        let f = f64::from(s);
        sft.push_str(&format!("{}\n", json!({"step": s, "time": 1.0, "sft/loss": 3.0 / f, "sft/lr": 1e-3})));
        rl.push_str(&format!(
            "{}\n",
            json!({"step": s, "reward/mean": f / 12.0, "accuracy/mean": (f / 12.0).min(0.9), "actor/pg_loss": -0.01 * f,
                   "actor/kl_loss": null})
        ));
    }
    rl.push_str("{\"step\": 13, \"reward/me");
    write(&run.join("sft/metrics.jsonl"), &sft);
    write(&run.join("rl/metrics.jsonl"), &rl);
    let figs = |a: f64| {
        json!({"all": {"episodes": 2, "accuracy": a, "mean_reward": a, "mean_turns": 3.0, "no_answer_rate": 0.0},
                               "MCQ": {"episodes": 1, "accuracy": a, "mean_reward": a, "mean_turns": 3.0, "no_answer_rate": 0.0}})
    };
    let summary = json!({"recipe": "tiny", "complete": true,
        "stages": [{"name": "sft", "kind": "sft"}, {"name": "rl", "kind": "rl"}, {"name": "eval", "kind": "eval"}],
        "figures": {"before_sft": figs(0.0), "after_sft": figs(0.5), "after_rl": figs(1.0)}});
    write(&run.join("summary.json"), &summary.to_string());
    write(&run.join("eval/summary.json"), &json!({"samples": 2, "per_type": figs(1.0)}).to_string());
    let steps = vec![
        step(
            1,
            json!({"type": "get_frames", "start": 0.0, "end": 6.0, "num": 12}),
            json!({"kind": "frames", "start": 0.0, "end": 6.0, "timestamps": (0..12).map(|i| f64::from(i) * 6.0 / 11.0).collect::<Vec<_>>()}),
        ),
        step(
            2,
            json!({"type": "get_audio", "start": 1.0, "end": 4.0}),
            json!({"kind": "audio", "start": 1.0, "end": 4.0}),
        ),
        step(
            3,
            json!({"type": "get_clip", "start": 2.0, "end": 6.0}),
            json!({"kind": "clip", "start": 2.0, "end": 6.0}),
        ),
        json!({"step": 4, "action_type": "answer", "error_code": "OK", "reward": 1.0, "done": true,
               "observation": "done", "think": "it is A", "action": {"type": "answer", "content": "A"}, "media": null,
               "response": "{\"action\": {\"type\": \"answer\", \"content\": \"A\"}}"}),
    ];
    let line1 = json!({"question_id": "eval:1", "video": "videos/v.mp4", "question_type": "MCQ_Test", "type": "MCQ",
        "question": format!("What is shown? {EVIL}"), "options": ["A. bars", "B. a cat"], "answer": "A", "prediction": "A",
        "reward": 1.0, "correct": true, "turns": 4, "actions": ["get_frames", "get_audio", "get_clip", "answer"],
        "error_codes": [], "runtime_error": null, "last_response": "{}", "steps": steps});
    let line2 = json!({"question_id": "eval:2", "video": "videos/missing.mp4", "question_type": "TR", "type": "TR",
        "question": "When?", "options": [], "answer": "[[1, 2]]", "prediction": null, "reward": 0.0, "correct": false,
        "turns": 2, "actions": ["ERROR", "ERROR"], "error_codes": ["INVALID_JSON", "STEP_LIMIT_REACHED"],
        "runtime_error": null, "last_response": "not json"});
    write(&run.join("eval/results.jsonl"), &format!("{line1}\n{line2}\n"));
    let mut infer_step = step(
        1,
        json!({"type": "get_frames", "start": 1.0, "end": 1.0, "num": 1}),
        json!({"kind": "frames", "start": 1.0, "end": 1.0, "timestamps": [1.0]}),
    );
    infer_step["prompt_text"] = json!(format!("[system]\nYou are an agent {EVIL}\n"));
    infer_step["feedback"] = json!("Frame at 1.00s (num=1).<image STEP_1_frame_1.000.jpg>");
    infer_step["stored"] = json!(false);
    let traj = json!({"question_id": "infer", "video": run.join("videos/v.mp4").display().to_string(), "type": "NUM",
        "question": "How many bars?", "options": [], "answer": null, "prediction": null, "reward": null, "correct": null,
        "scored": false, "steps": [infer_step]});
    let traj_file = root.join("trajectory.json");
    write(&traj_file, &serde_json::to_string_pretty(&traj).unwrap());
    Some((run, traj_file))
}

fn report(run: &Path, extra: &[&str]) -> std::process::Output {
    omnirl().arg("report").arg(run).args(extra).output().unwrap()
}

#[test]
fn the_page_is_self_contained_escaped_and_embeds_media() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((run, traj)) = build_run(tmp.path()) else { return };
    let out = report(&run, &["--trajectory", traj.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page_file = run.join("report.html");
    assert!(stdout(&out).starts_with(&page_file.display().to_string()), "{}", stdout(&out));
    let html = std::fs::read_to_string(&page_file).unwrap();
    assert!(html.len() < 3 << 20, "{} bytes", html.len());
    // Curves: sft/loss, reward/mean, accuracy/mean, actor/pg_loss; the torn line is noted.
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 4, "line charts");
    assert!(html.contains("class=\"chart bars\"") && html.contains("before_sft") && !html.contains("rl (eval)"));
    assert!(html.find("before_sft").unwrap() < html.find("after_sft").unwrap());
    assert!(html.find("after_sft").unwrap() < html.find("after_rl").unwrap());
    assert!(html.contains("eval (eval)"), "the eval directory's own figures");
    assert!(html.contains("1 unreadable line(s) skipped"));
    // Trajectories: the infer file first, then both results lines.
    assert_eq!(html.matches(" class=\"traj\"").count(), 3);
    assert!(html.find("How many bars?").unwrap() < html.find("What is shown?").unwrap());
    assert!(html.contains("<details open class=\"traj\"") && html.matches("<details open").count() == 1);
    assert!(html.contains("retried (not stored)") && html.contains("[system]"));
    assert!(html.contains("videos/missing.mp4") && !html.contains("video not found"), "no media step on line 2");
    assert!(html.contains("INVALID_JSON, STEP_LIMIT_REACHED"));
    // Media: 8 of 12 frames + 1 infer frame + a strip of 8, two audios (get_audio and the clip's).
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 8 + 1 + 8);
    assert_eq!(html.matches("<audio controls").count(), 2);
    assert!(html.contains("class=\"strip\"") && html.contains("8 of 12 frames shown"));
    // Escaping: no injected markup survives; the page reaches nothing outside itself.
    assert!(
        !html.contains("<script>alert")
            && html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quotes&#39;")
    );
    assert_eq!(html.matches("<script>").count(), 1, "only the page's own script");
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src=\"//"));

    // The cap, --out, --no-media.
    let other = tmp.path().join("other/r.html");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    let out = report(&run, &["--max-trajectories", "1", "--no-media", "--out", other.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let small = std::fs::read_to_string(&other).unwrap();
    assert_eq!(small.matches(" class=\"traj\"").count(), 1);
    assert!(small.contains("showing the first 1 of 2 trajectories") && !small.contains("data:image"));

    // A tiny media budget: media past it is replaced by a note.
    let out = report(&run, &["--media-budget-mb", "0.01", "--out", other.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read_to_string(&other).unwrap().contains("media budget"));
}

#[test]
fn missing_or_empty_directories_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let out = report(&missing, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&missing.display().to_string()), "{}", stderr(&out));
    let out = report(tmp.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nothing to report"), "{}", stderr(&out));
    write(&tmp.path().join("eval/results.jsonl"), "{\"question\": 1}\nnot json\n");
    let out = report(tmp.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("results.jsonl") && stderr(&out).contains("line 2"), "{}", stderr(&out));
}

#[test]
fn headless_chromium_renders_the_page_without_errors() {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        omnirl_tests::missing_prerequisite("/usr/bin/chromium", "scripts/setup.sh (apt-get install chromium)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some((run, traj)) = build_run(tmp.path()) else { return };
    let out = report(&run, &["--trajectory", traj.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let url = format!("file://{}", run.join("report.html").display());
    let profile = tmp.path().join("profile");
    let shot = tmp.path().join("shot.png");
    let browse = |extra: &[String]| {
        Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(["--enable-logging=stderr", "--v=0", "--window-size=1280,2000"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("run chromium")
    };
    let shot_run = browse(&[format!("--screenshot={}", shot.display())]);
    let shot_err = stderr(&shot_run);
    assert!(shot.is_file(), "no screenshot; chromium said:\n{shot_err}");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "screenshot of {} bytes", png.len());
    let dom_run = browse(&["--dump-dom".to_string()]);
    let dom = stdout(&dom_run);
    let dom_err = stderr(&dom_run);
    assert!(dom.contains("data-ready=\"1\""), "the page script did not finish:\n{dom_err}");
    assert!(dom.contains("data-charts=\"4\""), "{}", &dom[..dom.len().min(400)]);
    assert_eq!(dom.matches("data-interactive=\"1\"").count(), 4);
    assert!(dom.contains("<polyline class=\"line\"") && dom.contains("class=\"bar\""));
    assert!(dom.contains("3 of 3 shown"), "the filter counted the trajectories");
    for err in [&shot_err, &dom_err] {
        assert!(!err.contains("Uncaught"), "JavaScript error:\n{err}");
    }
}
