//! Table-driven tests for NUM/SIZE. Expected values come from CPython (`round`, `re`,
//! `float`) or are worked by hand in the comments.

use super::*;

#[test]
fn number_extraction_follows_the_reference_regex() {
    // re.findall(r'[+-]?\d+(?:\.\d+)?', text)[0], then float().
    let cases: [(&str, Option<f64>); 22] = [
        ("42", Some(42.0)),
        ("  39.5 square meters", Some(39.5)),
        ("The answer is -3.25.", Some(-3.25)),
        ("+7", Some(7.0)),
        ("1e3", Some(1.0)),   // exponent ignored
        ("1,000", Some(1.0)), // thousands separator ends the match
        (".5", Some(5.0)),    // leading-dot decimal loses its point
        ("-.5", Some(5.0)),   // '-' not followed by a digit is skipped
        ("1.", Some(1.0)),    // a dangling point is not part of the number
        ("1.2.3", Some(1.2)),
        ("--5", Some(-5.0)), // the second '-' starts the match
        ("+-5", Some(-5.0)),
        ("a-b 3", Some(3.0)),
        ("x12y34", Some(12.0)),
        ("007", Some(7.0)),
        ("-0", Some(-0.0)),
        ("3.14159265358979323846", Some(std::f64::consts::PI)),
        ("", None),
        ("no digits", None),
        ("+-.", None),
        ("٣", None),  // Arabic-Indic three: Python's \d matches it (deviation)
        ("３", None), // fullwidth three: likewise
    ];
    for (text, want) in cases {
        let got = extract_number(text);
        match (got, want) {
            (Some(g), Some(w)) => {
                assert!(g == w && g.is_sign_negative() == w.is_sign_negative(), "{text:?}: {g} != {w}")
            }
            (None, None) => {}
            _ => panic!("{text:?}: got {got:?}, want {want:?}"),
        }
    }
    // Mixed scripts: Python would match "١2" as a whole (12); we take the ASCII "2".
    assert_eq!(extract_number("١2"), Some(2.0));
    // float('9' * 400) is inf in Python; so is ours.
    assert_eq!(extract_number(&"9".repeat(400)), Some(f64::INFINITY));
    assert_eq!(find_number("abc -12.50x"), Some("-12.50"));
}

#[test]
fn round2_matches_python() {
    // (x, round(x, 2)) from CPython 3.11.
    let cases = [
        (0.125, 0.12), // exact binary tie -> even
        (0.375, 0.38), // exact binary tie -> even
        (2.675, 2.67), // binary value 2.67499999999999982236431605997495353221893310546875
        (1.005, 1.0),  // binary value 1.00499999999999989341858963598497211933135986328125
        (-2.675, -2.67),
        (-0.125, -0.12),
        (0.005, 0.01), // binary value slightly above 0.005
        (0.015, 0.01), // binary value slightly below 0.015
        (0.025, 0.03),
        (0.045, 0.04),
        (1.115, 1.11),
        (4.355, 4.36),
        (0.995, 0.99),
        (0.0025, 0.0),
        (123_456_789.125, 123_456_789.12),
        (1e15 + 0.125, 1_000_000_000_000_000.1),
        (1e16 + 2.0, 1e16 + 2.0),
        (5e-324, 0.0),
        (1.0, 1.0),
        (-7.5, -7.5),
        (3.0, 3.0),
    ];
    for (x, want) in cases {
        assert_eq!(py_round2(x), want, "round({x}, 2)");
    }
    assert!(py_round2(-0.001).is_sign_negative()); // Python: -0.0
    assert_eq!(py_round2(f64::INFINITY), f64::INFINITY);
    assert!(py_round2(f64::NAN).is_nan());
}

#[test]
fn num_exact_match_table() {
    // (prediction, ground truth, reward): round(gt, 2) == round(pred, 2).
    let cases = [
        ("3", "3", 1.0),
        ("3.0", "3", 1.0),
        ("3.001", "3", 1.0), // 3.0 == 3.0
        ("3.004", "3.00", 1.0),
        ("3.006", "3", 0.0),    // 3.01 != 3.0
        ("2.675", "2.67", 1.0), // round(2.675, 2) == 2.67
        ("0.125", "0.13", 0.0), // 0.12 != 0.13
        ("0.125", "0.12", 1.0),
        ("The answer is 42 apples", "42", 1.0),
        ("-5", "5", 0.0),
        ("1e3", "1", 1.0),      // regex quirk kept
        ("1,000", "1000", 0.0), // 1 != 1000
        ("about 7.", "7", 1.0),
        ("7", "[7]", 1.0), // the gt number is found inside a stringified list
    ];
    for (pred, gt, want) in cases {
        let s = crate::score(crate::QuestionType::Num, pred, gt).unwrap();
        assert_eq!(s.reward, want, "pred {pred:?} gt {gt:?}");
        assert_eq!(s.won, want >= 0.5);
    }
}

#[test]
fn num_and_size_errors() {
    use crate::QuestionType::{Num, Size};
    for qt in [Num, Size] {
        assert_eq!(crate::score(qt, "no idea", "5").unwrap_err().code(), "ANSWER_NOT_STRING");
        assert_eq!(crate::score(qt, "", "5").unwrap_err().code(), "ANSWER_NOT_STRING");
        assert_eq!(crate::score(qt, "٣", "3").unwrap_err().code(), "ANSWER_NOT_STRING");
        assert_eq!(crate::score(qt, "5", "n/a").unwrap_err().code(), "GT_JSON_PARSE");
        // The ground truth is checked first, as in the reference.
        assert_eq!(crate::score(qt, "x", "y").unwrap_err().code(), "GT_JSON_PARSE");
    }
}

#[test]
fn tolerances_are_exact_decimals() {
    let want = [0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05];
    assert_eq!(MRA_TOLERANCES, want);
}

#[test]
fn size_mra_table() {
    // rel = |p - g| / |g|; MRA = #{t in 0.50, 0.45, ..., 0.05 : rel < t} / 10.
    let cases = [
        (10.0, 10.0, 1.0),   // rel 0: all ten
        (10.4, 10.0, 1.0),   // rel 0.04 < 0.05
        (10.5, 10.0, 0.9),   // rel 0.05: not < 0.05; 9 tolerances above it
        (12.0, 10.0, 0.6),   // rel 0.2: 0.50..0.25 -> 6
        (8.0, 10.0, 0.6),    // rel 0.2 from below
        (14.9, 10.0, 0.1),   // rel 0.49 < 0.50 only
        (15.0, 10.0, 0.0),   // rel 0.5: strict
        (0.0, 10.0, 0.0),    // rel 1
        (-10.0, 10.0, 0.0),  // rel 2
        (-12.0, -10.0, 0.6), // negative ground truth, rel 0.2
        (39.5, 39.5, 1.0),
        (30.0, 39.5, 0.6), // rel 9.5/39.5 = 0.2405: 0.50..0.25 -> 6
        (1.2, 1.0, 0.6),   // rel 0.2 exactly in decimal (binary: 0.19999999999999996)
        (5.5, 5.0, 0.8),   // rel 0.1: 0.50..0.15 -> 8 (reference float32: 0.9)
        (1.3, 1.0, 0.4),   // rel 0.3: 0.50..0.35 -> 4 (reference float32: 0.5)
        (0.0, 0.0, 1.0),   // gt 0: exact match only
        (1e-9, 0.0, 0.0),  // gt 0: reference divides by 1e-8 and gives 0.9
        (f64::INFINITY, 10.0, 0.0),
        (f64::INFINITY, f64::INFINITY, 0.0), // inf - inf is NaN, as in the reference
    ];
    for (pred, gt, want) in cases {
        let got = mean_relative_accuracy(pred, gt);
        assert_eq!(got, want, "pred {pred} gt {gt}");
    }
}

#[test]
fn size_through_score() {
    let s = crate::score_raw("SIZE_VSI", "about 12 square meters", "10").unwrap();
    assert_eq!(s.reward, 0.6);
    assert!(s.won);
    let s = crate::score_raw("SIZE_VSI", "14", "10").unwrap();
    // rel 0.4: 0.50, 0.45 -> 0.2
    assert_eq!(s.reward, 0.2);
    assert!(!s.won);
}
