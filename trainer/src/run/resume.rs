//! Continuing a run: which run directory `--resume` means, whether the recipe is the one the run
//! was started with, which step checkpoint of the unfinished stage to continue from, and loading
//! it (weights, optimizer state or every rank's ZeRO-1 shard, data cursor, counters).
//!
//! The rules (docs/checkpoints.md):
//! * `--resume` alone takes the newest run of exactly this recipe's name under `output_dir`:
//!   `<name>` or `<name>-<N>`, never another recipe whose name starts the same way.
//! * The resolved recipe must equal the run's `recipe.yaml`, except for the keys that may change
//!   on resume ([`RESUMABLE_KEYS`]); otherwise the resume is refused with the differing keys.
//! * A stage continues from its newest complete step checkpoint; newer ones that are incomplete
//!   or damaged (a file missing or of the wrong size) are skipped with a message naming them.
//! * A checkpoint with sharded optimizer state is resumed only by the same number of ranks.

use super::RUN_RECIPE_FILE;
use super::RunError;
use super::model::Model;
use super::world::World;
use crate::checkpoint::atomic::parse_step_dir;
use crate::checkpoint::train_state::{CHECKPOINTS_DIR, TrainState, list_checkpoints};
use crate::dist::data_parallel::DataParallelSync;
use crate::dist::zero1::{SHARD_PREFIX, shard_paths};
use crate::learner::AdamW;
use crate::recipe::yaml::{self, Node, Value};
use std::path::{Path, PathBuf};

/// Keys of the resolved recipe that may differ between a run and its resume (`*` is any stage).
pub const RESUMABLE_KEYS: &[&str] = &["output_dir", "stages.*.logging.progress_bars"];

/// Keys an eval stage does not use, which runs started before the resolved recipe left them
/// unset wrote with a default value; a run's `recipe.yaml` that has them still resumes.
const EVAL_KEYS_ONCE_RESOLVED: &[&str] =
    &["model.freeze_vision_encoder", "model.freeze_audio_encoder", "data.data_seed", "logging.log_every"];

/// The newest run of the recipe called `name` under `output_dir` (by modification time of its
/// `recipe.yaml`): a directory named `name` or `name-N` holding a `recipe.yaml`, for which
/// `wanted` holds (`|_| true`: any).
pub fn newest_run(output_dir: &Path, name: &str, wanted: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let of_recipe = |dir: &str| {
        dir == name
            || dir
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    std::fs::read_dir(output_dir)
        .ok()?
        .flatten()
        .filter(|e| of_recipe(&e.file_name().to_string_lossy()) && wanted(&e.path()))
        .filter_map(|e| {
            let modified = std::fs::metadata(e.path().join(RUN_RECIPE_FILE)).and_then(|m| m.modified()).ok()?;
            Some((modified, e.path()))
        })
        .max()
        .map(|(_, p)| p)
}

/// Refuses to continue `run_dir` with a recipe other than the one it was started with: the
/// resolved recipe `resolved_yaml` is compared with the run's `recipe.yaml`, key by key.
pub fn check_same_recipe(run_dir: &Path, resolved_yaml: &str) -> Result<(), RunError> {
    let file = run_dir.join(RUN_RECIPE_FILE);
    let stored = std::fs::read_to_string(&file).map_err(RunError::io(&file))?;
    let parse = |text: &str, what: &str| {
        yaml::parse(text, what).map_err(|e| RunError::Config(format!("{}: {}", file.display(), e.message)))
    };
    let (then, now) = (parse(&stored, &file.display().to_string())?, parse(resolved_yaml, "the recipe")?);
    let diffs = recipe_differences(&then, &now);
    if diffs.is_empty() {
        return Ok(());
    }
    Err(RunError::Config(format!(
        "--resume {}: the run was made by another recipe ({} from its recipe.yaml: {}); \
         resume with the recipe and --set overrides it was started with, or start a new run",
        run_dir.display(),
        if diffs.len() == 1 { "1 key differs" } else { "keys differ" },
        diffs.join(", ")
    )))
}

/// The keys where the run's recipe `then` and the resolved recipe `now` differ, less those that
/// may change on resume and the eval-stage keys older runs wrote ([`EVAL_KEYS_ONCE_RESOLVED`]).
fn recipe_differences(then: &Node, now: &Node) -> Vec<String> {
    let mut diffs = Vec::new();
    diff_nodes(then, now, "", &mut diffs);
    let eval_stages: Vec<&str> = match then.get("stages").map(|n| &n.value) {
        Some(Value::Seq(stages)) => stages
            .iter()
            .filter(|s| s.get("kind").and_then(Node::as_str) == Some("eval"))
            .filter_map(|s| s.get("name").and_then(Node::as_str))
            .collect(),
        _ => Vec::new(),
    };
    let written_once = |key: &str| {
        eval_stages
            .iter()
            .any(|stage| EVAL_KEYS_ONCE_RESOLVED.iter().any(|k| key_matches(&format!("stages.{stage}.{k}"), key)))
    };
    diffs.retain(|key| !RESUMABLE_KEYS.iter().any(|pattern| key_matches(pattern, key)) && !written_once(key));
    diffs
}

/// Dotted paths where `a` and `b` differ; list items of `stages` are named by their `name`.
fn diff_nodes(a: &Node, b: &Node, path: &str, out: &mut Vec<String>) {
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match (&a.value, &b.value) {
        (Value::Map(x), Value::Map(y)) => {
            for e in x {
                match b.get(&e.key) {
                    Some(other) => diff_nodes(&e.node, other, &join(&e.key), out),
                    None => out.push(join(&e.key)),
                }
            }
            out.extend(y.iter().filter(|e| a.get(&e.key).is_none()).map(|e| join(&e.key)));
        }
        (Value::Seq(x), Value::Seq(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                let label = p.get("name").and_then(Node::as_str).map_or_else(|| i.to_string(), str::to_owned);
                diff_nodes(p, q, &join(&label), out);
            }
        }
        (x, y) if numbers_equal(x, y) || x == y => {}
        _ => out.push(if path.is_empty() { "(the whole recipe)".into() } else { path.to_owned() }),
    }
}

fn numbers_equal(x: &Value, y: &Value) -> bool {
    match (x, y) {
        (Value::Int(i), Value::Float(f)) | (Value::Float(f), Value::Int(i)) => *i as f64 == *f,
        _ => false,
    }
}

/// `stages.*.logging.progress_bars` matches `stages.rl.logging.progress_bars`.
fn key_matches(pattern: &str, key: &str) -> bool {
    let (p, k): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), key.split('.').collect());
    p.len() == k.len() && p.iter().zip(&k).all(|(p, k)| *p == "*" || p == k)
}

/// The step checkpoint a stage continues from: the newest complete one under
/// `<stage_dir>/checkpoints`, with a line for each newer one skipped as incomplete or damaged.
pub fn stage_checkpoint(stage_dir: &Path, say: &mut dyn FnMut(&str)) -> Option<(u64, PathBuf)> {
    let root = stage_dir.join(CHECKPOINTS_DIR);
    let complete = list_checkpoints(&root);
    let newest = complete.last().map_or(0, |(s, _)| *s);
    let mut damaged: Vec<(u64, PathBuf)> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| parse_step_dir(&e.file_name().to_string_lossy()).map(|s| (s, e.path())))
        .filter(|(s, _)| *s > newest)
        .collect();
    damaged.sort();
    let fallback = complete.last().map_or_else(|| "the start of the stage".to_owned(), |(s, _)| format!("step {s}"));
    for (_, dir) in damaged.iter().rev() {
        say(&format!("checkpoint {} is incomplete or damaged: skipping it, using {fallback}", dir.display()));
    }
    complete.last().cloned()
}

/// Loads step checkpoint `dir` of stage `stage` into `model` and the stage's optimizer (the
/// replicated `optimizer`, or this rank's ZeRO-1 shard in `sync`), returning its state. Every
/// rank calls it and reads the same weights.
pub fn restore_step(
    model: &mut Model,
    world: &World,
    sync: &mut DataParallelSync<'_>,
    optimizer: &mut AdamW,
    dir: &Path,
    stage: &str,
) -> Result<TrainState, RunError> {
    let fail = |e: &dyn std::fmt::Display| RunError::Io { path: dir.display().to_string(), message: e.to_string() };
    // The inner errors name their file.
    let inner = |e: &dyn std::fmt::Display| RunError::Data(format!("resuming: {e}"));
    let found = TrainState::read(dir).map_err(|e| inner(&e))?;
    if found.stage != stage {
        return Err(fail(&format!("a checkpoint of stage `{}`, not of `{stage}`", found.stage)));
    }
    let sharded = dir.read_dir().into_iter().flatten().flatten().any(|e| is_shard(&e.file_name().to_string_lossy()));
    if sync.zero1.is_none() && sharded {
        return Err(fail(
            &"holds optimizer state sharded over several ranks (distributed.shard_optimizer_state): \
                          resume with the same number of ranks",
        ));
    }
    let state = TrainState::restore(dir, model.thinker_mut(), optimizer).map_err(|e| inner(&e))?;
    if let Some(z) = sync.zero1.as_mut() {
        if state.optimizer_saved {
            let (rank, size) = (world.rank(), world.size());
            let (expected, _) = shard_paths(dir, rank, size);
            if !expected.is_file() {
                return Err(fail(&format!(
                    "holds no optimizer shard `{}`: it was written by a job with another number of \
                     ranks or without sharded optimizer state; resume with the same number of ranks",
                    expected.file_name().unwrap_or_default().to_string_lossy()
                )));
            }
            z.load_shard(dir, rank, size).map_err(|e| inner(&e))?;
        } else {
            z.optimizer.reset_state().map_err(|e| inner(&e))?;
            z.optimizer.set_counters(state.optimizer);
        }
    }
    Ok(state)
}

fn is_shard(name: &str) -> bool {
    name.starts_with(SHARD_PREFIX) && name.ends_with(".safetensors")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_differences_are_named_by_key() {
        let a = "name: r\noutput_dir: runs\nstages:\n  - name: rl\n    optimizer: {lr: 1.0e-4}\n    logging: {progress_bars: true}\n";
        let b = "name: r\noutput_dir: /tmp/x\nstages:\n  - name: rl\n    optimizer: {lr: 2.0e-4}\n    logging: {progress_bars: false}\n";
        let (a, b) = (yaml::parse(a, "a").unwrap(), yaml::parse(b, "b").unwrap());
        assert_eq!(recipe_differences(&a, &b), ["stages.rl.optimizer.lr"]);
        assert!(recipe_differences(&a, &a).is_empty());
    }

    #[test]
    fn eval_keys_an_older_run_wrote_do_not_block_its_resume() {
        let stage = |kind: &str, extra: &str| {
            format!("  - name: {kind}\n    kind: {kind}\n    data: {{val_files: [e.jsonl]{extra}}}\n")
        };
        let then = format!("stages:\n{}{}", stage("rl", ", data_seed: 42"), stage("eval", ", data_seed: 42"));
        let now = format!("stages:\n{}{}", stage("rl", ""), stage("eval", ""));
        let (then, now) = (yaml::parse(&then, "then").unwrap(), yaml::parse(&now, "now").unwrap());
        // Only the eval stage's data_seed is excused; the rl stage's is a real difference.
        assert_eq!(recipe_differences(&then, &now), ["stages.rl.data.data_seed"]);
    }

    #[test]
    fn newest_run_takes_only_this_recipes_directories() {
        let tmp = tempfile::tempdir().unwrap();
        for (dir, age) in [("rl", 3), ("rl-2", 2), ("rl_taura", 1), ("rl-x", 0), ("rl_taura-3", 0)] {
            let d = tmp.path().join(dir);
            std::fs::create_dir_all(&d).unwrap();
            let f = std::fs::File::create(d.join("recipe.yaml")).unwrap();
            let t = std::time::SystemTime::now() - std::time::Duration::from_secs(age * 100);
            f.set_modified(t).unwrap();
        }
        assert_eq!(newest_run(tmp.path(), "rl", |_| true), Some(tmp.path().join("rl-2")));
        assert_eq!(newest_run(tmp.path(), "rl_taura", |_| true), Some(tmp.path().join("rl_taura-3")));
        assert_eq!(newest_run(tmp.path(), "sft", |_| true), None);
        assert_eq!(newest_run(tmp.path(), "rl", |d| d.ends_with("rl")), Some(tmp.path().join("rl")));
    }
}
