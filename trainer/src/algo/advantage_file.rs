//! Advantages of a JSONL rollout dump, line by line: the pipeline behind `omnirl advantage`.
//!
//! Each input line is one stored turn `{"uid", "traj_uid", "reward", "entropy", ...}` (`reward` =
//! the episode reward, `entropy` = the turn entropy `h_r`, read by TAURA only); lines sharing a
//! `uid` form a GRPO group (a `uid`/`traj_uid` is a string or a number, and `1` and `"1"` stay
//! apart). Each output line (input order) is the input line with every field kept in order and
//! as written, plus `"advantage"` (an existing `advantage` field is replaced). The estimators are
//! [`crate::algo::advantage`] (docs/reference.md#grpo, docs/reference.md#taura): statistics over
//! unique `(uid, traj_uid)` trajectories (a trajectory's reward counts once however many turns it
//! has), unbiased std, ε = 1e-6 by default, a group of one trajectory has mean 0 and std 1; TAURA
//! weights each turn by `h_r / (h̄_g + 1e-8)` with `h̄_g` over all the group's lines.
//!
//! A malformed line (not UTF-8, not a JSON object, `uid`/`traj_uid` missing or not a string or
//! number, `reward` missing or not a finite number, under TAURA `entropy` likewise) is reported
//! as a `line N: <reason>` message (the first 100 of them) and still produces an output line, so
//! output and input stay 1:1: its fields plus `"advantage": null, "error": "INVALID_INPUT_LINE"`
//! (a line that is not an object becomes `{"line": N, "advantage": null, "error":
//! "INVALID_INPUT_LINE"}`). It takes no part in any group's statistics.
//!
//! The file is read twice (keys and numbers first, then the output pass), so memory holds a few
//! numbers per line, not the lines.
//!
//! Left out: stdin input (the file is read twice), `ignore_exceed` (off in the reference), and
//! printing: the caller receives the messages through a callback and prints
//! [`AdvantageSummary::summary_text`] itself.

use crate::algo::advantage::{AdvantageError, AdvantageEstimator, AdvantageRow, EXPLODED_ABS};
use rewards::record::{INVALID_INPUT_LINE, Record};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Malformed lines reported individually; the rest are only counted.
const MAX_LINE_REPORTS: usize = 100;

/// Why a file could not be processed to the end. Bad lines are never errors: they become
/// output lines with an error code.
#[derive(Debug, Error)]
pub enum AdvantageFileError {
    /// Opening or reading the input failed (in either pass).
    #[error("cannot read input file {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing the output failed (a closed pipe included: its kind is `BrokenPipe`).
    #[error("cannot write the output")]
    Write(#[source] io::Error),
    /// The estimator rejected the rows; parsing only keeps finite numbers (and entropies under
    /// TAURA), so this does not happen.
    #[error(transparent)]
    Compute(#[from] AdvantageError),
}

/// Counts and ranges of one run, for the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct AdvantageSummary {
    /// The estimator's name (`grpo`, `taura`, `grpo-no-std`).
    pub estimator: &'static str,
    /// Input lines (= output lines).
    pub lines: usize,
    /// Lines that got an advantage.
    pub valid: usize,
    /// Distinct `uid`s among the valid lines.
    pub groups: usize,
    /// Distinct `(uid, traj_uid)` pairs among the valid lines.
    pub trajectories: usize,
    /// Trajectories whose lines carry different rewards (statistics use the first line's).
    pub inconsistent: usize,
    /// Lines with `|advantage| >` [`EXPLODED_ABS`].
    pub exploded: usize,
    /// Mean, min and max advantage over the valid lines; `None` when there is none.
    pub range: Option<(f64, f64, f64)>,
}

impl AdvantageSummary {
    fn of(estimator: &'static str, rows: &[AdvantageRow<'_>], values: &[f64], lines: usize) -> Self {
        let groups: HashSet<&str> = rows.iter().map(|r| r.uid).collect();
        let mut first: HashMap<(&str, &str), f64> = HashMap::new();
        let mut inconsistent = HashSet::new();
        for r in rows {
            let f = *first.entry((r.uid, r.traj_uid)).or_insert(r.reward);
            if f != r.reward {
                inconsistent.insert((r.uid, r.traj_uid));
            }
        }
        let range = (!values.is_empty()).then(|| {
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (mean, min, max)
        });
        AdvantageSummary {
            estimator,
            lines,
            valid: rows.len(),
            groups: groups.len(),
            trajectories: first.len(),
            inconsistent: inconsistent.len(),
            exploded: values.iter().filter(|a| a.abs() > EXPLODED_ABS).count(),
            range,
        }
    }

    /// The summary `omnirl advantage` prints on stderr (newline-terminated lines): totals, the
    /// advantage range, exploded advantages and inconsistent trajectories. `name` names the input.
    pub fn summary_text(&self, name: &str) -> String {
        let mut s = format!(
            "omnirl advantage ({}): {} line(s) from {}, {} valid, {} invalid; {} group(s), {} trajectories\n",
            self.estimator,
            self.lines,
            name,
            self.valid,
            self.lines - self.valid,
            self.groups,
            self.trajectories
        );
        if let Some((mean, min, max)) = self.range {
            s.push_str(&format!("  advantage mean {mean:.6}, min {min:.6}, max {max:.6}\n"));
        }
        if self.exploded > 0 {
            s.push_str(&format!("  {} line(s) with |advantage| > {EXPLODED_ABS} (not clipped)\n", self.exploded));
        }
        if self.inconsistent > 0 {
            s.push_str(&format!(
                "  warning: {} trajectories carry different rewards on different turns; group statistics use each trajectory's first line\n",
                self.inconsistent
            ));
        }
        s
    }
}

/// What the first pass keeps of a valid line.
struct Parsed {
    uid: String,
    traj_uid: String,
    reward: f64,
    entropy: Option<f64>,
}

/// Reads the JSONL file at `path` twice and writes one output line per input line to `out` (in
/// input order, buffered, flushed at the end). `on_message` receives a `line N: <reason>` message
/// per malformed line (the first 100, then one notice that the rest are only counted).
pub fn write_advantages(
    path: &Path,
    estimator: AdvantageEstimator,
    out: impl Write,
    mut on_message: impl FnMut(&str),
) -> Result<AdvantageSummary, AdvantageFileError> {
    // Pass 1: parse every line; malformed ones become `Err(reason)`.
    let mut lines: Vec<Result<Parsed, String>> = Vec::new();
    for_each_line(path, |_, bytes| {
        lines.push(parse_line(bytes, estimator.needs_entropy()));
        true
    })?;
    let valid: Vec<(usize, &Parsed)> =
        lines.iter().enumerate().filter_map(|(i, l)| l.as_ref().ok().map(|p| (i, p))).collect();
    let rows: Vec<AdvantageRow<'_>> = valid
        .iter()
        .map(|(_, p)| AdvantageRow {
            uid: &p.uid,
            traj_uid: &p.traj_uid,
            reward: p.reward,
            entropy: p.entropy,
            exceed: false,
        })
        .collect();
    let computed = estimator.compute(&rows, false)?;
    let mut advantage: Vec<Option<f64>> = vec![None; lines.len()];
    for ((i, _), a) in valid.iter().zip(&computed.values) {
        advantage[*i] = Some(*a);
    }
    let summary = AdvantageSummary::of(estimator.name(), &rows, &computed.values, lines.len());

    // Pass 2: write each line with its advantage.
    write_pass(path, &lines, &advantage, out, &mut on_message)?;
    Ok(summary)
}

/// The output pass: reports the malformed lines and writes every line with its advantage.
fn write_pass(
    path: &Path,
    lines: &[Result<Parsed, String>],
    advantage: &[Option<f64>],
    out: impl Write,
    on_message: &mut impl FnMut(&str),
) -> Result<(), AdvantageFileError> {
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut reported = 0usize;
    let mut write_err = None;
    for_each_line(path, |no, bytes| {
        let i = (no - 1) as usize;
        let text = match (&lines.get(i), advantage.get(i).copied().flatten()) {
            (Some(Ok(_)), Some(a)) => output_valid(bytes, a),
            (Some(Err(reason)), _) => {
                reported += 1;
                if reported <= MAX_LINE_REPORTS {
                    on_message(&format!("line {no}: {reason}"));
                } else if reported == MAX_LINE_REPORTS + 1 {
                    on_message("(further malformed lines are counted but not shown)");
                }
                output_invalid(no, bytes)
            }
            // The file changed between the passes.
            _ => output_invalid(no, bytes),
        };
        match out.write_all(text.as_bytes()).and_then(|()| out.write_all(b"\n")) {
            Ok(()) => true,
            Err(e) => {
                write_err = Some(e);
                false
            }
        }
    })?;
    match write_err {
        Some(e) => Err(AdvantageFileError::Write(e)),
        None => out.flush().map_err(AdvantageFileError::Write),
    }
}

/// Calls `f(line_number, bytes)` for each line (terminator removed) until it returns false.
fn for_each_line(path: &Path, mut f: impl FnMut(u64, &[u8]) -> bool) -> Result<(), AdvantageFileError> {
    let read_err = |source| AdvantageFileError::Read { path: path.to_owned(), source };
    let file = File::open(path).map_err(read_err)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut no = 0u64;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(read_err)?;
        if n == 0 {
            return Ok(());
        }
        no += 1;
        let mut end = buf.len();
        if buf[end - 1] == b'\n' {
            end -= 1;
            if end > 0 && buf[end - 1] == b'\r' {
                end -= 1;
            }
        }
        if !f(no, &buf[..end]) {
            return Ok(());
        }
    }
}

fn parse_line(bytes: &[u8], need_entropy: bool) -> Result<Parsed, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_owned())?;
    let record = Record::parse(text)?;
    let uid = group_key(&record, "uid")?;
    let traj_uid = group_key(&record, "traj_uid")?;
    let reward = number(&record, "reward")?;
    let entropy = if need_entropy { Some(number(&record, "entropy")?) } else { None };
    Ok(Parsed { uid, traj_uid, reward, entropy })
}

/// A `uid`/`traj_uid` as a grouping key: a string, or a number's JSON text (so `"1"` and `1` stay
/// apart).
fn group_key(record: &Record<'_>, field: &str) -> Result<String, String> {
    let raw = record.raw(field).ok_or_else(|| format!("missing field \"{field}\""))?;
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::String(s)) => Ok(Value::String(s).to_string()),
        Ok(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(format!("\"{field}\" must be a string or a number, found {}", short(raw))),
    }
}

fn number(record: &Record<'_>, field: &str) -> Result<f64, String> {
    let raw = record.raw(field).ok_or_else(|| format!("missing field \"{field}\""))?;
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Number(n)) => n.as_f64().filter(|x| x.is_finite()),
        _ => None,
    }
    .ok_or_else(|| format!("\"{field}\" must be a finite number, found {}", short(raw)))
}

fn short(raw: &str) -> String {
    if raw.chars().count() > 40 { format!("{}...", raw.chars().take(40).collect::<String>()) } else { raw.to_owned() }
}

fn output_valid(bytes: &[u8], advantage: f64) -> String {
    let tail = format!("\"advantage\":{}", Value::from(advantage));
    match std::str::from_utf8(bytes).ok().and_then(|t| Record::parse(t).ok()) {
        Some(record) => record.output_line_with(&["advantage"], &tail),
        None => format!("{{{tail}}}"),
    }
}

fn output_invalid(no: u64, bytes: &[u8]) -> String {
    let tail = format!("\"advantage\":null,\"error\":\"{INVALID_INPUT_LINE}\"");
    match std::str::from_utf8(bytes).ok().and_then(|t| Record::parse(t).ok()) {
        Some(record) => record.output_line_with(&["advantage", "error"], &tail),
        None => format!("{{\"line\":{no},{tail}}}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-6;

    fn run(estimator: &str, input: &str) -> (Vec<String>, Vec<String>, AdvantageSummary) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(input.as_bytes()).unwrap();
        let estimator = AdvantageEstimator::parse(estimator, EPS).unwrap();
        let mut out = Vec::new();
        let mut messages = Vec::new();
        let summary = write_advantages(file.path(), estimator, &mut out, |m| messages.push(m.to_owned())).unwrap();
        let lines = String::from_utf8(out).unwrap().lines().map(str::to_owned).collect();
        (lines, messages, summary)
    }

    fn advantage(line: &str) -> Option<f64> {
        serde_json::from_str::<Value>(line).unwrap()["advantage"].as_f64()
    }

    fn assert_close(got: f64, want: f64) {
        assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{got} vs {want}");
    }

    #[test]
    fn two_groups_and_a_malformed_line() {
        // Group "g": trajectories a (reward 2) and b (reward 0); group 7: one trajectory t.
        let input = concat!(
            "{\"uid\":\"g\",\"traj_uid\":\"a\",\"reward\":2,\"k\":1}\n",
            "{\"uid\":\"g\",\"traj_uid\":\"bad\"}\n",
            "{\"uid\":7,\"traj_uid\":\"t\",\"reward\":0.5}\r\n",
            "{\"uid\":\"g\",\"traj_uid\":\"b\",\"reward\":0,\"advantage\":9}\n",
        );
        let (lines, messages, summary) = run("grpo", input);
        assert_eq!(lines.len(), 4);
        // "g": [2, 0], μ = 1, unbiased σ = √((1 + 1) / 1) = √2; A = ±1 / (√2 + ε).
        let a = 1.0 / (2.0f64.sqrt() + EPS);
        assert_close(advantage(&lines[0]).unwrap(), a);
        assert_close(advantage(&lines[3]).unwrap(), -a);
        // Group 7 alone: mean 0, std 1, so A = 0.5 / (1 + ε).
        assert_close(advantage(&lines[2]).unwrap(), 0.5 / (1.0 + EPS));
        assert!(lines[0].starts_with(r#"{"uid":"g","traj_uid":"a","reward":2,"k":1,"advantage":"#), "{}", lines[0]);
        assert!(lines[3].starts_with(r#"{"uid":"g","traj_uid":"b","reward":0,"advantage":"#), "{}", lines[3]);
        assert_eq!(lines[1], r#"{"uid":"g","traj_uid":"bad","advantage":null,"error":"INVALID_INPUT_LINE"}"#);
        assert_eq!(messages, ["line 2: missing field \"reward\""]);
        assert_eq!((summary.lines, summary.valid, summary.groups, summary.trajectories), (4, 3, 2, 3));
        assert_eq!(
            summary.summary_text("rows.jsonl").lines().next(),
            Some("omnirl advantage (grpo): 4 line(s) from rows.jsonl, 3 valid, 1 invalid; 2 group(s), 3 trajectories")
        );
    }

    #[test]
    fn reports_stop_after_the_cap() {
        let input = "x\n".repeat(MAX_LINE_REPORTS + 5);
        let (lines, messages, summary) = run("taura", &input);
        assert_eq!(lines.len(), MAX_LINE_REPORTS + 5);
        assert_eq!(lines[0], r#"{"line":1,"advantage":null,"error":"INVALID_INPUT_LINE"}"#);
        assert_eq!(messages.len(), MAX_LINE_REPORTS + 1);
        assert!(messages[0].starts_with("line 1: not a JSON object"), "{}", messages[0]);
        assert_eq!(messages[MAX_LINE_REPORTS], "(further malformed lines are counted but not shown)");
        assert_eq!((summary.valid, summary.range), (0, None));
    }

    #[test]
    fn unreadable_input_names_the_file() {
        let estimator = AdvantageEstimator::parse("grpo", EPS).unwrap();
        let err = write_advantages(Path::new("/nonexistent/rows.jsonl"), estimator, io::sink(), |_| {}).unwrap_err();
        assert!(matches!(err, AdvantageFileError::Read { .. }));
        assert_eq!(err.to_string(), "cannot read input file /nonexistent/rows.jsonl");
    }
}
