//! Recipes: YAML files describing a job as ordered stages, with overrides from the
//! environment and the command line, parsed into a typed [`Recipe`] and checked completely.
//!
//! [`load`] never stops at the first problem: syntax errors aside (YAML that cannot be parsed
//! has no tree to check), it returns every unknown key, type error and override error, each
//! with the file position (or variable, or argument) that produced it. [`Recipe::validate`]
//! then adds the semantic checks that need no data, model or environment.

pub mod checks;
pub mod data_section;
pub mod de;
pub mod emit;
pub mod overrides;
pub mod resolved;
pub mod schema;
pub mod sections;
pub mod yaml;

pub use data_section::*;
pub use overrides::AppliedOverride;
pub use resolved::{ModelSource, ResolvedRecipe, ResolvedStage};
pub use schema::{Backend, DeviceKind, DistributedConfig, Recipe, Stage, StageKind};
pub use sections::*;

use crate::problem::Problem;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use yaml::{Node, Origin, Value};

/// Where each dotted key of the final tree came from, for locating semantic problems.
#[derive(Debug, Clone, Default)]
pub struct OriginIndex {
    origins: HashMap<String, Origin>,
    fallback: Option<Origin>,
}

impl OriginIndex {
    fn build(root: &Node) -> Self {
        fn walk(node: &Node, path: &mut Vec<de::Seg>, out: &mut HashMap<String, Origin>) {
            match &node.value {
                Value::Map(entries) => {
                    for e in entries {
                        path.push(de::Seg::Key(e.key.clone()));
                        // A key points at its own line; a scalar value at the value.
                        let origin = match e.node.value {
                            Value::Map(_) | Value::Seq(_) | Value::Null => e.key_origin.clone(),
                            _ => e.node.origin.clone(),
                        };
                        out.insert(de::path_string(path), origin);
                        walk(&e.node, path, out);
                        path.pop();
                    }
                }
                Value::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        path.push(de::Seg::Index(i));
                        out.insert(de::path_string(path), item.origin.clone());
                        walk(item, path, out);
                        path.pop();
                    }
                }
                _ => {}
            }
        }
        let mut origins = HashMap::new();
        walk(root, &mut Vec::new(), &mut origins);
        OriginIndex { origins, fallback: Some(root.origin.clone()) }
    }

    /// The origin of `key`, or of its nearest ancestor that appears in the recipe.
    pub fn locate(&self, key: &str) -> Option<&Origin> {
        let mut key = key;
        loop {
            if let Some(o) = self.origins.get(key) {
                return Some(o);
            }
            match key.rfind(['.', '[']) {
                Some(i) => key = &key[..i],
                None => return self.fallback.as_ref(),
            }
        }
    }

    /// A problem about `key`, located at its origin.
    pub fn problem(&self, key: &str, error: bool, message: impl Into<String>) -> Problem {
        let location = self.locate(key).map(ToString::to_string).unwrap_or_else(|| key.to_string());
        let p = if error { Problem::error(location, message) } else { Problem::warning(location, message) };
        p.with_key(key)
    }
}

/// The result of loading a recipe: the typed recipe if the tree could be read, and every
/// problem found on the way.
#[derive(Debug, Clone)]
pub struct LoadedRecipe {
    pub path: PathBuf,
    pub recipe: Option<Recipe>,
    pub overrides: Vec<AppliedOverride>,
    pub origins: OriginIndex,
    pub problems: Vec<Problem>,
}

fn issue_problem(issue: de::Issue) -> Problem {
    Problem::error(issue.origin.to_string(), issue.message).with_key(issue.path)
}

/// Reads `path`, applies environment overrides (looked up with `env`) and `--set` arguments,
/// and deserializes the typed recipe with kind-dependent defaults resolved.
pub fn load(path: &Path, sets: &[String], env: &dyn Fn(&str) -> Option<String>) -> LoadedRecipe {
    load_checked(path, sets, env, true)
}

/// [`load`] for a recipe written resolved (a run directory's `recipe.yaml`): it spells out every
/// default, including keys a stage's kind does not use, so the unused-key check (which tells a
/// set key from an unset one) does not apply to it.
pub fn load_resolved_file(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> LoadedRecipe {
    load_checked(path, &[], env, false)
}

fn load_checked(
    path: &Path,
    sets: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    check_unused: bool,
) -> LoadedRecipe {
    let display = path.display().to_string();
    let mut loaded = LoadedRecipe {
        path: path.to_path_buf(),
        recipe: None,
        overrides: Vec::new(),
        origins: OriginIndex::default(),
        problems: Vec::new(),
    };
    let source = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            loaded.problems.push(Problem::error(display, format!("cannot read recipe: {e}")));
            return loaded;
        }
    };
    let mut root = match yaml::parse(&source, &display) {
        Ok(root) => root,
        Err(e) => {
            loaded.problems.push(Problem::error(e.origin.to_string(), format!("invalid YAML: {}", e.message)));
            return loaded;
        }
    };
    if !matches!(root.value, Value::Map(_)) {
        loaded.problems.push(Problem::error(
            root.origin.to_string(),
            format!("a recipe is a mapping, found {}", root.value.describe()),
        ));
        return loaded;
    }
    let (env_applied, env_issues) = overrides::apply_env(&mut root, env);
    let (set_applied, set_issues) = overrides::apply_sets(&mut root, sets);
    loaded.overrides = env_applied.into_iter().chain(set_applied).collect();
    let (recipe, issues) = de::from_node::<Recipe>(&root);
    loaded.problems.extend(env_issues.into_iter().chain(set_issues).chain(issues).map(issue_problem));
    loaded.origins = OriginIndex::build(&root);
    loaded.recipe = recipe.map(|mut r| {
        if check_unused {
            for (i, stage) in r.stages.iter().enumerate() {
                for (key, why) in stage.unused_keys() {
                    loaded.problems.push(loaded.origins.problem(&format!("stages[{i}].{key}"), true, why));
                }
            }
        }
        let seed = r.seed;
        r.stages.iter_mut().for_each(|s| s.resolve_defaults(seed));
        r
    });
    loaded
}
