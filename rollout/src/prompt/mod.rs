//! Prompts: the system-prompt template (this file) and the first user message
//! ([`question`]).
//!
//! A template is a text file with `{name}` placeholders, filled per episode; `{{` and `}}` are
//! literal braces (as in Python's `str.format`, so the reference's builder text pastes in
//! unchanged). Placeholders (documented for users in `recipes/prompts/README.md`):
//!
//! | placeholder | value |
//! |---|---|
//! | `{max_frames}` (alias `{max_frames_len}`) | frames per `get_frames`, e.g. `60` |
//! | `{max_audio_seconds}` (alias `{max_audio_len}`) | seconds per `get_audio`, e.g. `300` |
//! | `{max_clip_seconds}` (alias `{max_clip_len}`) | seconds per `get_clip`, e.g. `60` |
//! | `{min_audio_seconds}` | shortest `get_audio`, e.g. `0.1` |
//! | `{min_clip_frames}` | source frames a clip must span, e.g. `4` |
//! | `{max_steps}` | this episode's effective turn budget, e.g. `9` |
//! | `{audio_tools}` | the `get_audio` guideline, or nothing when audio is hidden |
//! | `{audio_action}` | the `get_audio` JSON form, or nothing when audio is hidden |
//! | `{action_types}` | `get_frames|get_audio|get_clip|answer` (without `get_audio` when hidden) |
//!
//! Limits print as the reference prints them (integral values without a fraction). A line
//! that holds only placeholders which all render empty is removed with its newline, so hiding
//! `get_audio` leaves no blank line. An unknown placeholder or an unbalanced brace is an error
//! when the template is loaded, naming the line.
//!
//! The default template (`recipes/prompts/omniagent.txt`, compiled in) teaches the reference's
//! protocol in our own words. The released checkpoints were trained on the reference's exact
//! text (docs/reference.md#system-prompt-text); to run them as trained, point the recipe's
//! `environment.system_prompt` at a file holding that text.
//!
//! Left out: conditionals and loops in templates (placeholders cover every knob the reference
//! interpolates; the audio blocks are the one conditional, built in).

pub mod question;

use crate::episode::format::{limit_number, py_float_repr};
use std::fmt;
use std::path::Path;

/// The default system-prompt template.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../../recipes/prompts/omniagent.txt");

/// Every placeholder name a template may use.
pub const PLACEHOLDERS: [&str; 12] = [
    "max_frames",
    "max_frames_len",
    "max_audio_seconds",
    "max_audio_len",
    "max_clip_seconds",
    "max_clip_len",
    "min_audio_seconds",
    "min_clip_frames",
    "max_steps",
    "audio_tools",
    "audio_action",
    "action_types",
];

/// A template that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read system prompt template {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{origin}:{line}: unknown placeholder {{{name}}} (known: {known})", known = PLACEHOLDERS.join(", "))]
    Unknown { origin: String, line: usize, name: String },
    #[error("{origin}:{line}: unbalanced brace (write {{{{ or }}}} for a literal one)")]
    Brace { origin: String, line: usize },
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Var(&'static str),
}

/// A parsed template: lines of literal text and placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptTemplate {
    lines: Vec<Vec<Piece>>,
    origin: String,
}

/// The values of one episode's placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptVars {
    pub max_frames: u32,
    pub max_audio_seconds: f64,
    pub max_clip_seconds: f64,
    pub min_audio_seconds: f64,
    pub min_clip_frames: u32,
    pub max_steps: u32,
    /// Whether `get_audio` is offered.
    pub audio_available: bool,
}

/// The `{audio_tools}` text.
const AUDIO_TOOLS: &str = "- get_audio (at most {max_audio_seconds} s, at least {min_audio_seconds} s per call): \
listen to a stretch of the soundtrack. Transcribe speech nearly word for word, tell speakers apart \
(Speaker A, Speaker B, ...), and note music, alarms and other sounds, including ones whose source is off screen.";
/// The `{audio_action}` text.
const AUDIO_ACTION: &str = "{{\"type\": \"get_audio\", \"start\": <seconds>, \"end\": <seconds>}}";

impl PromptTemplate {
    /// The compiled-in default.
    pub fn default_template() -> Result<PromptTemplate, TemplateError> {
        PromptTemplate::parse(DEFAULT_TEMPLATE, "recipes/prompts/omniagent.txt")
    }

    /// Reads a template file.
    pub fn from_file(path: &Path) -> Result<PromptTemplate, TemplateError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TemplateError::Read { path: path.display().to_string(), source })?;
        PromptTemplate::parse(&text, &path.display().to_string())
    }

    /// Parses template text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<PromptTemplate, TemplateError> {
        let mut lines = Vec::new();
        for (n, line) in text.split('\n').enumerate() {
            lines.push(parse_line(line).map_err(|e| e.located(origin, n + 1))?);
        }
        Ok(PromptTemplate { lines, origin: origin.to_string() })
    }

    /// Where the template came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Fills the placeholders.
    pub fn render(&self, vars: &PromptVars) -> String {
        let (audio_tools, audio_action) = if vars.audio_available {
            (fill(AUDIO_TOOLS, vars), fill(AUDIO_ACTION, vars))
        } else {
            (String::new(), String::new())
        };
        self.render_with(vars, &audio_tools, &audio_action)
    }

    fn render_with(&self, vars: &PromptVars, audio_tools: &str, audio_action: &str) -> String {
        let value = |name: &str| -> String {
            match name {
                "max_frames" | "max_frames_len" => vars.max_frames.to_string(),
                "max_audio_seconds" | "max_audio_len" => limit_number(vars.max_audio_seconds),
                "max_clip_seconds" | "max_clip_len" => limit_number(vars.max_clip_seconds),
                "min_audio_seconds" => py_float_repr(vars.min_audio_seconds),
                "min_clip_frames" => vars.min_clip_frames.to_string(),
                "max_steps" => vars.max_steps.to_string(),
                "audio_tools" => audio_tools.to_string(),
                "audio_action" => audio_action.to_string(),
                "action_types" => if vars.audio_available {
                    "get_frames|get_audio|get_clip|answer"
                } else {
                    "get_frames|get_clip|answer"
                }
                .to_string(),
                _ => String::new(),
            }
        };
        let mut out = String::new();
        let mut first = true;
        for line in &self.lines {
            let mut text = String::new();
            let mut only_vars = !line.is_empty();
            for piece in line {
                match piece {
                    Piece::Text(t) => {
                        only_vars = false;
                        text.push_str(t);
                    }
                    Piece::Var(name) => text.push_str(&value(name)),
                }
            }
            if only_vars && text.is_empty() {
                continue;
            }
            if !first {
                out.push('\n');
            }
            first = false;
            out.push_str(&text);
        }
        out
    }
}

/// Fills an internal snippet (its placeholders are known and never the snippets themselves).
fn fill(snippet: &str, vars: &PromptVars) -> String {
    match PromptTemplate::parse(snippet, "built-in") {
        Ok(t) => t.render_with(vars, "", ""),
        Err(_) => String::new(),
    }
}

#[derive(Debug)]
enum LineError {
    Unknown(String),
    Brace,
}

impl LineError {
    fn located(self, origin: &str, line: usize) -> TemplateError {
        match self {
            LineError::Unknown(name) => TemplateError::Unknown { origin: origin.to_string(), line, name },
            LineError::Brace => TemplateError::Brace { origin: origin.to_string(), line },
        }
    }
}

fn parse_line(line: &str) -> Result<Vec<Piece>, LineError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) if ch != '{' => name.push(ch),
                        _ => return Err(LineError::Brace),
                    }
                }
                let known = PLACEHOLDERS.iter().find(|p| **p == name).ok_or(LineError::Unknown(name))?;
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Var(known));
            }
            '}' => return Err(LineError::Brace),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

impl fmt::Display for PromptTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "system prompt template {}", self.origin)
    }
}

#[cfg(test)]
mod tests;
