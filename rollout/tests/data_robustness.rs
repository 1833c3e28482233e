//! Nothing the checker reads may make it panic: random bytes, random JSON values in the known
//! fields, and half-formed chat messages. Also checks the report's invariants on every input
//! (sorted problems, cap respected, totals consistent).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rollout::data::{CheckOptions, DataFormat, DataReport, EvalSample, RlSample, SftTurn, check_bytes};
use serde_json::{Map, Value};
use std::path::Path;

const FORMATS: [DataFormat; 3] = [DataFormat::Eval, DataFormat::Rl, DataFormat::Sft];

const KEYS: &[&str] = &[
    "video",
    "question_type",
    "question",
    "options",
    "answer",
    "fps",
    "duration_seconds",
    "has_audio",
    "prompt",
    "ability",
    "data_source",
    "extra_info",
    "question_id",
    "traj_id",
    "step",
    "raw_input",
    "output",
    "step_reward",
    "done",
    "episode_reward",
    "role",
    "content",
    "type",
    "text",
    "image",
    "audio",
];

const STRINGS: &[&str] = &[
    "",
    " ",
    "MCQ",
    "MCQ_x",
    "tr",
    "TR_LongVALE",
    "NUM",
    "SIZE_VSI",
    "FF",
    "OPEN",
    "A",
    "A. x",
    "b) y",
    "E",
    "['B']",
    "[\"B\"]",
    "[[1, 2]]",
    "[[2, 1]]",
    "[1, 2]",
    "[[1, 2], [3]]",
    "[]",
    "null",
    "NaN",
    "[[NaN, 1]]",
    "1,000",
    "1e3",
    ".5",
    "39.5",
    "True",
    "False",
    "video.mp4",
    "/abs/v.mp4",
    "file://v.mp4",
    "http://x/v.mp4",
    "é",
    "\u{0}",
    "user",
    "assistant",
    "system",
    "image",
    "text",
    "audio",
    "video",
    "{\"a\":1}",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just(0.0), Just(-1.5), Just(30.0), Just(1e300), any::<f64>()]
            .prop_map(|x| { serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number) }),
        proptest::sample::select(STRINGS).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn line_object() -> impl Strategy<Value = Value> {
    proptest::collection::vec((proptest::sample::select(KEYS), value()), 0..14).prop_map(|kv| {
        let map: Map<String, Value> = kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        Value::Object(map)
    })
}

fn assert_invariants(report: &DataReport, opts: &CheckOptions) {
    assert!(report.problems.len() <= opts.max_problems);
    assert_eq!(report.errors + report.warnings, report.problems.len() + report.problems_omitted);
    let lines: Vec<usize> = report.problems.iter().map(|p| p.line.unwrap_or(0)).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    assert!(lines.iter().all(|&l| l <= report.lines));
    assert!(report.samples + report.bad_lines <= report.lines - report.blank_lines);
    assert!(report.missing_media <= report.distinct_media);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..12)) {
        let bytes = lines.join(&b'\n');
        let opts = CheckOptions { check_media: false, max_problems: 5, ..CheckOptions::default() };
        for format in FORMATS {
            let report = check_bytes(Path::new("fuzz.jsonl"), &bytes, format, &opts);
            assert_invariants(&report, &opts);
        }
    }

    #[test]
    fn random_fields_never_panic(objects in proptest::collection::vec(line_object(), 1..8)) {
        let bytes: Vec<u8> = objects.iter().map(|o| format!("{o}\n")).collect::<String>().into_bytes();
        let dir = tempfile::tempdir().unwrap();
        let opts = CheckOptions { media_root: Some(dir.path().to_path_buf()), check_media: true, max_problems: 50 };
        for format in FORMATS {
            let report = check_bytes(Path::new("fuzz.jsonl"), &bytes, format, &opts);
            assert_invariants(&report, &opts);
        }
        for o in &objects {
            let _ = serde_json::from_value::<EvalSample>(o.clone());
            let _ = serde_json::from_value::<RlSample>(o.clone());
            let _ = serde_json::from_value::<SftTurn>(o.clone());
        }
    }
}
