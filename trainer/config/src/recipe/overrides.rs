//! Overrides, in increasing precedence: the recipe file < the reference's environment
//! variables < `--set dotted.key=value` arguments.
//!
//! Both kinds are written into the recipe's [`Node`] tree before it is deserialized, with an
//! origin naming the variable or the argument, so a bad value is reported against its source.
//! The environment table keeps the reference's variable names (docs/reference.md#hyperparameters)
//! so launch scripts written for it keep working; each variable applies to the stage kinds it
//! meant something for in the reference (e.g. TRAIN_FILE is the RL training file).

use super::de::{Issue, Seg, path_string};
use super::yaml::{Entry, Node, Origin, Value, parse, resolve_plain};

/// How an environment variable's text becomes a value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum EnvKind {
    /// A number or string, resolved like a plain YAML scalar.
    Scalar,
    /// Python-style truthiness: 1/true/yes/on and 0/false/no/off/"" (any case).
    Bool,
    /// Comma-separated (optionally bracketed and quoted) list.
    List,
    /// ABS_ON_POLICY: true -> `on-policy`, false -> `ppo`.
    UpdateFlow,
}

/// Which stages an environment variable applies to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scope {
    Recipe,
    Stages(&'static [&'static str]),
}

const RL: Scope = Scope::Stages(&["rl"]);
const RL_EVAL: Scope = Scope::Stages(&["rl", "eval"]);
const ALL: Scope = Scope::Stages(&["sft", "rl", "eval"]);

/// (variable, key relative to the scope, scope, kind).
const ENV_OVERRIDES: &[(&str, &str, Scope, EnvKind)] = &[
    ("TRAIN_FILE", "data.train_files", RL, EnvKind::List),
    ("VAL_FILE", "data.val_files", RL, EnvKind::List),
    ("MODEL_BASE_PATH", "model.base_path", ALL, EnvKind::Scalar),
    ("MICRO_RATIO", "rollout.micro_ratio", RL_EVAL, EnvKind::Scalar),
    ("USE_DYNAMIC_STEP", "environment.dynamic_steps", RL_EVAL, EnvKind::Bool),
    ("MIN_MAX_STEPS", "environment.min_max_steps", RL_EVAL, EnvKind::Scalar),
    ("MAX_STEPS", "environment.max_steps", RL_EVAL, EnvKind::Scalar),
    ("STRICT_CONFIDENCE_CHECK", "environment.strict_confidence", RL_EVAL, EnvKind::Bool),
    ("RETRY_ON_FORMAT_ERROR", "environment.retry_on_format_error", RL_EVAL, EnvKind::Bool),
    ("DELETE_MEDIA_WHEN_ERROR", "environment.delete_media_on_error", RL_EVAL, EnvKind::Bool),
    ("BYPASS_DURATION_CHECK", "environment.bypass_duration_check", RL_EVAL, EnvKind::Bool),
    ("ABS_ON_POLICY", "algorithm.update_flow", RL, EnvKind::UpdateFlow),
    ("PPO_EPOCHS", "algorithm.ppo_epochs", RL, EnvKind::Scalar),
    ("PPO_MINI_BATCH_SIZE", "algorithm.ppo_mini_batch_size", RL, EnvKind::Scalar),
    ("FORMAT_REWARD", "reward.format_reward", RL_EVAL, EnvKind::Bool),
    ("DASHSCOPE_BASE_URL", "reward.judge.base_url", RL_EVAL, EnvKind::Scalar),
    ("OMNI_IMAGE_MAX_PIXELS", "preprocess.image_max_pixels", ALL, EnvKind::Scalar),
    ("OMNI_VIDEO_FRAME_MAX_PIXELS", "preprocess.video_frame_max_pixels", ALL, EnvKind::Scalar),
    ("VIDEO_MAX_PIXELS", "preprocess.video_total_pixels", ALL, EnvKind::Scalar),
    ("TENSORBOARD_DIR", "logging.tensorboard_dir", ALL, EnvKind::Scalar),
    ("GPU_IDS", "distributed.gpu_ids", Scope::Recipe, EnvKind::List),
];

/// Names of every environment variable that can override a recipe key.
pub fn env_override_names() -> impl Iterator<Item = &'static str> {
    ENV_OVERRIDES.iter().map(|(var, ..)| *var)
}

/// One override that was applied, for the resolved-recipe report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AppliedOverride {
    pub key: String,
    pub source: String,
    pub value: String,
}

fn env_value(kind: EnvKind, text: &str, origin: &Origin) -> Node {
    let lowered = text.trim().to_ascii_lowercase();
    let truth = match lowered.as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    };
    let value = match (kind, truth) {
        (EnvKind::Bool, Some(b)) => Value::Bool(b),
        (EnvKind::UpdateFlow, Some(b)) => Value::Str(if b { "on-policy" } else { "ppo" }.into()),
        (EnvKind::List, _) => {
            let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
            let items = inner
                .split(',')
                .map(|s| s.trim().trim_matches(['"', '\'']))
                .filter(|s| !s.is_empty())
                .map(|s| Node::new(resolve_plain(s), origin.clone()))
                .collect();
            Value::Seq(items)
        }
        // Left as text: the typed deserializer reports it against the variable.
        (EnvKind::Scalar, _) | (EnvKind::Bool | EnvKind::UpdateFlow, None) => resolve_plain(text.trim()),
    };
    Node::new(value, origin.clone())
}

/// Splits `stages[1].optimizer.lr` or `stages.rl.optimizer.lr` into segments.
fn split_key(key: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(name.to_string());
        } else if rest.is_empty() {
            return None;
        }
        let mut rest = rest;
        while let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped.find(']')?;
            out.push(stripped[..end].to_string());
            rest = &stripped[end + 1..];
        }
        if !rest.is_empty() {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Index of the sequence item a segment names: a number, or a stage `name` (then `kind`).
fn seq_index(items: &[Node], seg: &str) -> Option<usize> {
    if let Ok(i) = seg.parse::<usize>() {
        return (i < items.len()).then_some(i);
    }
    let field = |node: &Node, key: &str| node.get(key).and_then(Node::as_str).map(str::to_string);
    items
        .iter()
        .position(|n| field(n, "name").as_deref() == Some(seg))
        .or_else(|| items.iter().position(|n| field(n, "name").is_none() && field(n, "kind").as_deref() == Some(seg)))
}

/// Writes `value` at `segments` under `root`, creating mappings as needed.
fn set_at(root: &mut Node, segments: &[String], value: Node) -> Result<Vec<Seg>, String> {
    let mut node = root;
    let mut path: Vec<Seg> = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if node.value == Value::Null {
            node.value = Value::Map(Vec::new());
        }
        let origin = value.origin.clone();
        match &mut node.value {
            Value::Map(entries) => {
                path.push(Seg::Key(seg.clone()));
                let pos = match entries.iter().position(|e| &e.key == seg) {
                    Some(pos) => pos,
                    None => {
                        let fresh = Node::new(Value::Null, Origin::Generated);
                        entries.push(Entry { key: seg.clone(), key_origin: origin.clone(), node: fresh });
                        entries.len() - 1
                    }
                };
                if last {
                    entries[pos].node = value;
                    return Ok(path);
                }
                node = &mut entries[pos].node;
            }
            Value::Seq(items) => {
                let Some(idx) = seq_index(items, seg) else {
                    return Err(format!(
                        "{} has {} entries and none is `{seg}` (use an index or a stage name)",
                        path_string(&path),
                        items.len()
                    ));
                };
                path.push(Seg::Index(idx));
                if last {
                    items[idx] = value;
                    return Ok(path);
                }
                node = &mut items[idx];
            }
            other => {
                return Err(format!("{} is {}, not a mapping", path_string(&path), other.describe()));
            }
        }
    }
    Err("empty key".into())
}

fn stage_kinds(root: &Node) -> Vec<Option<String>> {
    match root.get("stages").map(|s| &s.value) {
        Some(Value::Seq(items)) => {
            items.iter().map(|n| n.get("kind").and_then(Node::as_str).map(str::to_string)).collect()
        }
        _ => Vec::new(),
    }
}

/// Applies the environment overrides found by `env` to `root`.
pub fn apply_env(root: &mut Node, env: &dyn Fn(&str) -> Option<String>) -> (Vec<AppliedOverride>, Vec<Issue>) {
    let mut applied = Vec::new();
    let mut issues = Vec::new();
    let kinds = stage_kinds(root);
    for (var, key, scope, kind) in ENV_OVERRIDES {
        let Some(text) = env(var) else { continue };
        let origin = Origin::Env { var: (*var).to_string() };
        let targets: Vec<Vec<String>> = match scope {
            Scope::Recipe => vec![key.split('.').map(String::from).collect()],
            Scope::Stages(wanted) => kinds
                .iter()
                .enumerate()
                .filter(|(_, k)| k.as_deref().is_some_and(|k| wanted.contains(&k)))
                .map(|(i, _)| {
                    let mut segs = vec!["stages".to_string(), i.to_string()];
                    segs.extend(key.split('.').map(String::from));
                    segs
                })
                .collect(),
        };
        for segments in targets {
            match set_at(root, &segments, env_value(*kind, &text, &origin)) {
                Ok(path) => applied.push(AppliedOverride {
                    key: path_string(&path),
                    source: format!("environment variable {var}"),
                    value: text.clone(),
                }),
                Err(message) => issues.push(Issue { path: segments.join("."), origin: origin.clone(), message }),
            }
        }
    }
    (applied, issues)
}

/// Applies `--set key=value` arguments in order.
pub fn apply_sets(root: &mut Node, sets: &[String]) -> (Vec<AppliedOverride>, Vec<Issue>) {
    let mut applied = Vec::new();
    let mut issues = Vec::new();
    for arg in sets {
        let origin = Origin::Cli { arg: arg.clone() };
        let fail = |message: String| Issue {
            path: arg.split('=').next().unwrap_or("").to_string(),
            origin: origin.clone(),
            message,
        };
        let Some((key, text)) = arg.split_once('=') else {
            issues.push(fail("expected KEY=VALUE, e.g. stages.rl.optimizer.lr=2e-6".into()));
            continue;
        };
        let Some(segments) = split_key(key.trim()) else {
            issues.push(fail(format!("`{key}` is not a dotted key such as stages[0].optimizer.lr")));
            continue;
        };
        let value = match parse(text, "--set") {
            Ok(mut node) => {
                relabel(&mut node, &origin);
                node
            }
            Err(e) => {
                issues.push(fail(format!("value `{text}` is not valid YAML: {}", e.message)));
                continue;
            }
        };
        // An empty document parses as an empty mapping; `key=` means null.
        let value = if text.trim().is_empty() { Node::new(Value::Null, origin.clone()) } else { value };
        let targets = match shorthand_stages(root, &segments) {
            Ok(t) => t,
            Err(message) => {
                issues.push(fail(message));
                continue;
            }
        };
        for segments in targets {
            let value = value.clone();
            match set_at(root, &segments, value) {
                Ok(path) => applied.push(AppliedOverride {
                    key: path_string(&path),
                    source: format!("--set {arg}"),
                    value: text.to_string(),
                }),
                Err(message) => issues.push(fail(message)),
            }
        }
    }
    (applied, issues)
}

/// `algorithm.KEY` (no `stages.` prefix) is shorthand for that key of every rl stage, the
/// only kind with an algorithm section: `--set algorithm.estimator=grpo` switches a whole
/// recipe's estimator. Any other key is used as written.
fn shorthand_stages(root: &Node, segments: &[String]) -> Result<Vec<Vec<String>>, String> {
    if segments.first().map(String::as_str) != Some("algorithm") {
        return Ok(vec![segments.to_vec()]);
    }
    let rl: Vec<Vec<String>> = stage_kinds(root)
        .iter()
        .enumerate()
        .filter(|(_, k)| k.as_deref() == Some("rl"))
        .map(|(i, _)| ["stages".to_string(), i.to_string()].into_iter().chain(segments.iter().cloned()).collect())
        .collect();
    if rl.is_empty() {
        return Err("`algorithm.*` applies to every rl stage, and this recipe has none".into());
    }
    Ok(rl)
}

fn relabel(node: &mut Node, origin: &Origin) {
    node.origin = origin.clone();
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| relabel(n, origin)),
        Value::Map(entries) => entries.iter_mut().for_each(|e| {
            e.key_origin = origin.clone();
            relabel(&mut e.node, origin);
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "stages:\n  - kind: sft\n  - name: main\n    kind: rl\n    rollout:\n      micro_ratio: 2\n";

    #[test]
    fn keys_split_both_ways() {
        assert_eq!(split_key("stages[1].optimizer.lr").unwrap(), ["stages", "1", "optimizer", "lr"]);
        assert_eq!(split_key("stages.rl.lr").unwrap(), ["stages", "rl", "lr"]);
        assert!(split_key("a..b").is_none());
        assert!(split_key("a[1").is_none());
    }

    #[test]
    fn env_applies_to_the_stage_kinds_it_names() {
        let mut root = parse(DOC, "r.yaml").unwrap();
        let env = |v: &str| match v {
            "MICRO_RATIO" => Some("4".to_string()),
            "TRAIN_FILE" => Some("['a.jsonl', 'b.jsonl']".to_string()),
            "ABS_ON_POLICY" => Some("False".to_string()),
            _ => None,
        };
        let (applied, issues) = apply_env(&mut root, &env);
        assert!(issues.is_empty(), "{issues:?}");
        let keys: Vec<&str> = applied.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            ["stages[1].data.train_files", "stages[1].rollout.micro_ratio", "stages[1].algorithm.update_flow"]
        );
        let rl = &root
            .get("stages")
            .and_then(|s| match &s.value {
                Value::Seq(v) => v.get(1).cloned(),
                _ => None,
            })
            .unwrap();
        assert_eq!(rl.get("rollout").unwrap().get("micro_ratio").unwrap().value, Value::Int(4));
        assert_eq!(rl.get("algorithm").unwrap().get("update_flow").unwrap().value, Value::Str("ppo".into()));
        let files = rl.get("data").unwrap().get("train_files").unwrap();
        assert!(matches!(&files.value, Value::Seq(v) if v.len() == 2));
        assert_eq!(files.origin, Origin::Env { var: "TRAIN_FILE".into() });
    }

    #[test]
    fn sets_address_stages_by_index_or_name_and_report_bad_paths() {
        let mut root = parse(DOC, "r.yaml").unwrap();
        let sets = [
            "stages.main.optimizer.lr=2e-6".to_string(),
            "stages[0].schedule.epochs=3".to_string(),
            "stages.nope.x=1".to_string(),
            "stages.main.rollout.micro_ratio.deep=1".to_string(),
            "novalue".to_string(),
        ];
        let (applied, issues) = apply_sets(&mut root, &sets);
        assert_eq!(applied.len(), 2);
        assert_eq!(applied[0].key, "stages[1].optimizer.lr");
        assert_eq!(issues.len(), 3, "{issues:?}");
        assert!(issues[0].message.contains("none is `nope`"));
        assert!(issues[1].message.contains("is integer 2, not a mapping"));
        assert!(issues[2].message.starts_with("expected KEY=VALUE"));
    }

    #[test]
    fn algorithm_shorthand_sets_every_rl_stage() {
        let two = format!("{DOC}  - name: again\n    kind: rl\n");
        let mut root = parse(&two, "r.yaml").unwrap();
        let (applied, issues) = apply_sets(&mut root, &["algorithm.estimator=grpo".to_string()]);
        assert!(issues.is_empty(), "{issues:?}");
        let keys: Vec<&str> = applied.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["stages[1].algorithm.estimator", "stages[2].algorithm.estimator"]);
        let stages = root.get("stages").unwrap();
        let Value::Seq(items) = &stages.value else { panic!("stages") };
        assert!(items[0].get("algorithm").is_none(), "the sft stage is left alone");
        assert_eq!(items[2].get("algorithm").unwrap().get("estimator").unwrap().value, Value::Str("grpo".into()));
        let mut sft_only = parse("stages:\n  - kind: sft\n", "r.yaml").unwrap();
        let (applied, issues) = apply_sets(&mut sft_only, &["algorithm.estimator=grpo".to_string()]);
        assert!(applied.is_empty());
        assert!(issues[0].message.contains("has none"), "{issues:?}");
    }
}
