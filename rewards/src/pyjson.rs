//! The one JSON decoder with the behaviour of CPython's (the C scanner of Python 3.11, which
//! the reference runs), for the environment and the rewards alike. [`raw_decode`] decodes the
//! first value of a text and says where it ended, so the environment can tell trailing garbage
//! from a decode error; [`loads`] decodes a whole document (TR answers and ground truths). Error
//! messages are CPython's (`Expecting ',' delimiter: line 1 column 40 (char 39)`), because the
//! reference shows them to the model in `[ERROR] INVALID_JSON: json decode error: ...` and the
//! checkpoints were trained on them. It differs from `serde_json` exactly where the reference's
//! outcomes depend on it: e.g. a TR answer `[[0, NaN]]` is JSON (then `SPAN_FORMAT`), not
//! `ANSWER_JSON_PARSE`. Python's `repr` of a decoded value is `rollout::episode::format`'s.
//!
//! Positions count code points, as Python's do. Python quirks kept: `NaN`, `Infinity` and
//! `-Infinity` are numbers; `1e400` overflows to infinity; duplicate keys keep the first
//! key's position and the last value; `1.` and `01` end the number early (so the rest is
//! garbage); control characters inside strings are errors (strict mode).
//!
//! Deviations, each because Python's behaviour cannot be represented or crashes:
//! * integers are kept as `i128`, saturating beyond 38 digits (Python ints are unbounded);
//! * a lone UTF-16 surrogate escape (`"\ud800"`) decodes to U+FFFD (a Rust string cannot
//!   hold it; Python keeps it and fails later when the text is encoded);
//! * nesting deeper than [`MAX_DEPTH`] is a decode error (`Maximum nesting depth exceeded`)
//!   where CPython raises `RecursionError`, which the reference does not catch.
//!
//! Left out: encoding (nothing writes JSON that the model or the rewards read back) and the
//! `object_hook`/`parse_float` options of Python's decoder (the reference uses none).

use std::fmt;

/// Deepest nesting of lists and objects accepted.
pub const MAX_DEPTH: usize = 200;

/// A decoded JSON value, with Python's int/float distinction.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<PyValue>),
    Object(PyObject),
}

/// A JSON object as a Python dict: keys in first-insertion order, last value wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PyObject {
    entries: Vec<(String, PyValue)>,
}

impl PyObject {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PyValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// Sets `key` as a Python dict assignment does.
    pub fn insert(&mut self, key: String, value: PyValue) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl PyValue {
    /// The number, for an int or a float (not for a bool: see `rollout::episode::action`).
    pub fn as_number(&self) -> Option<f64> {
        match self {
            PyValue::Int(i) => Some(*i as f64),
            PyValue::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// `json.JSONDecodeError`: a message and the code-point position it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub msg: &'static str,
    /// Code-point index into the decoded text.
    pub pos: usize,
    pub lineno: usize,
    pub colno: usize,
}

impl fmt::Display for DecodeError {
    /// Python's `str(JSONDecodeError)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: line {} column {} (char {})", self.msg, self.lineno, self.colno, self.pos)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes the value starting at code point 0 of `text`; returns it and the code-point index
/// just after it (`raw_decode`). Leading whitespace is not skipped, as in Python.
pub fn raw_decode(text: &[char]) -> Result<(PyValue, usize), DecodeError> {
    let scanner = Scanner { s: text };
    scanner.scan_once(0, 0).map_err(|e| scanner.error(e))
}

/// Decodes one whole document as `json.loads` does: JSON whitespace around the value is
/// allowed, anything else after it is `Extra data`.
pub fn loads(text: &str) -> Result<PyValue, DecodeError> {
    let chars: Vec<char> = text.chars().collect();
    let start = chars.iter().position(|&c| !is_ws(c)).unwrap_or(chars.len());
    let scanner = Scanner { s: &chars };
    let (value, end) = scanner.scan_once(start, 0).map_err(|e| scanner.error(e))?;
    let rest = chars[end..].iter().position(|&c| !is_ws(c)).map(|k| end + k);
    match rest {
        None => Ok(value),
        Some(extra) => Err(scanner.error(Fail::Msg("Extra data", extra))),
    }
}

/// A failure inside the scanner before it is located: CPython's `StopIteration(idx)` (which
/// becomes "Expecting value") or a `raise_errmsg(msg, idx)`.
enum Fail {
    Stop(usize),
    Msg(&'static str, usize),
}

struct Scanner<'a> {
    s: &'a [char],
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

impl Scanner<'_> {
    fn error(&self, fail: Fail) -> DecodeError {
        let (msg, pos) = match fail {
            Fail::Stop(pos) => ("Expecting value", pos),
            Fail::Msg(msg, pos) => (msg, pos),
        };
        let before = &self.s[..pos.min(self.s.len())];
        let lineno = before.iter().filter(|&&c| c == '\n').count() + 1;
        let colno = match before.iter().rposition(|&c| c == '\n') {
            Some(nl) => pos - nl,
            None => pos + 1,
        };
        DecodeError { msg, pos, lineno, colno }
    }

    fn at(&self, i: usize) -> Option<char> {
        self.s.get(i).copied()
    }

    fn lit(&self, i: usize, word: &str) -> bool {
        let n = word.chars().count();
        i + n <= self.s.len() && self.s[i..i + n].iter().copied().eq(word.chars())
    }

    fn skip_ws(&self, mut i: usize) -> usize {
        while self.at(i).is_some_and(is_ws) {
            i += 1;
        }
        i
    }

    fn scan_once(&self, idx: usize, depth: usize) -> Result<(PyValue, usize), Fail> {
        let Some(c) = self.at(idx) else { return Err(Fail::Stop(idx)) };
        match c {
            '"' => return self.scan_string(idx + 1).map(|(s, end)| (PyValue::Str(s), end)),
            '{' | '[' if depth >= MAX_DEPTH => return Err(Fail::Msg("Maximum nesting depth exceeded", idx)),
            '{' => return self.parse_object(idx + 1, depth + 1),
            '[' => return self.parse_array(idx + 1, depth + 1),
            'n' if self.lit(idx, "null") => return Ok((PyValue::Null, idx + 4)),
            't' if self.lit(idx, "true") => return Ok((PyValue::Bool(true), idx + 4)),
            'f' if self.lit(idx, "false") => return Ok((PyValue::Bool(false), idx + 5)),
            'N' if self.lit(idx, "NaN") => return Ok((PyValue::Float(f64::NAN), idx + 3)),
            'I' if self.lit(idx, "Infinity") => return Ok((PyValue::Float(f64::INFINITY), idx + 8)),
            '-' if self.lit(idx, "-Infinity") => return Ok((PyValue::Float(f64::NEG_INFINITY), idx + 9)),
            _ => {}
        }
        self.match_number(idx)
    }

    fn match_number(&self, start: usize) -> Result<(PyValue, usize), Fail> {
        let digit = |i: usize| self.at(i).is_some_and(|c| c.is_ascii_digit());
        let mut idx = start;
        if self.at(idx) == Some('-') {
            idx += 1;
        }
        match self.at(idx) {
            Some('1'..='9') => {
                idx += 1;
                while digit(idx) {
                    idx += 1;
                }
            }
            Some('0') => idx += 1,
            _ => return Err(Fail::Stop(start)),
        }
        let mut is_float = false;
        if self.at(idx) == Some('.') && digit(idx + 1) {
            is_float = true;
            idx += 2;
            while digit(idx) {
                idx += 1;
            }
        }
        if matches!(self.at(idx), Some('e' | 'E')) && idx + 1 < self.s.len() {
            let e_start = idx;
            idx += 1;
            if matches!(self.at(idx), Some('-' | '+')) && idx + 1 < self.s.len() {
                idx += 1;
            }
            while digit(idx) {
                idx += 1;
            }
            if digit(idx - 1) {
                is_float = true;
            } else {
                idx = e_start;
            }
        }
        let text: String = self.s[start..idx].iter().collect();
        let value = if is_float {
            PyValue::Float(text.parse::<f64>().unwrap_or(f64::NAN))
        } else {
            PyValue::Int(parse_int_saturating(&text))
        };
        Ok((value, idx))
    }

    /// `scanstring_unicode`: `end` is the index just after the opening quote.
    fn scan_string(&self, end: usize) -> Result<(String, usize), Fail> {
        let begin = end - 1;
        let len = self.s.len();
        let mut out = String::new();
        let mut end = end;
        loop {
            let mut next = end;
            let mut c = None;
            while next < len {
                let d = self.s[next];
                if d == '"' || d == '\\' {
                    c = Some(d);
                    break;
                }
                if (d as u32) <= 0x1f {
                    return Err(Fail::Msg("Invalid control character at", next));
                }
                next += 1;
            }
            let Some(c) = c else { return Err(Fail::Msg("Unterminated string starting at", begin)) };
            out.extend(&self.s[end..next]);
            next += 1;
            if c == '"' {
                return Ok((out, next));
            }
            if next == len {
                return Err(Fail::Msg("Unterminated string starting at", begin));
            }
            let esc = self.s[next];
            if esc != 'u' {
                end = next + 1;
                let ch = match esc {
                    '"' => '"',
                    '\\' => '\\',
                    '/' => '/',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    _ => return Err(Fail::Msg("Invalid \\escape", end - 2)),
                };
                out.push(ch);
                continue;
            }
            next += 1;
            end = next + 4;
            if end >= len {
                return Err(Fail::Msg("Invalid \\uXXXX escape", next - 1));
            }
            let mut code = self.hex4(next).ok_or(Fail::Msg("Invalid \\uXXXX escape", end - 5))?;
            if (0xd800..0xdc00).contains(&code) && end + 6 < len && self.s[end] == '\\' && self.s[end + 1] == 'u' {
                let low = self.hex4(end + 2).ok_or(Fail::Msg("Invalid \\uXXXX escape", end + 1))?;
                if (0xdc00..0xe000).contains(&low) {
                    code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                    end += 6;
                }
            }
            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let mut v = 0u32;
        for i in at..at + 4 {
            v = (v << 4) | self.at(i)?.to_digit(16)?;
        }
        Some(v)
    }

    fn parse_object(&self, idx: usize, depth: usize) -> Result<(PyValue, usize), Fail> {
        let mut obj = PyObject::default();
        let mut idx = self.skip_ws(idx);
        if self.at(idx) != Some('}') {
            loop {
                if self.at(idx) != Some('"') {
                    return Err(Fail::Msg("Expecting property name enclosed in double quotes", idx));
                }
                let (key, next) = self.scan_string(idx + 1)?;
                idx = self.skip_ws(next);
                if self.at(idx) != Some(':') {
                    return Err(Fail::Msg("Expecting ':' delimiter", idx));
                }
                idx = self.skip_ws(idx + 1);
                let (value, next) = self.scan_once(idx, depth)?;
                obj.insert(key, value);
                idx = self.skip_ws(next);
                if self.at(idx) == Some('}') {
                    break;
                }
                if self.at(idx) != Some(',') {
                    return Err(Fail::Msg("Expecting ',' delimiter", idx));
                }
                idx = self.skip_ws(idx + 1);
            }
        }
        Ok((PyValue::Object(obj), idx + 1))
    }

    fn parse_array(&self, idx: usize, depth: usize) -> Result<(PyValue, usize), Fail> {
        let mut items = Vec::new();
        let mut idx = self.skip_ws(idx);
        if self.at(idx) != Some(']') {
            loop {
                let (value, next) = self.scan_once(idx, depth)?;
                items.push(value);
                idx = self.skip_ws(next);
                if self.at(idx) == Some(']') {
                    break;
                }
                if self.at(idx) != Some(',') {
                    return Err(Fail::Msg("Expecting ',' delimiter", idx));
                }
                idx = self.skip_ws(idx + 1);
            }
        }
        Ok((PyValue::List(items), idx + 1))
    }
}

/// An integer literal (`-?digits`) as `i128`, saturating.
fn parse_int_saturating(text: &str) -> i128 {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let mut v: i128 = 0;
    for d in digits.bytes() {
        v = v.saturating_mul(10).saturating_add(i128::from(d - b'0'));
    }
    if neg { -v } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Result<(PyValue, usize), String> {
        let chars: Vec<char> = s.chars().collect();
        raw_decode(&chars).map_err(|e| e.to_string())
    }

    #[test]
    fn errors_match_cpython() {
        // Expected: `json.JSONDecoder().raw_decode(s)` in CPython 3.11, str(exception).
        let cases: &[(&str, &str)] = &[
            ("{", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
            ("{\"a\" 1}", "Expecting ':' delimiter: line 1 column 6 (char 5)"),
            ("{\"a\": }", "Expecting value: line 1 column 7 (char 6)"),
            ("{\"a\": 1 \"b\": 2}", "Expecting ',' delimiter: line 1 column 9 (char 8)"),
            ("{\"a\": 1,}", "Expecting property name enclosed in double quotes: line 1 column 9 (char 8)"),
            ("{'a': 1}", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
            ("{\"a\": [1, 2}", "Expecting ',' delimiter: line 1 column 12 (char 11)"),
            ("{\"a\": [1,]}", "Expecting value: line 1 column 10 (char 9)"),
            ("{\"a\": \"x}", "Unterminated string starting at: line 1 column 7 (char 6)"),
            ("{\"a\": \"x\ny\"}", "Invalid control character at: line 1 column 9 (char 8)"),
            ("{\"a\": \"\\q\"}", "Invalid \\escape: line 1 column 8 (char 7)"),
            ("{\"a\": \"\\u12x4\"}", "Invalid \\uXXXX escape: line 1 column 9 (char 8)"),
            ("{\"a\": \"\\u12", "Invalid \\uXXXX escape: line 1 column 9 (char 8)"),
            ("{\"a\":\n tru}", "Expecting value: line 2 column 2 (char 7)"),
            ("{\"a\": -}", "Expecting value: line 1 column 7 (char 6)"),
            ("{\"é\": 01}", "Expecting ',' delimiter: line 1 column 8 (char 7)"),
            ("{\"a\": 1.}", "Expecting ',' delimiter: line 1 column 8 (char 7)"),
        ];
        for &(s, want) in cases {
            assert_eq!(decode(s).unwrap_err(), want, "{s}");
        }
    }

    #[test]
    fn raw_decode_stops_after_the_first_value() {
        let (v, end) = decode("{\"a\": 1} trailing").unwrap();
        assert_eq!(end, 8);
        let mut want = PyObject::default();
        want.insert("a".into(), PyValue::Int(1));
        assert_eq!(v, PyValue::Object(want));
        let (_, end) = decode("{\"k\": \"é\"}}").unwrap();
        assert_eq!(end, 10); // code points, not bytes
    }

    #[test]
    fn python_values_and_quirks() {
        let (v, _) =
            decode(r#"{"a": NaN, "b": -Infinity, "c": 1e400, "d": -0, "e": 2.50, "f": 1E2, "a": [true, null]}"#)
                .unwrap();
        // duplicate "a": first position, last value
        let PyValue::Object(o) = v else { panic!("an object") };
        assert_eq!(o.keys().collect::<Vec<_>>(), ["a", "b", "c", "d", "e", "f"]);
        assert_eq!(o.get("a"), Some(&PyValue::List(vec![PyValue::Bool(true), PyValue::Null])));
        assert!(matches!(o.get("b"), Some(PyValue::Float(x)) if *x == f64::NEG_INFINITY));
        assert!(matches!(o.get("c"), Some(PyValue::Float(x)) if *x == f64::INFINITY));
        assert_eq!(o.get("d"), Some(&PyValue::Int(0)));
        assert_eq!(o.get("e"), Some(&PyValue::Float(2.5)));
        assert_eq!(o.get("f"), Some(&PyValue::Float(100.0)));
        let (v, _) = decode("[\"\\ud83d\\ude00\", \"\\ud800x\", \"tab\\t\", \"\\/\"]").unwrap();
        assert_eq!(
            v,
            PyValue::List(vec![
                PyValue::Str("😀".into()),
                PyValue::Str("\u{fffd}x".into()),
                PyValue::Str("tab\t".into()),
                PyValue::Str("/".into()),
            ])
        );
        let (v, _) = decode("123456789012345678901234567890123456789012345").unwrap();
        assert_eq!(v, PyValue::Int(i128::MAX));
    }

    #[test]
    fn loads_accepts_what_python_accepts() {
        // Expected values: what CPython's json.loads returns for each text.
        use PyValue::{Float, Int, List, Null};
        assert_eq!(loads("[]").unwrap(), List(vec![]));
        assert_eq!(loads(" [1, 2.5] \n").unwrap(), List(vec![Int(1), Float(2.5)]));
        assert_eq!(loads("[[1e2, -0.5E-1]]").unwrap(), List(vec![List(vec![Float(100.0), Float(-0.05)])]));
        assert_eq!(loads("null").unwrap(), Null);
        assert_eq!(loads("true").unwrap(), PyValue::Bool(true));
        assert_eq!(loads("\"a\\u00e9\\ud800\"").unwrap(), PyValue::Str("a\u{e9}\u{fffd}".into()));
        assert!(matches!(loads("{\"a\": [1, {}]}").unwrap(), PyValue::Object(_)));
        assert_eq!(loads("-Infinity").unwrap(), Float(f64::NEG_INFINITY));
        assert_eq!(loads("[Infinity]").unwrap(), List(vec![Float(f64::INFINITY)]));
        assert_eq!(loads("1e400").unwrap(), Float(f64::INFINITY));
        assert!(matches!(loads("NaN").unwrap(), Float(x) if x.is_nan()));
    }

    #[test]
    fn loads_rejects_what_python_rejects() {
        for text in [
            "",
            " ",
            "[",
            "[1,]",
            "[1 2]",
            "01",
            "1.",
            ".5",
            "+1",
            "-",
            "[1]]",
            "nan",
            "inf",
            "'a'",
            "{1: 2}",
            "{\"a\" 1}",
            "\"\\x\"",
            "\"a\tb\"",
            "\"\\u12\"",
            "\u{feff}[]",
            "[1,2] x",
            "True",
            "None",
            "-NaN",
            "1e",
            "tru",
        ] {
            assert!(loads(text).is_err(), "{text:?} should not parse");
        }
        // CPython: json.loads("[1] x") -> "Extra data: line 1 column 5 (char 4)".
        assert_eq!(loads("[1] x").unwrap_err().to_string(), "Extra data: line 1 column 5 (char 4)");
        assert_eq!(loads("  ").unwrap_err().to_string(), "Expecting value: line 1 column 3 (char 2)");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let s = "[".repeat(100_000);
        assert!(decode(&s).unwrap_err().starts_with("Maximum nesting depth exceeded"));
        let s = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(decode(&s).is_ok());
    }
}
