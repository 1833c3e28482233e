//! Crash-safe checkpoint directories: a checkpoint is built in a temporary sibling directory,
//! every file and directory in it is `fsync`ed, and it is published with one `rename` to
//! `step-NNNNNNNN`, followed by an `fsync` of the parent. A process killed at any moment leaves
//! either the previous set of complete checkpoints or the new one, plus at most a `.tmp-*` or
//! `.trash-*` directory that the next save removes and discovery ignores.
//!
//! Retention deletes the oldest complete checkpoints beyond `keep_last` only after the new one is
//! published, by first renaming each to `.trash-*` (so a half-deleted directory never looks like a
//! checkpoint). Discovery ([`complete_checkpoints`]) lists `step-N` directories whose manifest
//! (`train_state.json`) parses and whose recorded files exist with their recorded sizes; anything
//! else is skipped, so a directory damaged after the fact (a partial copy, a full disk) falls
//! back to the previous checkpoint instead of failing the resume.
//!
//! Left out: cross-filesystem moves (the temporary directory is always a sibling) and locking
//! against two concurrent writers (one process, rank 0, writes checkpoints).

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The manifest file whose presence (parsed, sizes matching) marks a complete checkpoint.
pub const MANIFEST_FILE: &str = "train_state.json";
const TMP_PREFIX: &str = ".tmp-";
const TRASH_PREFIX: &str = ".trash-";

/// `step-00000042`.
pub fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// The step of a `step-N` directory name.
pub fn parse_step_dir(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A file recorded in a manifest: path relative to the checkpoint and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub bytes: u64,
}

/// Every regular file under `dir`, relative, sorted, with sizes.
pub fn list_files(dir: &Path) -> io::Result<Vec<FileEntry>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<FileEntry>) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let meta = entry.metadata()?;
            if meta.is_dir() {
                walk(root, &path, out)?;
            } else if meta.is_file() {
                let rel = path.strip_prefix(root).map_err(io::Error::other)?;
                out.push(FileEntry { path: rel.to_string_lossy().into_owned(), bytes: meta.len() });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// `fsync`s every file and directory under `dir`, then `dir` itself.
pub fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.metadata()?.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)?.sync_all()?;
        }
    }
    sync_dir(dir)
}

/// `fsync` of a directory (its entries' names and renames).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A fresh temporary directory in `root` for the checkpoint of `step`.
pub fn temp_dir_for(root: &Path, step: u64) -> io::Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    let tmp = root.join(format!("{TMP_PREFIX}{}-{}", step_dir_name(step), std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir(&tmp)?;
    Ok(tmp)
}

/// Removes `.tmp-*` and `.trash-*` leftovers of killed runs in `root`.
pub fn remove_leftovers(root: &Path) -> io::Result<usize> {
    let mut n = 0;
    let Ok(entries) = std::fs::read_dir(root) else { return Ok(0) };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if (name.starts_with(TMP_PREFIX) || name.starts_with(TRASH_PREFIX)) && entry.path().is_dir() {
            std::fs::remove_dir_all(entry.path())?;
            n += 1;
        }
    }
    Ok(n)
}

/// Syncs `tmp` and publishes it as `root/step-N` (replacing an existing one of the same step
/// through a trash rename), then syncs `root`.
pub fn publish(tmp: &Path, root: &Path, step: u64) -> io::Result<PathBuf> {
    sync_tree(tmp)?;
    let dest = root.join(step_dir_name(step));
    let trash = root.join(format!("{TRASH_PREFIX}{}-{}", step_dir_name(step), std::process::id()));
    let replaced = dest.exists();
    if replaced {
        std::fs::rename(&dest, &trash)?;
    }
    std::fs::rename(tmp, &dest)?;
    sync_dir(root)?;
    if replaced {
        std::fs::remove_dir_all(&trash)?;
    }
    Ok(dest)
}

/// Whether `dir` is a complete checkpoint: its manifest parses (`parse` returns the recorded
/// files) and every recorded file exists with its recorded size.
pub fn is_complete(dir: &Path, parse: &dyn Fn(&Path) -> Option<Vec<FileEntry>>) -> bool {
    let Some(files) = parse(&dir.join(MANIFEST_FILE)) else { return false };
    files.iter().all(|f| std::fs::metadata(dir.join(&f.path)).is_ok_and(|m| m.is_file() && m.len() == f.bytes))
}

/// Complete checkpoints under `root`, oldest first.
pub fn complete_checkpoints(root: &Path, parse: &dyn Fn(&Path) -> Option<Vec<FileEntry>>) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut out: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| parse_step_dir(&e.file_name().to_string_lossy()).map(|s| (s, e.path())))
        .filter(|(_, p)| p.is_dir() && is_complete(p, parse))
        .collect();
    out.sort();
    out
}

/// Deletes all but the newest `keep_last` complete checkpoints (0 keeps all); returns the deleted.
pub fn prune(
    root: &Path,
    keep_last: usize,
    parse: &dyn Fn(&Path) -> Option<Vec<FileEntry>>,
) -> io::Result<Vec<PathBuf>> {
    let all = complete_checkpoints(root, parse);
    if keep_last == 0 || all.len() <= keep_last {
        return Ok(Vec::new());
    }
    let mut deleted = Vec::new();
    for (step, path) in &all[..all.len() - keep_last] {
        let trash = root.join(format!("{TRASH_PREFIX}{}-{}", step_dir_name(*step), std::process::id()));
        std::fs::rename(path, &trash)?;
        std::fs::remove_dir_all(&trash)?;
        deleted.push(path.clone());
    }
    sync_dir(root)?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(step_dir_name(42), "step-00000042");
        assert_eq!(parse_step_dir("step-00000042"), Some(42));
        assert_eq!(parse_step_dir("step-123456789"), Some(123_456_789));
        for bad in ["step-", "step-4a", ".tmp-step-00000001-7", "step--1", "global_step_3"] {
            assert_eq!(parse_step_dir(bad), None, "{bad}");
        }
    }
}
