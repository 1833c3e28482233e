//! The error taxonomy of answer scoring: every way a prediction or a ground truth can be
//! unusable, each with the reference environment's error code (docs/reference.md#error-codes).
//!
//! Left out: the reference's free-text details for `ANSWER_JSON_PARSE` and `SPAN_FORMAT` are
//! Python exception messages, which cannot be reproduced byte for byte; ours say the same thing
//! in our own words. Only the codes are a contract.

use thiserror::Error;

/// Why an answer (or its ground truth) could not be scored. A reward is never produced for
/// these: they are invalid answers or data errors, not a score of 0.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RewardError {
    /// TR prediction is not JSON (reference: `json.loads(content)` raised).
    #[error("ANSWER_JSON_PARSE: {0}")]
    AnswerJsonParse(String),
    /// TR spans (predicted or ground truth) are not `[]`, `[s, e]` or `[[s, e], ...]` of
    /// finite numbers.
    #[error("SPAN_FORMAT: {0}")]
    SpanFormat(String),
    /// NUM/SIZE prediction contains no number (reference detail:
    /// `Cannot parse number from answer.`).
    #[error("ANSWER_NOT_STRING: {0}")]
    AnswerNotString(String),
    /// The ground truth is unusable: TR ground truth not a list (or, our deviation, a reversed
    /// span), NUM/SIZE ground truth without a number, MCQ ground truth of the wrong type.
    #[error("GT_JSON_PARSE: {0}")]
    GtJsonParse(String),
    /// The question type's prefix is not one of MCQ, TR, NUM, SIZE, FF.
    #[error("UNKNOWN_QTYPE: {0}")]
    UnknownQtype(String),
}

impl RewardError {
    /// The reference error code (`"ANSWER_JSON_PARSE"`, `"SPAN_FORMAT"`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            RewardError::AnswerJsonParse(_) => "ANSWER_JSON_PARSE",
            RewardError::SpanFormat(_) => "SPAN_FORMAT",
            RewardError::AnswerNotString(_) => "ANSWER_NOT_STRING",
            RewardError::GtJsonParse(_) => "GT_JSON_PARSE",
            RewardError::UnknownQtype(_) => "UNKNOWN_QTYPE",
        }
    }

    /// The detail text without the code prefix.
    pub fn detail(&self) -> &str {
        match self {
            RewardError::AnswerJsonParse(d)
            | RewardError::SpanFormat(d)
            | RewardError::AnswerNotString(d)
            | RewardError::GtJsonParse(d)
            | RewardError::UnknownQtype(d) => d,
        }
    }
}

/// At most `max` characters of `text` followed by `…` when cut, for error details that quote
/// untrusted input.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() { format!("{head}…") } else { head }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_reference_codes() {
        let cases = [
            (RewardError::AnswerJsonParse(String::new()), "ANSWER_JSON_PARSE"),
            (RewardError::SpanFormat(String::new()), "SPAN_FORMAT"),
            (RewardError::AnswerNotString(String::new()), "ANSWER_NOT_STRING"),
            (RewardError::GtJsonParse(String::new()), "GT_JSON_PARSE"),
            (RewardError::UnknownQtype(String::new()), "UNKNOWN_QTYPE"),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code);
            assert!(err.to_string().starts_with(code));
        }
    }

    #[test]
    fn excerpt_cuts_on_char_boundaries() {
        assert_eq!(excerpt("abc", 5), "abc");
        assert_eq!(excerpt("ééééé", 2), "éé…");
    }
}
