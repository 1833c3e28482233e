//! Fuzzing the answer parsers with proptest: arbitrary text, JSON-like text and mutated
//! well-formed answers must never panic, and every failure must carry a reference code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rewards::{QuestionType, RewardError};

const CODES: [&str; 5] = ["ANSWER_JSON_PARSE", "SPAN_FORMAT", "ANSWER_NOT_STRING", "GT_JSON_PARSE", "UNKNOWN_QTYPE"];

fn check(result: Result<rewards::Score, RewardError>) -> Result<(), TestCaseError> {
    match result {
        Ok(s) => {
            prop_assert!((0.0..=1.0).contains(&s.reward), "reward {}", s.reward);
            prop_assert_eq!(s.won, s.reward >= 0.5);
        }
        Err(e) => prop_assert!(CODES.contains(&e.code()), "{e}"),
    }
    Ok(())
}

/// Text built from the tokens span answers are made of, so the parsers' deeper paths run.
fn jsonish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(" ".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just(":".to_owned()),
        Just("\"".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("NaN".to_owned()),
        Just("Infinity".to_owned()),
        Just("-Infinity".to_owned()),
        Just("\\u".to_owned()),
        Just("1e400".to_owned()),
        Just("-".to_owned()),
        Just(".".to_owned()),
        Just("e".to_owned()),
        (-1000i32..1000).prop_map(|n| n.to_string()),
        (-1e3f64..1e3).prop_map(|x| x.to_string()),
        "[0-9]{1,3}",
        "\\PC{0,3}",
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

fn qtype() -> impl Strategy<Value = QuestionType> {
    prop::sample::select(QuestionType::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(qt in qtype(), pred in "\\PC{0,60}", gt in "\\PC{0,60}") {
        check(rewards::score(qt, &pred, &gt))?;
        let _ = rewards::extract_number(&pred);
        let _ = rewards::mcq_ground_truth(&gt);
        let _ = QuestionType::from_raw(&pred);
    }

    #[test]
    fn arbitrary_bytes_never_panic(qt in qtype(), pred in prop::collection::vec(any::<u8>(), 0..80),
                                   gt in prop::collection::vec(any::<u8>(), 0..80)) {
        let pred = String::from_utf8_lossy(&pred);
        let gt = String::from_utf8_lossy(&gt);
        check(rewards::score(qt, &pred, &gt))?;
    }

    #[test]
    fn jsonish_span_answers_never_panic(pred in jsonish(), gt in jsonish()) {
        check(rewards::score(QuestionType::Tr, &pred, &gt))?;
        let _ = rewards::parse_predicted_spans(&pred);
        let _ = rewards::parse_ground_truth_spans(&gt);
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&pred) {
            let _ = rewards::parse_spans_value(&v);
            check(rewards::score_value(QuestionType::Tr, &gt, &v))?;
            check(rewards::score_value(QuestionType::Mcq, &gt, &v))?;
            check(rewards::score_value(QuestionType::Size, &gt, &v))?;
        }
    }

    #[test]
    fn mutated_answers_never_panic(base in prop::sample::select(vec![
            "[[0, 10], [20.5, 30]]", "[1.4, 40.066]", "[]", "null", "39.5", "B", "-3.25 m"]),
            pos in any::<prop::sample::Index>(), insert in "\\PC{0,4}", cut in 0usize..4) {
        let chars: Vec<char> = base.chars().collect();
        let at = pos.index(chars.len() + 1);
        let end = (at + cut).min(chars.len());
        let mutated: String = chars[..at].iter().chain(insert.chars().collect::<Vec<_>>().iter())
            .chain(chars[end..].iter()).collect();
        for qt in QuestionType::ALL {
            check(rewards::score(qt, &mutated, base))?;
            check(rewards::score(qt, base, &mutated))?;
        }
    }
}

#[test]
fn pathological_inputs() {
    let deep = "[".repeat(1_000_000);
    let long_number = "9".repeat(100_000);
    let many_spans = format!("[{}[0, 1]]", "[0, 1], ".repeat(100_000));
    for qt in QuestionType::ALL {
        for text in [deep.as_str(), long_number.as_str(), many_spans.as_str(), "\u{0}", "\u{feff}[]"] {
            let _ = rewards::score(qt, text, text);
            let _ = rewards::score(qt, text, "[[0, 1]]");
        }
    }
    assert_eq!(rewards::score(QuestionType::Tr, &many_spans, "[[0, 1]]").unwrap().reward, 1.0);
}
