//! One problem found by the dry run, wherever it was found (recipe, data, model, plan).
//! Every checker returns a list of these so `omnirl validate` can report them all at once.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// `location` names where to look: `recipes/x.yaml:12:5`, `data/rl.jsonl:17`, a dotted recipe
/// key, or a checkpoint file. `key` is the dotted recipe key the problem belongs to, if any.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn error(location: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { severity: Severity::Error, location: location.into(), key: None, message: message.into() }
    }

    pub fn warning(location: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { severity: Severity::Warning, location: location.into(), key: None, message: message.into() }
    }

    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match &self.key {
            Some(key) if !self.location.contains(key.as_str()) => {
                write!(f, "{tag}: {}: {key}: {}", self.location, self.message)
            }
            _ => write!(f, "{tag}: {}: {}", self.location, self.message),
        }
    }
}
