//! The model pass of the dry run: for each stage, where its weights come from, whether the
//! config parses and is consistent, whether the checkpoint's safetensors headers hold every
//! tensor the config implies (headers only, never tensor data), and the memory per rank.
//!
//! A stage that starts from an earlier stage inherits that stage's config, and its problems
//! are reported once, at the stage that defines the model. Each checkpoint directory is
//! inspected once, however many stages use it; directories are inspected in parallel.
//! Memory is estimated for training stages (sft, rl) with the stage's own resolved settings,
//! the layout `omnirl train` allocates (see `memory_for`).

use crate::checkpoint::{ModelDirCheck, check_model_dir};
use crate::model::{Component, KeyLayout, Manifest, OmniThinkerConfig, ParamCounts};
use crate::plan::memory::{self, LlmDims, LoraTarget, MemoryBreakdown, MemoryInputs, TrainMode, TrainableTensor};
use crate::problem::Problem;
use crate::recipe::resolved::{ModelSource, ResolvedRecipe, ResolvedStage, TrainModel};
use crate::recipe::{DeviceKind, Dtype};
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

/// The definition of `stage`'s model, following earlier stages' results.
fn definition(stage: &ResolvedStage, recipe: &ResolvedRecipe) -> Option<Definition> {
    match recipe.defining_source(stage)? {
        ModelSource::Checkpoint(d) => Some(Definition::Checkpoint(d.clone())),
        ModelSource::Random(c) => Some(Definition::RandomInit(c.clone())),
        ModelSource::Stage(_) => None,
    }
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

/// The tensors the optimizer of `model` updates: the manifest's base tensors of the trained
/// parts, then the adapters (`A [r, in]`, `B [out, r]` per adapted linear per layer).
fn trainable_tensors(cfg: &OmniThinkerConfig, model: &TrainModel) -> Vec<TrainableTensor> {
    let parts = model.trainable_parts();
    let mut out: Vec<TrainableTensor> = Manifest::new(cfg, KeyLayout::Bare)
        .tensors
        .iter()
        .filter(|t| match t.component {
            Component::Llm => parts.llm,
            Component::Vision => parts.vision,
            Component::Audio => parts.audio,
        })
        .map(|t| TrainableTensor { numel: t.numel(), adapter: false })
        .collect();
    if let Some(l) = &model.lora {
        let dims = LlmDims::of(cfg);
        let targets: Vec<LoraTarget> =
            l.target_modules.iter().filter_map(|t| LoraTarget::from_module_name(t)).collect();
        for _ in 0..dims.layers {
            for t in &targets {
                let (i, o) = t.features(&dims);
                let r = u64::from(l.rank);
                out.push(TrainableTensor { numel: r * i, adapter: true });
                out.push(TrainableTensor { numel: o * r, adapter: true });
            }
        }
    }
    out
}

/// The memory of a training stage as `omnirl train` lays it out: the stage's dtype (f32 on a CPU
/// run), fp32 master weights and AdamW state, the trained parts, ZeRO-1 over `world` ranks,
/// activations of one training forward (sft: a packed micro-batch of `per_device_batch_size`
/// rows; rl: one row, or rows packed up to `max_tokens_per_forward`) and, for rl, a KV cache for
/// `micro_ratio` sequences.
fn memory_for(
    stage: &ResolvedStage,
    cfg: &OmniThinkerConfig,
    recipe: &ResolvedRecipe,
    world: u32,
) -> Option<MemoryBreakdown> {
    let m = stage.train_model()?;
    let mut inp = MemoryInputs::for_config(cfg);
    let cpu = recipe.distributed.device == DeviceKind::Cpu;
    inp.compute_dtype_bytes = if cpu { Dtype::F32.bytes() } else { m.input.dtype.bytes() };
    inp.fp32_master_weights = true;
    inp.mode = match &m.lora {
        Some(l) => TrainMode::Lora {
            rank: u64::from(l.rank),
            targets: l.target_modules.iter().filter_map(|t| LoraTarget::from_module_name(t)).collect(),
        },
        None => TrainMode::Full,
    };
    inp.train_vision = !m.freeze_vision_encoder;
    inp.train_audio = !m.freeze_audio_encoder;
    inp.zero1 = recipe.distributed.shard_optimizer_state && world > 1;
    inp.world_size = u64::from(world.max(1));
    inp.activation_checkpointing = m.gradient_checkpointing;
    inp.tensors = Some(trainable_tensors(cfg, m));
    match stage {
        ResolvedStage::Sft(s) => {
            inp.micro_batch_tokens =
                u64::from(s.schedule.max_seq_length) * u64::from(s.schedule.per_device_batch_size.max(1));
        }
        ResolvedStage::Rl(r) => {
            let seq =
                u64::from(r.episodes.settings.limits.max_prompt_tokens) + u64::from(r.episodes.max_response_length);
            inp.micro_batch_tokens = seq.max(u64::from(r.algorithm.max_tokens_per_forward));
            inp.kv_cache_tokens = seq * u64::from(r.episodes.micro_ratio.max(1));
            inp.prefix_cache_bytes = r.episodes.prefix_cache_bytes;
            inp.separate_reference = r.algorithm.kl_coef > 0.0 && m.lora.is_none();
        }
        ResolvedStage::Eval(_) => {}
    }
    Some(memory::estimate(&inp))
}

/// Checks the model of every stage; one (plan, problems) pair per stage, in order.
pub fn check_models(recipe: &ResolvedRecipe, world: u32) -> Vec<(ModelPlan, Vec<Problem>)> {
    let defs: Vec<Option<Definition>> = recipe.stages.iter().map(|s| definition(s, recipe)).collect();
    let mut unique: Vec<Definition> = Vec::new();
    for def in defs.iter().flatten() {
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
            let source = &stage.model_ref().source;
            let mut plan = ModelPlan {
                source: match source {
                    ModelSource::Stage(from) => format!("result of stage {from}"),
                    ModelSource::Random(c) => format!("random init from {}", c.display()),
                    ModelSource::Checkpoint(d) => format!("checkpoint {}", d.display()),
                },
                ..ModelPlan::default()
            };
            let mut problems = Vec::new();
            let Some(def) = def else { return (plan, problems) };
            let Some(c) = unique.iter().position(|u| u == def).map(|i| &checked[i]) else { return (plan, problems) };
            if !matches!(source, ModelSource::Stage(_)) {
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
                if let Some(mem) = memory_for(stage, cfg, recipe, world) {
                    let gpu = recipe.distributed.device != DeviceKind::Cpu;
                    let capacity = (recipe.distributed.gpu_memory_gib * f64::from(1u32 << 30)) as u64;
                    if gpu {
                        let location = format!("stage {} memory estimate", stage.name());
                        problems.extend(memory::check_capacity(&mem, capacity, &location));
                    }
                    plan.memory = Some(mem);
                }
            }
            (plan, problems)
        })
        .collect()
}
