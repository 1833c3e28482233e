//! The typed question samples: evaluation lines (docs/reference.md#data-eval) and RL training
//! lines (docs/reference.md#data-rl), plus the [`Record`] trait that the line checker uses for
//! every format.
//!
//! Required fields are the ones the environment cannot run without:
//! * eval: `video`, `question_type`, `question`, `answer` (`options` for MCQ). Duration, fps
//!   and audio presence are probed from the video at eval time, as in the reference.
//! * RL: the same plus `fps`, `duration_seconds` and `has_audio`, which the reference reads
//!   from the line (META block, bounds checks, step budget, clip minimum length).
//!
//! `prompt` (a dummy list the reference's dataset loader needs), `data_source`, `ability` and
//! `extra_info` are optional; if present they must have their documented type. Any other
//! field is kept, untouched, in `extra` and written back on serialization. `null` counts as
//! absent for optional fields; `options` may be absent, `null` or `[]` for non-MCQ types.
//!
//! Left out: the key order of the original line (serde_json maps are sorted by key), and the
//! distinction between `options: null` and `options: []` (both read as no options).

use super::DataFormat;
use super::answer::{check_answer, take_answer, take_question_type};
use super::fields::{Issue, LineCx, MediaKind, Need, ProblemCode, describe, num};
use super::paths::MediaBase;
use rewards::QuestionType;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::path::PathBuf;

/// One line format: how to build a record from a parsed JSON object, reporting problems.
pub trait Record: Sized + Send {
    /// The format this record belongs to.
    const FORMAT: DataFormat;

    /// Builds the record from one line's object, recording every problem in `cx`. Returns
    /// `None` when a required value is unusable; the caller also drops the record when `cx`
    /// holds any error.
    fn from_object(obj: Map<String, Value>, cx: &mut LineCx) -> Option<Self>;

    /// The normalised and raw question type, when the record has one.
    fn question_type(&self) -> Option<(QuestionType, &str)>;

    /// Relative media paths are also looked for next to the data file (SFT files: where
    /// `omnirl synth` writes the media of its lines).
    const MEDIA_NEXT_TO_FILE: bool = false;

    /// Resolves the record's media paths (see [`MediaBase`]).
    fn resolve_media(&mut self, base: &MediaBase);

    /// A key naming what the record describes when two lines must not describe the same
    /// thing (SFT: trajectory and step); a repeated key is a warning on the later line, and
    /// the key is quoted in it (`traj_id "t" step 3 already appears on line 12`).
    fn duplicate_key(&self) -> Option<String> {
        None
    }
}

/// The problems that kept a JSON object from being read as a record (used by the serde
/// `Deserialize` impls, which go through the same checks as the file checker).
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaError(pub Vec<Issue>);

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match &issue.field {
                Some(field) => write!(f, "field \"{field}\": {}", issue.message)?,
                None => f.write_str(&issue.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for SchemaError {}

/// Parses one data line as a record, with the line checker's rules, resolving its media paths
/// against `base`: for readers that stream a file line by line (the dry run has checked it).
pub fn parse_record<R: Record>(line: &str, base: &MediaBase) -> Result<R, SchemaError> {
    let obj = match serde_json::from_str::<Value>(line.trim()) {
        Ok(Value::Object(obj)) => obj,
        Ok(other) => {
            let message = format!("expected a JSON object, found {}", describe(&other));
            return Err(SchemaError(vec![line_error(ProblemCode::NotObject, message)]));
        }
        Err(e) => return Err(SchemaError(vec![line_error(ProblemCode::Json, e.to_string())])),
    };
    let mut r = record_from_map::<R>(obj)?;
    r.resolve_media(base);
    Ok(r)
}

fn line_error(code: ProblemCode, message: String) -> Issue {
    Issue { severity: super::Severity::Error, code, field: None, message }
}

/// Builds a record from a map the way the checker does, for `#[serde(try_from)]`. Media
/// paths are resolved relative to the current directory (no media root).
pub(crate) fn record_from_map<R: Record>(obj: Map<String, Value>) -> Result<R, SchemaError> {
    let mut cx = LineCx::new();
    let record = R::from_object(obj, &mut cx);
    let errors: Vec<Issue> = cx.issues.into_iter().filter(|i| i.severity == super::Severity::Error).collect();
    match record {
        Some(mut r) if errors.is_empty() => {
            r.resolve_media(&MediaBase::default());
            Ok(r)
        }
        _ => Err(SchemaError(errors)),
    }
}

/// An evaluation sample (docs/reference.md#data-eval).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct EvalSample {
    /// The video path as written in the file.
    pub video: String,
    /// `video` resolved against the media root (see [`resolve_media_path`]).
    #[serde(skip)]
    pub video_path: PathBuf,
    /// The raw label, e.g. `MCQ_LongVR-Short` (kept for per-task metrics).
    pub question_type: String,
    /// The normalised type, e.g. `Mcq`.
    #[serde(skip)]
    pub qtype: QuestionType,
    pub question: String,
    /// Options with their `"A. "` labels; empty for non-MCQ types.
    pub options: Vec<String>,
    /// The ground truth as a string (a one-element list is unwrapped; inline TR spans are
    /// kept as their JSON text).
    pub answer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ability: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_source: Option<String>,
    /// Eval breakdown metadata (`split`, `index`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_info: Option<Map<String, Value>>,
    /// Every other field of the line, unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An RL training sample (docs/reference.md#data-rl).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct RlSample {
    /// The reference's dummy `[{"content": "", "role": "user"}]`, kept as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Value>,
    pub question_type: String,
    #[serde(skip)]
    pub qtype: QuestionType,
    pub question: String,
    pub answer: String,
    pub options: Vec<String>,
    pub video: String,
    #[serde(skip)]
    pub video_path: PathBuf,
    /// Source frame rate (> 0).
    pub fps: f64,
    /// Source duration in seconds (> 0).
    pub duration_seconds: f64,
    pub has_audio: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ability: Option<String>,
    /// Teacher metadata: `traj_id`, `error_reason`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_info: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RlSample {
    /// `extra_info.traj_id`, when it is a string.
    pub fn traj_id(&self) -> Option<&str> {
        self.extra_info.as_ref()?.get("traj_id")?.as_str()
    }

    /// `extra_info.error_reason`, when it is a string.
    pub fn error_reason(&self) -> Option<&str> {
        self.extra_info.as_ref()?.get("error_reason")?.as_str()
    }
}

impl TryFrom<Map<String, Value>> for EvalSample {
    type Error = SchemaError;
    fn try_from(obj: Map<String, Value>) -> Result<Self, SchemaError> {
        record_from_map(obj)
    }
}

impl TryFrom<Map<String, Value>> for RlSample {
    type Error = SchemaError;
    fn try_from(obj: Map<String, Value>) -> Result<Self, SchemaError> {
        record_from_map(obj)
    }
}

/// The fields eval and RL lines share, taken and type-checked.
struct Qa {
    question_type: Option<(String, Option<QuestionType>)>,
    question: Option<String>,
    options: Option<Vec<String>>,
    answer: Option<String>,
    video: Option<String>,
}

fn take_qa(cx: &mut LineCx, obj: &mut Map<String, Value>) -> Qa {
    let video = cx.take_str(obj, "video", Need::Required);
    if let Some(v) = &video {
        if v.trim().is_empty() {
            cx.error(ProblemCode::BadValue, Some("video"), "video path is empty");
        } else {
            cx.media(MediaKind::Video, v, "video".to_string());
        }
    }
    let question_type = take_question_type(cx, obj);
    let qtype = question_type.as_ref().and_then(|(_, q)| *q);
    let question = cx.take_str(obj, "question", Need::Required);
    if question.as_deref().is_some_and(|q| q.trim().is_empty()) {
        cx.warn(ProblemCode::BadValue, Some("question"), "question is empty");
    }
    let options = cx.take_str_list(obj, "options", Need::Optional);
    let answer = take_answer(cx, obj, qtype);
    Qa { question_type, question, options, answer, video }
}

/// Runs the answer checks once the type, answer and options are all readable.
fn check_qa(cx: &mut LineCx, qa: &Qa, duration: Option<f64>) {
    if let (Some((_, Some(qt))), Some(answer), Some(options)) = (&qa.question_type, &qa.answer, &qa.options) {
        check_answer(cx, *qt, answer, options, duration);
    }
}

/// Takes an optional string metadata field.
fn take_meta(
    cx: &mut LineCx,
    obj: &mut Map<String, Value>,
) -> (Option<String>, Option<String>, Option<Map<String, Value>>) {
    let ability = cx.take_str(obj, "ability", Need::Optional);
    let data_source = cx.take_str(obj, "data_source", Need::Optional);
    let extra_info = cx.take_object(obj, "extra_info", Need::Optional);
    (ability, data_source, extra_info)
}

impl Record for EvalSample {
    const FORMAT: DataFormat = DataFormat::Eval;

    fn from_object(mut obj: Map<String, Value>, cx: &mut LineCx) -> Option<Self> {
        let qa = take_qa(cx, &mut obj);
        let (ability, data_source, extra_info) = take_meta(cx, &mut obj);
        check_qa(cx, &qa, None);
        let (question_type, qtype) = qa.question_type?;
        Some(EvalSample {
            video_path: PathBuf::new(),
            video: qa.video?,
            question_type,
            qtype: qtype?,
            question: qa.question?,
            options: qa.options?,
            answer: qa.answer?,
            ability,
            data_source,
            extra_info,
            extra: obj,
        })
    }

    fn question_type(&self) -> Option<(QuestionType, &str)> {
        Some((self.qtype, &self.question_type))
    }

    fn resolve_media(&mut self, base: &MediaBase) {
        self.video_path = base.resolve(&self.video);
    }
}

/// A number that must be finite and strictly positive (`fps`, `duration_seconds`).
fn take_positive(cx: &mut LineCx, obj: &mut Map<String, Value>, key: &str, why: &str) -> Option<f64> {
    let x = cx.take_f64(obj, key, Need::Required)?;
    if x.is_finite() && x > 0.0 {
        Some(x)
    } else {
        cx.error(ProblemCode::BadValue, Some(key), format!("must be a positive number ({why}), found {}", num(x)));
        None
    }
}

impl Record for RlSample {
    const FORMAT: DataFormat = DataFormat::Rl;

    fn from_object(mut obj: Map<String, Value>, cx: &mut LineCx) -> Option<Self> {
        let prompt = cx.take(&mut obj, "prompt", Need::Optional);
        if let Some(p) = prompt.as_ref().filter(|p| !p.is_array()) {
            cx.warn(
                ProblemCode::WrongType,
                Some("prompt"),
                format!("expected a list of messages (the reference dataset loader needs one), found {}", describe(p)),
            );
        }
        let qa = take_qa(cx, &mut obj);
        let fps = take_positive(cx, &mut obj, "fps", "the clip length rule divides by it");
        let duration = take_positive(cx, &mut obj, "duration_seconds", "it bounds every timestamp");
        let has_audio = cx.take_bool(&mut obj, "has_audio", Need::Required);
        let (ability, data_source, extra_info) = take_meta(cx, &mut obj);
        check_qa(cx, &qa, duration);
        let (question_type, qtype) = qa.question_type?;
        Some(RlSample {
            prompt,
            question_type,
            qtype: qtype?,
            question: qa.question?,
            answer: qa.answer?,
            options: qa.options?,
            video: qa.video?,
            video_path: PathBuf::new(),
            fps: fps?,
            duration_seconds: duration?,
            has_audio: has_audio?,
            data_source,
            ability,
            extra_info,
            extra: obj,
        })
    }

    fn question_type(&self) -> Option<(QuestionType, &str)> {
        Some((self.qtype, &self.question_type))
    }

    fn resolve_media(&mut self, base: &MediaBase) {
        self.video_path = base.resolve(&self.video);
    }
}
