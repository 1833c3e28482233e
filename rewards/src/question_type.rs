//! Question types and their normalisation from the dataset's raw labels
//! (`MCQ_LongVR-Short` -> `MCQ`, `SIZE_VSI` -> `SIZE`), as the reference does it:
//! `raw.split('_', 1)[0].upper()`.
//!
//! Left out: nothing; the reference keeps no other information in the suffix (it is only a
//! data-source tag used for evaluation breakdowns).

use crate::error::{RewardError, excerpt};
use serde::{Serialize, Serializer};

/// The five answer formats the environment scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuestionType {
    /// Multiple choice: one option letter.
    Mcq,
    /// Temporal retrieval: one or more `[start, end]` spans in seconds.
    Tr,
    /// Exact numeric answer (compared after rounding to 2 decimals).
    Num,
    /// Numeric answer scored with mean relative accuracy.
    Size,
    /// Free-form text, scored by an optional LLM judge.
    Ff,
}

impl QuestionType {
    /// Every question type, in a fixed order.
    pub const ALL: [QuestionType; 5] =
        [QuestionType::Mcq, QuestionType::Tr, QuestionType::Num, QuestionType::Size, QuestionType::Ff];

    /// Normalises a raw label as the reference does: the part before the first `_`,
    /// upper-cased. `"MCQ_LongVR-Short"` -> `Mcq`, `"SIZE_VSI"` -> `Size`, `"tr"` -> `Tr`.
    /// Anything else is `UNKNOWN_QTYPE`.
    pub fn from_raw(raw: &str) -> Result<QuestionType, RewardError> {
        let prefix = raw.split('_').next().unwrap_or(raw);
        // Python's str.upper() and Rust's to_uppercase() both apply the full Unicode mapping;
        // only ASCII labels can match, so compare ASCII-case-insensitively without allocating.
        let known = [
            ("MCQ", QuestionType::Mcq),
            ("TR", QuestionType::Tr),
            ("NUM", QuestionType::Num),
            ("SIZE", QuestionType::Size),
            ("FF", QuestionType::Ff),
        ];
        for (name, qt) in known {
            if prefix.eq_ignore_ascii_case(name) {
                return Ok(qt);
            }
        }
        // Non-ASCII letters whose upper case is ASCII (e.g. U+0131 dotless i -> I) would match
        // in Python; check the full mapping before giving up.
        if !prefix.is_ascii() {
            let upper = prefix.to_uppercase();
            for (name, qt) in known {
                if upper == name {
                    return Ok(qt);
                }
            }
        }
        Err(RewardError::UnknownQtype(format!(
            "unknown question type {:?} (expected MCQ, TR, NUM, SIZE or FF, optionally with a _suffix)",
            excerpt(raw, 64)
        )))
    }

    /// The canonical upper-case name: `"MCQ"`, `"TR"`, `"NUM"`, `"SIZE"` or `"FF"`.
    pub fn as_str(self) -> &'static str {
        match self {
            QuestionType::Mcq => "MCQ",
            QuestionType::Tr => "TR",
            QuestionType::Num => "NUM",
            QuestionType::Size => "SIZE",
            QuestionType::Ff => "FF",
        }
    }
}

impl std::fmt::Display for QuestionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for QuestionType {
    type Err = RewardError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QuestionType::from_raw(s)
    }
}

impl Serialize for QuestionType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_the_reference() {
        // Expected values: Python `raw.split('_', 1)[0].upper()` worked by hand.
        let cases = [
            ("MCQ", QuestionType::Mcq),
            ("MCQ_LongVR-Short", QuestionType::Mcq),
            ("MCQ_Holmes", QuestionType::Mcq),
            ("TR_LongVALE-Short", QuestionType::Tr),
            ("TR_MultiHop", QuestionType::Tr),
            ("SIZE_VSI", QuestionType::Size),
            ("NUM", QuestionType::Num),
            ("ff", QuestionType::Ff),
            ("Num_x_y", QuestionType::Num),
            ("TR_", QuestionType::Tr),
        ];
        for (raw, want) in cases {
            assert_eq!(QuestionType::from_raw(raw).unwrap(), want, "{raw}");
        }
    }

    #[test]
    fn unknown_labels_are_errors() {
        // " MCQ" keeps its space in the reference (no strip), so it is unknown there too.
        for raw in ["", "_MCQ", "MCQX", " MCQ", "MC Q", "SIZE-VSI", "OPEN"] {
            let err = QuestionType::from_raw(raw).unwrap_err();
            assert_eq!(err.code(), "UNKNOWN_QTYPE", "{raw:?}");
        }
    }

    #[test]
    fn serialises_as_the_canonical_name() {
        for qt in QuestionType::ALL {
            assert_eq!(serde_json::to_string(&qt).unwrap(), format!("\"{}\"", qt.as_str()));
            assert_eq!(QuestionType::from_raw(qt.as_str()).unwrap(), qt);
        }
    }
}
