//! Python-compatible number formatting for every string the environment shows the model
//! (docs/reference.md#python-formatting): the released checkpoints were trained on the
//! reference's exact labels, so `Frames 10.00s-12.00s`, `Range [0.0, 31.5] OOB for 30.0s` and
//! the META block must come out byte for byte as CPython prints them.
//!
//! * [`fixed`] is `f"{x:.Nf}"`: the exact binary value rounded half-to-even at N decimals
//!   (Rust's `{:.N}` does the same since 1.67; only NaN is spelled differently), so
//!   `0.125 -> "0.12"`, `0.375 -> "0.38"`, `-0.0 -> "-0.00"`.
//! * [`floor2`] is the META block's `f"{math.floor(x * 100) / 100:.2f}"`, with the same f64
//!   operations, so `0.29 -> "0.28"` as in Python (0.29 * 100 is 28.999999999999996).
//! * [`py_float_repr`] is `repr(float)`: shortest round-trip digits, exponent form below 1e-4
//!   and from 1e16 (`1e-05`, `1e+16`), `.0` on integral values, `inf`/`nan`.
//! * [`py_str_repr`] is `repr(str)` (quote choice and escapes), used where the reference
//!   prints a list of the model's own keys; [`py_value_repr`] and [`py_value_str`] are
//!   `repr`/`str` of a decoded JSON value (`rewards::pyjson`).
//!
//! Left out: Python's full `str.isprintable` table. [`py_str_repr`] escapes the C0/C1
//! controls, the non-space separators and the common format characters; other unassigned or
//! private-use code points are printed as they are (Python escapes them). They only appear in
//! error text about unknown keys the model invented.

use super::pyjson::PyValue;

/// `f"{x:.{decimals}f}"`.
pub fn fixed(x: f64, decimals: usize) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    format!("{x:.decimals$}")
}

/// `f"{x:.2f}"`.
pub fn fixed2(x: f64) -> String {
    fixed(x, 2)
}

/// `f"{x:.3f}"`.
pub fn fixed3(x: f64) -> String {
    fixed(x, 3)
}

/// The META block's truncation to two decimals: `f"{math.floor(x * 100) / 100:.2f}"`, or
/// `"unknown"` for a value that is missing or not finite (the reference prints `unknown` for
/// non-numbers and crashes on infinities; see the module docs of `episode`).
pub fn floor2(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => fixed2((v * 100.0).floor() / 100.0),
        _ => "unknown".to_string(),
    }
}

/// Python's `repr(float)`.
pub fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    // Shortest round-trip digits and decimal exponent, from Rust's `{:e}` ("1.25e-1").
    let sci = format!("{x:e}");
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..16).contains(&exp) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.unsigned_abs());
    }
    // Positional: the decimal point sits after `exp + 1` digits.
    let point = exp + 1;
    let body = if point <= 0 {
        format!("0.{}{}", "0".repeat(point.unsigned_abs() as usize), digits)
    } else {
        let point = point as usize;
        if digits.len() <= point {
            format!("{}{}.0", digits, "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    format!("{sign}{body}")
}

/// A configured limit as the reference prints it: the worker casts frame, audio and clip
/// limits to `int`, so integral values print without a fraction (`300`); a fractional value
/// (ours only: the reference would have truncated it) prints as its float repr (`34.5`).
pub fn limit_number(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { py_float_repr(x) }
}

/// Python's `str(bool)`.
/// Python's `repr(value)` of a decoded JSON value.
pub fn py_value_repr(v: &PyValue) -> String {
    match v {
        PyValue::Null => "None".to_string(),
        PyValue::Bool(b) => py_bool(*b).to_string(),
        PyValue::Int(i) => i.to_string(),
        PyValue::Float(f) => py_float_repr(*f),
        PyValue::Str(s) => py_str_repr(s),
        PyValue::List(items) => format!("[{}]", items.iter().map(py_value_repr).collect::<Vec<_>>().join(", ")),
        PyValue::Object(obj) => {
            let inner: Vec<String> =
                obj.iter().map(|(k, v)| format!("{}: {}", py_str_repr(k), py_value_repr(v))).collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// Python's `str(value)` of a decoded JSON value.
pub fn py_value_str(v: &PyValue) -> String {
    match v {
        PyValue::Str(s) => s.clone(),
        other => py_value_repr(other),
    }
}

pub fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Python's `repr(str)`: single quotes unless the text holds a single quote and no double
/// quote; backslash, the quote, `\t`, `\n`, `\r` and non-printable characters escaped.
pub fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_printable(c) => {
                let v = c as u32;
                if v < 0x100 {
                    out.push_str(&format!("\\x{v:02x}"));
                } else if v < 0x10000 {
                    out.push_str(&format!("\\u{v:04x}"));
                } else {
                    out.push_str(&format!("\\U{v:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// An approximation of Python's `str.isprintable` for one character (see the module docs).
fn is_printable(c: char) -> bool {
    let v = c as u32;
    !matches!(v,
        0x00..=0x1f | 0x7f..=0xa0 | 0xad | 0x1680 | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f
        | 0x205f..=0x206f | 0x3000 | 0xd800..=0xdfff | 0xe000..=0xf8ff | 0xfeff
        | 0xfff9..=0xfffb | 0xf0000..=0x10ffff)
}

/// Python's `str.strip()` with no argument: Unicode whitespace plus the four information
/// separators U+001C..U+001F, which Python also counts as whitespace.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_values_print_as_python_prints_them() {
        let repr = |t: &str| py_value_repr(&super::super::pyjson::loads(t).unwrap());
        // Expected: repr(json.loads(t)) in CPython 3.11.
        assert_eq!(repr("{\"a\": 1}"), "{'a': 1}");
        assert_eq!(
            repr(r#"{"a": NaN, "b": -Infinity, "c": 1e400, "d": -0, "e": 2.50, "f": 1E2, "a": [true, null]}"#),
            "{'a': [True, None], 'b': -inf, 'c': inf, 'd': 0, 'e': 2.5, 'f': 100.0}"
        );
        assert_eq!(py_value_str(&PyValue::Str("x".into())), "x");
        assert_eq!(py_value_str(&PyValue::Null), "None");
    }

    #[test]
    fn fixed_matches_python_including_ties() {
        // Expected values: CPython 3.11 `f"{x:.2f}"` / `f"{x:.3f}"`.
        let cases: &[(f64, usize, &str)] = &[
            (0.125, 2, "0.12"),
            (0.375, 2, "0.38"),
            (0.625, 2, "0.62"),
            (2.675, 2, "2.67"), // binary value is below the tie
            (1.005, 2, "1.00"),
            (0.285, 2, "0.28"),
            (10.0, 2, "10.00"),
            (-0.0, 2, "-0.00"),
            (-0.001, 2, "-0.00"),
            (123456789.125, 2, "123456789.12"),
            (0.0625, 3, "0.062"),
            (0.1875, 3, "0.188"),
            (2.5, 0, "2"),
            (3.5, 0, "4"),
            (f64::INFINITY, 2, "inf"),
            (f64::NEG_INFINITY, 3, "-inf"),
            (f64::NAN, 2, "nan"),
            (1e22, 2, "10000000000000000000000.00"),
        ];
        for &(x, n, want) in cases {
            assert_eq!(fixed(x, n), want, "{x} .{n}f");
        }
    }

    #[test]
    fn floor2_truncates_like_the_meta_block() {
        let cases: &[(Option<f64>, &str)] = &[
            (Some(24.0), "24.00"),
            (Some(92.234), "92.23"),
            (Some(29.97002997), "29.97"),
            (Some(0.29), "0.28"), // 0.29 * 100 = 28.999999999999996 in binary
            (Some(59.999), "59.99"),
            (Some(0.0), "0.00"),
            (None, "unknown"),
            (Some(f64::NAN), "unknown"),
            (Some(f64::INFINITY), "unknown"),
        ];
        for &(x, want) in cases {
            assert_eq!(floor2(x), want, "{x:?}");
        }
    }

    #[test]
    fn float_repr_matches_python() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (30.0, "30.0"),
            (0.1, "0.1"),
            (0.125, "0.125"),
            (12.5, "12.5"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345.6, "123456789012345.6"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (-2.5e-5, "-2.5e-05"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
            (0.30000000000000004, "0.30000000000000004"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for &(x, want) in cases {
            assert_eq!(py_float_repr(x), want, "{x:e}");
        }
    }

    #[test]
    fn limits_print_like_int_cast_values() {
        assert_eq!(limit_number(300.0), "300");
        assert_eq!(limit_number(60.0), "60");
        assert_eq!(limit_number(34.5), "34.5");
        assert_eq!(limit_number(0.1), "0.1");
    }

    #[test]
    fn str_repr_matches_python() {
        let cases: &[(&str, &str)] = &[
            ("extra", "'extra'"),
            ("it's", "\"it's\""),
            ("a'b\"c", "'a\\'b\"c'"),
            ("tab\there", "'tab\\there'"),
            ("nl\n", "'nl\\n'"),
            ("back\\slash", "'back\\\\slash'"),
            ("\u{7}", "'\\x07'"),
            ("nbsp\u{a0}", "'nbsp\\xa0'"),
            ("zw\u{200b}", "'zw\\u200b'"),
            ("é中😀", "'é中😀'"),
        ];
        for &(s, want) in cases {
            assert_eq!(py_str_repr(s), want, "{s:?}");
        }
    }

    #[test]
    fn strip_matches_python_whitespace() {
        assert_eq!(py_strip(" \t\n{x}\r\n"), "{x}");
        assert_eq!(py_strip("\u{1c}\u{a0}{x}\u{3000}\u{85}"), "{x}");
        assert_eq!(py_strip("\u{200b}{x}"), "\u{200b}{x}"); // zero-width space is not whitespace
    }
}
