//! `omnirl validate`: the dry run. Loads the recipe with its overrides, discovers the rank
//! layout, checks every data file and model directory, and computes the plan (batch layout,
//! steps, turn budgets, media token bounds, memory per rank), reporting every problem at
//! once. Nothing here touches a GPU, the network, or tensor data (checkpoint headers only).

pub mod batch;
pub mod data;
pub mod model;

use crate::dist::{self, RankInfo};
use crate::problem::{Problem, Severity};
use crate::recipe::resolved::{Episodes, ResolvedRecipe, ResolvedStage, RlStage, SftSource, SftStage};
use crate::recipe::{self, AppliedOverride, Recipe, StageKind};
use batch::{MediaTokenBounds, RlBatch, SftBatch, StepPlan, StepRule};
use data::{FileSummary, StageData};
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

/// Everything `omnirl validate` prints.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub ok: bool,
    pub recipe_file: String,
    pub errors: usize,
    pub warnings: usize,
    pub problems: Vec<Problem>,
    pub overrides: Vec<AppliedOverride>,
    /// The recipe as read (defaults filled, overrides applied), when it could be read.
    #[serde(skip)]
    pub recipe: Option<Recipe>,
    /// One typed value per stage, what `omnirl train` runs; `None` when a stage could not be
    /// resolved (a recipe error says why).
    #[serde(skip)]
    pub resolved_recipe: Option<ResolvedRecipe>,
    /// The resolved recipe as printed: each stage without the sections its kind ignores.
    #[serde(rename = "recipe")]
    pub resolved: Option<serde_json::Value>,
    pub plan: Plan,
    pub elapsed_ms: u64,
}

/// The rank layout of this process and what each stage will do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    #[serde(flatten)]
    pub ranks: RankInfo,
    pub stages: Vec<StagePlan>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TurnBudget {
    pub min: u32,
    pub max: u32,
    /// The formula's cap, for data whose durations are not known before probing.
    pub cap: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct StagePlan {
    pub name: String,
    pub kind: Option<StageKind>,
    pub model: model::ModelPlan,
    pub data: Vec<FileSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rl_batch: Option<RlBatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sft_batch: Option<SftBatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_waves: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<StepPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn_budget: Option<TurnBudget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_tokens: Option<MediaTokenBounds>,
    /// SFT on files: sampled row lengths against `max_seq_length`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_lengths: Option<RowLengths>,
    /// Host memory per rank beyond the model, for stages that run episodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_memory: Option<HostMemory>,
}

/// Host (CPU) memory a rank's episodes may hold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HostMemory {
    /// The decode cache's bound (`data.media_cache_mib`; 0: off).
    pub media_cache_bytes: u64,
}

/// Total memory of this machine (`/proc/meminfo`), when it can be read.
fn machine_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A warning when the ranks of one node together may hold more than half of this machine's
/// memory in decode caches (validate usually runs where the job will).
fn media_cache_issue(bytes: u64, local_ranks: u32, machine: Option<u64>) -> Option<batch::BatchIssue> {
    let machine = machine?;
    let node = bytes.saturating_mul(u64::from(local_ranks.max(1)));
    (node > machine / 2).then(|| batch::BatchIssue {
        key: "data.media_cache_mib",
        error: false,
        message: format!(
            "{local_ranks} rank(s) on a node may hold {:.1} GiB of decoded media, more than half of this machine's {:.1} GiB",
            node as f64 / f64::from(1u32 << 30),
            machine as f64 / f64::from(1u32 << 30)
        ),
    })
}

/// How many sampled rows of an SFT stage on files exceed `max_seq_length` (the estimate the
/// plan shows; computed by the caller's [`RowLengthEstimate`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowLengths {
    pub lines: usize,
    pub sampled: usize,
    /// Sampled rows longer than `max_seq_length`.
    pub over_max_seq_length: usize,
    pub longest: usize,
    pub max_seq_length: u32,
}

/// Builds the rows of a sample of an SFT stage's lines as training would and measures them
/// (`None`: not an SFT stage on files, or its tokenizer is not known yet; `Err` names a line
/// that could not become a row). The `trainer` crate supplies it: rows need its tokenizer
/// loading and the media processors.
pub type RowLengthEstimate = dyn Fn(&ResolvedStage, &ResolvedRecipe) -> Result<Option<RowLengths>, String> + Sync;

/// Runs the whole dry run. `env` is the process environment (injectable for tests);
/// `row_lengths` estimates SFT row lengths (`None`: no estimate).
pub fn run_with(
    recipe_path: &Path,
    sets: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    row_lengths: Option<&RowLengthEstimate>,
) -> DryRun {
    let started = Instant::now();
    let loaded = recipe::load(recipe_path, sets, env);
    let mut problems = loaded.problems.clone();
    let (ranks, rank_problems) = dist::discover(env);
    problems.extend(
        rank_problems.into_iter().map(|p| Problem::error(format!("environment variable {}", p.variable), p.message)),
    );
    let mut stages = Vec::new();
    // A key that failed to parse fell back to its default: checks of that default would only
    // repeat the problem with a misleading value, so they are left out.
    let broken: HashSet<String> = loaded.problems.iter().filter_map(|p| p.key.clone()).collect();
    let fresh = |p: &Problem| p.key.as_ref().is_none_or(|k| !broken.contains(k));
    let mut resolved_recipe = None;
    if let Some(recipe) = &loaded.recipe {
        problems.extend(recipe.validate(&loaded.origins).into_iter().filter(fresh));
        let (resolved, unresolved) = ResolvedRecipe::new(recipe);
        if !unresolved.is_empty() && !problems.iter().any(|p| p.severity == Severity::Error) {
            problems
                .extend(unresolved.iter().map(|e| Problem::error(recipe_path.display().to_string(), e.to_string())));
        }
        let (stage_data, data_problems) = data::check_recipe_data(&resolved);
        problems.extend(data_problems);
        let models = model::check_models(&resolved, ranks.world_size);
        let indices = recipe.stages.iter().enumerate().filter(|(_, s)| resolved.stage(&s.display_name()).is_some());
        let data_ok = !problems.iter().any(|p| p.severity == Severity::Error);
        let machine = machine_memory_bytes();
        for ((i, _), (stage, (sd, mp))) in indices.zip(resolved.stages.iter().zip(stage_data.into_iter().zip(models))) {
            let (mut plan, mut issues) = stage_plan(stage, sd, mp.0, ranks.world_size);
            if let Some(h) = &plan.host_memory {
                issues.extend(media_cache_issue(h.media_cache_bytes, ranks.local_world_size, machine));
            }
            problems.extend(mp.1);
            if let Some(estimate) = row_lengths.filter(|_| data_ok) {
                match estimate(stage, &resolved) {
                    Ok(lengths) => {
                        problems.extend(lengths.as_ref().and_then(|l| long_rows(l, &loaded.origins, i)));
                        plan.row_lengths = lengths;
                    }
                    Err(e) => problems.push(Problem::error(format!("stage {}", stage.name()), e)),
                }
            }
            problems.extend(
                issues
                    .into_iter()
                    .map(|iss| loaded.origins.problem(&format!("stages[{i}].{}", iss.key), iss.error, iss.message))
                    .filter(fresh),
            );
            stages.push(plan);
        }
        resolved_recipe = unresolved.is_empty().then_some(resolved);
    }
    problems.sort_by_key(|p| p.severity);
    let errors = problems.iter().filter(|p| p.severity == Severity::Error).count();
    DryRun {
        ok: errors == 0,
        recipe_file: recipe_path.display().to_string(),
        errors,
        warnings: problems.len() - errors,
        problems,
        overrides: loaded.overrides,
        resolved: loaded.recipe.as_ref().map(printable),
        recipe: loaded.recipe,
        resolved_recipe,
        plan: Plan { ranks, stages },
        elapsed_ms: started.elapsed().as_millis() as u64,
    }
}

/// A warning when sampled SFT rows exceed `max_seq_length` (the run drops such rows).
fn long_rows(l: &RowLengths, origins: &recipe::OriginIndex, stage: usize) -> Option<Problem> {
    (l.over_max_seq_length > 0).then(|| {
        let message = format!(
            "{} of {} sampled rows (of {} lines) are longer than max_seq_length {} tokens (the longest {}); \
             omnirl train drops such rows and counts them",
            l.over_max_seq_length, l.sampled, l.lines, l.max_seq_length, l.longest
        );
        origins.problem(&format!("stages[{stage}].schedule.max_seq_length"), false, message)
    })
}

/// The recipe as JSON without the sections a stage's kind does not use.
fn printable(recipe: &Recipe) -> serde_json::Value {
    let mut value = serde_json::to_value(recipe).unwrap_or_default();
    if let Some(stages) = value.get_mut("stages").and_then(|s| s.as_array_mut()) {
        for (stage, typed) in stages.iter_mut().zip(&recipe.stages) {
            let expert = typed.data.source == recipe::DataSource::Expert;
            let unused: &[&str] = match typed.kind {
                Some(StageKind::Sft) if expert => &["reward", "algorithm"],
                Some(StageKind::Sft) => &["environment", "rollout", "reward", "algorithm"],
                Some(StageKind::Eval) => &["algorithm", "optimizer", "checkpoint", "schedule"],
                Some(StageKind::Rl) | None => &[],
            };
            if let Some(map) = stage.as_object_mut() {
                for key in unused {
                    map.remove(*key);
                }
            }
        }
    }
    value
}

fn capped(samples: u64, max: Option<usize>, files: usize) -> u64 {
    match max {
        Some(m) => samples.min(m as u64 * files as u64),
        None => samples,
    }
}

fn stage_plan(
    stage: &ResolvedStage,
    sd: StageData,
    model: model::ModelPlan,
    world: u32,
) -> (StagePlan, Vec<batch::BatchIssue>) {
    let mut issues = Vec::new();
    let mut plan = StagePlan {
        name: stage.name().to_string(),
        kind: Some(stage.kind()),
        model,
        data: sd.train.iter().chain(&sd.val).cloned().collect(),
        rl_batch: None,
        sft_batch: None,
        eval_waves: None,
        steps: None,
        turn_budget: None,
        media_tokens: None,
        row_lengths: None,
        host_memory: None,
    };
    let episodes = match stage {
        ResolvedStage::Sft(s) => {
            let (b, steps) = sft_schedule(s, &sd, world, &mut issues);
            plan.sft_batch = Some(b);
            plan.steps = Some(steps);
            match &s.data.source {
                SftSource::Expert { episodes, .. } => Some(episodes),
                SftSource::Files(_) => None,
            }
        }
        ResolvedStage::Rl(r) => {
            let (b, steps) = rl_schedule(r, &sd, world, &mut issues);
            plan.rl_batch = Some(b);
            plan.steps = Some(steps);
            Some(&r.episodes)
        }
        ResolvedStage::Eval(e) => {
            let evals: u64 = sd.val.iter().map(|f| f.samples as u64).sum();
            let evals = capped(evals, e.data.max_samples, sd.val.len());
            let per_wave = u64::from(world.max(1)) * u64::from(e.episodes.micro_ratio.max(1));
            plan.eval_waves = Some(evals.div_ceil(per_wave));
            Some(&e.episodes)
        }
    };
    if let Some(ep) = episodes {
        plan_episodes(ep, stage, &sd, &mut plan, &mut issues);
    }
    (plan, issues)
}

/// An SFT stage's batch layout and step plan; problems go to `issues`.
fn sft_schedule(s: &SftStage, sd: &StageData, world: u32, issues: &mut Vec<batch::BatchIssue>) -> (SftBatch, StepPlan) {
    let samples = capped(sd.train_samples(), s.data.max_samples, sd.train.len());
    let b = batch::sft_batch(&s.schedule, world);
    let rule = StepRule {
        epochs: s.schedule.epochs,
        max_steps: s.schedule.max_steps,
        warmup_ratio: s.optimizer.warmup_ratio,
        save_every: s.checkpoint.save_every,
    };
    let (steps, step_issues) = batch::steps(samples, b.global_batch_size, false, rule);
    if samples > 0 && samples < b.global_batch_size {
        issues.push(batch::BatchIssue {
            key: "schedule.per_device_batch_size",
            error: false,
            message: format!("{samples} training rows are fewer than one global batch of {}", b.global_batch_size),
        });
    }
    issues.extend(step_issues);
    (b, steps)
}

/// An RL stage's batch layout and step plan; problems go to `issues`.
fn rl_schedule(r: &RlStage, sd: &StageData, world: u32, issues: &mut Vec<batch::BatchIssue>) -> (RlBatch, StepPlan) {
    let samples = capped(sd.train_samples(), r.data.max_samples, sd.train.len());
    let (b, batch_issues) = batch::rl_batch(&r.rollout, r.episodes.micro_ratio, &r.algorithm, world);
    issues.extend(batch_issues);
    let rule = StepRule {
        epochs: r.schedule.epochs,
        max_steps: r.schedule.max_steps,
        warmup_ratio: r.optimizer.warmup_ratio,
        save_every: r.checkpoint.save_every,
    };
    let (steps, step_issues) = batch::steps(samples, u64::from(r.rollout.prompts_per_step), true, rule);
    issues.extend(step_issues);
    (b, steps)
}

/// What a stage's episodes imply: turn budgets over its videos, media-token bounds against the
/// prompt limit, and the media cache's host memory.
fn plan_episodes(
    ep: &Episodes,
    stage: &ResolvedStage,
    sd: &StageData,
    plan: &mut StagePlan,
    issues: &mut Vec<batch::BatchIssue>,
) {
    let limits = &ep.settings.limits;
    let budgets: Vec<u32> = sd.durations.iter().map(|d| batch::turn_budget(limits, *d)).collect();
    let cap = limits.max_steps;
    plan.turn_budget = Some(TurnBudget {
        min: budgets.iter().copied().min().unwrap_or(cap),
        max: budgets.iter().copied().max().unwrap_or(cap),
        cap,
    });
    let bounds = batch::media_token_bounds(limits, stage.preprocess());
    let prompt_chars = ep.system_prompt.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).map(|t| t.len());
    let overhead = batch::prompt_overhead_tokens(prompt_chars);
    issues.extend(batch::media_issues(&bounds, limits.max_prompt_tokens, overhead));
    plan.media_tokens = Some(bounds);
    plan.host_memory = Some(HostMemory { media_cache_bytes: ep.media_cache_bytes });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_of_caches_over_half_the_machine_is_a_warning() {
        let gib = 1u64 << 30;
        let issue = media_cache_issue(2 * gib, 8, Some(24 * gib)).unwrap();
        assert!(!issue.error);
        assert_eq!(issue.key, "data.media_cache_mib");
        assert!(issue.message.contains("8 rank(s) on a node may hold 16.0 GiB"), "{}", issue.message);
        assert!(media_cache_issue(2 * gib, 4, Some(24 * gib)).is_none(), "8 GiB of 24 is fine");
        assert!(media_cache_issue(2 * gib, 8, None).is_none(), "unknown machine: no guess");
    }
}
