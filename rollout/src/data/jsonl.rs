//! The JSONL checking engine: read the whole file, split it into lines, parse and check the
//! lines in parallel (rayon, line numbers kept), then aggregate in file order so the report
//! is the same on every run and every core count.
//!
//! Decisions: lines that are empty or only whitespace are skipped without a problem (a
//! trailing blank line is common and harmless) and counted in `blank_lines`; `\r\n` endings
//! are accepted; a UTF-8 byte-order mark at the start of the file is skipped with a warning.
//! JSON errors give the column inside the line (1-based, in bytes, as serde_json counts).
//!
//! The workers also summarise each valid record (question type, duplicate key) and then
//! either drop it (`check_file`) or map it to what the caller keeps (the record itself for the
//! loaders, or a projection such as the duration), so no large set of records is built or
//! dropped on one thread unless it is asked for.
//!
//! Left out: streaming. The file is read into memory at once, which is what makes the
//! parallel split simple; data files are tens of megabytes (SFT files with long contexts may
//! reach gigabytes, which still fit the training hosts' memory). `NaN` and `Infinity` are
//! rejected like any invalid JSON (Python accepts them; a hint says so).

use super::fields::{Issue, LineCx, MediaRef, ProblemCode, Severity, describe};
use super::paths::{MediaBase, MediaIndex, check_media};
use super::report::{DataProblem, DataReport};
use super::schema::Record;
use super::{CheckOptions, DataFormat};
use rayon::prelude::*;
use rewards::QuestionType;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Records of one file with their 1-based line numbers, and the report.
pub(crate) struct Checked<T> {
    pub report: DataReport,
    pub records: Vec<(usize, T)>,
    /// The first error in line order, kept even when the problem list is capped.
    pub first_error: Option<DataProblem>,
}

/// What one line produced.
struct LineOut<T> {
    blank: bool,
    issues: Vec<Issue>,
    media: Vec<MediaRef>,
    /// Present when the line is a valid record.
    sample: Option<SampleInfo>,
    /// The caller's projection of the record, when it asked for one.
    record: Option<T>,
}

struct SampleInfo {
    qtype: Option<(QuestionType, String)>,
    duplicate_key: Option<String>,
}

impl<T> LineOut<T> {
    fn blank() -> Self {
        LineOut { blank: true, issues: Vec::new(), media: Vec::new(), sample: None, record: None }
    }

    fn one(severity: Severity, code: ProblemCode, message: String) -> Self {
        LineOut {
            blank: false,
            issues: vec![Issue { severity, code, field: None, message }],
            media: Vec::new(),
            sample: None,
            record: None,
        }
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Splits `bytes` into lines; a final `\n` does not start an extra empty line.
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        lines.pop();
    }
    lines
}

/// `serde_json`'s message without its `at line 1 column N` suffix, with our column.
fn json_error_message(e: &serde_json::Error, text: &[u8], offset: usize) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&suffix).unwrap_or(&full);
    let column = e.column() + offset;
    let mut out = format!("not valid JSON: {msg} at column {column}");
    let rest = text.get(e.column().saturating_sub(1)..).unwrap_or_default();
    if [&b"NaN"[..], b"Infinity", b"-Infinity"].iter().any(|w| rest.starts_with(w)) {
        out.push_str(" (NaN and Infinity are not valid JSON; write null or a number)");
    }
    out
}

/// Maps a valid record (media resolved) to what the caller keeps.
pub(crate) type Keep<'a, R, T> = Option<&'a (dyn Fn(R) -> T + Sync)>;

fn check_line<R: Record, T>(raw: &[u8], keep: Keep<'_, R, T>, base: &MediaBase) -> LineOut<T> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let text = raw.trim_ascii();
    if text.is_empty() {
        return LineOut::blank();
    }
    let offset = raw.len() - raw.trim_ascii_start().len();
    let obj = match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(obj)) => obj,
        Ok(other) => {
            let msg = format!("expected a JSON object, found {}", describe(&other));
            return LineOut::one(Severity::Error, ProblemCode::NotObject, msg);
        }
        Err(e) => {
            let msg = json_error_message(&e, text, offset);
            return LineOut::one(Severity::Error, ProblemCode::Json, msg);
        }
    };
    let mut cx = LineCx::new();
    let record = R::from_object(obj, &mut cx).filter(|_| !cx.has_errors());
    let sample = record.as_ref().map(|r| SampleInfo {
        qtype: r.question_type().map(|(q, raw)| (q, raw.to_string())),
        duplicate_key: r.duplicate_key(),
    });
    let record = record.zip(keep).map(|(mut r, f)| {
        r.resolve_media(base);
        f(r)
    });
    LineOut { blank: false, issues: cx.issues, media: cx.media, sample, record }
}

/// Which format a line's keys suggest, for the "wrong format?" hint.
pub(crate) fn guess_format(line: &[u8]) -> Option<DataFormat> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(line.trim_ascii()) else {
        return None;
    };
    if obj.contains_key("raw_input") || (obj.contains_key("traj_id") && obj.contains_key("output")) {
        Some(DataFormat::Sft)
    } else if obj.contains_key("fps") || obj.contains_key("duration_seconds") || obj.contains_key("has_audio") {
        Some(DataFormat::Rl)
    } else if obj.contains_key("video") && obj.contains_key("question") {
        Some(DataFormat::Eval)
    } else {
        None
    }
}

/// A report for a file that could not be read at all.
pub(crate) fn unreadable<T>(file: &Path, format: DataFormat, opts: &CheckOptions, err: &std::io::Error) -> Checked<T> {
    let problem = DataProblem {
        severity: Severity::Error,
        code: ProblemCode::Io,
        file: file.to_path_buf(),
        line: None,
        field: None,
        message: format!("cannot read the data file: {err}"),
    };
    let report = DataReport {
        file: file.to_path_buf(),
        format,
        lines: 0,
        blank_lines: 0,
        samples: 0,
        bad_lines: 0,
        errors: 1,
        warnings: 0,
        question_types: BTreeMap::new(),
        raw_question_types: BTreeMap::new(),
        distinct_media: 0,
        missing_media: 0,
        media_checked: opts.check_media,
        videos: Vec::new(),
        problems: vec![problem.clone()],
        problems_omitted: 0,
    };
    Checked { report, records: Vec::new(), first_error: Some(problem) }
}

/// Checks the contents of a data file; `file` is only used to name it in the report.
///
/// Valid records are passed through `keep` in the workers and returned; without it they are
/// dropped there, which halves the checker's time on large files.
pub(crate) fn check_bytes<R: Record, T: Send>(
    file: &Path,
    bytes: &[u8],
    opts: &CheckOptions,
    keep: Keep<'_, R, T>,
) -> Checked<T> {
    let mut lines = split_lines(bytes);
    let mut located: Vec<(usize, Issue)> = Vec::new();
    if let Some(first) = lines.first_mut()
        && let Some(rest) = first.strip_prefix(BOM)
    {
        *first = rest;
        located.push((
            1,
            Issue {
                severity: Severity::Warning,
                code: ProblemCode::Json,
                field: None,
                message: "the file starts with a UTF-8 byte-order mark (skipped; Python's json.loads rejects it)"
                    .to_string(),
            },
        ));
    }
    let base = MediaBase {
        root: opts.media_root.clone(),
        file_dir: R::MEDIA_NEXT_TO_FILE.then(|| file.parent().map(Path::to_path_buf)).flatten(),
    };
    let outs: Vec<LineOut<T>> = lines.par_iter().map(|l| check_line::<R, T>(l, keep, &base)).collect();

    let mut tally = Tally::default();
    for (i, out) in outs.into_iter().enumerate() {
        tally.add(i + 1, out, &mut located);
    }
    let Tally { blank_lines, bad_lines, samples, index, records, question_types, raw_question_types, .. } = tally;
    let media = check_media(index, &base, opts.check_media);
    located.extend(media.issues);
    located.sort_by_key(|(line, _)| *line);
    if let Some(issue) = file_issue::<R>(&lines, blank_lines, samples) {
        located.insert(0, (0, issue));
    }

    let errors = located.iter().filter(|(_, x)| x.severity == Severity::Error).count();
    let warnings = located.len() - errors;
    let locate = |line: usize, x: Issue| DataProblem {
        severity: x.severity,
        code: x.code,
        file: file.to_path_buf(),
        line: (line > 0).then_some(line),
        field: x.field,
        message: x.message,
    };
    let first_error =
        located.iter().find(|(_, x)| x.severity == Severity::Error).map(|(line, x)| locate(*line, x.clone()));
    let problems_omitted = located.len().saturating_sub(opts.max_problems);
    located.truncate(opts.max_problems);
    let problems = located.into_iter().map(|(line, x)| locate(line, x)).collect();
    let report = DataReport {
        file: file.to_path_buf(),
        format: R::FORMAT,
        lines: lines.len(),
        blank_lines,
        samples,
        bad_lines,
        errors,
        warnings,
        question_types,
        raw_question_types,
        distinct_media: media.distinct,
        missing_media: media.missing,
        media_checked: opts.check_media,
        videos: media.videos,
        problems,
        problems_omitted,
    };
    Checked { report, records, first_error }
}

/// What the lines of a file add up to, in line order.
struct Tally<T> {
    blank_lines: usize,
    bad_lines: usize,
    samples: usize,
    index: MediaIndex,
    records: Vec<(usize, T)>,
    question_types: BTreeMap<String, usize>,
    raw_question_types: BTreeMap<String, usize>,
    /// Duplicate key -> the line it first appears on.
    first_seen: HashMap<String, usize>,
}

impl<T> Default for Tally<T> {
    fn default() -> Self {
        Tally {
            blank_lines: 0,
            bad_lines: 0,
            samples: 0,
            index: MediaIndex::default(),
            records: Vec::new(),
            question_types: BTreeMap::new(),
            raw_question_types: BTreeMap::new(),
            first_seen: HashMap::new(),
        }
    }
}

impl<T> Tally<T> {
    /// Adds line `line`'s check to the tally, its issues (and a duplicate's) to `located`.
    fn add(&mut self, line: usize, out: LineOut<T>, located: &mut Vec<(usize, Issue)>) {
        if out.blank {
            self.blank_lines += 1;
            return;
        }
        if out.issues.iter().any(|x| x.severity == Severity::Error) {
            self.bad_lines += 1;
        }
        for m in out.media {
            self.index.add(line, m.kind, m.path, m.field);
        }
        located.extend(out.issues.into_iter().map(|x| (line, x)));
        if let Some(info) = out.sample {
            self.samples += 1;
            if let Some((qt, raw)) = info.qtype {
                *self.question_types.entry(qt.as_str().to_string()).or_insert(0) += 1;
                *self.raw_question_types.entry(raw).or_insert(0) += 1;
            }
            if let Some(key) = info.duplicate_key {
                if let Some(first) = self.first_seen.get(&key) {
                    let message = format!("{key} already appears on line {first}");
                    located.push((line, duplicate_issue(message)));
                } else {
                    self.first_seen.insert(key, line);
                }
            }
        }
        if let Some(r) = out.record {
            self.records.push((line, r));
        }
    }
}

/// The whole file's problem, if any: no data lines (an error), or no valid line while the
/// lines look like another data format (a warning).
fn file_issue<R: Record>(lines: &[&[u8]], blank_lines: usize, samples: usize) -> Option<Issue> {
    if lines.len() == blank_lines {
        return Some(Issue {
            severity: Severity::Error,
            code: ProblemCode::Empty,
            field: None,
            message: "the file has no data lines".to_string(),
        });
    }
    if samples > 0 {
        return None;
    }
    let guess = lines.iter().find(|l| !l.trim_ascii().is_empty()).and_then(|l| guess_format(l))?;
    (guess != R::FORMAT).then(|| Issue {
        severity: Severity::Warning,
        code: ProblemCode::FormatMismatch,
        field: None,
        message: format!(
            "no line is a valid {} line, and the lines look like {} data: is this the right data format?",
            R::FORMAT.label(),
            guess.label()
        ),
    })
}

fn duplicate_issue(message: String) -> Issue {
    Issue { severity: Severity::Warning, code: ProblemCode::Duplicate, field: None, message }
}

/// Reads and checks a data file (see [`check_bytes`] for `keep`).
pub(crate) fn check_path<R: Record, T: Send>(file: &Path, opts: &CheckOptions, keep: Keep<'_, R, T>) -> Checked<T> {
    match std::fs::read(file) {
        Ok(bytes) => check_bytes(file, &bytes, opts, keep),
        Err(e) => unreadable(file, R::FORMAT, opts, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_blank_lines_but_not_a_final_newline() {
        let cases: [(&[u8], usize); 6] =
            [(b"", 0), (b"\n", 1), (b"a", 1), (b"a\n", 1), (b"a\n\nb", 3), (b"a\r\nb\r\n", 2)];
        for (bytes, want) in cases {
            assert_eq!(split_lines(bytes).len(), want, "{bytes:?}");
        }
    }

    #[test]
    fn json_errors_name_the_column_in_the_line() {
        let text = br#"{"a": 1 "b": 2}"#;
        let e = serde_json::from_slice::<Value>(text).unwrap_err();
        assert_eq!(json_error_message(&e, text, 0), "not valid JSON: expected `,` or `}` at column 9");
        assert_eq!(json_error_message(&e, text, 2), "not valid JSON: expected `,` or `}` at column 11");
        let text = br#"{"fps": NaN}"#;
        let e = serde_json::from_slice::<Value>(text).unwrap_err();
        assert!(
            json_error_message(&e, text, 0).ends_with("(NaN and Infinity are not valid JSON; write null or a number)")
        );
    }
}
