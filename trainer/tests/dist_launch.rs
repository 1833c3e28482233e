//! `scripts/launch.sh`: the commands it prints for mpirun and srun, and its env launcher giving
//! each local rank its place (checked through `omnirl validate --json`) and stopping the other
//! ranks when one fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn launch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("bash")
        .arg(root().join("scripts/launch.sh"))
        .args(args)
        .current_dir(root())
        .env_remove("MASTER_ADDR")
        .env_remove("MASTER_PORT")
        .env_remove("NODE_RANK")
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

#[test]
fn dry_run_prints_the_documented_commands() {
    let (rc, out, err) = launch(&[
        "--launcher",
        "mpirun",
        "--nodes",
        "2",
        "--gpus",
        "8",
        "--hostfile",
        "hosts",
        "--dry-run",
        "--",
        "omnirl",
    ]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.starts_with("mpirun -n 16 --bind-to none"), "{out}");
    assert!(out.contains("--hostfile hosts --map-by ppr:8:node"), "{out}");
    let (_, out, _) = launch(&["--launcher", "srun", "--nodes", "2", "--gpus", "8", "--dry-run", "--", "omnirl"]);
    assert_eq!(out.trim(), "srun -N 2 --ntasks-per-node 8 --kill-on-bad-exit=1 omnirl");
    let (rc, _, err) = launch(&["--gpus", "0", "--", "omnirl"]);
    assert_eq!(rc, 2);
    assert!(err.contains("positive integers"), "{err}");
}

#[test]
fn env_launcher_gives_each_rank_its_place() {
    let omnirl = env!("CARGO_BIN_EXE_omnirl");
    // Each rank writes its own file: two large JSON documents on one pipe can interleave.
    let dir = tempfile::tempdir().unwrap();
    let cmd = format!("{omnirl} validate recipes/quickstart.yaml --json > {}/rank$RANK.json", dir.path().display());
    let (rc, _, err) = launch(&["--gpus", "2", "--", "sh", "-c", &cmd]);
    assert_eq!(rc, 0, "{err}");
    let mut ranks: Vec<(u64, u64, String)> = (0..2)
        .map(|r| {
            let text = std::fs::read_to_string(dir.path().join(format!("rank{r}.json"))).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let p = &v["plan"];
            assert_eq!(p["world_size"], 2);
            (p["rank"].as_u64().unwrap(), p["local_rank"].as_u64().unwrap(), p["launcher"].as_str().unwrap().to_owned())
        })
        .collect();
    ranks.sort();
    assert_eq!(ranks, vec![(0, 0, "env".to_owned()), (1, 1, "env".to_owned())]);
}

#[test]
fn env_launcher_stops_the_others_when_a_rank_fails() {
    let t0 = std::time::Instant::now();
    let (rc, _, err) = launch(&["--gpus", "2", "--", "sh", "-c", "if [ $RANK = 1 ]; then exit 3; fi; exec sleep 60"]);
    assert_eq!(rc, 3, "{err}");
    assert!(err.contains("exited with status 3"), "{err}");
    assert!(t0.elapsed().as_secs() < 30);
}
