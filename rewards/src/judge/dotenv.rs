//! A minimal `.env` reader for the judge's settings (the reference uses python-dotenv's
//! `load_dotenv()`): `KEY=VALUE` lines, optional `export `, `#` comments, values optionally in
//! matching single or double quotes. Values never override the process environment and are
//! not written into it; they are only consulted as a fallback.
//!
//! Left out: variable interpolation, multi-line values and escape sequences (none of the
//! judge's settings need them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The first `.env` file in `start` or one of its ancestors.
pub fn find(start: &Path) -> Option<PathBuf> {
    start.ancestors().map(|d| d.join(".env")).find(|p| p.is_file())
}

/// Parses `.env` text into a map (later lines win, as in python-dotenv).
pub fn parse(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() {
            continue;
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) => match value[1..].find(q) {
                Some(end) => &value[1..1 + end],
                None => value,
            },
            // An unquoted value ends at " #" (an inline comment).
            _ => value.split_once(" #").map_or(value, |(v, _)| v.trim_end()),
        };
        vars.insert(key.to_owned(), value.to_owned());
    }
    vars
}

/// Reads the `.env` file found from the current directory upwards; empty when none.
pub fn load_from_cwd() -> HashMap<String, String> {
    std::env::current_dir()
        .ok()
        .and_then(|d| find(&d))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| parse(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let vars = parse(
            "# comment\nA=1\nexport B = two \nC=\"quoted # not a comment\"\nD='single'\nE=x # trailing\n\
             F=\nnot a pair\n=novalue\nA=3\n",
        );
        assert_eq!(vars.get("A").map(String::as_str), Some("3"));
        assert_eq!(vars.get("B").map(String::as_str), Some("two"));
        assert_eq!(vars.get("C").map(String::as_str), Some("quoted # not a comment"));
        assert_eq!(vars.get("D").map(String::as_str), Some("single"));
        assert_eq!(vars.get("E").map(String::as_str), Some("x"));
        assert_eq!(vars.get("F").map(String::as_str), Some(""));
        assert_eq!(vars.len(), 6);
    }
}
