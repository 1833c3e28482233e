//! A small JSON reader with the acceptance rules of Python's `json.loads`, used for TR span
//! answers and ground truths. It differs from `serde_json` exactly where the reference's error
//! codes depend on it: Python accepts `NaN`, `Infinity` and `-Infinity` and lets `1e400`
//! overflow to infinity, so such answers are *JSON* (and then fail as `SPAN_FORMAT`), not
//! `ANSWER_JSON_PARSE`.
//!
//! Left out: string contents are validated but not kept (no span bound can be a string), and
//! integers are read as the nearest `f64` (the reference converts them with `float()` anyway).
//! Nesting is capped at [`MAX_DEPTH`] so hostile input cannot exhaust the stack; Python raises
//! `RecursionError` at roughly 1000 levels, which the reference also reports as
//! `ANSWER_JSON_PARSE`.

/// Deepest nesting of lists/objects accepted.
pub(crate) const MAX_DEPTH: usize = 256;

/// A decoded value; only what span checking needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PyJson {
    Null,
    Bool(bool),
    Num(f64),
    Str,
    List(Vec<PyJson>),
    Object,
}

/// Decodes one complete JSON document the way `json.loads` does (surrounding JSON
/// whitespace allowed, anything else after the value is an error).
pub(crate) fn loads(text: &str) -> Result<PyJson, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("extra data at byte {}", p.i));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<PyJson, String> {
        match self.peek() {
            None => Err("expecting value at end of input".to_owned()),
            Some(b'[') => self.list(depth + 1),
            Some(b'{') => self.object(depth + 1),
            Some(b'"') => self.string().map(|()| PyJson::Str),
            Some(b'-' | b'0'..=b'9') => {
                if self.eat("-Infinity") {
                    Ok(PyJson::Num(f64::NEG_INFINITY))
                } else {
                    self.number()
                }
            }
            Some(_) => {
                if self.eat("null") {
                    Ok(PyJson::Null)
                } else if self.eat("true") {
                    Ok(PyJson::Bool(true))
                } else if self.eat("false") {
                    Ok(PyJson::Bool(false))
                } else if self.eat("NaN") {
                    Ok(PyJson::Num(f64::NAN))
                } else if self.eat("Infinity") {
                    Ok(PyJson::Num(f64::INFINITY))
                } else {
                    Err(format!("expecting value at byte {}", self.i))
                }
            }
        }
    }

    fn list(&mut self, depth: usize) -> Result<PyJson, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        self.i += 1; // '['
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(PyJson::List(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(PyJson::List(items));
                }
                _ => return Err(format!("expecting ',' or ']' at byte {}", self.i)),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<PyJson, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        self.i += 1; // '{'
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(PyJson::Object);
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(format!("expecting property name in double quotes at byte {}", self.i));
            }
            self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(format!("expecting ':' delimiter at byte {}", self.i));
            }
            self.i += 1;
            self.ws();
            self.value(depth)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(PyJson::Object);
                }
                _ => return Err(format!("expecting ',' or '}}' at byte {}", self.i)),
            }
        }
    }

    /// Validates a string literal (strict mode: no raw control characters; escapes as in
    /// JSON; lone surrogates are accepted, as Python does).
    fn string(&mut self) -> Result<(), String> {
        let start = self.i;
        self.i += 1; // '"'
        loop {
            match self.peek() {
                None => return Err(format!("unterminated string starting at byte {start}")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            let hex = self.s.get(self.i + 1..self.i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(format!("invalid \\uXXXX escape at byte {}", self.i));
                            }
                            self.i += 5;
                        }
                        _ => return Err(format!("invalid escape at byte {}", self.i)),
                    }
                }
                Some(c) if c < 0x20 => {
                    return Err(format!("invalid control character at byte {}", self.i));
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`, ASCII digits only.
    fn number(&mut self) -> Result<PyJson, String> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i - from
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(format!("expecting value at byte {start}")),
        }
        // Python's scanner only takes the fraction / exponent when they are complete; a
        // dangling "1." leaves "." behind, which then fails as extra data.
        if self.peek() == Some(b'.') && matches!(self.s.get(self.i + 1), Some(b'0'..=b'9')) {
            self.i += 1;
            digits(self);
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                self.i = save;
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
        // Rust's float parser is correctly rounded like Python's; out-of-range values become
        // +-inf as with Python's float().
        text.parse::<f64>().map(PyJson::Num).map_err(|e| format!("bad number {text:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PyJson::*;

    #[test]
    fn accepts_what_python_accepts() {
        // Expected values: what CPython's json.loads returns for each text.
        assert_eq!(loads("[]").unwrap(), List(vec![]));
        assert_eq!(loads(" [1, 2.5] \n").unwrap(), List(vec![Num(1.0), Num(2.5)]));
        assert_eq!(loads("[[1e2, -0.5E-1]]").unwrap(), List(vec![List(vec![Num(100.0), Num(-0.05)])]));
        assert_eq!(loads("null").unwrap(), Null);
        assert_eq!(loads("true").unwrap(), Bool(true));
        assert_eq!(loads("\"a\\u00e9\\ud800\"").unwrap(), Str);
        assert_eq!(loads("{\"a\": [1, {}]}").unwrap(), Object);
        assert_eq!(loads("-Infinity").unwrap(), Num(f64::NEG_INFINITY));
        assert_eq!(loads("[Infinity]").unwrap(), List(vec![Num(f64::INFINITY)]));
        assert_eq!(loads("1e400").unwrap(), Num(f64::INFINITY));
        assert!(matches!(loads("NaN").unwrap(), Num(x) if x.is_nan()));
    }

    #[test]
    fn rejects_what_python_rejects() {
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
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(loads(&deep).is_err());
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(loads(&ok).is_ok());
        let too_deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(loads(&too_deep).is_err());
    }
}
