//! The action grammar (docs/reference.md#actions) and its parser (docs/reference.md#parsing):
//! exactly one JSON object `{"observation", "think", "confidence", "action"}` whose `action` is
//! one of `get_frames {start, end, num}`, `get_audio {start, end}`, `get_clip {start, end}` or
//! `answer {content}`.
//!
//! The parser runs the reference's checks in the reference's order, with its error codes and
//! detail texts (the episode appends the final period):
//! 1. strip whitespace (Python's definition); reject a leading or trailing code fence and a
//!    text wrapped in matching `"` or `'` -> `INVALID_JSON` "must be raw JSON without code
//!    fence or outer quotes";
//! 2. must start with `{` and end with `}`;
//! 3. `raw_decode` the first value ([`super::pyjson`], CPython's messages) -> `INVALID_JSON`
//!    "json decode error: ..."; anything but whitespace after it -> `TRAILING_GARBAGE`;
//! 4. required keys (`confidence` too with the strict switch) -> "missing keys: [...]"; then
//!    unknown keys -> "unknown keys: [...]" (sorted Python list reprs);
//! 5. `observation`/`think` strings, `confidence` (when present) a number, `action` an object;
//! 6. `action.type` known -> else `UNKNOWN_ACTION_TYPE` "unknown action.type: <str(type)>";
//! 7. per type: `get_frames` numeric `start`/`end` and integer `num` (`INVALID_JSON`),
//!    `get_clip`/`get_audio` numeric `start`/`end` (`CLIP_ARG_TYPE`/`AUDIO_ARG_TYPE`),
//!    `answer` string `content` (`ANSWER_NOT_STRING`). Extra fields in `action` are ignored.
//!
//! Python quirks (docs/reference.md#json-quirks), decided:
//! * **Booleans are not numbers.** Python's `isinstance(True, int)` lets `"num": true` fetch
//!   one frame; we reject booleans wherever a number is required (same error as a string).
//! * **NaN and infinities** decode (as in Python, so they are not `json decode error`s) but
//!   are not accepted as numbers for `start`, `end`, `num` or `confidence`: a NaN timestamp
//!   passes every range check in Python and reaches ffmpeg.
//! * **Duplicate keys**: the last value wins, as in Python.
//! * **Unhashable `action.type`** (a list or object): Python raises `TypeError` on the set
//!   lookup and the reference crashes; we answer `UNKNOWN_ACTION_TYPE`.
//! * Multi-line JSON is accepted, as in the reference (the prompt forbids it, the parser
//!   does not).
//!
//! Left out: range checks (`validate.rs`), which need the video and the limits.

use super::format::py_value_str;
use super::format::{py_str_repr, py_strip};
use super::pyjson::{PyObject, PyValue, raw_decode};
use super::validate::ErrorCode;
use std::fmt;

/// The four action kinds, with the reference's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionType {
    GetFrames,
    GetAudio,
    GetClip,
    Answer,
}

impl ActionType {
    pub const ALL: [ActionType; 4] =
        [ActionType::GetFrames, ActionType::GetAudio, ActionType::GetClip, ActionType::Answer];

    /// `get_frames`, `get_audio`, `get_clip` or `answer`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::GetFrames => "get_frames",
            ActionType::GetAudio => "get_audio",
            ActionType::GetClip => "get_clip",
            ActionType::Answer => "answer",
        }
    }

    pub fn from_name(name: &str) -> Option<ActionType> {
        ActionType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for ActionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JSON number as Python holds it: an int or a float. The difference shows in error texts
/// (`expect 4` vs `expect 4.0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    pub fn value(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// Python's `repr` of the number.
    pub fn py_repr(self) -> String {
        match self {
            Num::Int(i) => i.to_string(),
            Num::Float(f) => super::format::py_float_repr(f),
        }
    }

    /// Python's `self - other`: int minus int stays an int.
    pub fn minus(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Num::Int(a.saturating_sub(b)),
            (a, b) => Num::Float(a.value() - b.value()),
        }
    }
}

/// One parsed action. Frame bounds are `float()`-converted as in the reference; audio and
/// clip bounds keep their JSON type.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    GetFrames { start: f64, end: f64, num: i128 },
    GetAudio { start: Num, end: Num },
    GetClip { start: Num, end: Num },
    Answer { content: String },
}

impl Action {
    pub fn action_type(&self) -> ActionType {
        match self {
            Action::GetFrames { .. } => ActionType::GetFrames,
            Action::GetAudio { .. } => ActionType::GetAudio,
            Action::GetClip { .. } => ActionType::GetClip,
            Action::Answer { .. } => ActionType::Answer,
        }
    }
}

/// A response that passed the grammar.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedAction {
    pub observation: String,
    pub think: String,
    pub confidence: Option<f64>,
    pub action: Action,
}

/// Why a response is not a valid action: the specific code and the reference's detail text
/// (without the final period).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub code: ErrorCode,
    pub detail: String,
}

impl ParseError {
    fn new(code: ErrorCode, detail: impl Into<String>) -> ParseError {
        ParseError { code, detail: detail.into() }
    }

    fn json(detail: impl Into<String>) -> ParseError {
        ParseError::new(ErrorCode::InvalidJson, detail)
    }
}

const TOP_KEYS: [&str; 4] = ["action", "confidence", "observation", "think"];

/// Parses one model response (docs/reference.md#parsing). `strict_confidence` makes `confidence`
/// required.
pub fn parse_action(raw: &str, strict_confidence: bool) -> Result<ParsedAction, ParseError> {
    let s = py_strip(raw);
    let quoted = |q: char| s.starts_with(q) && s.ends_with(q);
    if s.starts_with("```") || s.ends_with("```") || quoted('"') || quoted('\'') {
        return Err(ParseError::json("must be raw JSON without code fence or outer quotes"));
    }
    if !(s.starts_with('{') && s.ends_with('}')) {
        return Err(ParseError::json("must start with '{' and end with '}'"));
    }
    let chars: Vec<char> = s.chars().collect();
    let (value, end) = raw_decode(&chars).map_err(|e| ParseError::json(format!("json decode error: {e}")))?;
    let rest: String = chars[end..].iter().collect();
    if !py_strip(&rest).is_empty() {
        return Err(ParseError::new(ErrorCode::TrailingGarbage, "extra characters after JSON"));
    }
    let PyValue::Object(obj) = value else {
        return Err(ParseError::json("must start with '{' and end with '}'"));
    };
    check_keys(&obj, strict_confidence)?;
    let observation = match obj.get("observation") {
        Some(PyValue::Str(s)) => s.clone(),
        _ => return Err(ParseError::json("'observation' must be string")),
    };
    let think = match obj.get("think") {
        Some(PyValue::Str(s)) => s.clone(),
        _ => return Err(ParseError::json("'think' must be string")),
    };
    let confidence = match obj.get("confidence") {
        None => None,
        Some(v) => match finite_number(v) {
            Some(c) => Some(c.value()),
            None => return Err(ParseError::json("'confidence' must be a numeric value")),
        },
    };
    let Some(PyValue::Object(act)) = obj.get("action") else {
        return Err(ParseError::json("'action' not object"));
    };
    let action = parse_action_object(act)?;
    Ok(ParsedAction { observation, think, confidence, action })
}

fn check_keys(obj: &PyObject, strict_confidence: bool) -> Result<(), ParseError> {
    let required: &[&str] = if strict_confidence {
        &["action", "confidence", "observation", "think"]
    } else {
        &["action", "observation", "think"]
    };
    let missing: Vec<&str> = required.iter().copied().filter(|k| !obj.contains(k)).collect();
    if !missing.is_empty() {
        return Err(ParseError::json(format!("missing keys: {}", py_list(missing))));
    }
    let mut unknown: Vec<&str> = obj.keys().filter(|k| !TOP_KEYS.contains(k)).collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return Err(ParseError::json(format!("unknown keys: {}", py_list(unknown))));
    }
    Ok(())
}

/// Python's repr of a list of strings: `['a', 'b']`.
fn py_list(items: Vec<&str>) -> String {
    let inner: Vec<String> = items.into_iter().map(py_str_repr).collect();
    format!("[{}]", inner.join(", "))
}

/// An int or a finite float; booleans and non-finite values are not numbers here.
fn finite_number(v: &PyValue) -> Option<Num> {
    match v {
        PyValue::Int(i) => Some(Num::Int(*i)),
        PyValue::Float(f) if f.is_finite() => Some(Num::Float(*f)),
        _ => None,
    }
}

fn parse_action_object(act: &PyObject) -> Result<Action, ParseError> {
    let atype = match act.get("type") {
        Some(PyValue::Str(name)) => ActionType::from_name(name),
        _ => None,
    };
    let Some(atype) = atype else {
        let shown = act.get("type").map_or_else(|| "None".to_string(), py_value_str);
        return Err(ParseError::new(ErrorCode::UnknownActionType, format!("unknown action.type: {shown}")));
    };
    let field = |name: &str| act.get(name).and_then(finite_number);
    match atype {
        ActionType::GetFrames => {
            let mut bounds = [0.0; 2];
            for (slot, name) in bounds.iter_mut().zip(["start", "end"]) {
                *slot = field(name)
                    .ok_or_else(|| ParseError::json(format!("get_frames requires numeric '{name}'")))?
                    .value();
            }
            let num = match act.get("num") {
                Some(PyValue::Int(n)) => *n,
                _ => return Err(ParseError::json("get_frames requires integer 'num'")),
            };
            Ok(Action::GetFrames { start: bounds[0], end: bounds[1], num })
        }
        ActionType::GetAudio | ActionType::GetClip => {
            let code = if atype == ActionType::GetClip { ErrorCode::ClipArgType } else { ErrorCode::AudioArgType };
            let get = |name: &str| {
                field(name).ok_or_else(|| ParseError::new(code, format!("'{name}' missing or not number")))
            };
            let (start, end) = (get("start")?, get("end")?);
            Ok(if atype == ActionType::GetClip {
                Action::GetClip { start, end }
            } else {
                Action::GetAudio { start, end }
            })
        }
        ActionType::Answer => match act.get("content") {
            Some(PyValue::Str(content)) => Ok(Action::Answer { content: content.clone() }),
            _ => Err(ParseError::new(ErrorCode::AnswerNotString, "'content' missing or not string")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(raw: &str, strict: bool) -> (&'static str, String) {
        let e = parse_action(raw, strict).unwrap_err();
        (e.code.as_str(), e.detail)
    }

    const OK_FRAMES: &str = r#"{"observation": "o", "think": "t", "confidence": 0.5, "action": {"type": "get_frames", "start": 0, "end": 10.5, "num": 4}}"#;

    #[test]
    fn parses_each_action_kind() {
        let p = parse_action(OK_FRAMES, true).unwrap();
        assert_eq!(p.action, Action::GetFrames { start: 0.0, end: 10.5, num: 4 });
        assert_eq!(p.confidence, Some(0.5));
        let a =
            parse_action(r#"{"observation":"","think":"","action":{"type":"get_audio","start":1,"end":2.5}}"#, false);
        assert_eq!(a.unwrap().action, Action::GetAudio { start: Num::Int(1), end: Num::Float(2.5) });
        let c = r#"  {"observation":"","think":"","confidence":1,"action":{"type":"get_clip","start":1.0,"end":3,"num":9,"content":"x"}}  "#;
        assert_eq!(parse_action(c, true).unwrap().action, Action::GetClip { start: Num::Float(1.0), end: Num::Int(3) });
        let ans = "{\"observation\":\"\",\n\"think\":\"\",\"confidence\":0.9,\"action\":{\"type\":\"answer\",\"content\":\"B\"}}";
        assert_eq!(parse_action(ans, true).unwrap().action, Action::Answer { content: "B".into() });
    }

    #[test]
    fn grammar_errors_in_reference_order() {
        // (response, strict, expected code, expected detail) — details from video_env.py.
        let cases: &[(&str, bool, &str, &str)] = &[
            ("```json\n{}\n```", false, "INVALID_JSON", "must be raw JSON without code fence or outer quotes"),
            ("{\"a\": 1}```", false, "INVALID_JSON", "must be raw JSON without code fence or outer quotes"),
            ("'{}'", false, "INVALID_JSON", "must be raw JSON without code fence or outer quotes"),
            ("\"", false, "INVALID_JSON", "must be raw JSON without code fence or outer quotes"),
            ("", false, "INVALID_JSON", "must start with '{' and end with '}'"),
            ("Sure! {\"a\": 1}", false, "INVALID_JSON", "must start with '{' and end with '}'"),
            (
                "{\"a\" 1}",
                false,
                "INVALID_JSON",
                "json decode error: Expecting ':' delimiter: line 1 column 6 (char 5)",
            ),
            ("{\"a\": 1} {\"b\": 2}", false, "TRAILING_GARBAGE", "extra characters after JSON"),
            ("{}", false, "INVALID_JSON", "missing keys: ['action', 'observation', 'think']"),
            (
                "{\"observation\":\"\",\"think\":\"\",\"action\":{}}",
                true,
                "INVALID_JSON",
                "missing keys: ['confidence']",
            ),
            (
                "{\"observation\":\"\",\"think\":\"\",\"action\":{},\"zeta\":1,\"it's\":2}",
                false,
                "INVALID_JSON",
                "unknown keys: [\"it's\", 'zeta']",
            ),
            ("{\"observation\":1,\"think\":\"\",\"action\":{}}", false, "INVALID_JSON", "'observation' must be string"),
            ("{\"observation\":\"\",\"think\":null,\"action\":{}}", false, "INVALID_JSON", "'think' must be string"),
            (
                "{\"observation\":\"\",\"think\":\"\",\"confidence\":\"high\",\"action\":{}}",
                false,
                "INVALID_JSON",
                "'confidence' must be a numeric value",
            ),
            ("{\"observation\":\"\",\"think\":\"\",\"action\":[]}", false, "INVALID_JSON", "'action' not object"),
            (
                "{\"observation\":\"\",\"think\":\"\",\"action\":{}}",
                false,
                "UNKNOWN_ACTION_TYPE",
                "unknown action.type: None",
            ),
            (
                "{\"observation\":\"\",\"think\":\"\",\"action\":{\"type\":\"zoom\"}}",
                false,
                "UNKNOWN_ACTION_TYPE",
                "unknown action.type: zoom",
            ),
            (
                "{\"observation\":\"\",\"think\":\"\",\"action\":{\"type\":[\"answer\"]}}",
                false,
                "UNKNOWN_ACTION_TYPE",
                "unknown action.type: ['answer']",
            ),
            (
                "{\"observation\":\"\",\"think\":\"\",\"action\":{\"type\":\"get_frames\",\"start\":\"0\",\"end\":1,\"num\":2}}",
                false,
                "INVALID_JSON",
                "get_frames requires numeric 'start'",
            ),
            (
                "{\"observation\":\"\",\"think\":\"\",\"action\":{\"type\":\"get_frames\",\"start\":0,\"num\":2}}",
                false,
                "INVALID_JSON",
                "get_frames requires numeric 'end'",
            ),
            (
                "{\"observation\":\"\",\"think\":\"\",\"action\":{\"type\":\"get_frames\",\"start\":0,\"end\":1,\"num\":5.0}}",
                false,
                "INVALID_JSON",
                "get_frames requires integer 'num'",
            ),
            (
                "{\"observation\":\"\",\"think\":\"\",\"action\":{\"type\":\"get_clip\",\"start\":0}}",
                false,
                "CLIP_ARG_TYPE",
                "'end' missing or not number",
            ),
            (
                "{\"observation\":\"\",\"think\":\"\",\"action\":{\"type\":\"get_audio\",\"start\":null,\"end\":1}}",
                false,
                "AUDIO_ARG_TYPE",
                "'start' missing or not number",
            ),
            (
                "{\"observation\":\"\",\"think\":\"\",\"action\":{\"type\":\"answer\",\"content\":3}}",
                false,
                "ANSWER_NOT_STRING",
                "'content' missing or not string",
            ),
        ];
        for &(raw, strict, code, detail) in cases {
            assert_eq!(err(raw, strict), (code, detail.to_string()), "{raw}");
        }
    }

    #[test]
    fn python_quirks_as_decided() {
        let frames = |num: &str, start: &str| {
            format!(
                "{{\"observation\":\"\",\"think\":\"\",\"action\":{{\"type\":\"get_frames\",\"start\":{start},\"end\":1,\"num\":{num}}}}}"
            )
        };
        // Booleans are not numbers (Python would accept both).
        assert_eq!(err(&frames("true", "0"), false).1, "get_frames requires integer 'num'");
        assert_eq!(err(&frames("2", "false"), false).1, "get_frames requires numeric 'start'");
        // NaN decodes but is not a usable number.
        assert_eq!(err(&frames("2", "NaN"), false).1, "get_frames requires numeric 'start'");
        let conf = "{\"observation\":\"\",\"think\":\"\",\"confidence\":Infinity,\"action\":{\"type\":\"answer\",\"content\":\"A\"}}";
        assert_eq!(err(conf, false).1, "'confidence' must be a numeric value");
        // Duplicate keys: the last wins.
        let dup = "{\"observation\":\"\",\"think\":\"\",\"action\":{\"type\":\"zoom\"},\"action\":{\"type\":\"answer\",\"content\":\"A\"}}";
        assert_eq!(parse_action(dup, false).unwrap().action, Action::Answer { content: "A".into() });
        // Python whitespace is stripped, including U+001C..U+001F.
        let padded = format!("\u{1f}\u{a0}{OK_FRAMES}\n\u{3000}");
        assert!(parse_action(&padded, true).is_ok());
    }

    #[test]
    fn num_arithmetic_keeps_python_types() {
        assert_eq!(Num::Int(5).minus(Num::Int(1)).py_repr(), "4");
        assert_eq!(Num::Float(5.0).minus(Num::Int(1)).py_repr(), "4.0");
        assert_eq!(Num::Float(0.3).minus(Num::Float(0.1)).py_repr(), "0.19999999999999998");
    }
}
