//! The dataset formats (docs/reference.md#data-formats) and the checks `omnirl validate` runs on them.
//!
//! Three JSONL formats, one JSON object per line: evaluation questions ([`EvalSample`]), RL
//! training questions ([`RlSample`]) and SFT turns ([`SftTurn`]). [`check_file`] reports
//! every problem of a file with its line and field, without stopping at the first;
//! the `load_*` functions are what training and evaluation use, and fail on the first error
//! with its `file:line`.
//!
//! Checks, beyond the field types of each schema:
//! * the question type normalises (`MCQ_x` -> MCQ) to one the environment knows;
//! * the ground truth is scorable for its type (MCQ letter among the option labels, TR spans
//!   parse and are not reversed, NUM/SIZE hold a number, FF non-empty), see `answer.rs`;
//! * RL: `fps` and `duration_seconds` are positive, `has_audio` is a bool;
//! * SFT: roles, part types, 1-based steps, a non-empty target, the context ending with a
//!   user message;
//! * every referenced video or media file exists (see `paths.rs`).
//!
//! Left out: probing videos (duration, streams) with ffprobe, which is a later issue; the
//! report hands it the distinct video paths that exist.

mod answer;
mod fields;
mod jsonl;
mod paths;
mod report;
mod schema;
mod sft;

pub use fields::{Issue, LineCx, MediaKind, ProblemCode, Severity, describe};
pub use paths::{MediaBase, is_remote, resolve_media_path};
pub use report::{DataProblem, DataReport};
pub use schema::{EvalSample, Record, RlSample, SchemaError, parse_record};
pub use sft::{ChatMessage, ContentPart, MessageContent, PartKind, Role, SftTurn};

use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The three line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// Evaluation questions (docs/reference.md#data-eval).
    Eval,
    /// RL training questions with video metadata (docs/reference.md#data-rl).
    Rl,
    /// SFT turns (docs/reference.md#data-sft).
    Sft,
}

impl DataFormat {
    /// The lower-case name used on the command line and in JSON: `eval`, `rl`, `sft`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataFormat::Eval => "eval",
            DataFormat::Rl => "rl",
            DataFormat::Sft => "sft",
        }
    }

    /// The name used in messages: `eval`, `RL`, `SFT`.
    pub fn label(self) -> &'static str {
        match self {
            DataFormat::Eval => "eval",
            DataFormat::Rl => "RL",
            DataFormat::Sft => "SFT",
        }
    }
}

impl fmt::Display for DataFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A data format name that is not `eval`, `rl` or `sft`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown data format {0:?} (expected eval, rl or sft)")]
pub struct UnknownFormat(pub String);

impl FromStr for DataFormat {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "eval" => Ok(DataFormat::Eval),
            "rl" => Ok(DataFormat::Rl),
            "sft" => Ok(DataFormat::Sft),
            _ => Err(UnknownFormat(s.to_string())),
        }
    }
}

/// How to check a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Directory that relative media paths are resolved against; `None` means the current
    /// directory, as in the reference.
    pub media_root: Option<PathBuf>,
    /// Look for every referenced media file on disk.
    pub check_media: bool,
    /// How many problems the report keeps (the totals count all of them).
    pub max_problems: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { media_root: None, check_media: true, max_problems: 200 }
    }
}

impl CheckOptions {
    /// Default options with relative media paths resolved against `root`.
    pub fn with_media_root(root: Option<&Path>) -> Self {
        CheckOptions { media_root: root.map(Path::to_path_buf), ..CheckOptions::default() }
    }
}

/// Why a data file could not be loaded: its first error, located.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    #[error("{first}{}", more_errors(*.more))]
    Invalid {
        first: Box<DataProblem>,
        /// Errors after the first one.
        more: usize,
    },
}

fn more_errors(more: usize) -> String {
    match more {
        0 => String::new(),
        1 => " (and 1 more error; `omnirl validate` lists them all)".to_string(),
        n => format!(" (and {n} more errors; `omnirl validate` lists them all)"),
    }
}

impl DataError {
    /// The first problem that stopped the load.
    pub fn problem(&self) -> &DataProblem {
        match self {
            DataError::Invalid { first, .. } => first,
        }
    }
}

/// Checks a data file line by line; every problem is in the report (up to the cap).
pub fn check_file(path: &Path, format: DataFormat, opts: &CheckOptions) -> DataReport {
    match format {
        DataFormat::Eval => jsonl::check_path::<EvalSample, ()>(path, opts, None).report,
        DataFormat::Rl => jsonl::check_path::<RlSample, ()>(path, opts, None).report,
        DataFormat::Sft => jsonl::check_path::<SftTurn, ()>(path, opts, None).report,
    }
}

/// Like [`check_file`] on contents already in memory; `name` labels the problems.
pub fn check_bytes(name: &Path, bytes: &[u8], format: DataFormat, opts: &CheckOptions) -> DataReport {
    match format {
        DataFormat::Eval => jsonl::check_bytes::<EvalSample, ()>(name, bytes, opts, None).report,
        DataFormat::Rl => jsonl::check_bytes::<RlSample, ()>(name, bytes, opts, None).report,
        DataFormat::Sft => jsonl::check_bytes::<SftTurn, ()>(name, bytes, opts, None).report,
    }
}

/// Checks a file and also returns its valid records with their 1-based line numbers (media
/// paths resolved). Records of lines with errors are left out; see the report for those.
pub fn read_records<R: Record>(path: &Path, opts: &CheckOptions) -> (DataReport, Vec<(usize, R)>) {
    read_mapped(path, opts, |r: R| r)
}

/// Like [`read_records`], but keeps only `f(record)` for each valid record, computed in the
/// parallel workers: `read_mapped(path, &opts, |s: RlSample| s.duration_seconds)` checks the
/// file and collects the durations without holding every sample.
pub fn read_mapped<R: Record, T: Send>(
    path: &Path,
    opts: &CheckOptions,
    f: impl Fn(R) -> T + Sync,
) -> (DataReport, Vec<(usize, T)>) {
    let checked = jsonl::check_path::<R, T>(path, opts, Some(&f));
    (checked.report, checked.records)
}

/// Loads every record of a file, or fails with the first error (media included).
/// Warnings do not stop a load.
pub fn load_records<R: Record>(path: &Path, opts: &CheckOptions) -> Result<Vec<R>, DataError> {
    let checked = jsonl::check_path::<R, R>(path, opts, Some(&|r: R| r));
    match checked.first_error {
        Some(first) => Err(DataError::Invalid { first: Box::new(first), more: checked.report.errors - 1 }),
        None => Ok(checked.records.into_iter().map(|(_, r)| r).collect()),
    }
}

/// The format the first non-blank line of a file looks like, from its keys: `raw_input` ->
/// SFT; `fps`, `duration_seconds` or `has_audio` -> RL; `video` and `question` -> eval.
/// `None` when the file cannot be read or the line is not a JSON object with those keys.
/// (An RL file is also a valid eval file; this names the richer format.)
pub fn guess_format(path: &Path) -> Option<DataFormat> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).ok()?;
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        let text = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&line);
        if !text.trim_ascii().is_empty() {
            return jsonl::guess_format(text);
        }
    }
}

/// Loads an evaluation file; relative video paths are resolved against `media_root`.
pub fn load_eval_samples(path: &Path, media_root: Option<&Path>) -> Result<Vec<EvalSample>, DataError> {
    load_records(path, &CheckOptions::with_media_root(media_root))
}

/// Loads an RL training file; relative video paths are resolved against `media_root`.
pub fn load_rl_samples(path: &Path, media_root: Option<&Path>) -> Result<Vec<RlSample>, DataError> {
    load_records(path, &CheckOptions::with_media_root(media_root))
}

/// Loads an SFT file; relative media paths are resolved against `media_root`.
pub fn load_sft_turns(path: &Path, media_root: Option<&Path>) -> Result<Vec<SftTurn>, DataError> {
    load_records(path, &CheckOptions::with_media_root(media_root))
}
