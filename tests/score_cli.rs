#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `omnirl score --input FILE.jsonl` end to end: output lines 1:1 with input lines and in
//! order, input fields kept, reward/error per line, malformed lines reported with their line
//! number, the summary on stderr, exit codes, and FF lines through a judge on loopback.

use omnirl_tests::{omnirl, stderr, stdout};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

const KEY: &str = "sk-cli-test-SECRET-42";
const KEY_VARS: [&str; 3] = ["DASHSCOPE_API_KEY", "OSS_ACCESS_KEY", "DASHSCOPE_BASE_URL"];

fn write_input(dir: &Path, lines: &[&str]) -> std::path::PathBuf {
    let path = dir.join("preds.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Runs `omnirl score` from `cwd` (a temp dir, so no stray `.env` is found) with the judge
/// variables cleared and then `env` set.
fn score(input: &Path, cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = omnirl();
    cmd.current_dir(cwd).arg("score").arg("--input").arg(input);
    for var in KEY_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn parse_lines(out: &Output) -> Vec<Value> {
    stdout(out).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

#[test]
fn scores_every_type_and_keeps_lines_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(
        dir.path(),
        &[
            r#"{"video": "a.mp4", "question_type": "MCQ_Holmes", "prediction": " b ", "answer": "B", "options": ["A. x", "B. y"]}"#,
            r#"{"question_type": "TR_MultiHop", "prediction": "[[0, 10], [20, 30]]", "answer": "[[5, 25]]"}"#,
            r#"{"question_type": "NUM", "prediction": "2.675", "answer": "2.67"}"#,
            r#"{"question_type": "SIZE_VSI", "prediction": "about 12 m2", "answer": "10"}"#,
            r#"{"question_type": "TR", "prediction": "[[10, 0]]", "answer": "[[0, 10]]"}"#,
            r#"{"question_type": "TR", "prediction": "[[0, 10]]", "answer": "[[0, 10], [30, 25]]"}"#,
            r#"{"question_type": "TR", "prediction": "not json", "answer": "[[0, 10]]"}"#,
            r#"{"question_type": "TR", "prediction": "[[NaN, 1]]", "answer": "[[0, 10]]"}"#,
            r#"{"question_type": "NUM", "prediction": "no number", "answer": "3"}"#,
            r#"{"question_type": "OPEN", "prediction": "x", "answer": "y"}"#,
        ],
    );
    let out = score(&input, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = parse_lines(&out);
    assert_eq!(lines.len(), 10);

    // Input fields kept, in order, with reward and error appended.
    let first = stdout(&out).lines().next().unwrap().to_owned();
    assert_eq!(
        first,
        r#"{"video":"a.mp4","question_type":"MCQ_Holmes","prediction":" b ","answer":"B","options":["A. x", "B. y"],"reward":1.0,"error":null}"#
    );
    // (reward, error): hand-worked values.
    let want: [(Option<f64>, Option<&str>); 10] = [
        (Some(1.0), None),
        (Some(1.0 / 3.0), None),       // inter 10, union 20 + 20 - 10 = 30
        (Some(1.0), None),             // round(2.675, 2) == 2.67
        (Some(0.6), None),             // rel 0.2: tolerances 0.50..0.25
        (Some(0.0), None),             // reversed prediction: valid, reward 0
        (None, Some("GT_JSON_PARSE")), // reversed ground truth is a data error
        (None, Some("ANSWER_JSON_PARSE")),
        (None, Some("SPAN_FORMAT")),
        (None, Some("ANSWER_NOT_STRING")),
        (None, Some("UNKNOWN_QTYPE")),
    ];
    for (k, (line, (reward, error))) in lines.iter().zip(want).enumerate() {
        match reward {
            Some(r) => assert!((line["reward"].as_f64().unwrap() - r).abs() < 1e-12, "line {}: {line}", k + 1),
            None => assert!(line["reward"].is_null(), "line {}: {line}", k + 1),
        }
        assert_eq!(line["error"].as_str(), error, "line {}: {line}", k + 1);
    }

    let err = stderr(&out);
    assert!(err.contains("10 line(s)"), "{err}");
    assert!(err.contains("5 invalid"), "{err}");
    assert!(err.contains("MCQ") && err.contains("SIZE") && err.contains("TR") && err.contains("NUM"), "{err}");
    let tr_row = err.lines().find(|l| l.trim_start().starts_with("TR ")).unwrap();
    // TR: 5 lines, 2 scored, mean (1/3 + 0) / 2 = 0.1667
    assert!(tr_row.contains(" 5 ") && tr_row.contains(" 2 ") && tr_row.contains("0.1667"), "{tr_row}");
}

#[test]
fn malformed_lines_are_reported_and_do_not_stop_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(
        dir.path(),
        &[
            r#"{"question_type": "MCQ", "prediction": "A", "answer": "A"}"#,
            "this is not json",
            r#"{"question_type": "NUM", "prediction": "1"}"#,
            "",
            "[1, 2]",
            r#"{"question_type": "MCQ", "prediction": "A", "answer": "B", "reward": 9, "error": "old"}"#,
        ],
    );
    let out = score(&input, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0));
    let lines = parse_lines(&out);
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["reward"], 1.0);
    assert_eq!(stdout(&out).lines().nth(1).unwrap(), r#"{"line":2,"reward":null,"error":"INVALID_INPUT_LINE"}"#);
    // A JSON object missing a field keeps its fields.
    assert_eq!(lines[2]["question_type"], "NUM");
    assert_eq!(lines[2]["error"], "INVALID_INPUT_LINE");
    assert_eq!(lines[3]["line"], 4);
    assert_eq!(lines[4]["line"], 5);
    // Existing reward/error fields are replaced, not duplicated.
    let last = stdout(&out).lines().nth(5).unwrap().to_owned();
    assert_eq!(last, r#"{"question_type":"MCQ","prediction":"A","answer":"B","reward":0.0,"error":null}"#);

    let err = stderr(&out);
    assert!(err.contains("line 2: not a JSON object"), "{err}");
    assert!(err.contains("line 3: missing field \"answer\""), "{err}");
    assert!(err.contains("line 4: empty line"), "{err}");
    assert!(err.contains("line 5: not a JSON object"), "{err}");
    assert!(err.contains("4 invalid"), "{err}");
}

#[test]
fn order_is_kept_across_parallel_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let n = 40_000; // more than two chunks
    let mut text = String::new();
    for i in 0..n {
        match i % 4 {
            0 => text.push_str(&format!(
                "{{\"i\": {i}, \"question_type\": \"MCQ\", \"prediction\": \"A\", \"answer\": \"A\"}}\n"
            )),
            1 => text.push_str(&format!(
                "{{\"i\": {i}, \"question_type\": \"TR\", \"prediction\": \"[0, {i}]\", \"answer\": \"[[0, {i}]]\"}}\n"
            )),
            2 => text.push_str(&format!(
                "{{\"i\": {i}, \"question_type\": \"NUM\", \"prediction\": \"{i}\", \"answer\": \"{}\"}}\n",
                i + 1
            )),
            _ => text.push_str(&format!("{{\"i\": {i}\n")), // malformed
        }
    }
    let input = dir.path().join("big.jsonl");
    std::fs::write(&input, text).unwrap();
    let out = score(&input, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0));
    let lines = parse_lines(&out);
    assert_eq!(lines.len(), n);
    for (i, line) in lines.iter().enumerate() {
        match i % 4 {
            0 | 1 => assert_eq!((line["i"].as_u64(), line["reward"].as_f64()), (Some(i as u64), Some(1.0)), "{line}"),
            2 => assert_eq!((line["i"].as_u64(), line["reward"].as_f64()), (Some(i as u64), Some(0.0)), "{line}"),
            _ => assert_eq!(line["line"].as_u64(), Some(i as u64 + 1), "{line}"),
        }
    }
    let err = stderr(&out);
    assert!(err.contains("line 4: not a JSON object"), "{err}");
    assert!(err.contains("further malformed lines are counted but not shown"), "{err}");
    assert!(err.contains("10000 invalid"), "{err}");
}

#[test]
fn unreadable_input_exits_2_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.jsonl");
    let out = score(&missing, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope.jsonl"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    // A directory cannot be read as a file either.
    let out = score(dir.path(), dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&dir.path().display().to_string()), "{}", stderr(&out));
}

#[test]
fn free_form_without_a_key_scores_zero_and_warns_once() {
    let dir = tempfile::tempdir().unwrap();
    let ff = r#"{"question_type": "FF", "question": "Colour?", "prediction": "red", "answer": "Red"}"#;
    let input = write_input(dir.path(), &[ff, ff, ff]);
    let out = score(&input, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0));
    for line in parse_lines(&out) {
        assert_eq!(line["reward"], 0.0);
        assert!(line["error"].is_null());
    }
    assert_eq!(stderr(&out).matches("warning: no judge API key").count(), 1, "{}", stderr(&out));
}

/// A one-thread HTTP/1.1 server on loopback answering every request with `status`/`content`;
/// returns its base URL and a handle yielding the request heads it saw.
fn judge_server(status: u16, content: &'static str, requests: usize) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/compatible-mode/v1", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut heads = Vec::new();
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0;
            loop {
                let mut l = String::new();
                reader.read_line(&mut l).unwrap();
                if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if l == "\r\n" || l.is_empty() {
                    break;
                }
                head.push_str(&l);
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            heads.push(head);
            let reply = serde_json::json!({"choices": [{"message": {"content": content}}]}).to_string();
            let reply = if status == 200 { reply } else { format!("{{\"error\": \"bad key {KEY}\"}}") };
            write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            )
            .unwrap();
        }
        heads
    });
    (url, handle)
}

#[test]
fn free_form_goes_to_the_judge_when_a_key_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(
        dir.path(),
        &[
            r#"{"question_type": "FF", "question": "Colour?", "prediction": "red", "answer": "Red"}"#,
            r#"{"question_type": "MCQ", "prediction": "A", "answer": "B"}"#,
            r#"{"question_type": "FF_open", "question": "Colour?", "prediction": "crimson", "answer": ["Red"]}"#,
        ],
    );
    let (url, server) = judge_server(200, "Judgement: 1", 2);
    // The key comes from a .env file in the working directory; the URL from the environment.
    std::fs::write(dir.path().join(".env"), format!("DASHSCOPE_API_KEY=\"{KEY}\"\n")).unwrap();
    let out = score(&input, dir.path(), &[("DASHSCOPE_BASE_URL", &url)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = parse_lines(&out);
    assert_eq!(lines.iter().map(|l| l["reward"].as_f64()).collect::<Vec<_>>(), vec![Some(1.0), Some(0.0), Some(1.0)]);
    let heads = server.join().unwrap();
    assert_eq!(heads.len(), 2);
    assert!(heads[0].starts_with("POST /compatible-mode/v1/chat/completions"), "{}", heads[0]);
    assert!(!stderr(&out).contains(KEY));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn judge_failures_are_line_errors_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let input =
        write_input(dir.path(), &[r#"{"question_type": "FF", "question": "Q", "prediction": "red", "answer": "Red"}"#]);
    let (url, server) = judge_server(401, "", 1);
    let out = score(&input, dir.path(), &[("DASHSCOPE_BASE_URL", &url), ("OSS_ACCESS_KEY", KEY)]);
    assert_eq!(out.status.code(), Some(0));
    let lines = parse_lines(&out);
    assert!(lines[0]["reward"].is_null());
    assert_eq!(lines[0]["error"], "JUDGE_FAILED");
    let err = stderr(&out);
    assert!(err.contains("line 1") && err.contains("HTTP 401"), "{err}");
    assert!(!err.contains(KEY), "{err}");
    assert_eq!(server.join().unwrap().len(), 1);
}
