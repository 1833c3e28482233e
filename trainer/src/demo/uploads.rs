//! Uploaded videos: a private temporary directory (mode 0700, removed when the server stops),
//! files under generated names only, a size limit, and the check that a file holds a decodable
//! video stream (probed and one frame decoded with the rollout crate's media code, as the
//! environment will read it). An [`Upload`] removes its file when dropped, so a file lives as
//! long as its run.
//!
//! Left out: keeping uploads for later runs (each run uploads again), and content types: the
//! container is recognised from its bytes.

use rollout::media::{FrameRequest, MediaSource};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The private directory uploads go to.
#[derive(Debug)]
pub struct UploadDir {
    dir: tempfile::TempDir,
    counter: AtomicU64,
}

/// One stored upload; its file is removed on drop.
#[derive(Debug)]
pub struct Upload {
    pub path: PathBuf,
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A hard-to-guess hexadecimal token (process-random keys, a counter and the clock).
pub fn token(counter: u64) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(counter);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    let a = h.finish();
    h.write_u64(a.rotate_left(17));
    format!("{a:016x}{:016x}", h.finish())
}

impl UploadDir {
    /// Creates the directory (0700) under the system temporary directory.
    pub fn new() -> std::io::Result<UploadDir> {
        let dir = tempfile::Builder::new().prefix("omnirl-demo-").tempdir()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(UploadDir { dir, counter: AtomicU64::new(0) })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A new file's path under a generated name (the extension of `original` kept when it is
    /// short and alphanumeric, as a hint to the demuxer).
    pub fn new_file(&self, original: Option<&str>) -> Upload {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let ext = original
            .and_then(|o| Path::new(o).extension())
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .filter(|e| !e.is_empty() && e.len() <= 5 && e.chars().all(|c| c.is_ascii_alphanumeric()))
            .unwrap_or_else(|| "bin".into());
        Upload { path: self.dir.path().join(format!("upload-{}.{ext}", token(n))) }
    }

    /// Removes the directory and everything in it.
    pub fn close(self) -> std::io::Result<()> {
        self.dir.close()
    }
}

/// Whether `path` holds a video stream that decodes: probed, then its first frame decoded. The
/// error is a sentence for the person who uploaded it.
pub fn check_video(path: &Path) -> Result<(), String> {
    let refuse = |e: &dyn std::fmt::Display| format!("the upload is not a playable video: {e}");
    let mut src = MediaSource::open(path).map_err(|e| refuse(&e))?;
    let info = src.info().clone();
    if info.duration_s.is_nan() || info.duration_s <= 0.0 {
        return Err("the upload is not a playable video: it has no duration".into());
    }
    let frames = src.frames(&FrameRequest::new(0.0, 0.0, 1), None).map_err(|e| refuse(&e))?;
    if frames.frames.is_empty() {
        return Err("the upload is not a playable video: no frame could be decoded".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_generated_and_files_go_with_their_upload() {
        let dir = UploadDir::new().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let a = dir.new_file(Some("../../etc/passwd"));
        let b = dir.new_file(Some("clip.MP4"));
        assert_eq!(a.path.parent(), Some(dir.path()));
        assert!(a.path.extension().is_some_and(|e| e == "bin"));
        assert!(b.path.extension().is_some_and(|e| e == "mp4"));
        assert_ne!(a.path, b.path);
        std::fs::write(&b.path, b"not a video").unwrap();
        assert!(check_video(&b.path).is_err_and(|e| e.contains("not a playable video")));
        let p = b.path.clone();
        drop(b);
        assert!(!p.exists());
        let root = dir.path().to_path_buf();
        dir.close().unwrap();
        assert!(!root.exists());
    }
}
