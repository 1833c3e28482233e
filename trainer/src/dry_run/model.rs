//! The model pass of the dry run: for each stage, where its weights come from, whether the
//! config parses and is consistent, whether the checkpoint's safetensors headers hold every
//! tensor the config implies (headers only, never tensor data), and the memory per rank.
//!
//! A stage that starts from an earlier stage inherits that stage's config, and its problems
//! are reported once, at the stage that defines the model. Each checkpoint directory is
//! inspected once, however many stages use it; directories are inspected in parallel.
//! Memory is estimated for training stages (sft, rl) with the stage's own settings: SFT rows
//! of `schedule.max_seq_length` tokens, RL rows of `max_prompt_length + max_response_length`
//! and a KV cache for `micro_ratio` such sequences per rank.

use crate::checkpoint::{ModelDirCheck, check_model_dir};
use crate::model::{OmniThinkerConfig, ParamCounts};
use crate::plan::memory::{self, LoraTarget, MemoryBreakdown, MemoryInputs, TrainMode};
use crate::recipe::{DeviceKind, Dtype, ModelInit, Recipe, Stage, StageKind};
use crate::report::Problem;
use rayon::prelude::*;
use serde::Serialize;
use std::path::PathBuf;

/// What the plan shows about a stage's model.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelPlan {
    /// `checkpoint <dir>`, `random init from <config>`, or `result of stage <name>`.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<ParamCounts>,
    /// Stored dtype and size of the checkpoint's thinker tensors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_dtype: Option<crate::checkpoint::Dtype>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_bytes: Option<u64>,
    /// Per-rank GPU memory of a training stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryBreakdown>,
}

/// Where a model is defined: a checkpoint directory or a config file for random init.
#[derive(Debug, Clone, PartialEq)]
enum Definition {
    Checkpoint(PathBuf),
    RandomInit(PathBuf),
}

/// The stage that defines `stage`'s model, following `from_stage` links (bounded, so a
/// cycle the recipe checks already report cannot loop).
fn definition<'a>(stage: &'a Stage, all: &'a [Stage]) -> Option<(&'a Stage, Definition)> {
    let mut current = stage;
    for _ in 0..=all.len() {
        let m = &current.model;
        match &m.from_stage {
            Some(from) => current = all.iter().find(|s| s.display_name() == *from)?,
            None => {
                return match m.init {
                    ModelInit::Random => m.config.clone().map(|c| (current, Definition::RandomInit(c))),
                    ModelInit::Pretrained => m.resolved_path().map(|d| (current, Definition::Checkpoint(d))),
                };
            }
        }
    }
    None
}

struct Checked {
    config: Option<OmniThinkerConfig>,
    problems: Vec<Problem>,
    dir: Option<ModelDirCheck>,
}

fn check(def: &Definition) -> Checked {
    match def {
        Definition::Checkpoint(dir) if !dir.is_dir() => Checked {
            config: None,
            problems: vec![Problem::error(dir.display().to_string(), "model directory not found")],
            dir: None,
        },
        Definition::Checkpoint(dir) => {
            let checked = check_model_dir(dir);
            Checked { config: checked.config.clone(), problems: checked.report.problems.clone(), dir: Some(checked) }
        }
        Definition::RandomInit(path) => match OmniThinkerConfig::from_file(path) {
            Ok(cfg) => {
                let problems = cfg.validation_problems(&path.display().to_string());
                Checked { config: Some(cfg), problems, dir: None }
            }
            Err(e) => Checked { config: None, problems: e.problems(), dir: None },
        },
    }
}

fn memory_for(stage: &Stage, cfg: &OmniThinkerConfig, recipe: &Recipe, world: u32) -> MemoryBreakdown {
    let m = &stage.model;
    let r = &stage.rollout;
    let mut inp = MemoryInputs::for_config(cfg);
    inp.compute_dtype_bytes = m.dtype.bytes();
    inp.fp32_master_weights = m.dtype != Dtype::F32;
    inp.mode = match &m.lora {
        Some(l) => TrainMode::Lora {
            rank: u64::from(l.rank),
            targets: l.target_modules.iter().filter_map(|t| LoraTarget::from_module_name(t)).collect(),
        },
        None => TrainMode::Full,
    };
    inp.train_vision = !m.freeze_vision_encoder.unwrap_or(false);
    inp.train_audio = !m.freeze_audio_encoder.unwrap_or(false);
    inp.zero1 = recipe.distributed.shard_optimizer_state;
    inp.world_size = u64::from(world.max(1));
    inp.activation_checkpointing = m.gradient_checkpointing;
    let seq = u64::from(r.max_prompt_length) + u64::from(r.max_response_length);
    inp.micro_batch_tokens = match stage.kind {
        Some(StageKind::Sft) => {
            u64::from(stage.schedule.max_seq_length) * u64::from(stage.schedule.per_device_batch_size.max(1))
        }
        _ => seq * u64::from(stage.algorithm.micro_batch_size_per_gpu.max(1)),
    };
    inp.kv_cache_tokens = match stage.kind {
        Some(StageKind::Rl) => seq * u64::from(r.micro_ratio.max(1)),
        _ => 0,
    };
    inp.separate_reference = stage.algorithm.kl_coef > 0.0 && m.lora.is_none();
    memory::estimate(&inp)
}

/// Checks the model of every stage; one (plan, problems) pair per stage, in order.
pub fn check_models(recipe: &Recipe, world: u32) -> Vec<(ModelPlan, Vec<Problem>)> {
    let defs: Vec<Option<(&Stage, Definition)>> = recipe.stages.iter().map(|s| definition(s, &recipe.stages)).collect();
    let mut unique: Vec<Definition> = Vec::new();
    for (_, def) in defs.iter().flatten() {
        if !unique.contains(def) {
            unique.push(def.clone());
        }
    }
    let checked: Vec<Checked> = unique.par_iter().map(check).collect();
    recipe
        .stages
        .iter()
        .zip(&defs)
        .map(|(stage, def)| {
            let m = &stage.model;
            let source = match (&m.from_stage, def) {
                (Some(from), _) => format!("result of stage {from}"),
                (None, Some((_, Definition::RandomInit(c)))) => format!("random init from {}", c.display()),
                (None, Some((_, Definition::Checkpoint(d)))) => format!("checkpoint {}", d.display()),
                (None, None) => "not set".to_string(),
            };
            let mut plan = ModelPlan { source, ..ModelPlan::default() };
            let mut problems = Vec::new();
            let Some((_, def)) = def else { return (plan, problems) };
            let Some(c) = unique.iter().position(|u| u == def).map(|i| &checked[i]) else { return (plan, problems) };
            if m.from_stage.is_none() {
                problems.extend(c.problems.iter().cloned());
            }
            plan.config = Some(match def {
                Definition::Checkpoint(d) => d.join("config.json"),
                Definition::RandomInit(p) => p.clone(),
            });
            if let Some(dir) = &c.dir {
                plan.stored_dtype = dir.report.stored_dtype;
                plan.checkpoint_bytes = Some(dir.report.thinker_bytes);
            }
            if let Some(cfg) = &c.config {
                plan.params = Some(ParamCounts::of(cfg));
                if matches!(stage.kind, Some(StageKind::Sft | StageKind::Rl)) {
                    let mem = memory_for(stage, cfg, recipe, world);
                    let gpu = recipe.distributed.device != DeviceKind::Cpu;
                    let capacity = (recipe.distributed.gpu_memory_gib * f64::from(1u32 << 30)) as u64;
                    if gpu {
                        let location = format!("stage {} memory estimate", stage.display_name());
                        problems.extend(memory::check_capacity(&mem, capacity, &location));
                    }
                    plan.memory = Some(mem);
                }
            }
            (plan, problems)
        })
        .collect()
}
