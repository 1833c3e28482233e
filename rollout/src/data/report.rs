//! What checking one data file produces: located problems and counts, serializable for
//! `omnirl validate --json`, printable one problem per line.
//!
//! Problems are sorted by line (file-level problems first) and capped at
//! `CheckOptions::max_problems`, so a file in the wrong format does not print one hundred
//! thousand lines; the totals (`errors`, `warnings`, `problems_omitted`) still count all of
//! them.
//!
//! Left out: colouring and grouping of similar problems ("the same error on 9,000 lines"),
//! which belong to the CLI's presentation.

use super::DataFormat;
use super::fields::{ProblemCode, Severity};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// One problem with its exact location: `data/rl.jsonl:17: field "fps": expected a number,
/// found string "30"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataProblem {
    pub severity: Severity,
    pub code: ProblemCode,
    /// The data file, as given to the checker.
    pub file: PathBuf,
    /// 1-based line number; `None` for problems of the whole file (unreadable, empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Field path inside the line, e.g. `raw_input[3].content[1].image`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What was expected and what was found.
    pub message: String,
}

impl DataProblem {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `data/rl.jsonl:17`, or just the file for file-level problems.
    pub fn location(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.file.display()),
            None => self.file.display().to_string(),
        }
    }

    /// The message with its field: `field "fps": expected a number, found string "30"`.
    pub fn detail(&self) -> String {
        match &self.field {
            Some(field) => format!("field \"{field}\": {}", self.message),
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for DataProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.detail())
    }
}

/// The result of checking one data file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataReport {
    pub file: PathBuf,
    pub format: DataFormat,
    /// Physical lines in the file (a final newline does not start another line).
    pub lines: usize,
    /// Lines holding only whitespace; skipped without a problem.
    pub blank_lines: usize,
    /// Lines that are valid records (media aside).
    pub samples: usize,
    /// Non-blank lines with at least one error of their own (media errors not included).
    pub bad_lines: usize,
    /// Totals over all problems, including the omitted ones.
    pub errors: usize,
    pub warnings: usize,
    /// Valid samples per normalised question type (`MCQ`, `TR`, ...). For SFT, taken from
    /// `extra_info.question_type` when it is there.
    pub question_types: BTreeMap<String, usize>,
    /// Valid samples per raw question type label (`MCQ_LongVR-Short`, ...).
    pub raw_question_types: BTreeMap<String, usize>,
    /// Distinct media paths referenced (videos for eval/RL; every media part for SFT).
    pub distinct_media: usize,
    /// Distinct media paths that are missing or unusable.
    pub missing_media: usize,
    /// Whether media files were looked for on disk.
    pub media_checked: bool,
    /// Resolved paths of the distinct videos that were found (every referenced video when
    /// `media_checked` is false), sorted; for the ffprobe pass.
    pub videos: Vec<PathBuf>,
    /// The first `max_problems` problems, sorted by line.
    pub problems: Vec<DataProblem>,
    /// Problems found beyond the cap.
    pub problems_omitted: usize,
}

impl DataReport {
    /// True when the file has no errors (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors == 0
    }

    /// One line: `data/rl.jsonl (RL): 1000 lines, 998 samples (MCQ 600, TR 398), 120
    /// distinct media files; 2 errors, 1 warning`.
    pub fn summary(&self) -> String {
        let types: Vec<String> = self.question_types.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let types = if types.is_empty() { String::new() } else { format!(" ({})", types.join(", ")) };
        let plural = |n: usize, word: &str| {
            if n == 1 { format!("{n} {word}") } else { format!("{n} {word}s") }
        };
        let media = if self.media_checked {
            format!("{} ({} missing)", plural(self.distinct_media, "distinct media file"), self.missing_media)
        } else {
            format!("{} (not checked)", plural(self.distinct_media, "distinct media file"))
        };
        format!(
            "{} ({}): {}, {}{}, {}; {}, {}",
            self.file.display(),
            self.format.label(),
            plural(self.lines, "line"),
            plural(self.samples, "sample"),
            types,
            media,
            plural(self.errors, "error"),
            plural(self.warnings, "warning"),
        )
    }
}
