//! Table-driven TR tests. Expected IoUs are worked by hand in the comments
//! (inter = sum of overlaps of the merged sets, union = len(P) + len(G) - inter).

use super::*;
use crate::{QuestionType, score};

fn tr(pred: &str, gt: &str) -> Result<crate::Score, RewardError> {
    score(QuestionType::Tr, pred, gt)
}

#[test]
fn iou_table() {
    let third = 1.0 / 3.0;
    let cases: &[(&str, &str, f64)] = &[
        ("[[0, 10]]", "[[0, 10]]", 1.0), // identical (reference: 10/(10+1e-12))
        ("[0, 10]", "[[0, 10]]", 1.0),   // flat pair == one nested span
        ("[[0, 10]]", "[0, 10]", 1.0),
        ("[[0, 10]]", "[[5, 15]]", third),           // inter 5, union 10+10-5 = 15
        ("[[0, 10], [20, 30]]", "[[5, 25]]", third), // inter 5+5 = 10, union 20+20-10 = 30
        ("[[20, 30], [0, 10]]", "[[5, 25]]", third), // order does not matter
        ("[[0, 10], [5, 15]]", "[[0, 15]]", 1.0),    // overlapping predictions merge to [0, 15]
        ("[[0, 5], [5, 10]]", "[[0, 10]]", 1.0),     // touching spans merge (s <= end)
        ("[[0, 4]]", "[[6, 10]]", 0.0),              // disjoint
        ("[[0, 5]]", "[[5, 10]]", 0.0),              // touching only: overlap 0
        ("[[2, 4]]", "[[0, 10]]", 0.2),              // inter 2, union 2+10-2 = 10
        ("[[5, 5]]", "[[0, 10]]", 0.0),              // zero length allowed: inter 0, union 10
        ("[[0, 10], [5, 5]]", "[[0, 10]]", 1.0),     // a zero-length span inside merges away
        ("[[5, 5]]", "[[5, 5]]", 1.0),               // same instant (reference: 0/1e-12 = 0)
        ("[[5, 5]]", "[[6, 6]]", 0.0),
        ("[]", "[]", 1.0),       // both empty
        ("null", "[]", 1.0),     // null = no span
        ("[]", "[[0, 1]]", 0.0), // one empty
        ("null", "[[0, 1]]", 0.0),
        ("[[0, 1]]", "[]", 0.0),
        ("[[1.4, 40.066]]", "[[1.4, 40.066]]", 1.0),
        ("[[101, 111], [178, 179]]", "[[101, 111], [178, 179]]", 1.0),
        ("[[100, 110]]", "[[101, 111], [178, 179]]", 0.75), // inter 9, union 10+11-9 = 12
        ("  [ [0 , 10] ]\n", "[[0,10]]", 1.0),              // JSON whitespace
        ("[[0, 10.0]]", "[[0e0, 1e1]]", 1.0),
    ];
    for &(pred, gt, want) in cases {
        let s = tr(pred, gt).unwrap_or_else(|e| panic!("{pred} vs {gt}: {e}"));
        assert!((s.reward - want).abs() < 1e-12, "{pred} vs {gt}: {} != {want}", s.reward);
        assert_eq!(s.won, s.reward >= 0.5);
        assert!(!s.rejected);
    }
}

#[test]
fn reversed_prediction_scores_zero_and_is_valid() {
    // Reference contract test: a reversed predicted span rejects the whole prediction.
    for pred in ["[[10, 0]]", "[10, 0]", "[[0, 10], [30, 20]]", "[[0, 10], [10.5, 10.4]]"] {
        let s = tr(pred, "[[0, 10]]").unwrap();
        assert_eq!(s.reward, 0.0, "{pred}");
        assert!(s.rejected && !s.won, "{pred}");
    }
}

#[test]
fn reversed_ground_truth_is_a_data_error() {
    // Reference: pred [[0,10]] vs gt [[0,10],[30,25]] gives inter 10, lengths 10 and 10-5 = 5,
    // union 10+5-10 = 5, reward 10/5 = 2.0; with gt [[0,10],[30,20]] the union is 0 and the
    // reward 10/1e-12 = 1e13. We reject the ground truth instead.
    for gt in ["[[0, 10], [30, 25]]", "[[0, 10], [30, 20]]", "[10, 0]"] {
        let err = tr("[[0, 10]]", gt).unwrap_err();
        assert_eq!(err.code(), "GT_JSON_PARSE", "{gt}");
        assert!(err.detail().contains("reversed"), "{err}");
    }
    assert_eq!(parse_ground_truth_spans("[[3, 1]]").unwrap_err().code(), "GT_JSON_PARSE");
    // A zero-length ground-truth span is not reversed.
    assert_eq!(parse_ground_truth_spans("[[3, 3]]").unwrap(), vec![TimeSpan::new(3.0, 3.0)]);
}

#[test]
fn answer_errors() {
    let cases: &[(&str, &str, &str)] = &[
        ("not json", "[[0, 1]]", "ANSWER_JSON_PARSE"),
        ("", "[[0, 1]]", "ANSWER_JSON_PARSE"),
        ("[[0, 1]", "[[0, 1]]", "ANSWER_JSON_PARSE"),
        ("[[0, 1]] extra", "[[0, 1]]", "ANSWER_JSON_PARSE"),
        ("```[[0, 1]]```", "[[0, 1]]", "ANSWER_JSON_PARSE"),
        ("[[0, 1],]", "[[0, 1]]", "ANSWER_JSON_PARSE"),
        ("[[NaN, 1]]", "[[0, 1]]", "SPAN_FORMAT"), // Python decodes NaN, then rejects it
        ("[0, Infinity]", "[[0, 1]]", "SPAN_FORMAT"),
        ("[[-Infinity, 1]]", "[[0, 1]]", "SPAN_FORMAT"),
        ("[[0, 1e400]]", "[[0, 1]]", "SPAN_FORMAT"), // overflows to inf
        ("[[1, 2, 3]]", "[[0, 1]]", "SPAN_FORMAT"),
        ("[[1]]", "[[0, 1]]", "SPAN_FORMAT"),
        ("[[]]", "[[0, 1]]", "SPAN_FORMAT"),
        ("[1]", "[[0, 1]]", "SPAN_FORMAT"),
        ("[1, 2, 3]", "[[0, 1]]", "SPAN_FORMAT"),
        ("[[1, 2], 3]", "[[0, 1]]", "SPAN_FORMAT"),
        ("5", "[[0, 1]]", "SPAN_FORMAT"),
        ("\"[[0, 1]]\"", "[[0, 1]]", "SPAN_FORMAT"), // a JSON string, not spans
        ("{\"start\": 0, \"end\": 1}", "[[0, 1]]", "SPAN_FORMAT"),
        ("[[true, 2]]", "[[0, 1]]", "SPAN_FORMAT"), // reference: float(True) = 1.0 (deviation)
        ("[true, 2]", "[[0, 1]]", "SPAN_FORMAT"),   // reference: bool is an int (deviation)
        ("[[\"1\", \"2\"]]", "[[0, 1]]", "SPAN_FORMAT"), // reference: float("1") (deviation)
        ("[[0, 1], \"23\"]", "[[0, 1]]", "SPAN_FORMAT"), // reference unpacks "23" to 2.0, 3.0
        ("[[null, 1]]", "[[0, 1]]", "SPAN_FORMAT"),
        // Ground-truth problems (the prediction is fine).
        ("[[0, 1]]", "oops", "GT_JSON_PARSE"),
        ("[[0, 1]]", "", "GT_JSON_PARSE"),
        ("[[0, 1]]", "5", "GT_JSON_PARSE"), // not a list
        ("[[0, 1]]", "null", "GT_JSON_PARSE"),
        ("[[0, 1]]", "\"[[0, 1]]\"", "GT_JSON_PARSE"),
        ("[[0, 1]]", "[[0, 1, 2]]", "SPAN_FORMAT"), // a list, but malformed spans
        ("[[0, 1]]", "[[NaN, 1]]", "SPAN_FORMAT"),
        // Order of checks as in the reference: prediction JSON, then gt type, then spans.
        ("oops", "oops", "ANSWER_JSON_PARSE"),
        ("[[1, 2, 3]]", "oops", "GT_JSON_PARSE"),
        ("[[1, 2, 3]]", "[[1, 2, 3]]", "SPAN_FORMAT"),
    ];
    for &(pred, gt, code) in cases {
        let err = tr(pred, gt).expect_err(pred);
        assert_eq!(err.code(), code, "pred {pred:?} gt {gt:?}: {err}");
    }
}

#[test]
fn spans_from_decoded_values() {
    use serde_json::json;
    let s = |a: f64, b: f64| TimeSpan::new(a, b);
    assert_eq!(parse_spans_value(&json!([])).unwrap(), vec![]);
    assert_eq!(parse_spans_value(&json!(null)).unwrap(), vec![]);
    assert_eq!(parse_spans_value(&json!([1, 2.5])).unwrap(), vec![s(1.0, 2.5)]);
    assert_eq!(parse_spans_value(&json!([[1, 2], [3, 4]])).unwrap(), vec![s(1.0, 2.0), s(3.0, 4.0)]);
    assert_eq!(parse_spans_value(&json!([[5, 1]])).unwrap(), vec![s(5.0, 1.0)]); // kept as is
    for bad in [json!(1), json!("[[1,2]]"), json!([1]), json!([[1, 2], [3]]), json!([true, 1]), json!({})] {
        assert_eq!(parse_spans_value(&bad).unwrap_err().code(), "SPAN_FORMAT", "{bad}");
    }
    assert_eq!(parse_ground_truth_value(&json!([[1, 2]])).unwrap(), vec![s(1.0, 2.0)]);
    assert_eq!(parse_ground_truth_value(&json!("[[1, 2]]")).unwrap(), vec![s(1.0, 2.0)]);
    assert_eq!(parse_ground_truth_value(&json!(3)).unwrap_err().code(), "GT_JSON_PARSE");
    assert_eq!(parse_ground_truth_value(&json!([[2, 1]])).unwrap_err().code(), "GT_JSON_PARSE");
}

#[test]
fn merge_is_the_reference_merge() {
    let s = |a: f64, b: f64| TimeSpan::new(a, b);
    assert_eq!(merge_spans(&[]), vec![]);
    assert_eq!(merge_spans(&[s(5.0, 6.0), s(0.0, 2.0), s(1.0, 3.0)]), vec![s(0.0, 3.0), s(5.0, 6.0)]);
    assert_eq!(merge_spans(&[s(0.0, 10.0), s(2.0, 3.0)]), vec![s(0.0, 10.0)]); // contained
    assert_eq!(merge_spans(&[s(0.0, 1.0), s(1.0, 2.0)]), vec![s(0.0, 2.0)]); // touching
}

#[test]
fn extreme_coordinates_stay_in_range() {
    let s = |a: f64, b: f64| TimeSpan::new(a, b);
    let big = [s(-f64::MAX, f64::MAX)];
    assert_eq!(temporal_iou(&big, &big), 1.0);
    // inter = MAX, union = 2 * MAX (computed after exact scaling): 0.5
    assert!((temporal_iou(&[s(0.0, f64::MAX)], &big) - 0.5).abs() < 1e-12);
    // Reversed spans given directly to temporal_iou are clamped to zero length.
    let v = temporal_iou(&[s(10.0, 0.0)], &[s(0.0, 10.0)]);
    assert_eq!(v, 0.0);
}
