//! The optional prerequisites of the test suites and benchmarks, found in one place: the cached
//! Qwen2.5-Omni `tokenizer.json` (written by `scripts/fetch_qwen_tokenizer.sh`) and the `ffmpeg`
//! command-line tool (which makes test videos); and the one rule for a missing one
//! ([`missing`]): under `CI=true` the test fails with the install step to run, elsewhere it
//! prints `SKIPPED: ...` and the caller returns. A library module so that the tests of
//! `rollout`, `trainer` and the workspace share it.

use std::path::PathBuf;

/// Whether this is a CI run (`CI=true` or `CI=1`).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| matches!(v.as_str(), "true" | "1"))
}

/// `$OMNIRL_CACHE/qwen25-omni-tokenizer/tokenizer.json` (default cache `~/.cache/omnirl`), if it
/// is there: the path `scripts/fetch_qwen_tokenizer.sh` writes.
pub fn qwen_tokenizer() -> Option<PathBuf> {
    let cache = std::env::var_os("OMNIRL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/omnirl")))?;
    Some(cache.join("qwen25-omni-tokenizer/tokenizer.json")).filter(|p| p.is_file())
}

/// The cached Qwen tokenizer, or [`missing`] (so `None` only outside CI).
pub fn require_qwen_tokenizer() -> Option<PathBuf> {
    let found = qwen_tokenizer();
    if found.is_none() {
        missing("the Qwen2.5-Omni tokenizer", "scripts/fetch_qwen_tokenizer.sh (scripts/setup.sh runs it)");
    }
    found
}

/// Whether the `ffmpeg` CLI runs; [`missing`] when it does not.
pub fn require_ffmpeg_cli() -> bool {
    let ok = std::process::Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success());
    if !ok {
        missing("the `ffmpeg` command-line tool", "scripts/setup.sh (apt-get install ffmpeg)");
    }
    ok
}

/// A test's prerequisite is missing: under CI this panics with the install step; elsewhere it
/// prints `SKIPPED` and the caller returns.
pub fn missing(what: &str, install: &str) {
    assert!(!ci(), "{what} is missing under CI=true; install it: {install}");
    eprintln!("SKIPPED: {what} is missing ({install})");
}
