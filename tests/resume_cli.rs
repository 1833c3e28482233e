#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Long runs survive interruptions: `omnirl train` on a shortened quickstart (SFT and RL with
//! step checkpoints every 2 steps) is run uninterrupted, then killed in the middle of SFT, in the
//! middle of RL (with its newest checkpoint then truncated), and stopped with SIGTERM, each time
//! resumed with `--resume`; every resumed run must end with final weights byte-identical to the
//! uninterrupted run's, print `resuming stage <stage> from step <N>`, and leave `metrics.jsonl`
//! with each step exactly once (the rl stage narrows its prompts with a pass-rate filter, which a
//! resumed stage reads back). The same holds under `mpirun -n 2` with sharded optimizer state,
//! and `--resume` refuses a changed recipe.

use omnirl_tests::{mpirun, omnirl, omnirl_bin, repo_root};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SHORT: &[&str] = &[
    "stages.sft.schedule.max_steps=6",
    "stages.sft.data.max_samples=4",
    "stages.sft.checkpoint.save_every=2",
    "stages.sft.checkpoint.keep_last=2",
    "stages.rl.schedule.max_steps=6",
    "stages.rl.data.max_samples=8",
    "stages.rl.rollout.prompts_per_step=2",
    "stages.rl.rollout.group_size=2",
    "stages.rl.rollout.max_response_length=24",
    "stages.rl.schedule.val_every=null",
    "stages.rl.checkpoint.save_every=2",
    "stages.rl.checkpoint.keep_last=2",
    // A resumed stage reads the filter's prompts back instead of measuring them again.
    "stages.rl.data.pass_rate_filter={samples: 2}",
    "stages.eval.rollout.max_response_length=24",
    "stages.eval.data.max_samples=2",
];

/// `omnirl train` arguments for the shortened quickstart writing under `out`.
fn train_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["train".into(), "recipes/quickstart.yaml".into()];
    for s in SHORT.iter().chain(extra) {
        args.extend(["--set".into(), (*s).to_owned()]);
    }
    args.extend(["--set".into(), format!("output_dir={}", out.display())]);
    args
}

fn run(args: &[String], resume: bool) -> Output {
    let mut cmd = omnirl();
    cmd.args(args);
    if resume {
        cmd.arg("--resume");
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Waits until `path` exists (the child must still be running when it appears).
fn wait_for(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before {} appeared", path.display());
        }
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn final_weights(run: &Path, stage: &str) -> Vec<u8> {
    std::fs::read(run.join(stage).join("final/model.safetensors")).unwrap()
}

/// The steps of a stage's `metrics.jsonl`, in file order.
fn logged_steps(run: &Path, stage: &str) -> Vec<u64> {
    std::fs::read_to_string(run.join(stage).join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect()
}

/// The step in the `resuming stage <stage> from step <N>` line.
fn resumed_step(stderr: &str, stage: &str) -> u64 {
    let prefix = format!("resuming stage {stage} from step ");
    let line = stderr.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no `{prefix}N`:\n{stderr}"));
    line[prefix.len()..].trim().parse().unwrap()
}

/// Checks a resumed run against the uninterrupted one: both final weights byte-identical, and
/// every stage's metrics logged once per step as in the uninterrupted run.
fn assert_same_run(resumed: &Path, uninterrupted: &Path) {
    for stage in ["sft", "rl"] {
        assert!(
            final_weights(resumed, stage) == final_weights(uninterrupted, stage),
            "{stage}: the resumed run's final weights differ from the uninterrupted run's"
        );
        assert_eq!(logged_steps(resumed, stage), logged_steps(uninterrupted, stage), "{stage}: metrics.jsonl steps");
    }
}

#[test]
fn killed_and_stopped_runs_resume_to_the_uninterrupted_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let out = run(&train_args(&base, &[]), false);
    assert!(out.status.success(), "{}", text(&out));
    let base_run = base.join("quickstart");
    // Determinism: a second uninterrupted run gives the same bytes.
    let again = tmp.path().join("again");
    let out = run(&train_args(&again, &[]), false);
    assert!(out.status.success(), "{}", text(&out));
    assert_same_run(&again.join("quickstart"), &base_run);

    // SIGKILL in the middle of SFT.
    let dir = tmp.path().join("sft_kill");
    let args = train_args(&dir, &[]);
    let mut child = omnirl().args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for(&dir.join("quickstart/sft/checkpoints/step-00000002"), &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.join("quickstart/sft/final").exists(), "killed too late: SFT had finished");
    let out = run(&args, true);
    assert!(out.status.success(), "{}", text(&out));
    assert!((2..6).contains(&resumed_step(&text(&out), "sft")), "{}", text(&out));
    assert_same_run(&dir.join("quickstart"), &base_run);

    // SIGKILL in the middle of RL, then the newest checkpoint truncated: the previous one is used.
    let dir = tmp.path().join("rl_kill");
    let args = train_args(&dir, &[]);
    let mut child = omnirl().args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let newest = dir.join("quickstart/rl/checkpoints/step-00000004");
    wait_for(&newest, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.join("quickstart/rl/final").exists(), "killed too late: RL had finished");
    let weights = newest.join("model/model.safetensors");
    let len = std::fs::metadata(&weights).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&weights).unwrap().set_len(len / 2).unwrap();
    let out = run(&args, true);
    let err = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("checkpoint {} is incomplete or damaged", newest.display())), "{err}");
    assert_eq!(resumed_step(&err, "rl"), 2, "{err}");
    assert_same_run(&dir.join("quickstart"), &base_run);

    // SIGTERM: the run saves a step checkpoint, says how to continue, and exits 128 + 15.
    let dir = tmp.path().join("rl_term");
    let args = train_args(&dir, &[]);
    let mut child = omnirl().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(&dir.join("quickstart/rl/metrics.jsonl"), &mut child);
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let stopped = child.wait_with_output().unwrap();
    let err = text(&stopped);
    assert_eq!(stopped.status.code(), Some(143), "{err}");
    assert!(err.contains("stopped by signal 15 after step") && err.contains("--resume"), "{err}");
    let out = run(&args, true);
    assert!(out.status.success(), "{}", text(&out));
    assert!(resumed_step(&text(&out), "rl") >= 1, "{}", text(&out));
    assert_same_run(&dir.join("quickstart"), &base_run);
}

#[test]
fn resume_refuses_another_recipe_and_another_runs_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out =
        run(&train_args(tmp.path(), &["stages.sft.schedule.max_steps=1", "stages.rl.schedule.max_steps=1"]), false);
    assert!(out.status.success(), "{}", text(&out));
    // A recipe whose name only starts like this one's is not a candidate for `--resume`.
    std::fs::create_dir_all(tmp.path().join("quickstart_other")).unwrap();
    std::fs::write(tmp.path().join("quickstart_other/recipe.yaml"), "name: quickstart_other\n").unwrap();
    let changed =
        run(&train_args(tmp.path(), &["stages.sft.schedule.max_steps=1", "stages.rl.schedule.max_steps=2"]), true);
    let err = text(&changed);
    assert!(!changed.status.success(), "{err}");
    assert!(err.contains("made by another recipe") && err.contains("stages.rl.schedule.max_steps"), "{err}");
    assert!(err.contains(&tmp.path().join("quickstart").display().to_string()), "{err}");
}

/// Every process whose command line mentions `needle` (the ranks of one mpirun job), killed.
fn kill_all(needle: &str) {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            let _ = Command::new("kill").args(["-KILL", &entry.file_name().to_string_lossy()]).status();
        }
    }
}

fn mpirun_train(args: &[String]) -> Command {
    let mut cmd = Command::new(mpirun());
    cmd.args(["-n", "2", "--oversubscribe", "--allow-run-as-root"]).arg(omnirl_bin()).args(args);
    cmd.current_dir(repo_root());
    cmd
}

#[test]
fn a_killed_two_rank_run_resumes_to_the_uninterrupted_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let sharded = ["distributed.shard_optimizer_state=true"];
    let base = tmp.path().join("base");
    let out = mpirun_train(&train_args(&base, &sharded)).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let dir = tmp.path().join("killed");
    let args = train_args(&dir, &sharded);
    let mut child = mpirun_train(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let ckpt = dir.join("quickstart/rl/checkpoints/step-00000002");
    wait_for(&ckpt, &mut child);
    // A node dies: every rank and the launcher, at once.
    kill_all(&format!("output_dir={}", dir.display()));
    let _ = child.kill();
    child.wait().unwrap();
    assert!(!dir.join("quickstart/rl/final").exists(), "killed too late: RL had finished");
    for r in 0..2 {
        assert!(ckpt.join(format!("optimizer-rank{r:05}-of-00002.safetensors")).is_file(), "rank {r}'s shard");
    }
    let mut resume = args.clone();
    resume.push("--resume".into());
    let out = mpirun_train(&resume).output().unwrap();
    let err = text(&out);
    assert!(out.status.success(), "{err}");
    assert!((2..6).contains(&resumed_step(&err, "rl")), "{err}");
    assert_eq!(err.matches("resuming stage rl from step").count(), 1, "rank 0 alone says it: {err}");
    assert_same_run(&dir.join("quickstart"), &base.join("quickstart"));
    // One process cannot continue a checkpoint whose optimizer state is sharded over two ranks.
    let rl_final = dir.join("quickstart/rl/final");
    std::fs::remove_dir_all(&rl_final).unwrap();
    let out = run(&args, true);
    assert!(!out.status.success());
    assert!(text(&out).contains("same number of ranks"), "{}", text(&out));
}
