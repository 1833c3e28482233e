//! Every recipe key is a contract: for each stage kind (and each SFT data source), every key of
//! the schema is set to a value other than its default, and the recipe must then either be
//! rejected by validation with an error at that key, or resolve to a different stage, the typed
//! value `omnirl validate`'s plan and `omnirl train` read (the runner destructures the resolved
//! stages field by field, so the compiler checks that every resolved field is consumed).
//!
//! The keys come from the schema itself (a stage with every optional section present,
//! serialized), so a key added to the schema without a way through to the runner, or a
//! rejection, fails this test. Values: booleans flip, numbers grow, and the table below gives
//! the rest (strings, paths, lists, keys that are unset by default).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::path::Path;
use trainer::problem::Severity;
use trainer::recipe::emit::to_yaml;
use trainer::recipe::resolved::ResolvedRecipe;
use trainer::recipe::{LoraConfig, PassRateFilter, Recipe, SamplingConfig, Stage, StageKind, load};

/// The stages the walk starts from, each alone in a recipe.
fn bases() -> Vec<(&'static str, Value)> {
    let model = json!({"path": "ckpt"});
    vec![
        ("sft on files", json!({"kind": "sft", "model": model, "data": {"train_files": ["sft.jsonl"]}})),
        (
            "sft from the expert",
            json!({"kind": "sft", "model": model, "data": {"source": "expert", "train_files": ["rl.jsonl"]}}),
        ),
        (
            "rl",
            json!({"kind": "rl", "model": model, "data": {"train_files": ["rl.jsonl"], "val_files": ["val.jsonl"]}}),
        ),
        ("eval", json!({"kind": "eval", "model": model, "data": {"val_files": ["eval.jsonl"]}})),
    ]
}

/// The sections that are absent by default; a key inside one is walked with the section present.
const OPTIONAL_SECTIONS: [&str; 3] = ["model.lora", "rollout.sampling", "data.pass_rate_filter"];

/// Every leaf key of a stage (dotted) with its value in a stage of `kind` whose kind defaults
/// are filled and whose optional sections are present.
fn stage_keys(kind: StageKind) -> Vec<(String, Value)> {
    let mut full = Stage { kind: Some(kind), ..Stage::default() };
    full.model.lora = Some(LoraConfig::default());
    full.rollout.sampling = Some(SamplingConfig::train());
    full.data.pass_rate_filter = Some(PassRateFilter::default());
    full.resolve_defaults(42);
    let tree = serde_json::to_value(&full).unwrap();
    let mut out = Vec::new();
    walk(&tree, String::new(), &mut out);
    out.retain(|k| k != "kind");
    out.into_iter().map(|k| (k.clone(), get(&tree, &k).clone())).collect()
}

fn walk(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let key = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                walk(child, key, out);
            }
        }
        _ => out.push(at),
    }
}

/// A value for `key` that differs from `current` (its value in the base stage, `Null` when unset).
fn other_value(key: &str, current: &Value) -> Value {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    match (leaf, current) {
        ("dtype", _) => json!("f16"),
        ("init", _) => json!("random"),
        ("source", _) => json!(if current == "expert" { "files" } else { "expert" }),
        ("estimator", _) => json!("grpo"),
        ("update_flow", _) => json!("ppo"),
        ("loss_aggregation", _) => json!("seq-mean-token-sum"),
        ("lr_schedule", _) => json!("cosine"),
        ("backend", _) => json!("mpi"),
        ("device", _) => json!("cuda"),
        ("target_modules", _) => json!(["q_proj"]),
        ("betas", _) => json!([0.8, 0.95]),
        ("gpu_ids", _) => json!([1]),
        ("train_files" | "val_files", _) => json!(["other.jsonl"]),
        ("system_prompt", _) => json!("recipes/prompts/omniagent.txt"),
        ("from_stage", _) => json!("earlier"),
        ("name", _) => json!("renamed"),
        (_, Value::Bool(b)) => json!(!b),
        (_, Value::Number(n)) if n.is_u64() => json!(n.as_u64().unwrap() + 1),
        (_, Value::Number(n)) => json!(n.as_f64().unwrap() * 2.0 + 0.25),
        (_, Value::String(_)) => json!(format!("other-{leaf}")),
        // Unset by default: numbers where the schema wants numbers, else a path.
        (
            "max_samples" | "data_seed" | "max_steps" | "val_every" | "top_k" | "tis_cap" | "log_every" | "save_every"
            | "epochs" | "group_size" | "media_cache_mib",
            Value::Null,
        ) => json!(3),
        ("lr" | "warmup_ratio", Value::Null) => json!(0.125),
        (
            "strict_confidence" | "bypass_duration_check" | "freeze_vision_encoder" | "freeze_audio_encoder",
            Value::Null,
        ) => {
            json!(true)
        }
        ("sampling", Value::Null) => json!({"temperature": 0.5}),
        ("lora", Value::Null) => json!({"rank": 4}),
        (_, Value::Null) => json!(format!("other-{leaf}")),
        (_, other) => panic!("no alternative value for `{key}` (currently {other})"),
    }
}

fn set(root: &mut Value, key: &str, value: Value) {
    let mut at = root;
    let parts: Vec<&str> = key.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        if !at.get(*p).is_some_and(Value::is_object) {
            at[*p] = json!({});
        }
        at = &mut at[*p];
    }
    at[parts[parts.len() - 1]] = value;
}

fn get<'a>(root: &'a Value, key: &str) -> &'a Value {
    key.split('.').try_fold(root, |v, p| v.get(p)).unwrap_or(&Value::Null)
}

/// Loads a recipe tree: (errors with their keys, the resolved recipe when it resolves).
fn check(dir: &Path, tree: &Value) -> (Vec<(String, String)>, Option<ResolvedRecipe>) {
    let file = dir.join("recipe.yaml");
    std::fs::write(&file, to_yaml(tree)).unwrap();
    let loaded = load(&file, &[], &|_| None);
    let mut problems = loaded.problems.clone();
    if let Some(r) = &loaded.recipe {
        problems.extend(r.validate(&loaded.origins));
    }
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| (p.key.clone().unwrap_or_default(), p.to_string()))
        .collect();
    let resolved = loaded.recipe.as_ref().and_then(|r: &Recipe| {
        let (resolved, unresolved) = ResolvedRecipe::new(r);
        unresolved.is_empty().then_some(resolved)
    });
    (errors, resolved)
}

/// Whether the errors reject `key` (an error at the key, at a section holding it, or inside it); a
/// type error means the test picked a bad value and fails.
fn rejects(errors: &[(String, String)], key: &str) -> bool {
    let within =
        |inner: &str, outer: &str| inner.starts_with(&format!("{outer}.")) || inner.starts_with(&format!("{outer}["));
    let hit = |k: &String| k == key || within(k, key) || within(key, k);
    let kinds = ["null", "boolean ", "integer ", "number ", "string ", "a list", "a mapping"];
    for (k, m) in errors.iter().filter(|(k, _)| hit(k)) {
        let type_error = kinds.iter().any(|t| m.contains(&format!(", found {t}")));
        assert!(!type_error, "the test set `{k}` to a value of the wrong type: {m}");
    }
    errors.iter().any(|(k, _)| hit(k))
}

#[test]
fn every_key_is_used_by_the_runner_or_rejected() {
    std::env::set_current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut silent = Vec::new();
    let mut walked = 0;
    for (what, stage) in bases() {
        let kind: StageKind = serde_json::from_value(stage["kind"].clone()).unwrap();
        let keys = stage_keys(kind);
        assert!(keys.len() > 100, "the schema walk found only {} keys", keys.len());
        let recipe_defaults = serde_json::to_value(Recipe::default()).unwrap();
        let recipe_keys = ["name", "seed", "output_dir", "distributed.backend", "distributed.device"]
            .into_iter()
            .chain(["distributed.gpu_ids", "distributed.gpu_memory_gib", "distributed.shard_optimizer_state"])
            .chain(["distributed.timeout_s"])
            .map(|k| (k.to_string(), get(&recipe_defaults, k).clone()));
        let stage_keys = keys.into_iter().map(|(k, v)| (format!("stages.0.{k}"), v));
        for (key, current) in recipe_keys.chain(stage_keys) {
            let mut base = json!({"name": "keys", "stages": [stage.clone()]});
            let inner = key.strip_prefix("stages.0.");
            if let Some(section) =
                inner.and_then(|k| OPTIONAL_SECTIONS.iter().find(|s| k.starts_with(&format!("{s}."))))
            {
                set(&mut base["stages"][0], section, json!({}));
            }
            let canonical = key.replacen("stages.0.", "stages[0].", 1);
            let (base_errors, baseline) = check(dir.path(), &base);
            if !base_errors.is_empty() {
                // The optional section itself is rejected for this kind.
                let section = canonical.rsplit_once('.').map_or(canonical.as_str(), |(s, _)| s);
                assert!(rejects(&base_errors, section), "{what}: base of `{key}` is invalid: {base_errors:?}");
                continue;
            }
            // The base's own value when it sets one, else the default.
            let current = match inner.map(|rest| get(&base["stages"][0], rest)) {
                Some(v) if !v.is_null() => v.clone(),
                _ => current,
            };
            let value = other_value(&key, &current);
            let mut tree = base.clone();
            match inner {
                Some(rest) => set(&mut tree["stages"][0], rest, value.clone()),
                None => set(&mut tree, &key, value.clone()),
            }
            if inner == Some("model.init") {
                // A random initialisation needs a config and no path.
                tree["stages"][0]["model"] = json!({"init": "random", "config": "data/quickstart/tiny_thinker.json"});
            }
            let (errors, resolved) = check(dir.path(), &tree);
            let used = baseline.is_some() && resolved.is_some() && resolved != baseline;
            if !rejects(&errors, &canonical) && !used {
                silent.push(format!("{what}: `{key}` = {value} (other errors: {errors:?})"));
            }
            walked += 1;
        }
    }
    assert!(walked > 400, "walked {walked} keys");
    assert!(silent.is_empty(), "keys neither used nor rejected:\n{}", silent.join("\n"));
}

#[test]
fn a_rejected_key_names_what_to_do_instead() {
    let dir = tempfile::tempdir().unwrap();
    let tree = json!({"name": "keys", "stages": [
        {"kind": "sft", "model": {"path": "ckpt"}, "data": {"train_files": ["sft.jsonl"]},
         "environment": {"max_frames": 4}, "schedule": {"val_every": 3}},
        {"kind": "eval", "model": {"path": "ckpt"}, "data": {"val_files": ["e.jsonl"]}, "rollout": {"group_size": 4}},
        {"kind": "sft", "name": "lora", "model": {"path": "ckpt", "lora": {"dropout": 0.1}}, "data": {"train_files": ["sft.jsonl"]}},
    ]});
    let (errors, _) = check(dir.path(), &tree);
    let find = |key: &str| errors.iter().find(|(k, _)| k == key).map(|(_, m)| m.clone());
    let env = find("stages[0].environment").unwrap();
    assert!(env.contains("data.source: files") && env.contains("recipe.yaml:"), "{env}");
    assert!(find("stages[0].schedule.val_every").unwrap().contains("rl setting"));
    assert!(find("stages[1].rollout.group_size").unwrap().contains("one episode per sample"));
    assert!(find("stages[2].model.lora.dropout").unwrap().contains("not supported"));
}
