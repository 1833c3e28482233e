//! The demo's built-in examples: each examples directory's `eval.jsonl` (the evaluation format,
//! README "Data formats"), one example per line, named `DIR-LINE` after the directory
//! (`quickstart-3`). A request names an example by that id only, never by a path: ids are
//! checked against `[a-z0-9_-]` and looked up in the list read at start.
//!
//! A line's video is resolved against its directory, else against the working directory (the
//! files in `data/examples/` name repository-relative paths), and an example whose video does
//! not resolve, after following links, to a file inside its directory is left out of the list,
//! so no example can read another file. Left out: reloading the list while serving.

use super::DemoError;
use rollout::data::EvalSample;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One example as the page lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    pub id: String,
    pub video_name: String,
    pub question_type: String,
    pub question: String,
    pub options: Vec<String>,
    pub answer: String,
    #[serde(skip)]
    pub video: PathBuf,
}

/// The examples, by id, and in the order of their directories and lines.
#[derive(Debug, Clone, Default)]
pub struct Examples {
    by_id: BTreeMap<String, Example>,
    order: Vec<String>,
    /// Lines left out, with why (logged at start).
    pub skipped: Vec<String>,
}

/// Why an example id was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExampleError {
    #[error("`{0}` is not an example id (ids are letters, digits, `-` and `_`)")]
    Malformed(String),
    #[error("no example `{0}`")]
    Unknown(String),
}

/// `name` reduced to `[a-z0-9_-]`.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
        .collect()
}

impl Examples {
    /// Reads every directory's `eval.jsonl`; a directory without one is an error.
    pub fn load(dirs: &[PathBuf]) -> Result<Examples, DemoError> {
        let mut out = Examples::default();
        for dir in dirs {
            let root = dir.canonicalize().map_err(|e| DemoError::Examples(format!("{}: {e}", dir.display())))?;
            let file = root.join("eval.jsonl");
            let text =
                std::fs::read_to_string(&file).map_err(|e| DemoError::Examples(format!("{}: {e}", file.display())))?;
            let name = slug(&root.file_name().map_or_else(|| "examples".into(), |n| n.to_string_lossy().into_owned()));
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let at = format!("{}:{}", file.display(), i + 1);
                match example_of(&root, line, format!("{name}-{}", i + 1)) {
                    Ok(ex) if !out.by_id.contains_key(&ex.id) => {
                        out.order.push(ex.id.clone());
                        out.by_id.insert(ex.id.clone(), ex);
                    }
                    Ok(ex) => out.skipped.push(format!("{at}: id `{}` is taken by another directory", ex.id)),
                    Err(why) => out.skipped.push(format!("{at}: {why}")),
                }
            }
        }
        Ok(out)
    }

    /// Every example, in directory and line order.
    pub fn list(&self) -> Vec<&Example> {
        self.order.iter().filter_map(|id| self.by_id.get(id)).collect()
    }

    /// The example of `id`.
    pub fn get(&self, id: &str) -> Result<&Example, ExampleError> {
        let well_formed = !id.is_empty()
            && id.len() <= 128
            && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !well_formed {
            return Err(ExampleError::Malformed(id.chars().take(64).collect()));
        }
        self.by_id.get(id).ok_or_else(|| ExampleError::Unknown(id.to_string()))
    }
}

/// One line as an example, its video confined to `root`.
fn example_of(root: &Path, line: &str, id: String) -> Result<Example, String> {
    let s: EvalSample = serde_json::from_str(line).map_err(|e| format!("not an evaluation sample: {e}"))?;
    let candidates = [root.join(&s.video), PathBuf::from(&s.video)];
    let video = candidates
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .find(|p| p.is_file())
        .ok_or_else(|| format!("video {} not found", s.video))?;
    if !video.starts_with(root) {
        return Err(format!("video {} is outside {}", s.video, root.display()));
    }
    let video_name = video.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    Ok(Example {
        id,
        video_name,
        question_type: s.question_type,
        question: s.question,
        options: s.options,
        answer: s.answer,
        video,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_looked_up_and_paths_stay_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("My Ex");
        std::fs::create_dir_all(dir.join("v")).unwrap();
        std::fs::write(dir.join("v/a.mp4"), b"x").unwrap();
        std::fs::write(tmp.path().join("secret.mp4"), b"x").unwrap();
        let line = |v: &str| {
            format!(r#"{{"video": "{v}", "question_type": "FF", "question": "q?", "options": [], "answer": "x"}}"#)
        };
        let text = [line("v/a.mp4"), line("../secret.mp4"), line("missing.mp4"), "{".into()].join("\n");
        std::fs::write(dir.join("eval.jsonl"), text).unwrap();
        let ex = Examples::load(&[dir]).unwrap();
        assert_eq!(ex.list().len(), 1);
        assert_eq!(ex.skipped.len(), 3, "{:?}", ex.skipped);
        assert!(ex.skipped[0].contains("outside"));
        assert_eq!(ex.get("my-ex-1").map(|e| e.video_name.as_str()), Ok("a.mp4"));
        assert_eq!(ex.get("my-ex-2"), Err(ExampleError::Unknown("my-ex-2".into())));
        assert!(matches!(ex.get("../secret"), Err(ExampleError::Malformed(_))));
        assert!(matches!(ex.get("a/b"), Err(ExampleError::Malformed(_))));
    }
}
