//! Line-by-line checks of RL and eval files: each test writes a file of good and broken
//! lines and asserts the exact (line, field, problem) list. Expected outcomes are worked out
//! by hand from docs/reference.md: the schemas of #data-eval and #data-rl, the question types of
//! #first-user-message and the answer formats of #rewards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rollout::data::{
    CheckOptions, DataFormat, DataProblem, ProblemCode, Severity, check_file, load_eval_samples, load_rl_samples,
};
use std::path::Path;

/// The illustrative RL line of docs/reference.md#data-rl.
const SPEC_RL: &str = r#"{"prompt":[{"content":"","role":"user"}],"question_type":"SIZE_VSI","question":"What is the size of this room (in square meters)? …","answer":"39.5","options":[],"video":"videos/VSI-train/x.mp4","fps":30.0,"duration_seconds":92.234,"has_audio":false,"data_source":"agent","ability":"agent","extra_info":{"traj_id":"<uuid>","error_reason":"INVALID_JSON"}}"#;

/// The illustrative eval line of docs/reference.md#data-eval.
const SPEC_EVAL: &str = r#"{"video": "videos/Bench/abc.mp4", "question_type": "TR", "question": "What are all the time ranges …?", "options": [], "answer": "[[1.4, 40.066]]"}"#;

fn rl(fields: &str) -> String {
    format!(
        r#"{{"question_type":"MCQ_Holmes","question":"q?","answer":"B","options":["A. a","B. b","C. c","D. d"],"video":"videos/VSI-train/x.mp4","fps":30.0,"duration_seconds":60.0,"has_audio":true{fields}}}"#
    )
}

/// A media root with the given (empty-content) files created under it.
fn media_root(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"not really a video").unwrap();
    }
    dir
}

fn write_lines(dir: &Path, name: &str, lines: &[String]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

type Row<'a> = (Option<usize>, Severity, ProblemCode, Option<&'a str>);

fn rows(problems: &[DataProblem]) -> Vec<Row<'_>> {
    problems.iter().map(|p| (p.line, p.severity, p.code, p.field.as_deref())).collect()
}

fn message_on(problems: &[DataProblem], line: usize) -> String {
    problems.iter().find(|p| p.line == Some(line)).map(|p| p.to_string()).unwrap_or_default()
}

#[test]
fn rl_file_reports_every_bad_line_with_its_field() {
    use ProblemCode as C;
    use Severity::{Error as E, Warning as W};
    let root = media_root(&["videos/VSI-train/x.mp4"]);
    let lines = vec![
        SPEC_RL.to_string(),                                                             // 1 good
        String::new(),                                                                   // 2 blank
        SPEC_RL.replace(r#""duration_seconds":92.234"#, r#""duration_seconds":"92.2""#), // 3
        r#"{"question_type": "MCQ" "question": "x"}"#.to_string(),                       // 4
        rl("").replace(r#""answer":"B""#, r#""answer":"E""#),                            // 5
        rl("")
            .replace(r#""question_type":"MCQ_Holmes""#, r#""question_type":"TR_MultiHop""#)
            .replace(r#""answer":"B""#, r#""answer":"[[40.0, 12.5]]""#), // 6
        rl("").replace("MCQ_Holmes", "OPEN_QA"),                                         // 7
        rl("").replace("videos/VSI-train/x.mp4", "videos/missing.mp4"),                  // 8
        rl("").replace("videos/VSI-train/x.mp4", "videos/missing.mp4"),                  // 9 same video
        rl("").replace(r#""fps":30.0"#, r#""fps":0"#),                                   // 10
        rl("").replace(r#""has_audio":true"#, r#""has_audio":"False""#),                 // 11
        rl("").replace(r#""question":"q?","#, ""),                                       // 12
        rl("").replace("MCQ_Holmes", "TR").replace(r#""answer":"B""#, r#""answer":"[[50, 61.5]]""#), // 13
        rl("").replace("MCQ_Holmes", "NUM").replace(r#""answer":"B""#, r#""answer":"abc""#), // 14
        "[1, 2]".to_string(),                                                            // 15
        rl("").replace(r#""options":["A. a","B. b","C. c","D. d"],"#, ""),               // 16
        rl(r#","options":null"#).replace(r#""options":["A. a","B. b","C. c","D. d"],"#, ""), // 17
        "   ".to_string(),                                                               // 18 blank
    ];
    let path = write_lines(root.path(), "rl.jsonl", &lines);
    let opts = CheckOptions::with_media_root(Some(root.path()));
    let report = check_file(&path, DataFormat::Rl, &opts);
    assert_eq!(
        rows(&report.problems),
        vec![
            (Some(3), E, C::WrongType, Some("duration_seconds")),
            (Some(4), E, C::Json, None),
            (Some(5), E, C::AnswerNotInOptions, Some("answer")),
            (Some(6), E, C::SpanReversed, Some("answer")),
            (Some(7), E, C::QuestionType, Some("question_type")),
            (Some(8), E, C::MediaMissing, Some("video")),
            (Some(10), E, C::BadValue, Some("fps")),
            (Some(11), E, C::WrongType, Some("has_audio")),
            (Some(12), E, C::MissingField, Some("question")),
            (Some(13), W, C::SpanOutOfRange, Some("answer")),
            (Some(14), E, C::Answer, Some("answer")),
            (Some(15), E, C::NotObject, None),
            (Some(16), E, C::BadValue, Some("options")),
            (Some(17), E, C::BadValue, Some("options")),
        ]
    );
    let p = &report.problems;
    let name = path.display();
    assert_eq!(
        message_on(p, 3),
        format!(r#"{name}:3: field "duration_seconds": expected a number, found string "92.2""#)
    );
    assert_eq!(message_on(p, 4), format!("{name}:4: not valid JSON: expected `,` or `}}` at column 25"));
    assert_eq!(
        message_on(p, 5),
        format!(r#"{name}:5: field "answer": answer "E" is not among the options (A, B, C, D)"#)
    );
    assert_eq!(message_on(p, 6), format!(r#"{name}:6: field "answer": TR answer span [40.0, 12.5] has start > end"#));
    assert!(message_on(p, 8).contains("referenced by 2 lines"), "{}", message_on(p, 8));
    assert!(message_on(p, 13).ends_with("TR answer span [50.0, 61.5] ends after duration_seconds 60.0"));

    assert_eq!(report.lines, 18);
    assert_eq!(report.blank_lines, 2);
    // Lines 1, 8, 9 and 13 have no error of their own (8 and 9 only lack their video).
    assert_eq!(report.samples, 4);
    assert_eq!(report.bad_lines, 12);
    assert_eq!((report.errors, report.warnings), (13, 1));
    assert_eq!(report.question_types.get("SIZE"), Some(&1));
    assert_eq!(report.question_types.get("MCQ"), Some(&2));
    assert_eq!(report.question_types.get("TR"), Some(&1));
    assert_eq!(report.raw_question_types.get("SIZE_VSI"), Some(&1));
    assert_eq!((report.distinct_media, report.missing_media), (2, 1));
    assert_eq!(report.videos, vec![root.path().join("videos/VSI-train/x.mp4")]);
    assert!(!report.is_ok());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["problems"][0]["code"], "wrong_type");
    assert_eq!(json["problems"][0]["line"], 3);
}

#[test]
fn the_spec_lines_are_valid_and_keep_their_extra_fields() {
    let root = media_root(&["videos/VSI-train/x.mp4", "videos/Bench/abc.mp4"]);
    let rl_path = write_lines(root.path(), "rl.jsonl", &[SPEC_RL.replace(r#""ability""#, r#""custom":7,"ability""#)]);
    let samples = load_rl_samples(&rl_path, Some(root.path())).unwrap();
    assert_eq!(samples.len(), 1);
    let s = &samples[0];
    assert_eq!(s.qtype.as_str(), "SIZE");
    assert_eq!(s.question_type, "SIZE_VSI");
    assert_eq!((s.fps, s.duration_seconds, s.has_audio), (30.0, 92.234, false));
    assert_eq!(s.traj_id(), Some("<uuid>"));
    assert_eq!(s.error_reason(), Some("INVALID_JSON"));
    assert_eq!(s.video_path, root.path().join("videos/VSI-train/x.mp4"));
    assert_eq!(s.extra.get("custom"), Some(&serde_json::json!(7)));
    // Serialising writes every original field back, extras included.
    let back = serde_json::to_value(s).unwrap();
    let orig: serde_json::Value =
        serde_json::from_str(&SPEC_RL.replace(r#""ability""#, r#""custom":7,"ability""#)).unwrap();
    assert_eq!(back, orig);

    let eval_path = write_lines(root.path(), "eval.jsonl", &[SPEC_EVAL.to_string()]);
    let samples = load_eval_samples(&eval_path, Some(root.path())).unwrap();
    assert_eq!(samples[0].qtype.as_str(), "TR");
    assert_eq!(samples[0].answer, "[[1.4, 40.066]]");
}

#[test]
fn eval_answer_forms_and_warnings() {
    use ProblemCode as C;
    use Severity::{Error as E, Warning as W};
    let line = |qt: &str, options: &str, answer: &str| {
        format!(
            r#"{{"video":"/abs/v.mp4","question_type":"{qt}","question":"q","options":{options},"answer":{answer}}}"#
        )
    };
    let opts4 = r#"["A. a","B. b","C. c","D. d"]"#;
    let lines = vec![
        line("MCQ", opts4, r#"["C"]"#),                  // 1 one-element list: fine
        line("MCQ", opts4, r#""B. b""#),                 // 2 read as B: warning
        line("MCQ", r#"["A. a","b","C. c"]"#, r#""A""#), // 3 option without label: warning
        line("TR", "null", r#"[[1.0, 2.0]]"#),           // 4 inline spans: fine
        line("NUM", "[]", "5"),                          // 5 number, not string: warning
        line("NUM", "[]", r#""1,000""#),                 // 6 misread by the regex: warning
        line("FF", "[]", r#""  ""#),                     // 7 empty FF: error
        line("MCQ", opts4, r#""['B', 'C']""#),           // 8 a list as answer: '[' not an option
        line("TR", "[]", r#""[[1, 2], [3]]""#),          // 9 malformed span
        line("SIZE_VSI", "[]", r#""39.5""#),             // 10 fine
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = write_lines(dir.path(), "eval.jsonl", &lines);
    let report = check_file(&path, DataFormat::Eval, &CheckOptions { check_media: false, ..CheckOptions::default() });
    assert_eq!(
        rows(&report.problems),
        vec![
            (Some(2), W, C::Answer, Some("answer")),
            (Some(3), W, C::OptionLabel, Some("options[1]")),
            (Some(5), W, C::WrongType, Some("answer")),
            (Some(6), W, C::Answer, Some("answer")),
            (Some(7), E, C::Answer, Some("answer")),
            (Some(8), E, C::AnswerNotInOptions, Some("answer")),
            (Some(9), E, C::Answer, Some("answer")),
        ]
    );
    assert_eq!(report.problems[1].message, r#"option does not start with a letter label like "A.": "b""#);
    assert!(report.problems[3].message.contains("is read as 1.0"), "{}", report.problems[3].message);
    assert!(report.problems[6].message.contains("SPAN_FORMAT"), "{}", report.problems[6].message);
    assert_eq!(report.samples, 7);
    assert_eq!(report.distinct_media, 1);
    assert_eq!(report.videos, vec![Path::new("/abs/v.mp4").to_path_buf()]);
    assert!(!report.media_checked);
}

#[test]
fn an_rl_line_is_not_an_eval_line_the_other_way_round() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_lines(dir.path(), "eval.jsonl", &[SPEC_EVAL.to_string()]);
    let report = check_file(&path, DataFormat::Rl, &CheckOptions { check_media: false, ..CheckOptions::default() });
    let fields: Vec<_> = report.problems.iter().map(|p| (p.code, p.field.as_deref())).collect();
    assert_eq!(
        fields,
        vec![
            (ProblemCode::FormatMismatch, None),
            (ProblemCode::MissingField, Some("fps")),
            (ProblemCode::MissingField, Some("duration_seconds")),
            (ProblemCode::MissingField, Some("has_audio")),
        ]
    );
    assert_eq!(
        report.problems[0].message,
        "no line is a valid RL line, and the lines look like eval data: is this the right data format?"
    );
    // RL lines are valid eval lines (the metadata is kept as extra fields).
    let path = write_lines(dir.path(), "rl.jsonl", &[SPEC_RL.to_string()]);
    let report = check_file(&path, DataFormat::Eval, &CheckOptions { check_media: false, ..CheckOptions::default() });
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn loaders_fail_with_the_first_error_and_its_location() {
    let root = media_root(&["videos/VSI-train/x.mp4"]);
    let lines = vec![
        SPEC_RL.to_string(),
        rl("").replace(r#""fps":30.0"#, r#""fps":"30""#),
        rl("").replace("MCQ_Holmes", "OPEN"),
    ];
    let path = write_lines(root.path(), "rl.jsonl", &lines);
    let err = load_rl_samples(&path, Some(root.path())).unwrap_err();
    assert_eq!(err.problem().line, Some(2));
    assert_eq!(
        err.to_string(),
        format!(
            r#"{}:2: field "fps": expected a number, found string "30" (and 1 more error; `omnirl validate` lists them all)"#,
            path.display()
        )
    );
    // A missing video stops a load too.
    let path = write_lines(root.path(), "rl2.jsonl", &[rl("").replace("x.mp4", "y.mp4")]);
    let err = load_rl_samples(&path, Some(root.path())).unwrap_err();
    assert_eq!(err.problem().code, ProblemCode::MediaMissing);
}

#[test]
fn file_level_problems() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.jsonl");
    let report = check_file(&missing, DataFormat::Rl, &CheckOptions::default());
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].code, ProblemCode::Io);
    assert_eq!(report.problems[0].line, None);
    assert!(report.problems[0].to_string().starts_with(&format!("{}: cannot read the data file", missing.display())));

    let empty = write_lines(dir.path(), "empty.jsonl", &["".to_string(), " ".to_string()]);
    let report = check_file(&empty, DataFormat::Eval, &CheckOptions::default());
    assert_eq!(rows(&report.problems), vec![(None, Severity::Error, ProblemCode::Empty, None)]);
    assert_eq!((report.lines, report.blank_lines), (2, 2));

    // A file of the wrong format gets a hint on top of the per-line errors.
    let sft = r#"{"question_id":"q","traj_id":"t","step":1,"raw_input":[],"output":"{}"}"#;
    let wrong = write_lines(dir.path(), "sft.jsonl", &[sft.to_string()]);
    let report = check_file(&wrong, DataFormat::Rl, &CheckOptions::default());
    assert_eq!(report.problems[0].code, ProblemCode::FormatMismatch);
    assert!(report.problems[0].message.contains("look like SFT data"), "{}", report.problems[0].message);
}

#[test]
fn problems_are_capped_but_counted() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..1000).map(|_| "{not json".to_string()).collect();
    let path = write_lines(dir.path(), "bad.jsonl", &lines);
    let report = check_file(&path, DataFormat::Rl, &CheckOptions::default());
    assert_eq!(report.problems.len(), 200);
    assert_eq!(report.problems_omitted, 800);
    assert_eq!(report.errors, 1000);
    assert_eq!(report.problems.last().unwrap().line, Some(200));
    let lines: Vec<_> = report.problems.iter().map(|p| p.line.unwrap()).collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn crlf_bom_and_indentation_are_tolerated() {
    let root = media_root(&["videos/VSI-train/x.mp4"]);
    let path = root.path().join("rl.jsonl");
    let body = format!("\u{feff}{SPEC_RL}\r\n  {SPEC_RL}\r\n\r\n");
    std::fs::write(&path, body).unwrap();
    let report = check_file(&path, DataFormat::Rl, &CheckOptions::with_media_root(Some(root.path())));
    assert_eq!(rows(&report.problems), vec![(Some(1), Severity::Warning, ProblemCode::Json, None)]);
    assert_eq!((report.lines, report.blank_lines, report.samples), (3, 1, 2));
    // Columns count from the start of the line, indentation included.
    std::fs::write(&path, "   {\"a\" 1}\n").unwrap();
    let report = check_file(&path, DataFormat::Rl, &CheckOptions::default());
    assert_eq!(report.problems[0].message, "not valid JSON: expected `:` at column 9");
}

#[test]
fn formats_are_guessed_from_the_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let sft = r#"{"question_id":"q","traj_id":"t","step":1,"raw_input":[],"output":"{}"}"#;
    let cases = [
        ("rl.jsonl", format!("\n{SPEC_RL}\n"), Some(DataFormat::Rl)),
        ("eval.jsonl", format!("{SPEC_EVAL}\n"), Some(DataFormat::Eval)),
        ("sft.jsonl", format!("{sft}\n"), Some(DataFormat::Sft)),
        ("junk.jsonl", "{not json\n".to_string(), None),
        ("empty.jsonl", "\n\n".to_string(), None),
    ];
    for (name, body, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        assert_eq!(rollout::data::guess_format(&path), want, "{name}");
    }
    assert_eq!(rollout::data::guess_format(&dir.path().join("none.jsonl")), None);
    assert_eq!("RL".parse::<DataFormat>(), Ok(DataFormat::Rl));
    assert!("train".parse::<DataFormat>().is_err());
}
