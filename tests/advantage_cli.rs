#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `omnirl advantage`: every input line comes back in order with its fields as written plus
//! `"advantage"`; expected values are computed by hand from docs/reference.md#grpo and
//! docs/reference.md#taura (formulas in the comments), never by the code under test.

use omnirl_tests::{omnirl, stderr, stdout};
use serde_json::Value;
use std::io::Write;

const EPS: f64 = 1e-6;

fn run(estimator: &str, input: &str) -> (Vec<String>, String, i32) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(input.as_bytes()).unwrap();
    let out = omnirl().args(["advantage", "--estimator", estimator, "--input"]).arg(f.path()).output().unwrap();
    let lines = stdout(&out).lines().map(str::to_owned).collect();
    (lines, stderr(&out), out.status.code().unwrap_or(-1))
}

fn advantage(line: &str) -> Option<f64> {
    let v: Value = serde_json::from_str(line).unwrap();
    v["advantage"].as_f64()
}

fn assert_close(got: f64, want: f64) {
    assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{got} vs {want}");
}

/// Group g1: trajectory a (reward 1, two turns), b (0), c (0); group g2: one trajectory d.
const ROWS: &str = r#"{"uid": "g1", "traj_uid": "a", "reward": 1.0, "entropy": 2.0, "turn": 1}
{"uid": "g1", "traj_uid": "b", "reward": 0, "entropy": 0.5, "turn": 1}
{"uid": "g2", "traj_uid": "d", "reward": 0.4, "entropy": 1.0}
{"uid": "g1", "traj_uid": "a", "reward": 1.0, "entropy": 1.0, "turn": 2}
{"uid": "g1", "traj_uid": "c", "reward": 0, "entropy": 0.5, "turn": 1}
"#;

#[test]
fn grpo_counts_each_trajectory_once_and_keeps_fields() {
    let (lines, err, code) = run("grpo", ROWS);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines.len(), 5);
    // g1 trajectory scores [1, 0, 0] (a once): μ = 1/3, unbiased var = ((2/3)² + 2(1/3)²)/2 = 1/3.
    let (mu, sigma) = (1.0 / 3.0, (1.0f64 / 3.0).sqrt());
    let pos = (1.0 - mu) / (sigma + EPS);
    let neg = (0.0 - mu) / (sigma + EPS);
    // g2 has one trajectory: mean 0, std 1.
    let solo = 0.4 / (1.0 + EPS);
    for (line, want) in lines.iter().zip([pos, neg, solo, pos, neg]) {
        assert_close(advantage(line).unwrap(), want);
    }
    // Fields as written and in order, the advantage last.
    assert!(
        lines[0].starts_with(r#"{"uid":"g1","traj_uid":"a","reward":1.0,"entropy":2.0,"turn":1,"advantage":"#),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with(r#"{"uid":"g1","traj_uid":"b","reward":0,"entropy":0.5,"turn":1,"advantage":"#));
    assert!(!lines[0].contains("\"error\""));
    assert!(err.contains("5 valid"), "{err}");
}

#[test]
fn grpo_without_std_and_taura() {
    let (lines, _, _) = run("grpo-no-std", ROWS);
    // s − μ with μ = 1/3 in g1; g2: s − 0.
    for (line, want) in lines.iter().zip([2.0 / 3.0, -1.0 / 3.0, 0.4, 2.0 / 3.0, -1.0 / 3.0]) {
        assert_close(advantage(line).unwrap(), want);
    }
    let (lines, err, code) = run("taura", ROWS);
    assert_eq!(code, 0, "{err}");
    // g1 has four rows with h = 2, 0.5, 1, 0.5: h̄ = 4 / (4 + 1e-8); w = h / (h̄ + 1e-8).
    // g2: h̄ = 1 / (1 + 1e-8).
    let (mu, sigma) = (1.0 / 3.0, (1.0f64 / 3.0).sqrt());
    let (pos, neg) = ((1.0 - mu) / (sigma + EPS), -mu / (sigma + EPS));
    let hbar1 = 4.0 / (4.0 + 1e-8);
    let hbar2 = 1.0 / (1.0 + 1e-8);
    let want = [
        pos * 2.0 / (hbar1 + 1e-8),
        neg * 0.5 / (hbar1 + 1e-8),
        0.4 / (1.0 + EPS) * 1.0 / (hbar2 + 1e-8),
        pos * 1.0 / (hbar1 + 1e-8),
        neg * 0.5 / (hbar1 + 1e-8),
    ];
    for (line, w) in lines.iter().zip(want) {
        assert_close(advantage(line).unwrap(), w);
    }
}

#[test]
fn identical_rewards_give_exact_zero() {
    // 0.1 has no exact binary form; a float32 mean would leave a residue that 1e-6 inflates.
    let input = (1..=8)
        .map(|i| format!("{{\"uid\":\"q\",\"traj_uid\":\"t{i}\",\"reward\":0.1,\"entropy\":{i}}}\n"))
        .collect::<String>();
    for est in ["grpo", "taura", "grpo-no-std"] {
        let (lines, _, _) = run(est, &input);
        assert_eq!(lines.len(), 8);
        for line in &lines {
            assert!(line.ends_with(",\"advantage\":0.0}"), "{est}: {line}");
        }
    }
}

#[test]
fn malformed_lines_are_reported_and_kept_in_place() {
    let input = concat!(
        "{\"uid\":\"g\",\"traj_uid\":\"a\",\"reward\":1}\n",
        "not json\n",
        "{\"uid\":\"g\",\"traj_uid\":\"x\"}\n",
        "{\"uid\":\"g\",\"traj_uid\":\"y\",\"reward\":\"1\"}\n",
        "{\"uid\":null,\"traj_uid\":\"z\",\"reward\":1}\n",
        "{\"uid\":\"g\",\"traj_uid\":\"b\",\"reward\":0,\"advantage\":7,\"error\":\"old\"}\n",
    );
    let (lines, err, code) = run("grpo", input);
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 6);
    // Only lines 1 and 6 form the group: [1, 0], μ = 0.5, σ = √0.5.
    let a = 0.5 / (0.5f64.sqrt() + EPS);
    assert_close(advantage(&lines[0]).unwrap(), a);
    assert_close(advantage(&lines[5]).unwrap(), -a);
    // An existing advantage is replaced; other input fields (even `error`) are kept.
    assert!(lines[5].starts_with(r#"{"uid":"g","traj_uid":"b","reward":0,"error":"old","advantage":"#), "{}", lines[5]);
    assert_eq!(lines[1], r#"{"line":2,"advantage":null,"error":"INVALID_INPUT_LINE"}"#);
    assert_eq!(lines[2], r#"{"uid":"g","traj_uid":"x","advantage":null,"error":"INVALID_INPUT_LINE"}"#);
    assert!(lines[3].ends_with(r#""reward":"1","advantage":null,"error":"INVALID_INPUT_LINE"}"#));
    assert!(lines[4].ends_with(r#""advantage":null,"error":"INVALID_INPUT_LINE"}"#));
    for (n, what) in [
        (2, "not a JSON object"),
        (3, "missing field \"reward\""),
        (4, "\"reward\" must be a finite number"),
        (5, "\"uid\""),
    ] {
        assert!(err.contains(&format!("line {n}: {what}")), "line {n}: {err}");
    }
    assert!(!err.contains("line 1:") && !err.contains("line 6:"), "{err}");
}

#[test]
fn taura_requires_entropy_grpo_does_not() {
    let input = "{\"uid\":\"g\",\"traj_uid\":\"a\",\"reward\":1}\n{\"uid\":\"g\",\"traj_uid\":\"b\",\"reward\":0.6,\"entropy\":1.5}\n";
    let (lines, err, _) = run("taura", input);
    assert!(lines[0].ends_with(r#""advantage":null,"error":"INVALID_INPUT_LINE"}"#));
    assert!(err.contains("line 1: missing field \"entropy\""), "{err}");
    // Line 2 alone: one trajectory (reward 0.6, mean 0, std 1) and w = 1.5 / (1.5/(1 + 1e-8) + 1e-8).
    let w = 1.5 / (1.5 / (1.0 + 1e-8) + 1e-8);
    assert_close(advantage(&lines[1]).unwrap(), 0.6 / (1.0 + EPS) * w);
    // GRPO reads no entropy: [1, 0.6], μ = 0.8, σ = √(0.04 + 0.04).
    let (lines, _, _) = run("grpo", input);
    assert_close(advantage(&lines[0]).unwrap(), 0.2 / (0.08f64.sqrt() + EPS));
}

#[test]
fn numeric_ids_and_string_ids_stay_apart() {
    // uid 1 (number) and "1" (string) are different groups, each of one trajectory.
    let input = "{\"uid\":1,\"traj_uid\":1,\"reward\":1}\n{\"uid\":\"1\",\"traj_uid\":\"1\",\"reward\":0.5}\n";
    let (lines, _, _) = run("grpo-no-std", input);
    assert_eq!(advantage(&lines[0]), Some(1.0));
    assert_eq!(advantage(&lines[1]), Some(0.5));
}

#[test]
fn unreadable_input_and_bad_estimator() {
    let out =
        omnirl().args(["advantage", "--estimator", "grpo", "--input", "/nonexistent/rows.jsonl"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/rows.jsonl"));
    let out = omnirl().args(["advantage", "--estimator", "ppo", "--input", "x.jsonl"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("ppo"));
}
