//! Shared helpers for the workspace integration tests: locating and running the `omnirl`
//! binary that `cargo build --workspace` put beside the test executables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod demo;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the built `omnirl` binary (target/<profile>/omnirl).
pub fn omnirl_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>");
    let bin = profile_dir.join("omnirl");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build --workspace` (the Makefile's test target does)",
        bin.display()
    );
    bin
}

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A `Command` for `omnirl` run from the repository root, with the rank variables of the
/// surrounding environment removed so tests see a single-process plan unless they set one.
pub fn omnirl() -> Command {
    let mut cmd = Command::new(omnirl_bin());
    cmd.current_dir(repo_root());
    for var in RANK_VARIABLES {
        cmd.env_remove(var);
    }
    cmd
}

/// Every environment variable the distributed-plan discovery reads.
pub const RANK_VARIABLES: &[&str] = &[
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
    "PMI_RANK",
    "PMI_SIZE",
    "PMI_LOCAL_RANK",
    "PMI_LOCAL_SIZE",
    "MPI_LOCALRANKID",
    "MPI_LOCALNRANKS",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_LOCALID",
    "SLURM_NTASKS_PER_NODE",
    "SLURM_NNODES",
    "SLURM_NODEID",
    "SLURM_STEP_NUM_TASKS",
    "GPU_IDS",
    "CUDA_VISIBLE_DEVICES",
];

/// The `mpirun` on PATH (the multi-process tests need it; scripts/setup.sh installs OpenMPI).
pub fn mpirun() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("mpirun")).find(|p| p.is_file()))
        .expect("mpirun is not on PATH: install OpenMPI (scripts/setup.sh does)")
}

/// Stdout of a finished command as UTF-8.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr of a finished command as UTF-8.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A test's prerequisite (a tool, a cached file) is missing. Under `CI=true` the test fails
/// with the install step to run; elsewhere it says SKIPPED and the caller returns.
pub fn missing_prerequisite(what: &str, install: &str) {
    rollout::prerequisite::missing(what, install);
}

/// The values of `key` in a stage's `metrics.jsonl`, in step order (lines without it skipped).
pub fn metric_series(metrics: &Path, key: &str) -> Vec<f64> {
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get(key)?.as_f64())
        .collect()
}
