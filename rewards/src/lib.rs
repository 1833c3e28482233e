//! Pure scoring of an agent's final answer against the dataset's ground truth.
//!
//! DEVIATIONS-PLACEHOLDER

#![forbid(unsafe_code)]

mod error;
#[cfg(feature = "judge")]
pub mod judge;
mod mcq;
mod numeric;
mod pyjson;
mod question_type;
mod temporal_iou;

pub use error::RewardError;
pub use mcq::{mcq_ground_truth, mcq_score};
pub use numeric::{
    MRA_TOLERANCES, extract_number, find_number, ground_truth_number, mean_relative_accuracy,
    numeric_exact, predicted_number, py_round2,
};
pub use question_type::QuestionType;
pub use temporal_iou::{
    TemporalIoU, TimeSpan, merge_spans, parse_ground_truth_spans, parse_ground_truth_value,
    parse_predicted_spans, parse_spans_value, score_temporal, score_temporal_value, temporal_iou,
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
