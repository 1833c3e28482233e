//! Ground-truth checks per normalised question type, so that an answer the environment
//! cannot score is a data error found by `omnirl validate`, not an episode that burns its
//! whole step budget on "invalid" answers (docs/reference.md#gt-parse-error) or a crash at
//! reset.
//!
//! Parsing is delegated to the `rewards` crate (the code that will score the answers), so a
//! line that passes here is a line the reward accepts. On top of what the reward needs we
//! flag what it would silently get wrong: reversed TR spans (the reference scores them, with
//! IoU above 1 possible, docs/reference.md#iou-semantics; the reward rejects them, and we name
//! each one), MCQ letters that are not among the option labels (the reference compares only
//! the first character, docs/reference.md#mcq-ground-truth), and numbers the reference regex
//! misreads (`"1,000"` is read as 1, docs/reference.md#number-regex).
//!
//! Left out: whether an FF answer is sensible (only that it is non-empty), and TR span bounds
//! for eval data, whose duration is only known after probing the video.

use super::fields::{LineCx, Need, ProblemCode, num, quote};
use rewards::{QuestionType, TimeSpan};
use serde_json::{Map, Value};

/// Takes `question_type`; returns the raw label and, if it normalises, the type.
pub(crate) fn take_question_type(
    cx: &mut LineCx,
    obj: &mut Map<String, Value>,
) -> Option<(String, Option<QuestionType>)> {
    let raw = cx.take_str(obj, "question_type", Need::Required)?;
    match QuestionType::from_raw(&raw) {
        Ok(qt) => Some((raw, Some(qt))),
        Err(e) => {
            cx.error(ProblemCode::QuestionType, Some("question_type"), e.detail().to_string());
            Some((raw, None))
        }
    }
}

/// Takes `answer`: a string, a list holding one string (the eval format allows it; the
/// reference reads `answer[0]`), for TR a JSON list of spans given inline, kept as its JSON
/// text so every consumer sees the string form, or for NUM/SIZE a bare JSON number, kept as
/// its text with a warning (the reference's data stores numbers as strings,
/// docs/reference.md#data-rl; the reward accepts both).
pub(crate) fn take_answer(
    cx: &mut LineCx,
    obj: &mut Map<String, Value>,
    qtype: Option<QuestionType>,
) -> Option<String> {
    match cx.take(obj, "answer", Need::Required)? {
        Value::String(s) => Some(s),
        Value::Array(mut items) if items.len() == 1 && items[0].is_string() => match items.pop() {
            Some(Value::String(s)) => Some(s),
            _ => None,
        },
        v @ Value::Array(_) if qtype == Some(QuestionType::Tr) => Some(v.to_string()),
        Value::Number(n) if matches!(qtype, Some(QuestionType::Num | QuestionType::Size)) => {
            cx.warn(
                ProblemCode::WrongType,
                Some("answer"),
                format!("expected a numeric string such as \"{n}\", found number {n}; read as that string"),
            );
            Some(n.to_string())
        }
        other => {
            let expected = if qtype == Some(QuestionType::Tr) {
                "a string of spans such as \"[[1.5, 4.0]]\" (or the list itself)"
            } else {
                "a string (or a list holding one string)"
            };
            cx.wrong_type("answer", expected, &other);
            None
        }
    }
}

/// Checks that `answer` is a well-formed ground truth for `qtype`. `duration` (RL data only)
/// bounds TR spans.
pub(crate) fn check_answer(
    cx: &mut LineCx,
    qtype: QuestionType,
    answer: &str,
    options: &[String],
    duration: Option<f64>,
) {
    match qtype {
        QuestionType::Mcq => check_mcq(cx, answer, options),
        QuestionType::Tr => check_tr(cx, answer, duration),
        QuestionType::Num | QuestionType::Size => check_number(cx, qtype, answer),
        QuestionType::Ff => {
            if answer.trim().is_empty() {
                cx.error(ProblemCode::Answer, Some("answer"), "FF answer is empty");
            }
        }
    }
}

/// The label letter of an option such as `"A. red"` or `"B) blue"`, upper-cased.
pub(crate) fn option_label(option: &str) -> Option<char> {
    let mut chars = option.trim_start().chars();
    let letter = chars.next().filter(char::is_ascii_alphabetic)?;
    matches!(chars.next(), Some('.') | Some(')')).then_some(letter.to_ascii_uppercase())
}

fn check_mcq(cx: &mut LineCx, answer: &str, options: &[String]) {
    if options.is_empty() {
        cx.error(ProblemCode::BadValue, Some("options"), "an MCQ question needs a non-empty list of options");
    }
    let mut labels: Vec<char> = Vec::with_capacity(options.len());
    for (i, option) in options.iter().enumerate() {
        let field = format!("options[{i}]");
        match option_label(option) {
            Some(c) if labels.contains(&c) => {
                cx.warn(ProblemCode::OptionLabel, Some(&field), format!("label {c} is used by more than one option"));
            }
            Some(c) => labels.push(c),
            None => cx.warn(
                ProblemCode::OptionLabel,
                Some(&field),
                format!("option does not start with a letter label like \"A.\": {}", quote(option)),
            ),
        }
    }
    let Some(letter) = rewards::mcq_ground_truth(answer) else {
        cx.error(ProblemCode::Answer, Some("answer"), "MCQ answer is empty");
        return;
    };
    let trimmed = answer.trim();
    if !labels.is_empty() && !labels.contains(&letter) {
        let mut sorted = labels.clone();
        sorted.sort_unstable();
        let list: Vec<String> = sorted.iter().map(char::to_string).collect();
        let mut msg = format!("answer {} is not among the options ({})", quote(trimmed), list.join(", "));
        if trimmed.starts_with('[') {
            msg.push_str("; an MCQ answer is one option letter, not a list");
        }
        cx.error(ProblemCode::AnswerNotInOptions, Some("answer"), msg);
    } else if labels.is_empty() && !letter.is_ascii_uppercase() {
        cx.error(ProblemCode::Answer, Some("answer"), format!("MCQ answer {} is not an option letter", quote(trimmed)));
    } else if trimmed.chars().nth(1).is_some() {
        let msg = format!("MCQ answer {} is read as the letter {letter}", quote(trimmed));
        cx.warn(ProblemCode::Answer, Some("answer"), msg);
    }
}

fn check_tr(cx: &mut LineCx, answer: &str, duration: Option<f64>) {
    let spans = match rewards::parse_ground_truth_spans(answer) {
        Ok(spans) => spans,
        Err(e) => {
            // Name every reversed span ourselves; the reward only names the first.
            let reversed: Vec<TimeSpan> = serde_json::from_str::<Value>(answer)
                .ok()
                .and_then(|v| rewards::parse_spans_value(&v).ok())
                .map(|spans| spans.into_iter().filter(TimeSpan::is_reversed).collect())
                .unwrap_or_default();
            for span in &reversed {
                let msg = format!("TR answer span {} has start > end", show(span));
                cx.error(ProblemCode::SpanReversed, Some("answer"), msg);
            }
            if reversed.is_empty() {
                let msg = format!("TR answer {} cannot be scored ({}): {}", quote(answer), e.code(), e.detail());
                cx.error(ProblemCode::Answer, Some("answer"), msg);
            }
            return;
        }
    };
    if spans.is_empty() {
        cx.warn(ProblemCode::Answer, Some("answer"), "TR answer has no spans; only an empty prediction can score");
    }
    for span in &spans {
        if span.start < 0.0 {
            cx.warn(
                ProblemCode::SpanOutOfRange,
                Some("answer"),
                format!("TR answer span {} starts before 0 s", show(span)),
            );
        }
        if let Some(d) = duration.filter(|d| span.end > *d) {
            let msg = format!("TR answer span {} ends after duration_seconds {}", show(span), num(d));
            cx.warn(ProblemCode::SpanOutOfRange, Some("answer"), msg);
        }
    }
}

fn show(span: &TimeSpan) -> String {
    format!("[{}, {}]", num(span.start), num(span.end))
}

fn check_number(cx: &mut LineCx, qtype: QuestionType, answer: &str) {
    let trimmed = answer.trim();
    match rewards::extract_number(answer) {
        None => cx.error(
            ProblemCode::Answer,
            Some("answer"),
            format!("{qtype} answer {} contains no number", quote(trimmed)),
        ),
        Some(x) => {
            if trimmed.parse::<f64>().ok() != Some(x) {
                cx.warn(
                    ProblemCode::Answer,
                    Some("answer"),
                    format!(
                        "{qtype} answer {} is read as {} (the first plain decimal number in it)",
                        quote(trimmed),
                        num(x)
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_labels() {
        let cases = [
            ("A. red", Some('A')),
            ("b) blue", Some('B')),
            ("  C.green", Some('C')),
            ("D", None),
            ("(A) red", None),
            ("1. one", None),
            ("", None),
            ("É. x", None),
        ];
        for (opt, want) in cases {
            assert_eq!(option_label(opt), want, "{opt:?}");
        }
    }
}
