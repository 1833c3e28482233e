//! `omnirl bench ...` end to end at the tiny shape: every subcommand runs on the CPU in seconds,
//! prints one JSON record with the fields `scripts/gpu/report.py` reads, and exits 0 when its
//! checks hold. The CUDA variants (parity in bf16 against the CPU, a CUDA RL step, NCCL at world
//! size 1) run only when libtorch sees a GPU; elsewhere they print SKIPPED.
//!
//! Left out: the 7B shape (minutes and tens of GB; the GPU suite runs it) and the Python peers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::process::{Command, Output};

fn omnirl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omnirl")).arg("bench").args(args).output().expect("run omnirl")
}

/// Runs a bench with `--json`, checks the exit status and returns the one JSON record.
fn record(args: &[&str], code: i32) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = omnirl(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "omnirl bench {args:?}\nstdout: {stdout}\nstderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line expected, got: {stdout}");
    serde_json::from_str(lines[0]).unwrap()
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

fn cuda() -> bool {
    let on = tch::Cuda::is_available();
    if !on {
        eprintln!("SKIPPED: libtorch sees no CUDA device");
    }
    on
}

#[test]
fn learner_tiny_cpu() {
    let r = record(&["learner", "--shape", "tiny", "--device", "cpu", "--steps", "2", "--seq-len", "64"], 0);
    assert_eq!(r["bench"], "learner");
    assert_eq!(r["implementation"], "omnirl");
    assert_eq!(r["device"]["device"], "cpu");
    assert_eq!(r["shape"]["name"], "tiny");
    assert_eq!(r["seq_len"], 64);
    assert_eq!(r["steps"], 2);
    assert!(f(&r, "tokens_per_s") > 0.0 && f(&r, "step_s") > 0.0);
    assert!(f(&r, "flops_per_token") > 6.0 * r["shape"]["matmul_params"].as_f64().unwrap());
    // Random weights: the NLL is about ln(vocab) = ln(152064) = 11.93.
    assert!((f(&r, "loss") - 11.93).abs() < 0.3, "{r}");
    assert!(r["mfu"].is_null(), "no peak is known for a CPU");
    assert!(r["trainable_params"].as_u64().unwrap() > 0);
    let r = record(
        &["learner", "--device", "cpu", "--steps", "1", "--seq-len", "32", "--checkpointing", "--peak-tflops", "1"],
        0,
    );
    assert_eq!(r["checkpointing"], true);
    assert!(f(&r, "mfu") > 0.0 && f(&r, "hfu") > f(&r, "mfu"));
    let r = record(&["learner", "--device", "cpu", "--steps", "1", "--seq-len", "32", "--lora-rank", "4"], 0);
    assert_eq!(r["lora_rank"], 4);
    assert!(r["flops_formula"].as_str().unwrap().contains("4N"));
}

#[test]
fn decode_tiny_cpu() {
    let r = record(
        &["decode", "--device", "cpu", "--batch", "1,3", "--prompt-len", "8", "--new-tokens", "4", "--reps", "1"],
        0,
    );
    assert_eq!(r["bench"], "decode");
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, b) in rows.iter().zip([1, 3]) {
        assert_eq!(row["batch"], b);
        assert_eq!(row["new_tokens"], 4);
        assert!(f(row, "decode_tokens_per_s") > 0.0 && f(row, "bytes_per_step") > 0.0);
        assert!(row["hbm_share"].is_null());
    }
    let args = ["decode", "--device", "cpu", "--batch", "2", "--prompt-len", "4", "--new-tokens", "2", "--reps", "1"];
    let r = record(&[&args[..], &["--hbm-gbps", "10"]].concat(), 0);
    assert!(f(&r["rows"][0], "hbm_share") > 0.0);
}

#[test]
fn encoders_tiny_cpu() {
    let r = record(&["encoders", "--device", "cpu", "--steps", "1"], 0);
    assert_eq!(r["bench"], "encoders");
    // 4 frames of 56x56: grid [2, 4, 4] = 32 patches, 8 merged tokens; 2 s of audio = 50 tokens.
    assert_eq!(r["vision"]["patches"], 32);
    assert_eq!(r["vision"]["tokens"], 8);
    assert_eq!(r["audio"]["tokens"], 50);
    assert!(f(&r["vision"], "patches_per_s") > 0.0 && f(&r["audio"], "audio_seconds_per_s") > 0.0);
    let out = omnirl(&["encoders", "--device", "cpu", "--height", "50"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("multiples of 28"));
}

#[test]
fn rl_memory_tiny_cpu_trains() {
    let base = ["rl-memory", "--device", "cpu", "--rows", "2", "--prompt-len", "12", "--response-len", "4"];
    let lora: Vec<&str> = base.iter().copied().chain(["--lora", "--lora-rank", "4"]).collect();
    let r = record(&lora, 0);
    assert_eq!(r["bench"], "rl_memory");
    assert_eq!(r["lora_rank"], 4);
    assert_eq!(r["seq_len"], 16);
    assert_eq!(r["train_step_ok"], true, "{r}");
    assert!(f(&r, "kl_coef") > 0.0, "LoRA runs the KL reference pass by default");
    assert!(r["peak_rss_bytes"].as_u64().unwrap() > 0);
    let r = record(&base, 0);
    assert!(r["lora_rank"].is_null());
    assert_eq!(r["train_step_ok"], true, "{r}");
}

#[test]
fn parity_and_nccl_cpu() {
    let r = record(&["parity", "--device", "cpu", "--dtype", "f32", "--gen-tokens", "2"], 0);
    assert_eq!(r["bench"], "parity");
    assert_eq!(f(&r, "max_abs_diff"), 0.0);
    assert_eq!(r["pass"], true);
    let r = record(&["parity", "--device", "cpu", "--dtype", "bf16", "--gen-tokens", "2"], 0);
    assert!(f(&r, "max_abs_diff") > 0.0, "bf16-rounded weights must differ from f32");
    assert_eq!(r["pass"], true, "{r}");
    assert_eq!(r["compute_dtype"], "f32");
    // A tolerance nobody can meet fails the check with exit status 1.
    let r = record(&["parity", "--device", "cpu", "--dtype", "bf16", "--gen-tokens", "0", "--tolerance", "1e-12"], 1);
    assert_eq!(r["pass"], false);
    let r = record(&["nccl", "--device", "cpu", "--mib", "1", "--iters", "2"], 0);
    assert_eq!(r["backend"], "single");
    assert_eq!(r["pass"], true);
}

#[test]
fn cuda_unavailable_is_a_clear_error() {
    if tch::Cuda::is_available() {
        return;
    }
    let out = omnirl(&["learner", "--device", "cuda"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no CUDA device"));
}

#[test]
fn cuda_parity_step_and_nccl() {
    if !cuda() {
        return;
    }
    let r = record(&["parity", "--device", "cuda", "--dtype", "bf16"], 0);
    assert_eq!(r["pass"], true, "{r}");
    let r = record(&["rl-memory", "--device", "cuda", "--lora", "--lora-rank", "8"], 0);
    assert_eq!(r["train_step_ok"], true, "{r}");
    assert!(r["memory"]["peak_bytes"].as_u64().is_some_and(|b| b > 0), "{r}");
    let r = record(&["learner", "--device", "cuda", "--steps", "1", "--checkpointing"], 0);
    assert_eq!(r["compute_dtype"], "bf16");
    let out = omnirl(&["nccl", "--device", "cuda", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        let r: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(r["backend"], "nccl");
        assert_eq!(r["pass"], true);
    } else {
        // No libnccl.so / libcuda.so on the library path: the error must say so, and on a CI GPU
        // machine that is a missing prerequisite, not a pass.
        assert!(String::from_utf8_lossy(&out.stderr).contains("NCCL is unavailable"), "{stdout}");
        assert!(
            !rollout::prerequisite::ci(),
            "NCCL is missing on a CUDA machine under CI=true: put libnccl.so.2 on the library path (the torch wheel's nvidia/nccl/lib, or apt install libnccl2)"
        );
    }
}
