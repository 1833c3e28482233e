//! Typed access to the fields of one parsed data line, recording every problem it meets.
//!
//! serde's derived deserializers stop at the first error and do not name the field in a form
//! we can report (`invalid type: string "92.2", expected f64 at line 1 column 57`). The data
//! checker wants all problems of a line with the field path (`raw_input[3].content[1].image`)
//! and a message saying what was expected and what was found, so records are built from a
//! parsed `serde_json::Value` through the `take_*` helpers here, which remove the field from
//! the object (what remains is kept as the record's extra fields) and record an [`Issue`] for
//! a missing or mistyped value.
//!
//! Left out: numbers given as strings (`"30.0"`) or booleans given as numbers are not coerced.
//! The reference would either crash on them or, worse, silently misread them (Python treats
//! the string `"False"` as true), so they are reported as wrong types instead. The one
//! documented exception, SFT `done` stored as a string, is handled by the SFT schema.

use serde::Serialize;
use serde_json::{Map, Value};

/// How bad a problem is: errors make `omnirl validate` fail, warnings are only printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A machine-readable class for each problem, stable across message wording changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    /// The file cannot be read.
    Io,
    /// The file holds no data lines.
    Empty,
    /// The line is not valid JSON (or starts with a byte-order mark).
    Json,
    /// The line is valid JSON but not an object.
    NotObject,
    /// A required field is absent.
    MissingField,
    /// A field holds a value of the wrong JSON type.
    WrongType,
    /// A field has the right type but an unusable value (fps 0, step 0, empty output, ...).
    BadValue,
    /// The question type's prefix is not MCQ, TR, NUM, SIZE or FF.
    QuestionType,
    /// The ground-truth answer cannot be scored (no number, no spans, empty).
    Answer,
    /// The MCQ ground-truth letter is not one of the option labels.
    AnswerNotInOptions,
    /// An MCQ option does not start with a letter label such as `A.`.
    OptionLabel,
    /// A TR ground-truth span has start > end.
    SpanReversed,
    /// A TR ground-truth span lies (partly) outside `[0, duration_seconds]`.
    SpanOutOfRange,
    /// A referenced media file does not exist.
    MediaMissing,
    /// A referenced media path exists but is not a usable file (directory, unreadable, empty).
    Media,
    /// Two lines describe the same thing (SFT: the same trajectory step twice).
    Duplicate,
    /// The file looks like another data format than the one it is checked as.
    FormatMismatch,
}

impl ProblemCode {
    /// The snake_case name used in JSON reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemCode::Io => "io",
            ProblemCode::Empty => "empty",
            ProblemCode::Json => "json",
            ProblemCode::NotObject => "not_object",
            ProblemCode::MissingField => "missing_field",
            ProblemCode::WrongType => "wrong_type",
            ProblemCode::BadValue => "bad_value",
            ProblemCode::QuestionType => "question_type",
            ProblemCode::Answer => "answer",
            ProblemCode::AnswerNotInOptions => "answer_not_in_options",
            ProblemCode::OptionLabel => "option_label",
            ProblemCode::SpanReversed => "span_reversed",
            ProblemCode::SpanOutOfRange => "span_out_of_range",
            ProblemCode::MediaMissing => "media_missing",
            ProblemCode::Media => "media",
            ProblemCode::Duplicate => "duplicate",
            ProblemCode::FormatMismatch => "format_mismatch",
        }
    }
}

/// One problem of one line, before the file and line number are attached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Issue {
    pub severity: Severity,
    pub code: ProblemCode,
    /// Field path inside the line (`answer`, `options[2]`, `raw_input[3].content[1].image`).
    pub field: Option<String>,
    pub message: String,
}

/// The kind of a referenced media file, named after the JSON key that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Video,
    Image,
    Audio,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Video => "video",
            MediaKind::Image => "image",
            MediaKind::Audio => "audio",
        }
    }
}

/// A media path as written in a line, with the field that holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRef {
    pub kind: MediaKind,
    pub path: String,
    pub field: String,
}

/// Whether a field must be present. Optional fields treat `null` like absence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Required,
    Optional,
}

/// Collects the issues and media references of one line while its record is built.
#[derive(Debug, Default)]
pub struct LineCx {
    pub(crate) issues: Vec<Issue>,
    pub(crate) media: Vec<MediaRef>,
}

impl LineCx {
    pub(crate) fn new() -> Self {
        LineCx::default()
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.issues.iter().any(|i| i.severity == Severity::Error)
    }

    pub(crate) fn push(&mut self, severity: Severity, code: ProblemCode, field: Option<&str>, message: String) {
        self.issues.push(Issue { severity, code, field: field.map(str::to_string), message });
    }

    pub(crate) fn error(&mut self, code: ProblemCode, field: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Error, code, field, message.into());
    }

    pub(crate) fn warn(&mut self, code: ProblemCode, field: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Warning, code, field, message.into());
    }

    /// Records a media path to be checked once per file (see `paths.rs`).
    pub(crate) fn media(&mut self, kind: MediaKind, path: &str, field: String) {
        self.media.push(MediaRef { kind, path: path.to_string(), field });
    }

    pub(crate) fn wrong_type(&mut self, field: &str, expected: &str, found: &Value) {
        self.error(ProblemCode::WrongType, Some(field), format!("expected {expected}, found {}", describe(found)));
    }

    /// Removes `key` from `obj`. A missing (or, for optional fields, null) value gives `None`,
    /// with a `MissingField` error when the field is required.
    pub(crate) fn take(&mut self, obj: &mut Map<String, Value>, key: &str, need: Need) -> Option<Value> {
        match (obj.remove(key), need) {
            (None, Need::Required) => {
                self.error(ProblemCode::MissingField, Some(key), "required field is missing");
                None
            }
            (None, Need::Optional) | (Some(Value::Null), Need::Optional) => None,
            (Some(v), _) => Some(v),
        }
    }

    pub(crate) fn take_str(&mut self, obj: &mut Map<String, Value>, key: &str, need: Need) -> Option<String> {
        match self.take(obj, key, need)? {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(key, "a string", &other);
                None
            }
        }
    }

    /// A JSON number (integer or float). Booleans and numeric strings are wrong types.
    pub(crate) fn take_f64(&mut self, obj: &mut Map<String, Value>, key: &str, need: Need) -> Option<f64> {
        let v = self.take(obj, key, need)?;
        self.as_f64(key, &v)
    }

    pub(crate) fn as_f64(&mut self, field: &str, v: &Value) -> Option<f64> {
        match v.as_f64() {
            Some(x) => Some(x),
            None => {
                self.wrong_type(field, "a number", v);
                None
            }
        }
    }

    pub(crate) fn take_bool(&mut self, obj: &mut Map<String, Value>, key: &str, need: Need) -> Option<bool> {
        match self.take(obj, key, need)? {
            Value::Bool(b) => Some(b),
            other => {
                self.wrong_type(key, "a boolean (true or false)", &other);
                None
            }
        }
    }

    pub(crate) fn take_object(
        &mut self,
        obj: &mut Map<String, Value>,
        key: &str,
        need: Need,
    ) -> Option<Map<String, Value>> {
        match self.take(obj, key, need)? {
            Value::Object(m) => Some(m),
            other => {
                self.wrong_type(key, "an object", &other);
                None
            }
        }
    }

    /// A list of strings; absent or null gives an empty list (for optional fields). Every
    /// non-string element is reported at `key[i]`.
    pub(crate) fn take_str_list(&mut self, obj: &mut Map<String, Value>, key: &str, need: Need) -> Option<Vec<String>> {
        let items = match self.take(obj, key, need) {
            None => {
                return if need == Need::Optional { Some(Vec::new()) } else { None };
            }
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.wrong_type(key, "a list of strings", &other);
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Value::String(s) => out.push(s),
                other => {
                    self.wrong_type(&format!("{key}[{i}]"), "a string", &other);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

/// Names a JSON value for an error message: `string "92.2"`, `number 3`, `null`, `a list of 2
/// items`. Long strings are cut so a message stays one readable line.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {}", quote(s)),
        Value::Array(a) => match a.len() {
            0 => "an empty list".to_string(),
            1 => "a list of 1 item".to_string(),
            n => format!("a list of {n} items"),
        },
        Value::Object(m) if m.is_empty() => "an empty object".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// `text` in double quotes with Rust/JSON-style escapes, cut to 60 characters.
pub fn quote(text: &str) -> String {
    const MAX: usize = 60;
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(MAX).collect();
    if chars.next().is_some() { format!("{head:?}…") } else { format!("{head:?}") }
}

/// Formats a float the way Python's `repr` does for ordinary values (`40.0`, `12.5`), which
/// is also how the spans appear in the data.
pub fn num(x: f64) -> String {
    format!("{x:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describe_names_types_and_values() {
        let cases = [
            (json!(null), "null"),
            (json!(true), "boolean true"),
            (json!(3), "number 3"),
            (json!(92.2), "number 92.2"),
            (json!("92.2"), "string \"92.2\""),
            (json!([]), "an empty list"),
            (json!(["a"]), "a list of 1 item"),
            (json!([1, 2]), "a list of 2 items"),
            (json!({}), "an empty object"),
            (json!({"a": 1}), "an object"),
        ];
        for (v, want) in cases {
            assert_eq!(describe(&v), want);
        }
    }

    #[test]
    fn quote_cuts_long_text_on_char_boundaries() {
        let long = "é".repeat(100);
        let q = quote(&long);
        assert!(q.ends_with("\"…"));
        assert_eq!(q.chars().filter(|&c| c == 'é').count(), 60);
    }

    #[test]
    fn take_reports_missing_wrong_and_null() {
        let mut obj = json!({"a": "x", "b": null, "c": "1.5", "d": 2}).as_object().cloned().unwrap();
        let mut cx = LineCx::new();
        assert_eq!(cx.take_str(&mut obj, "a", Need::Required), Some("x".to_string()));
        assert_eq!(cx.take_str(&mut obj, "b", Need::Optional), None);
        assert_eq!(cx.take_f64(&mut obj, "c", Need::Required), None);
        assert_eq!(cx.take_f64(&mut obj, "d", Need::Required), Some(2.0));
        assert_eq!(cx.take_bool(&mut obj, "e", Need::Required), None);
        let got: Vec<(ProblemCode, Option<&str>, &str)> =
            cx.issues.iter().map(|i| (i.code, i.field.as_deref(), i.message.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (ProblemCode::WrongType, Some("c"), "expected a number, found string \"1.5\""),
                (ProblemCode::MissingField, Some("e"), "required field is missing"),
            ]
        );
        assert!(obj.is_empty());
    }
}
