//! The `omnirl` command line: one subcommand per file.

pub mod advantage;
pub mod bench;
pub mod demo;
pub mod eval;
pub mod generate;
pub mod infer;
pub mod logprobs;
pub mod media;
pub mod replay;
pub mod report;
pub mod score;
pub mod synth;
pub mod train;
pub mod validate;

use crate::problem::Severity;
use crate::recipe::ResolvedRecipe;
use crate::run::RUN_RECIPE_FILE;
use crate::run::single::{StageSettings, stage_settings};
use std::path::{Path, PathBuf};

/// A recipe for a command that takes one stage's settings from it: loaded with the environment
/// and `--set` overrides, checked (`Recipe::validate`), and resolved; any error ends the command
/// with every problem listed.
pub(crate) fn load_resolved(path: &Path, sets: &[String]) -> anyhow::Result<ResolvedRecipe> {
    let env = |k: &str| std::env::var(k).ok();
    resolve_loaded(path, crate::recipe::load(path, sets, &env))
}

/// [`load_resolved`] for a run directory's `recipe.yaml`, which spells out every default
/// (`recipe::load_resolved_file`); every other check applies.
pub(crate) fn load_run_recipe(path: &Path) -> anyhow::Result<ResolvedRecipe> {
    let env = |k: &str| std::env::var(k).ok();
    resolve_loaded(path, crate::recipe::load_resolved_file(path, &env))
}

fn resolve_loaded(path: &Path, loaded: crate::recipe::LoadedRecipe) -> anyhow::Result<ResolvedRecipe> {
    let semantic = loaded.recipe.as_ref().map(|r| r.validate(&loaded.origins)).unwrap_or_default();
    let errors: Vec<String> = loaded
        .problems
        .iter()
        .chain(&semantic)
        .filter(|p| p.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    if !errors.is_empty() {
        anyhow::bail!("{}: {} error(s):\n{}", path.display(), errors.len(), errors.join("\n"));
    }
    let recipe = loaded.recipe.ok_or_else(|| anyhow::anyhow!("{}: no recipe could be read", path.display()))?;
    let (resolved, unresolved) = ResolvedRecipe::new(&recipe);
    if let Some(e) = unresolved.first() {
        anyhow::bail!("{}: {e}", path.display());
    }
    Ok(resolved)
}

/// The recipe of the training run a checkpoint belongs to, when `--recipe` is not given: a run
/// directory holds its resolved `recipe.yaml` beside one directory per stage, so
/// `RUN/STAGE/final` (or `RUN/STAGE/checkpoints/step_N`) takes the settings of stage `STAGE` of
/// `RUN/recipe.yaml`, the environment and system prompt the checkpoint was trained with. Said
/// on stderr (prefixed with `command`) either way; a run recipe that does not load is reported
/// and not used. Shared by `omnirl demo` and `omnirl infer`.
fn run_recipe_of(model: &Path, command: &str) -> Option<(ResolvedRecipe, PathBuf, String)> {
    let model = model.canonicalize().ok()?;
    let ancestors: Vec<&Path> = model.ancestors().skip(1).take(3).collect();
    for (i, run) in ancestors.iter().enumerate().skip(1) {
        let path = run.join(RUN_RECIPE_FILE);
        let Some(stage) = ancestors[i - 1].file_name().and_then(|n| n.to_str()) else { continue };
        if !path.is_file() {
            continue;
        }
        match load_run_recipe(&path) {
            Ok(r) if r.stage(stage).is_some_and(|s| s.episodes().is_some()) => {
                eprintln!("{command}: settings of stage `{stage}` of the run's recipe {}", path.display());
                return Some((r, path, stage.to_string()));
            }
            Ok(_) => continue,
            Err(e) => {
                eprintln!("{command}: not using the run's recipe {}: {e:#}", path.display());
                return None;
            }
        }
    }
    None
}

/// The episode settings of a command that runs a checkpoint (`omnirl infer`, `omnirl demo`): from
/// stage `stage` of `recipe` when one is given, else from the checkpoint's stage of its run's
/// recipe ([`run_recipe_of`]), else a default eval stage (`run::single::stage_settings`).
pub(crate) fn checkpoint_stage(
    recipe: Option<&Path>,
    stage: Option<&str>,
    model: &Path,
    seed: u64,
    command: &str,
) -> anyhow::Result<StageSettings> {
    let (recipe, stage) = match recipe {
        Some(p) => (Some((load_resolved(p, &[])?, p.to_path_buf())), stage.map(str::to_owned)),
        None => match run_recipe_of(model, command) {
            Some((r, path, stage)) => (Some((r, path)), Some(stage)),
            None => (None, None),
        },
    };
    let of = recipe.as_ref().map(|(r, p)| (r, p.as_path()));
    Ok(stage_settings(of, stage.as_deref(), model, seed)?)
}
