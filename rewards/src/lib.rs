//! Pure scoring of an agent's final answer against the dataset's ground truth, as the
//! reference environment (`video_env.py`, docs/reference.md#rewards) does it on well-formed
//! input.
//!
//! | type | reward | module |
//! |---|---|---|
//! | `MCQ` | option-letter exact match, 0/1 | [`mcq_score`] |
//! | `TR` | temporal IoU of merged span sets | [`TemporalIoU`], [`temporal_iou`] |
//! | `NUM` | `round(x, 2)` equality (Python semantics), 0/1 | [`numeric_exact`], [`py_round2`] |
//! | `SIZE` | mean relative accuracy over 10 tolerances | [`mean_relative_accuracy`] |
//! | `FF` | LLM judge, 0/1 (feature `judge`); 0.0 in [`score`] | `judge` |
//!
//! [`score`] covers MCQ, TR, NUM and SIZE; invalid answers are [`RewardError`]s carrying the
//! reference's codes (`ANSWER_JSON_PARSE`, `SPAN_FORMAT`, `ANSWER_NOT_STRING`,
//! `GT_JSON_PARSE`, `UNKNOWN_QTYPE`), never rewards. [`record`] reads and writes the JSONL
//! lines of `omnirl score`; [`score_file`] streams a whole file through them. Nothing here panics on any input (fuzzed with proptest in
//! `tests/fuzz_parsers.rs`).
//!
//! ```
//! use rewards::{QuestionType, score, score_raw};
//! assert_eq!(score_raw("MCQ_LongVR-Short", " b ", "B").unwrap().reward, 1.0);
//! // inter 5, union 10 + 10 - 5 = 15
//! assert_eq!(score(QuestionType::Tr, "[[0, 10]]", "[[5, 15]]").unwrap().reward, 1.0 / 3.0);
//! assert_eq!(score(QuestionType::Num, "2.675", "2.67").unwrap().reward, 1.0);
//! // rel 0.2: tolerances 0.50, 0.45, 0.40, 0.35, 0.30, 0.25
//! assert_eq!(score_raw("SIZE_VSI", "12", "10").unwrap().reward, 0.6);
//! assert_eq!(score(QuestionType::Tr, "[[0, 1]", "[[0, 1]]").unwrap_err().code(), "ANSWER_JSON_PARSE");
//! ```
//!
//! # Reference behaviour kept on purpose
//!
//! * MCQ compares `prediction.strip().upper()` with one letter: `"B."` and `"(B)"` are wrong;
//!   an empty ground truth scores 0.
//! * TR answers are decoded with Python `json.loads` rules, so `NaN`, `Infinity` and `1e400`
//!   are JSON and then `SPAN_FORMAT`; `null` and `[]` mean "no span"; `[s, e]` equals
//!   `[[s, e]]`; zero-length spans are allowed; a reversed *predicted* span rejects the whole
//!   prediction with reward 0 as a valid answer ([`Score::rejected`]).
//! * The number regex `[+-]?\d+(?:\.\d+)?` ignores exponents, separators and leading dots:
//!   `"1e3"` -> 1, `"1,000"` -> 1, `".5"` -> 5.
//! * `won = reward >= 0.5`; FF without an API key scores 0.0.
//!
//! # Deviations from the reference
//!
//! Each is a place where the reference is wrong or crashes; each example below is a test.
//!
//! 1. **MCQ ground truth with leading whitespace.** The reference takes the first character
//!    and then strips it, so `" B"` becomes `""`: the right answer scores 0 and an empty
//!    prediction scores 1. We strip first.
//!    ```
//!    assert_eq!(rewards::mcq_score("B", " B"), 1.0); // reference: 0.0
//!    assert_eq!(rewards::mcq_score("", " B"), 0.0);  // reference: 1.0
//!    ```
//! 2. **MCQ ground truth stored as a stringified list** (`str(['B'])`,
//!    docs/reference.md#mcq-ground-truth): the reference compares with `"["`. We unwrap a
//!    one-item list.
//!    ```
//!    assert_eq!(rewards::mcq_ground_truth("['B']"), Some('B')); // reference: '['
//!    ```
//!    A JSON-list ground truth (`["B. dog"]`) is read through the same rule (first letter),
//!    where the reference compares with the whole upper-cased first element.
//! 3. **Reversed ground-truth spans** are a data error (`GT_JSON_PARSE`). The reference does
//!    not check them and scores far above 1: prediction `[[0, 10]]` against
//!    `[[0, 10], [30, 25]]` gives inter 10, union 10 + (10 - 5) - 10 = 5, reward 2.0; against
//!    `[[0, 10], [30, 20]]` the union is 0 and the reward 10 / 1e-12 = 1e13.
//!    ```
//!    use rewards::{QuestionType::Tr, score};
//!    assert_eq!(score(Tr, "[[0, 10]]", "[[0, 10], [30, 25]]").unwrap_err().code(), "GT_JSON_PARSE");
//!    assert!(rewards::parse_ground_truth_spans("[[3, 1]]").is_err());
//!    ```
//! 4. **No `1e-12` in the IoU denominator**, so identical span sets score exactly 1 (reference:
//!    `10 / (10 + 1e-12)` = 0.9999999999999 for `[[0, 10]]`), and when both sets hold only
//!    zero-length spans the IoU is 1 for the same instants, else 0 (reference: always 0).
//!    ```
//!    use rewards::{QuestionType::Tr, score};
//!    assert_eq!(score(Tr, "[[0, 10]]", "[[0, 10]]").unwrap().reward, 1.0);
//!    assert_eq!(score(Tr, "[[5, 5]]", "[[5, 5]]").unwrap().reward, 1.0); // reference: 0.0
//!    ```
//! 5. **Span bounds must be JSON numbers.** The reference's `float(x)` also takes booleans
//!    (`true` -> 1.0), numeric strings (`"1"`) and unpacks two-character strings (`"23"` ->
//!    2.0, 3.0); we answer `SPAN_FORMAT`.
//!    ```
//!    use rewards::{QuestionType::Tr, score};
//!    for pred in ["[[true, 2]]", "[true, 2]", "[[\"1\", \"2\"]]", "[[0, 1], \"23\"]"] {
//!        assert_eq!(score(Tr, pred, "[[0, 2]]").unwrap_err().code(), "SPAN_FORMAT");
//!    }
//!    ```
//! 6. **ASCII digits only** in numbers. Python's `\d` matches any Unicode decimal digit and
//!    `float()` accepts them, so the reference reads `"٣"` (Arabic-Indic three) as 3.
//!    ```
//!    assert_eq!(rewards::extract_number("٣"), None);          // reference: 3.0
//!    assert_eq!(rewards::extract_number("١2"), Some(2.0));    // reference: 12.0
//!    ```
//! 7. **SIZE in f64 with exact tolerances.** The reference converts both numbers to float32
//!    and compares with `1 - θ` from a float32 `arange`, whose values miss the decimals
//!    (`1 - 0.9` is 0.10000002384, `1 - 0.7` is 0.30000001192), so answers that sit exactly on
//!    a tolerance flip. We build the tolerances as `(10 - k) / 20` in f64 and compare
//!    `|pred - gt| < tol * |gt|`, counting values within 1e-12 (relative) of a tolerance as on
//!    it, so decimal answers score as their decimal values do (strict `<`).
//!    ```
//!    assert_eq!(rewards::mean_relative_accuracy(5.5, 5.0), 0.8);  // rel 0.1; reference: 0.9
//!    assert_eq!(rewards::mean_relative_accuracy(1.3, 1.0), 0.4);  // rel 0.3; reference: 0.5
//!    assert_eq!(rewards::mean_relative_accuracy(4.88, 6.1), 0.6); // rel 0.2; reference: 0.7
//!    ```
//!    Large values keep their precision too (float32 turns 100000001 into 100000000).
//! 8. **SIZE with ground truth 0** scores 1 for an exact 0 and 0 otherwise; the reference
//!    divides by `|0| + 1e-8` and gives `1e-9` a score of 0.9.
//!    ```
//!    assert_eq!(rewards::mean_relative_accuracy(1e-9, 0.0), 0.0);
//!    assert_eq!(rewards::mean_relative_accuracy(0.0, 0.0), 1.0);
//!    ```
//! 9. **Ground truth given as a JSON value** ([`score_value`]): a number is used as it is (the
//!    reference formats it with `str()` and re-extracts it, so `1e20` becomes 1), and an MCQ/FF
//!    ground truth that is neither a string nor a list of strings is `GT_JSON_PARSE` (the
//!    reference crashes on `.strip()`).
//!    ```
//!    use rewards::{QuestionType::{Mcq, Num}, score_value};
//!    assert_eq!(score_value(Num, "1e20", &serde_json::json!(1e20)).unwrap().reward, 0.0); // reference: 1.0
//!    assert_eq!(score_value(Mcq, "A", &serde_json::json!(7)).unwrap_err().code(), "GT_JSON_PARSE");
//!    ```
//! 10. **FF judge** (module `judge`): a reply without `Judgement:` is stripped before being
//!     compared with `"1"` (`" 1\n"` scores 1; reference 0); a prediction of 1000 characters or
//!     more scores 0 without a request (the reference asks, then zeroes it); retries are
//!     bounded with exponential back-off (reference: 100 tries, 1 s apart, then an exception
//!     that stops the run), 4xx other than 408/429 are not retried, and a final failure is an
//!     error for that item (`JUDGE_FAILED` in `omnirl score`).
//!
//! Known remaining difference, not a choice: for 8 or more merged spans numpy sums span
//! lengths pairwise, we sum left to right, so TR rewards can differ in the last bits.

#![forbid(unsafe_code)]

mod error;
#[cfg(feature = "judge")]
pub mod judge;
mod mcq;
mod numeric;
pub mod pyjson;
mod question_type;
pub mod record;
pub mod score_file;
mod temporal_iou;

pub use error::RewardError;
pub use mcq::{mcq_ground_truth, mcq_score};
pub use numeric::{
    MRA_TOLERANCES, extract_number, find_number, ground_truth_number, mean_relative_accuracy, numeric_exact,
    predicted_number, py_round2,
};
pub use question_type::QuestionType;
pub use temporal_iou::{
    TemporalIoU, TimeSpan, merge_spans, parse_ground_truth_spans, parse_ground_truth_value, parse_predicted_spans,
    parse_spans_value, score_temporal, score_temporal_value, temporal_iou,
};

use serde::Serialize;
use serde_json::Value;

/// The outcome of scoring one valid answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// In `[0, 1]`: 0/1 for MCQ, NUM and FF; IoU for TR; MRA in steps of 0.1 for SIZE.
    pub reward: f64,
    /// `reward >= 0.5`, as the reference's `won`.
    pub won: bool,
    /// TR only: the prediction had a reversed span and was rejected (reward 0). The reference
    /// suppresses the optional format reward for such answers.
    pub rejected: bool,
}

impl Score {
    /// A score with `won = reward >= 0.5` and no rejection.
    pub fn from_reward(reward: f64) -> Score {
        Score { reward, won: reward >= 0.5, rejected: false }
    }
}

/// Scores `prediction` (the content of the agent's answer action) against `answer` (the
/// dataset's ground-truth string) for every type but FF, which needs a judge
/// (see the `judge` module): FF scores 0.0 here, as the reference does without an API key.
pub fn score(question_type: QuestionType, prediction: &str, answer: &str) -> Result<Score, RewardError> {
    match question_type {
        QuestionType::Mcq => Ok(Score::from_reward(mcq_score(prediction, answer))),
        QuestionType::Tr => Ok(tr_score(score_temporal(prediction, answer)?)),
        QuestionType::Num | QuestionType::Size => {
            let gt = ground_truth_number(answer)?;
            let pred = predicted_number(prediction)?;
            Ok(score_numbers(question_type, pred, gt))
        }
        QuestionType::Ff => Ok(Score::from_reward(0.0)),
    }
}

/// [`score`] with the raw question-type label of the data (`"SIZE_VSI"`).
pub fn score_raw(raw_question_type: &str, prediction: &str, answer: &str) -> Result<Score, RewardError> {
    score(QuestionType::from_raw(raw_question_type)?, prediction, answer)
}

/// [`score`] with the ground truth as a JSON value, as it may appear in data files: a string
/// (the usual case), a one-element list (MCQ/NUM/SIZE/FF take its first element, TR reads a
/// list as spans), or a number (NUM/SIZE). Other shapes are `GT_JSON_PARSE`, except that an
/// empty or null MCQ ground truth scores 0 as in the reference.
pub fn score_value(question_type: QuestionType, prediction: &str, answer: &Value) -> Result<Score, RewardError> {
    match question_type {
        QuestionType::Tr => Ok(tr_score(score_temporal_value(prediction, answer)?)),
        QuestionType::Num | QuestionType::Size => {
            let gt = match first_item(answer) {
                Value::String(s) => ground_truth_number(s)?,
                Value::Number(n) => n.as_f64().ok_or_else(|| gt_type_error(answer))?,
                _ => return Err(gt_type_error(answer)),
            };
            let pred = predicted_number(prediction)?;
            Ok(score_numbers(question_type, pred, gt))
        }
        QuestionType::Mcq => match first_item(answer) {
            Value::String(s) => Ok(Score::from_reward(mcq_score(prediction, s))),
            Value::Null => Ok(Score::from_reward(0.0)),
            Value::Array(items) if items.is_empty() => Ok(Score::from_reward(0.0)),
            _ => Err(gt_type_error(answer)),
        },
        QuestionType::Ff => match first_item(answer) {
            Value::String(_) => Ok(Score::from_reward(0.0)),
            _ => Err(gt_type_error(answer)),
        },
    }
}

/// The ground-truth text of an FF item (a string or the first element of a list).
pub fn free_form_ground_truth(answer: &Value) -> Result<&str, RewardError> {
    match first_item(answer) {
        Value::String(s) => Ok(s),
        _ => Err(gt_type_error(answer)),
    }
}

fn first_item(answer: &Value) -> &Value {
    match answer {
        Value::Array(items) => items.first().unwrap_or(answer),
        other => other,
    }
}

fn gt_type_error(answer: &Value) -> RewardError {
    let kind = match answer {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    };
    RewardError::GtJsonParse(format!("unusable ground truth: a {kind}"))
}

fn tr_score(t: TemporalIoU) -> Score {
    Score { reward: t.iou, won: t.won(), rejected: t.rejected }
}

fn score_numbers(question_type: QuestionType, pred: f64, gt: f64) -> Score {
    let reward = match question_type {
        QuestionType::Size => mean_relative_accuracy(pred, gt),
        _ => numeric_exact(pred, gt),
    };
    Score::from_reward(reward)
}
