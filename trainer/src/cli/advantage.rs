//! `omnirl advantage --estimator grpo|taura|grpo-no-std --input ROWS.jsonl`: what a rollout dump
//! would teach. Each input line is one stored turn `{"uid", "traj_uid", "reward", "entropy", ...}`
//! (`reward` = the episode reward, `entropy` = the turn entropy `h_r`, read by TAURA only); lines
//! sharing a `uid` form a GRPO group. Each output line (stdout, input order) is the input line with
//! every field kept in order and as written, plus `"advantage"` (an existing `advantage` field is
//! replaced). The estimators are `algo::advantage` (docs/reference.md#grpo,
//! docs/reference.md#taura): statistics over unique `(uid, traj_uid)` trajectories (a
//! trajectory's reward counts once however many turns it has), unbiased std, ε = 1e-6
//! (`--epsilon`), a group of one trajectory has mean 0 and std 1; TAURA weights each turn by
//! `h_r / (h̄_g + 1e-8)` with `h̄_g` over all the group's lines.
//!
//! A malformed line (not UTF-8, not a JSON object, `uid`/`traj_uid` missing or not a string or
//! number, `reward` missing or not a finite number, under TAURA `entropy` likewise) is reported
//! on stderr as `line N: <reason>` (the first 100) and still produces an output line, like
//! `omnirl score`: its fields plus `"advantage": null, "error": "INVALID_INPUT_LINE"` (a line that
//! is not an object becomes `{"line": N, "advantage": null, "error": "INVALID_INPUT_LINE"}`). It
//! takes no part in any group's statistics. Exit status 0 whatever the lines hold; 2 when the
//! file cannot be read. A summary goes to stderr.
//!
//! The file is read twice (keys and numbers first, then the output pass), so memory holds a few
//! numbers per line, not the lines. Left out: stdin input, `--ignore-exceed` (off in the
//! reference).

use crate::algo::advantage::{AdvantageEstimator, AdvantageRow, DEFAULT_EPSILON, EXPLODED_ABS};
use anyhow::Context as _;
use clap::Args;
use rewards::record::{INVALID_INPUT_LINE, Record};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct AdvantageArgs {
    /// Advantage estimator.
    #[arg(long, value_parser = ["grpo", "taura", "grpo-no-std"])]
    pub estimator: String,
    /// JSONL file, one line per turn: `uid`, `traj_uid`, `reward` (episode reward), `entropy`.
    #[arg(long)]
    pub input: PathBuf,
    /// Added to the group standard deviation (the reference's 1e-6).
    #[arg(long, default_value_t = DEFAULT_EPSILON)]
    pub epsilon: f64,
}

/// Malformed lines reported individually on stderr; the rest are only counted.
const MAX_LINE_REPORTS: usize = 100;

/// What the first pass keeps of a valid line.
struct Parsed {
    uid: String,
    traj_uid: String,
    reward: f64,
    entropy: Option<f64>,
}

pub fn run(args: &AdvantageArgs) -> anyhow::Result<ExitCode> {
    let estimator = AdvantageEstimator::parse(&args.estimator, args.epsilon)
        .with_context(|| format!("unknown estimator `{}`", args.estimator))?;
    let path = &args.input;

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
    // Parsing guarantees finite numbers (and entropies under TAURA), so this cannot fail.
    let computed = estimator.compute(&rows, false).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut advantage: Vec<Option<f64>> = vec![None; lines.len()];
    for ((i, _), a) in valid.iter().zip(&computed.values) {
        advantage[*i] = Some(*a);
    }
    let summary = Summary::of(&rows, &computed.values, lines.len());

    // Pass 2: write each line with its advantage.
    let mut out = io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
    let mut reported = 0usize;
    let mut write_err = None;
    for_each_line(path, |no, bytes| {
        let i = (no - 1) as usize;
        let text = match (&lines.get(i), advantage.get(i).copied().flatten()) {
            (Some(Ok(_)), Some(a)) => output_valid(bytes, a),
            (Some(Err(reason)), _) => {
                reported += 1;
                if reported <= MAX_LINE_REPORTS {
                    eprintln!("line {no}: {reason}");
                } else if reported == MAX_LINE_REPORTS + 1 {
                    eprintln!("(further malformed lines are counted but not shown)");
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
    let flushed = match write_err {
        Some(e) => Err(e),
        None => out.flush(),
    };
    if let Err(e) = flushed {
        // A closed pipe (`omnirl advantage ... | head`) ends the run quietly.
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Ok(ExitCode::SUCCESS);
        }
        anyhow::bail!("cannot write to stdout: {e}");
    }
    summary.print(path, estimator.name());
    Ok(ExitCode::SUCCESS)
}

/// Calls `f(line_number, bytes)` for each line (terminator removed) until it returns false.
fn for_each_line(path: &Path, mut f: impl FnMut(u64, &[u8]) -> bool) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("cannot read input file {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut no = 0u64;
    loop {
        buf.clear();
        let n =
            reader.read_until(b'\n', &mut buf).with_context(|| format!("cannot read input file {}", path.display()))?;
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

/// Counts and ranges for the stderr summary.
struct Summary {
    lines: usize,
    valid: usize,
    groups: usize,
    trajectories: usize,
    inconsistent: usize,
    exploded: usize,
    range: Option<(f64, f64, f64)>,
}

impl Summary {
    fn of(rows: &[AdvantageRow<'_>], values: &[f64], lines: usize) -> Summary {
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
        Summary {
            lines,
            valid: rows.len(),
            groups: groups.len(),
            trajectories: first.len(),
            inconsistent: inconsistent.len(),
            exploded: values.iter().filter(|a| a.abs() > EXPLODED_ABS).count(),
            range,
        }
    }

    fn print(&self, path: &Path, estimator: &str) {
        let mut s = format!(
            "omnirl advantage ({estimator}): {} line(s) from {}, {} valid, {} invalid; {} group(s), {} trajectories\n",
            self.lines,
            path.display(),
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
        eprint!("{s}");
    }
}
