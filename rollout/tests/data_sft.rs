//! SFT turn lines (docs/reference.md#data-sft): a good trajectory, then one broken copy per rule,
//! each with the exact line and field path it must be reported at (worked out by hand from the
//! line).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rollout::data::{
    CheckOptions, DataFormat, DataProblem, MessageContent, PartKind, ProblemCode, Role, Severity, check_file,
    load_sft_turns,
};
use serde_json::{Value, json};
use std::path::Path;

/// A turn shaped like the reference's: system prompt, question, one earlier assistant turn,
/// and a frames message with two images; `done` stored as a string as in the reference example.
fn turn(step: u64, done: &str) -> Value {
    json!({
        "question_id": "v_2698_0_1",
        "traj_id": "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed",
        "step": step,
        "raw_input": [
            {"role": "system", "content": [{"type": "text", "text": "You are a Deep-Omni-Research Agent."}]},
            {"role": "user", "content": [{"type": "text", "text": "Video META:\n- duration_seconds: 24.00\n..."}]},
            {"role": "assistant", "content": [{"type": "text", "text": "{\"observation\":\"\",\"think\":\"\",\"confidence\":0.1,\"action\":{\"type\":\"get_frames\",\"start\":0,\"end\":24,\"num\":2}}"}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Frames 0.00s-24.00s (num=2)."},
                {"type": "text", "text": "Frame 0.00s:"},
                {"type": "image", "image": "media/STEP_1_frame_0.000.jpg"},
                {"type": "text", "text": "Frame 24.00s:"},
                {"type": "image", "image": "media/STEP_1_frame_24.000.jpg", "max_pixels": 802816},
                {"type": "text", "text": "\n[NOTICE] Step 1/5. 4 steps remaining."}
            ]}
        ],
        "output": "{\"observation\":\"a\",\"think\":\"b\",\"confidence\":0.95,\"action\":{\"type\":\"answer\",\"content\":\"B\"}}",
        "step_reward": 0.0,
        "done": done,
        "extra_info": {"question_type": "MCQ_Holmes", "won": false},
        "episode_reward": 1.0
    })
}

fn with(mut v: Value, pointer: &str, new: Value) -> Value {
    *v.pointer_mut(pointer).unwrap() = new;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

fn media_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("media")).unwrap();
    for f in ["STEP_1_frame_0.000.jpg", "STEP_1_frame_24.000.jpg"] {
        std::fs::write(dir.path().join("media").join(f), b"jpeg").unwrap();
    }
    dir
}

fn write(dir: &Path, lines: &[Value]) -> std::path::PathBuf {
    let path = dir.join("sft.jsonl");
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, body).unwrap();
    path
}

fn rows(problems: &[DataProblem]) -> Vec<(Option<usize>, Severity, ProblemCode, Option<&str>)> {
    problems.iter().map(|p| (p.line, p.severity, p.code, p.field.as_deref())).collect()
}

#[test]
fn sft_lines_report_exact_fields() {
    use ProblemCode as C;
    use Severity::{Error as E, Warning as W};
    let root = media_root();
    // Line n is step n unless the test is about the step.
    let good = |n: u64| turn(n, "False");
    let lines = vec![
        good(1),                                                                // 1
        turn(2, "True"),                                                        // 2 string done
        with(good(3), "/done", json!(true)),                                    // 3 bool done
        turn(4, "yes"),                                                         // 4 bad done
        with(good(5), "/step", json!(0)),                                       // 5
        with(good(6), "/step", json!(1.0)),                                     // 6
        with(good(7), "/raw_input/3/content/2/image", json!("media/gone.jpg")), // 7
        with(good(8), "/raw_input/3/role", json!("assistant")),                 // 8
        with(good(9), "/raw_input/1/role", json!("tool")),                      // 9
        with(good(10), "/raw_input/3/content/0/type", json!("html")),           // 10
        with(good(11), "/output", json!("  ")),                                 // 11
        with(good(12), "/output", json!("not json")),                           // 12
        without(good(13), "traj_id"),                                           // 13
        with(good(14), "/raw_input/3/content/4", json!({"type": "audio"})),     // 14
        with(good(15), "/step_reward", json!("0")),                             // 15
        with(good(16), "/raw_input", json!([])),                                // 16
        turn(1, "false"),                                                       // 17 same step as line 1
    ];
    let path = write(root.path(), &lines);
    let report = check_file(&path, DataFormat::Sft, &CheckOptions::with_media_root(Some(root.path())));
    assert_eq!(
        rows(&report.problems),
        vec![
            (Some(4), E, C::WrongType, Some("done")),
            (Some(5), E, C::BadValue, Some("step")),
            (Some(6), E, C::WrongType, Some("step")),
            (Some(7), E, C::MediaMissing, Some("raw_input[3].content[2].image")),
            (Some(8), E, C::BadValue, Some("raw_input[3].role")),
            (Some(9), E, C::BadValue, Some("raw_input[1].role")),
            (Some(10), E, C::BadValue, Some("raw_input[3].content[0].type")),
            (Some(11), E, C::BadValue, Some("output")),
            (Some(12), W, C::BadValue, Some("output")),
            (Some(13), E, C::MissingField, Some("traj_id")),
            (Some(14), E, C::MissingField, Some("raw_input[3].content[4].audio")),
            (Some(15), E, C::WrongType, Some("step_reward")),
            (Some(16), E, C::BadValue, Some("raw_input")),
            (Some(17), W, C::Duplicate, None),
        ]
    );
    let msg = |line: usize| report.problems.iter().find(|p| p.line == Some(line)).unwrap().message.clone();
    assert_eq!(msg(4), r#"expected a boolean (or the string "True"/"False"), found string "yes""#);
    assert_eq!(msg(5), "must be 1 or more (steps are 1-based), found 0");
    assert_eq!(msg(6), "expected an integer, found number 1.0");
    assert!(msg(7).starts_with(r#"image "media/gone.jpg" not found (looked for "#), "{}", msg(7));
    assert_eq!(msg(8), "the last message must be from the user (the target answers it), found assistant");
    assert_eq!(msg(17), r#"traj_id "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed" step 1 already appears on line 1"#);
    // The two frames are shared by every line: two distinct files, plus the missing one.
    assert_eq!((report.distinct_media, report.missing_media), (3, 1));
    assert_eq!(report.question_types.get("MCQ"), Some(&report.samples));
    // Lines 1, 2, 3, 12 and 17 are fine or only warned about; line 7 only lacks a file.
    assert_eq!(report.samples, 6);
}

#[test]
fn sft_turns_load_with_resolved_media_and_kept_extras() {
    let root = media_root();
    let path = write(root.path(), &[turn(1, "False"), turn(2, "True")]);
    let turns = load_sft_turns(&path, Some(root.path())).unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!((turns[0].done, turns[1].done), (Some(false), Some(true)));
    assert_eq!(turns[0].raw_input[3].role, Role::User);
    let media: Vec<_> = turns[0].media_parts().map(|p| (p.kind, p.path.clone().unwrap())).collect();
    assert_eq!(
        media,
        vec![
            (PartKind::Image, root.path().join("media/STEP_1_frame_0.000.jpg")),
            (PartKind::Image, root.path().join("media/STEP_1_frame_24.000.jpg")),
        ]
    );
    let MessageContent::Parts(parts) = &turns[0].raw_input[3].content else { panic!("parts") };
    assert_eq!(parts[4].extra.get("max_pixels"), Some(&json!(802816)));
    // Writing back gives the original line, except `done` which is normalised to a bool.
    let back = serde_json::to_value(&turns[0]).unwrap();
    assert_eq!(back, with(turn(1, "x"), "/done", json!(false)));
    // The serde path runs the same checks.
    let bad = with(turn(1, "x"), "/step", json!(0));
    let err = serde_json::from_value::<rollout::data::SftTurn>(bad).unwrap_err();
    assert!(err.to_string().contains(r#"field "done""#), "{err}");
    assert!(err.to_string().contains(r#"field "step": must be 1 or more"#), "{err}");
}

#[test]
fn a_string_content_message_is_accepted() {
    let root = media_root();
    let line = with(turn(1, "False"), "/raw_input/0/content", json!("plain system prompt"));
    let path = write(root.path(), &[line]);
    let report = check_file(&path, DataFormat::Sft, &CheckOptions::with_media_root(Some(root.path())));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.samples, 1);
}
