//! Media path resolution and the existence check of every media file a data file references.
//!
//! Paths are resolved as the reference resolves them (it hands the string to ffmpeg from the
//! launch directory): absolute paths as they are, relative paths against
//! `CheckOptions::media_root`, or against the current directory when there is none. A
//! `file://` prefix is dropped. SFT files ([`MediaBase`] with a `file_dir`) look further: a
//! relative path that is not under the media root is looked for next to the data file (where
//! `omnirl synth` writes its media), then in the current directory. Many lines share a video, so paths are de-duplicated first
//! and each distinct file is stat'ed once, in parallel; a missing file is reported once, on
//! the first line that references it, with the number of lines that do.
//!
//! Left out: `http://` and `https://` URLs are not fetched (the check must work offline);
//! they are listed with the videos but not checked. Whether a file is a decodable video is
//! the ffprobe pass of a later issue; here only "is a non-empty regular file" is checked.

use super::fields::{Issue, MediaKind, ProblemCode, Severity, quote};
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Whether a media string is a remote URL (not checked on disk).
pub fn is_remote(raw: &str) -> bool {
    let lower = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Resolves a media path as written in a data line: `file://` is dropped, absolute paths and
/// URLs are kept, relative paths are joined to `media_root` (or left relative to the current
/// directory when it is `None`).
pub fn resolve_media_path(raw: &str, media_root: Option<&Path>) -> PathBuf {
    let stripped = raw.strip_prefix("file://").unwrap_or(raw);
    let path = Path::new(stripped);
    match media_root {
        Some(root) if !path.is_absolute() && !is_remote(raw) => root.join(path),
        _ => path.to_path_buf(),
    }
}

/// Where the relative media paths of one data file are looked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaBase {
    /// `data.media_root`.
    pub root: Option<PathBuf>,
    /// The data file's own directory (SFT files only).
    pub file_dir: Option<PathBuf>,
}

impl MediaBase {
    /// Where `raw` may be, in order: under the root (or as written when there is none), then,
    /// with a file directory, next to the file and as written.
    pub fn candidates(&self, raw: &str) -> Vec<PathBuf> {
        let first = resolve_media_path(raw, self.root.as_deref());
        let stripped = Path::new(raw.strip_prefix("file://").unwrap_or(raw));
        let mut out = vec![first];
        if let Some(dir) = &self.file_dir
            && !stripped.is_absolute()
            && !is_remote(raw)
        {
            for p in [dir.join(stripped), stripped.to_path_buf()] {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// The first candidate that exists, else the first candidate.
    pub fn resolve(&self, raw: &str) -> PathBuf {
        let mut c = self.candidates(raw);
        if c.len() > 1
            && let Some(i) = c.iter().position(|p| p.exists())
        {
            return c.swap_remove(i);
        }
        c.swap_remove(0)
    }
}

/// Every line that references one media path.
#[derive(Debug, Clone)]
pub(crate) struct MediaUse {
    pub kind: MediaKind,
    pub first_line: usize,
    pub first_field: String,
    pub last_line: usize,
    /// Distinct lines referencing the path.
    pub lines: usize,
}

/// Collects media references in line order, de-duplicated by the path as written.
#[derive(Debug, Default)]
pub(crate) struct MediaIndex {
    pub uses: HashMap<String, MediaUse>,
}

impl MediaIndex {
    pub fn add(&mut self, line: usize, kind: MediaKind, path: String, field: String) {
        match self.uses.get_mut(&path) {
            Some(u) => {
                if u.last_line != line {
                    u.last_line = line;
                    u.lines += 1;
                }
            }
            None => {
                self.uses
                    .insert(path, MediaUse { kind, first_line: line, first_field: field, last_line: line, lines: 1 });
            }
        }
    }
}

/// What the media pass found.
#[derive(Debug, Default)]
pub(crate) struct MediaOutcome {
    /// Problems keyed by the first line referencing the file, sorted by line.
    pub issues: Vec<(usize, Issue)>,
    /// Distinct referenced paths (as written).
    pub distinct: usize,
    /// Distinct paths that were missing or unusable.
    pub missing: usize,
    /// Resolved paths of the distinct videos found (all referenced videos when unchecked).
    pub videos: Vec<PathBuf>,
}

enum Found {
    Ok,
    Remote,
    Empty,
    Missing,
    NotAFile,
    Unreadable(String),
}

fn stat(path: &Path) -> Found {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == 0 => Found::Empty,
        Ok(m) if m.is_file() => Found::Ok,
        Ok(_) => Found::NotAFile,
        Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => Found::Missing,
        Err(e) => Found::Unreadable(e.to_string()),
    }
}

/// Resolves and (when `check` is true) stats every distinct path of `index`.
pub(crate) fn check_media(index: MediaIndex, base: &MediaBase, check: bool) -> MediaOutcome {
    let distinct = index.uses.len();
    let entries: Vec<(String, MediaUse)> = index.uses.into_iter().collect();
    let cwd = std::env::current_dir().ok();
    let results: Vec<(PathBuf, Found)> = entries
        .par_iter()
        .map(|(raw, _)| {
            let resolved = base.resolve(raw);
            let found = if is_remote(raw) {
                Found::Remote
            } else if check {
                stat(&resolved)
            } else {
                Found::Ok
            };
            (resolved, found)
        })
        .collect();

    let mut out = MediaOutcome { distinct, ..MediaOutcome::default() };
    let mut videos = BTreeSet::new();
    for ((raw, u), (resolved, found)) in entries.iter().zip(results) {
        let problem = match found {
            Found::Ok | Found::Remote => {
                if u.kind == MediaKind::Video {
                    videos.insert(resolved);
                }
                continue;
            }
            Found::Empty => (Severity::Warning, ProblemCode::Media, "is an empty file".to_string()),
            Found::Missing => (Severity::Error, ProblemCode::MediaMissing, "not found".to_string()),
            Found::NotAFile => (Severity::Error, ProblemCode::Media, "is not a regular file".to_string()),
            Found::Unreadable(e) => (Severity::Error, ProblemCode::Media, format!("cannot be read ({e})")),
        };
        if problem.0 == Severity::Error {
            out.missing += 1;
        } else if u.kind == MediaKind::Video {
            videos.insert(resolved.clone());
        }
        let shown = match (&cwd, resolved.is_absolute()) {
            (Some(cwd), false) => cwd.join(&resolved),
            _ => resolved,
        };
        let mut message = format!("{} {} {}", u.kind.as_str(), quote(raw), problem.2);
        if shown.as_os_str() != raw.as_str() {
            message.push_str(&format!(" (looked for {})", shown.display()));
        }
        if u.lines > 1 {
            message.push_str(&format!("; referenced by {} lines, this is the first", u.lines));
        }
        out.issues.push((
            u.first_line,
            Issue { severity: problem.0, code: problem.1, field: Some(u.first_field.clone()), message },
        ));
    }
    out.issues.sort_by(|a, b| (a.0, &a.1.field).cmp(&(b.0, &b.1.field)));
    out.videos = videos.into_iter().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution() {
        let root = Path::new("/data");
        let cases = [
            ("videos/a.mp4", Some(root), "/data/videos/a.mp4"),
            ("videos/a.mp4", None, "videos/a.mp4"),
            ("/abs/a.mp4", Some(root), "/abs/a.mp4"),
            ("file:///abs/a.mp4", Some(root), "/abs/a.mp4"),
            ("file://rel/a.mp4", Some(root), "/data/rel/a.mp4"),
            ("https://x.org/a.mp4", Some(root), "https://x.org/a.mp4"),
        ];
        for (raw, r, want) in cases {
            assert_eq!(resolve_media_path(raw, r), PathBuf::from(want), "{raw}");
        }
    }

    #[test]
    fn remote_detection_is_case_insensitive_and_safe_on_short_or_multibyte_input() {
        assert!(is_remote("HTTPS://a"));
        assert!(is_remote("http://a"));
        assert!(!is_remote("htt"));
        assert!(!is_remote("ééééé"));
        assert!(!is_remote("videos/http://"));
    }
}
