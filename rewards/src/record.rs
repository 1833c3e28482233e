//! One line of an `omnirl score` input file: `{"question_type", "prediction", "answer", ...}`
//! read with its fields in their original order, scored, and written back with `"reward"` and
//! `"error"` appended.
//!
//! Fields are kept as their raw JSON text (`serde_json::value::RawValue`), so the output line
//! carries every input field, in input order and byte for byte, without turning on
//! `serde_json`'s workspace-wide `preserve_order` feature. Existing `"reward"`/`"error"` fields
//! are replaced.
//!
//! Left out: the FF judge call itself (the caller batches FF lines, see [`Record::judge_input`]);
//! here FF scores as [`crate::score_value`] does without a judge.

use crate::{QuestionType, RewardError, Score};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Error code of a line that is not a JSON object or lacks a required field.
pub const INVALID_INPUT_LINE: &str = "INVALID_INPUT_LINE";

/// A parsed input line.
#[derive(Debug)]
pub struct Record<'a> {
    entries: Vec<(Key<'a>, &'a RawValue)>,
}

#[derive(Debug)]
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct Entries<'a>(Vec<(Key<'a>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(MapVisitor)
    }
}

/// What the judge needs from an FF line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeInput {
    pub question: String,
    pub ground_truth: String,
    pub prediction: String,
}

impl<'a> Record<'a> {
    /// Parses one line (surrounding whitespace allowed). Fails with a reason when the line is
    /// not a single JSON object.
    pub fn parse(line: &'a str) -> Result<Record<'a>, String> {
        let entries: Entries<'a> = serde_json::from_str(line).map_err(|e| {
            if line.trim().is_empty() { "empty line".to_owned() } else { format!("not a JSON object: {e}") }
        })?;
        Ok(Record { entries: entries.0 })
    }

    /// The raw JSON text of a field (the last one when a key repeats, as Python's json does).
    pub fn raw(&self, key: &str) -> Option<&'a str> {
        self.entries.iter().rev().find(|(k, _)| k.0 == key).map(|(_, v)| v.get())
    }

    /// The first of `question_type`, `prediction`, `answer` that is missing.
    pub fn missing_field(&self) -> Option<&'static str> {
        ["question_type", "prediction", "answer"].into_iter().find(|k| self.raw(k).is_none())
    }

    /// The normalised question type: `UNKNOWN_QTYPE` when absent, not a string or unknown.
    pub fn question_type(&self) -> Result<QuestionType, RewardError> {
        match self.string_field("question_type") {
            Some(raw) => QuestionType::from_raw(&raw),
            None => Err(RewardError::UnknownQtype("question_type must be a string".to_owned())),
        }
    }

    fn string_field(&self, key: &str) -> Option<Cow<'a, str>> {
        let raw = self.raw(key)?;
        // Borrow when the string has no escapes; otherwise decode.
        let inner = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"'))?;
        if !inner.contains('\\') {
            return Some(Cow::Borrowed(inner));
        }
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    }

    /// The prediction text: `ANSWER_NOT_STRING` when absent or not a string (the reference's
    /// code for an answer action whose content is not a string).
    pub fn prediction(&self) -> Result<Cow<'a, str>, RewardError> {
        self.string_field("prediction")
            .ok_or_else(|| RewardError::AnswerNotString("'prediction' missing or not a string".to_owned()))
    }

    /// The ground truth as a JSON value (`null` when absent).
    pub fn answer(&self) -> Value {
        self.raw("answer").and_then(|r| serde_json::from_str(r).ok()).unwrap_or(Value::Null)
    }

    /// Scores the line without a judge (FF scores 0.0; see [`crate::score_value`]).
    pub fn score(&self) -> Result<Score, RewardError> {
        let qt = self.question_type()?;
        let prediction = self.prediction()?;
        // The usual string ground truth is borrowed from the line (same result, no Value).
        match self.string_field("answer") {
            Some(answer) => crate::score(qt, &prediction, &answer),
            None => crate::score_value(qt, &prediction, &self.answer()),
        }
    }

    /// For an FF line with a usable ground truth and prediction: what the judge needs.
    pub fn judge_input(&self) -> Result<JudgeInput, RewardError> {
        let prediction = self.prediction()?;
        let answer = self.answer();
        let ground_truth = crate::free_form_ground_truth(&answer)?.to_owned();
        let question = self.string_field("question").map(Cow::into_owned).unwrap_or_default();
        Ok(JudgeInput { question, ground_truth, prediction: prediction.into_owned() })
    }

    /// The output line: every input field except `reward`/`error`, in input order and as
    /// written, then `"reward"` (number or null) and `"error"` (code or null). No newline.
    pub fn output_line(&self, reward: Option<f64>, error: Option<&str>) -> String {
        let mut out = String::with_capacity(self.fields_len() + 48);
        out.push('{');
        self.push_fields(&mut out, &["reward", "error"]);
        push_tail(&mut out, reward, error);
        out
    }

    /// Every input field except those named in `skip`, in input order and as written, then
    /// `tail`: already-encoded, comma-separated `"key":value` pairs (non-empty). No newline.
    /// For commands that append their own keys (`omnirl advantage`).
    pub fn output_line_with(&self, skip: &[&str], tail: &str) -> String {
        let mut out = String::with_capacity(self.fields_len() + tail.len() + 2);
        out.push('{');
        self.push_fields(&mut out, skip);
        out.push_str(tail);
        out.push('}');
        out
    }

    fn fields_len(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.0.len() + v.get().len() + 4).sum::<usize>()
    }

    /// `"key":value,` for every field not in `skip`.
    fn push_fields(&self, out: &mut String, skip: &[&str]) {
        for (key, value) in &self.entries {
            if skip.contains(&key.0.as_ref()) {
                continue;
            }
            match &key.0 {
                // A key borrowed from the input has no escapes, so it can be quoted as it is.
                Cow::Borrowed(k) => {
                    out.push('"');
                    out.push_str(k);
                    out.push('"');
                }
                Cow::Owned(k) => out.push_str(&Value::String(k.clone()).to_string()),
            }
            out.push(':');
            out.push_str(value.get());
            out.push(',');
        }
    }
}

fn push_tail(out: &mut String, reward: Option<f64>, error: Option<&str>) {
    out.push_str("\"reward\":");
    match reward.filter(|r| r.is_finite()) {
        Some(r) => {
            let _ = write!(out, "{}", Value::from(r));
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"error\":");
    match error {
        Some(code) => out.push_str(&Value::String(code.to_owned()).to_string()),
        None => out.push_str("null"),
    }
    out.push('}');
}

/// The output line for an input line that is not a JSON object:
/// `{"line":N,"reward":null,"error":"INVALID_INPUT_LINE"}`.
pub fn invalid_line_output(line_number: u64) -> String {
    let mut out = format!("{{\"line\":{line_number},");
    push_tail(&mut out, None, Some(INVALID_INPUT_LINE));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_fields_in_order_and_appends_reward() {
        let line = r#" {"video": "v.mp4", "question_type": "MCQ_Holmes", "prediction": "b", "answer": "B", "options": ["A. x", "B. y"], "extra_info": {"z": 1, "a": [1, 2]}}"#;
        let rec = Record::parse(line).unwrap();
        assert_eq!(rec.missing_field(), None);
        let s = rec.score().unwrap();
        assert_eq!(s.reward, 1.0);
        assert_eq!(
            rec.output_line(Some(s.reward), None),
            r#"{"video":"v.mp4","question_type":"MCQ_Holmes","prediction":"b","answer":"B","options":["A. x", "B. y"],"extra_info":{"z": 1, "a": [1, 2]},"reward":1.0,"error":null}"#
        );
    }

    #[test]
    fn replaces_existing_reward_and_error_and_escapes_keys() {
        let rec = Record::parse(r#"{"reward": 5, "a\"b": 1, "error": "x", "question_type": "TR", "prediction": "[1,2]", "answer": "[[0, 4]]"}"#).unwrap();
        let s = rec.score().unwrap();
        assert_eq!(s.reward, 0.25); // inter 1, union 1 + 4 - 1 = 4
        let out = rec.output_line(Some(s.reward), None);
        assert_eq!(
            out,
            r#"{"a\"b":1,"question_type":"TR","prediction":"[1,2]","answer":"[[0, 4]]","reward":0.25,"error":null}"#
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["a\"b"], 1);
    }

    #[test]
    fn field_problems() {
        assert!(Record::parse("[1, 2]").is_err());
        assert!(Record::parse("{\"a\": 1").is_err());
        assert_eq!(Record::parse("   ").unwrap_err(), "empty line");
        let rec = Record::parse(r#"{"question_type": "NUM", "answer": "3"}"#).unwrap();
        assert_eq!(rec.missing_field(), Some("prediction"));
        let rec = Record::parse(r#"{"question_type": "NUM", "prediction": 3, "answer": "3"}"#).unwrap();
        assert_eq!(rec.score().unwrap_err().code(), "ANSWER_NOT_STRING");
        let rec = Record::parse(r#"{"question_type": 7, "prediction": "3", "answer": "3"}"#).unwrap();
        assert_eq!(rec.score().unwrap_err().code(), "UNKNOWN_QTYPE");
        let rec = Record::parse(r#"{"question_type": "NUM", "prediction": "3", "answer": 3}"#).unwrap();
        assert_eq!(rec.score().unwrap().reward, 1.0);
        let rec = Record::parse(r#"{"question_type": "MCQ", "prediction": "\u0042", "answer": ["B"]}"#).unwrap();
        assert_eq!(rec.score().unwrap().reward, 1.0);
        let rec =
            Record::parse(r#"{"question_type": "FF", "question": "Q\n?", "prediction": " red ", "answer": ["Red."]}"#)
                .unwrap();
        assert_eq!(
            rec.judge_input().unwrap(),
            JudgeInput { question: "Q\n?".into(), ground_truth: "Red.".into(), prediction: " red ".into() }
        );
        assert_eq!(rec.score().unwrap().reward, 0.0);
    }

    #[test]
    fn invalid_line_shape() {
        assert_eq!(invalid_line_output(7), r#"{"line":7,"reward":null,"error":"INVALID_INPUT_LINE"}"#);
    }
}
