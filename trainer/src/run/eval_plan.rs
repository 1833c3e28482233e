//! What `omnirl eval` evaluates, and the table of a turn-budget sweep.
//!
//! [`EvalPlan::plain`] is the `--model DIR --data FILE` form: the defaults of an `eval` stage
//! with fp32 weights, 1024 response tokens and seed 42. [`EvalPlan::from_recipe`] picks, from a
//! validated recipe, the last eval stage with data files, else the last rl stage with
//! `val_files` (its validation settings), and the model that stage evaluates under
//! `omnirl train`: an eval stage's `model.from_stage` (else the last training stage before it)
//! or an rl stage's own result, taken as `<stage>/final` from the run directory the recipe file
//! lies in when it is that run's `recipe.yaml`, else from the newest run directory of the recipe
//! that has it; an eval stage with a checkpoint path evaluates that path.
//!
//! [`SweepTable`] collects one row per turn budget: samples, accuracy, mean reward, turns,
//! frames, seconds of media and runtime-error rate, as CSV and as JSON.
//!
//! Left out: evaluating several stages of one recipe in one call (the last eligible one is taken).

use super::RUN_RECIPE_FILE;
use super::consumption::consumption;
use super::eval::Evaluation;
use super::resume::newest_run;
use crate::recipe::resolved::{EvalStage, ModelSource, ResolvedRecipe, ResolvedStage, default_stage};
use crate::recipe::{DeviceKind, Dtype, StageKind};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EvalPlanError {
    #[error("{0}: no eval stage and no rl stage with val_files to evaluate")]
    NothingToEvaluate(String),
    #[error("stage `{0}` names no model path: pass --model DIR")]
    NoModelPath(String),
    #[error(
        "no run of `{recipe}` under {output_dir} has a result of stage `{stage}` ({stage}/final): run `omnirl train` \
         first, or pass --model DIR"
    )]
    NoResult { recipe: String, output_dir: String, stage: String },
    #[error("{0}")]
    Recipe(String),
}

/// What to evaluate, and how.
#[derive(Debug)]
pub struct EvalPlan {
    /// The recipe stage evaluated (`None` in the plain form).
    pub stage_name: Option<String>,
    pub stage: EvalStage,
    pub model: PathBuf,
    pub seed: u64,
    pub device: tch::Device,
}

impl EvalPlan {
    /// `--model DIR --data FILE` with the evaluation defaults.
    pub fn plain(model: &Path, data: &Path) -> Result<EvalPlan, EvalPlanError> {
        let stage = default_stage(StageKind::Eval, model, 42).map_err(|e| EvalPlanError::Recipe(e.to_string()))?;
        let ResolvedStage::Eval(mut stage) = stage else {
            return Err(EvalPlanError::Recipe("not an eval stage".into()));
        };
        stage.model.dtype = Dtype::F32;
        stage.episodes.max_response_length = 1024;
        stage.data.files = vec![data.to_path_buf()];
        Ok(EvalPlan {
            stage_name: None,
            stage,
            model: model.to_path_buf(),
            seed: 42,
            device: tch::Device::cuda_if_available(),
        })
    }

    /// The stage and model a validated recipe evaluates (see the module doc); `model`
    /// overrides the model.
    pub fn from_recipe(
        recipe: &ResolvedRecipe,
        recipe_file: &Path,
        model: Option<&Path>,
    ) -> Result<EvalPlan, EvalPlanError> {
        let evaluable = |s: &&ResolvedStage| match s {
            ResolvedStage::Eval(e) => !e.data.files.is_empty(),
            ResolvedStage::Rl(r) => !r.data.val_files.is_empty(),
            ResolvedStage::Sft(_) => false,
        };
        let of = |k: StageKind| recipe.stages.iter().rev().filter(|s| s.kind() == k).find(evaluable);
        let Some(chosen) = of(StageKind::Eval).or_else(|| of(StageKind::Rl)) else {
            return Err(EvalPlanError::NothingToEvaluate(recipe_file.display().to_string()));
        };
        let model = match model {
            Some(m) => m.to_path_buf(),
            None => evaluated_model(recipe, recipe_file, chosen)?,
        };
        let device = match recipe.distributed.device {
            DeviceKind::Cpu => tch::Device::Cpu,
            _ => tch::Device::cuda_if_available(),
        };
        let stage = match chosen {
            ResolvedStage::Eval(e) => e.clone(),
            ResolvedStage::Rl(r) => r.validation(),
            ResolvedStage::Sft(_) => return Err(EvalPlanError::Recipe("an sft stage is not evaluated".into())),
        };
        Ok(EvalPlan { stage_name: Some(chosen.name().to_string()), stage, model, seed: recipe.seed, device })
    }

    /// Replaces the data files, media root and sample cap where given.
    pub fn override_data(&mut self, data: Option<&Path>, media_root: Option<&Path>, max_samples: Option<usize>) {
        let d = &mut self.stage.data;
        if let Some(f) = data {
            d.files = vec![f.to_path_buf()];
        }
        if let Some(root) = media_root {
            d.media_root = Some(root.to_path_buf());
        }
        if max_samples.is_some() {
            d.max_samples = max_samples;
        }
    }
}

/// `<stage>/final` of the run directory `recipe_file` lies in when it is a run's own
/// `recipe.yaml` holding that result, else of the newest run directory of `recipe` that holds
/// `<stage>/final/config.json`.
fn trained_result(recipe: &ResolvedRecipe, recipe_file: &Path, stage: &str) -> Option<PathBuf> {
    let result = |run: &Path| run.join(stage).join("final");
    let has_result = |run: &Path| result(run).join("config.json").is_file();
    let own_run = recipe_file
        .parent()
        .filter(|run| recipe_file.file_name().is_some_and(|n| n == RUN_RECIPE_FILE) && has_result(run));
    match own_run {
        Some(run) => Some(result(run)),
        None => newest_run(&recipe.output_dir, &recipe.name, has_result).map(|r| result(&r)),
    }
}

/// The model `stage` evaluates: for an rl stage's validation, its own result; for an eval
/// stage, the result of the stage it starts from, else its checkpoint.
fn evaluated_model(
    recipe: &ResolvedRecipe,
    recipe_file: &Path,
    stage: &ResolvedStage,
) -> Result<PathBuf, EvalPlanError> {
    let source = match stage {
        ResolvedStage::Eval(e) => match &e.model.source {
            ModelSource::Stage(from) => Some(from.clone()),
            ModelSource::Checkpoint(dir) => return Ok(dir.clone()),
            ModelSource::Random(_) => None,
        },
        other => Some(other.name().to_string()),
    };
    let Some(name) = source else {
        return Err(EvalPlanError::NoModelPath(stage.name().to_string()));
    };
    trained_result(recipe, recipe_file, &name).ok_or_else(|| EvalPlanError::NoResult {
        recipe: recipe.name.clone(),
        output_dir: recipe.output_dir.display().to_string(),
        stage: name,
    })
}

/// The rows of a turn-budget sweep (`sweep.csv`, `sweep.json`).
#[derive(Debug)]
pub struct SweepTable {
    csv: String,
    rows: Vec<Value>,
}

impl Default for SweepTable {
    fn default() -> Self {
        let header =
            "max_steps,samples,accuracy,mean_reward,mean_turns,mean_frames,mean_media_seconds,runtime_error_rate\n";
        SweepTable { csv: header.to_string(), rows: Vec::new() }
    }
}

impl SweepTable {
    /// Adds the row of one evaluation with turn budget `budget` (`None`: the stage's own),
    /// written to `dir`; an evaluation without overall figures adds nothing.
    pub fn add(&mut self, budget: Option<u32>, dir: &Path, ev: &Evaluation) {
        let Some(all) = ev.figures.get("all") else { return };
        let n = budget.map_or_else(|| "default".to_string(), |n| n.to_string());
        let c = consumption(ev.trajectories.iter());
        self.csv.push_str(&format!(
            "{n},{},{:.4},{:.4},{:.3},{:.3},{:.3},{:.4}\n",
            all.episodes,
            all.accuracy,
            all.mean_reward,
            all.mean_turns,
            c.mean_frames,
            c.mean_media_seconds,
            c.runtime_error_rate
        ));
        self.rows.push(json!({
            "max_steps": budget,
            "dir": dir.display().to_string(),
            "samples": all.episodes,
            "accuracy": all.accuracy,
            "mean_reward": all.mean_reward,
            "mean_turns": all.mean_turns,
            "mean_frames": c.mean_frames,
            "mean_media_seconds": c.mean_media_seconds,
            "runtime_error_rate": c.runtime_error_rate,
            "per_type": ev.figures,
        }));
    }

    pub fn csv(&self) -> &str {
        &self.csv
    }

    /// `{"sweep": [row, ...]}`.
    pub fn json(&self) -> Value {
        json!({ "sweep": self.rows })
    }
}
