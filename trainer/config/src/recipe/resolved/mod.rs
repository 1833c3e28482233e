//! The resolved recipe: one typed value per stage kind, built once after defaults, environment
//! variables and `--set` are applied, and read by everything that acts on a recipe (the dry
//! run's plan and memory estimate, `omnirl train`, `omnirl eval`, `omnirl infer`, `omnirl synth`).
//!
//! The raw [`Recipe`] mirrors the YAML; kind-dependent defaults are filled by
//! [`Stage::resolve_defaults`](super::Stage::resolve_defaults) (their one home) and every other
//! default lives in the section's `Default`. [`ResolvedRecipe::new`] then turns each stage into
//! [`SftStage`], [`RlStage`] or [`EvalStage`], which hold only what that kind uses and no value
//! left to default at the point of use (an `Option` here means "absent": no LoRA, no step cap).
//! A stage that cannot be resolved (no kind, no model) is one that `Recipe::validate` already
//! reports; it is left out with a [`ResolveError`].
//!
//! Keys a kind does not use are rejected by `Recipe::validate` (see `checks.rs`), so a resolved
//! stage carries every setting the recipe made. The runner destructures these structs without
//! `..`, so a field added here does not compile until the runner consumes it.

mod build;

pub use build::resolve_stage;

use super::data_section::*;
use super::schema::{DistributedConfig, Recipe, Stage, StageKind};
use super::sections::*;
use crate::model::TrainableParts;
use rollout::episode::{EpisodeLimits, EpisodeSettings, Shaping};
use rollout::prompt::{PromptTemplate, TemplateError};
use std::path::PathBuf;

/// Why a stage could not be resolved (always also a `Recipe::validate` error).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("stage `{stage}`: {message}")]
pub struct ResolveError {
    pub stage: String,
    pub message: String,
}

/// The whole job.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRecipe {
    pub name: String,
    pub seed: u64,
    pub output_dir: PathBuf,
    pub distributed: DistributedConfig,
    pub stages: Vec<ResolvedStage>,
}

/// One stage, by kind. (A recipe holds a handful, built once: boxing the larger variants
/// would buy nothing.)
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum ResolvedStage {
    Sft(SftStage),
    Rl(RlStage),
    Eval(EvalStage),
}

/// Where a stage's weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A Hugging Face checkpoint directory (`base_path` already joined).
    Checkpoint(PathBuf),
    /// Random initialisation from this `config.json`.
    Random(PathBuf),
    /// The result of an earlier stage of this recipe.
    Stage(String),
}

/// The model a stage loads, and in which dtype.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRef {
    pub source: ModelSource,
    /// An explicit `tokenizer.json`; `None`: the model directory's (or the run's trained BPE).
    pub tokenizer: Option<PathBuf>,
    /// Parameter and compute dtype.
    pub dtype: Dtype,
}

/// The model of a training stage: what it loads and how it trains.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainModel {
    pub input: ModelRef,
    /// Recompute each decoder layer in the backward pass.
    pub gradient_checkpointing: bool,
    pub freeze_vision_encoder: bool,
    pub freeze_audio_encoder: bool,
    /// Adapters on the language model (the base then stays frozen).
    pub lora: Option<LoraConfig>,
}

impl TrainModel {
    /// The parts that receive gradients: the LLM (unless LoRA freezes it) and the unfrozen
    /// encoders.
    pub fn trainable_parts(&self) -> TrainableParts {
        TrainableParts {
            llm: self.lora.is_none(),
            vision: !self.freeze_vision_encoder,
            audio: !self.freeze_audio_encoder,
        }
    }
}

/// AdamW and its learning-rate schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    pub lr_schedule: LrSchedule,
    pub warmup_ratio: f64,
    pub grad_clip: f64,
}

/// Step checkpoints of a training stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpointing {
    pub save_every: u64,
    pub keep_last: u32,
    pub save_optimizer: bool,
}

/// Where a stage's scalars go.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSinks {
    pub tensorboard: bool,
    /// `None`: `<stage>/tensorboard`.
    pub tensorboard_dir: Option<PathBuf>,
    /// `<stage>/metrics.jsonl`.
    pub jsonl: bool,
}

/// Metrics of a training stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Logging {
    pub sinks: MetricSinks,
    pub log_every: u64,
    pub progress_bars: bool,
}

/// Where the episodes of a stage run: the environment, its prompt template and the media budgets.
#[derive(Debug, Clone, PartialEq)]
pub struct Episodes {
    /// Limits (the prompt limit is `rollout.max_prompt_length`), switches and reward shaping.
    pub settings: EpisodeSettings,
    /// The system-prompt template file; `None`: the compiled-in template.
    pub system_prompt: Option<PathBuf>,
    /// Live episodes per rank per generation wave.
    pub micro_ratio: u32,
    /// Longest response per turn, in tokens.
    pub max_response_length: u32,
    /// Threads running the episodes' media actions (`data.num_workers`).
    pub media_threads: u32,
    /// Bytes of decoded media the episodes on one video share (`data.media_cache_mib`; 0: off).
    pub media_cache_bytes: u64,
    /// Bytes of episode contexts kept between turns (`rollout.prefix_cache_mib`; 0: off).
    pub prefix_cache_bytes: u64,
}

impl Episodes {
    /// The system-prompt template: the file, or the compiled-in one.
    pub fn template(&self) -> Result<PromptTemplate, TemplateError> {
        match &self.system_prompt {
            Some(path) => PromptTemplate::from_file(path),
            None => PromptTemplate::default_template(),
        }
    }
}

/// The rows of an sft stage.
#[derive(Debug, Clone, PartialEq)]
pub enum SftSource {
    /// SFT-format files (one line per turn).
    Files(Vec<PathBuf>),
    /// The scripted expert's successful trajectories on these RL-format prompt files.
    Expert { prompts: Vec<PathBuf>, episodes: Episodes },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SftData {
    pub source: SftSource,
    pub media_root: Option<PathBuf>,
    pub shuffle: bool,
    pub data_seed: u64,
    /// At most this many lines (or prompts) of each file.
    pub max_samples: Option<usize>,
    /// Whether the dry run checks that every media file exists.
    pub check_media: bool,
    /// Threads building rows (reading lines, decoding media) ahead of the learner.
    pub num_workers: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SftSchedule {
    pub epochs: u32,
    pub max_steps: Option<u64>,
    pub per_device_batch_size: u32,
    pub gradient_accumulation_steps: u32,
    /// Rows longer than this (prompt + target, media tokens included) are dropped and counted.
    pub max_seq_length: u32,
}

/// Agentic SFT.
#[derive(Debug, Clone, PartialEq)]
pub struct SftStage {
    pub name: String,
    pub model: TrainModel,
    pub data: SftData,
    pub preprocess: PreprocessConfig,
    pub optimizer: Optimizer,
    pub schedule: SftSchedule,
    pub checkpoint: Checkpointing,
    pub logging: Logging,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RlData {
    pub train_files: Vec<PathBuf>,
    /// Validation files (`schedule.val_every`, `val_before_train`); may be empty.
    pub val_files: Vec<PathBuf>,
    pub media_root: Option<PathBuf>,
    pub shuffle: bool,
    pub data_seed: u64,
    pub max_samples: Option<usize>,
    pub check_media: bool,
    /// Train only on the prompts the starting policy still gets wrong (`data.pass_rate_filter`).
    pub pass_rate_filter: Option<PassRateFilter>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RlRollout {
    pub prompts_per_step: u32,
    pub group_size: u32,
    /// Validation samples per rollout batch.
    pub val_prompts_per_step: u32,
    pub sampling: SamplingConfig,
    pub val_sampling: SamplingConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RlSchedule {
    pub epochs: u32,
    pub max_steps: Option<u64>,
    /// Validate every this many steps (and at the last step); `None`: only at the end.
    pub val_every: Option<u64>,
    pub val_before_train: bool,
}

/// Agentic RL.
#[derive(Debug, Clone, PartialEq)]
pub struct RlStage {
    pub name: String,
    pub model: TrainModel,
    pub data: RlData,
    pub episodes: Episodes,
    pub preprocess: PreprocessConfig,
    pub rollout: RlRollout,
    pub judge: Option<JudgeConfig>,
    pub algorithm: AlgorithmConfig,
    pub optimizer: Optimizer,
    pub schedule: RlSchedule,
    pub checkpoint: Checkpointing,
    /// Metric sinks, plus per-step rollout dumps.
    pub logging: Logging,
    pub rollout_dumps: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvalData {
    pub files: Vec<PathBuf>,
    pub media_root: Option<PathBuf>,
    pub max_samples: Option<usize>,
    pub check_media: bool,
}

/// Evaluation on held-out samples, one episode each.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalStage {
    pub name: String,
    pub model: ModelRef,
    pub data: EvalData,
    pub episodes: Episodes,
    pub preprocess: PreprocessConfig,
    /// Samples per rollout batch.
    pub prompts_per_step: u32,
    pub sampling: SamplingConfig,
    pub judge: Option<JudgeConfig>,
    /// The figures are logged once, at step 0.
    pub logging: MetricSinks,
}

impl ResolvedStage {
    pub fn name(&self) -> &str {
        match self {
            ResolvedStage::Sft(s) => &s.name,
            ResolvedStage::Rl(s) => &s.name,
            ResolvedStage::Eval(s) => &s.name,
        }
    }

    pub fn kind(&self) -> StageKind {
        match self {
            ResolvedStage::Sft(_) => StageKind::Sft,
            ResolvedStage::Rl(_) => StageKind::Rl,
            ResolvedStage::Eval(_) => StageKind::Eval,
        }
    }

    /// What the stage loads.
    pub fn model_ref(&self) -> &ModelRef {
        match self {
            ResolvedStage::Sft(s) => &s.model.input,
            ResolvedStage::Rl(s) => &s.model.input,
            ResolvedStage::Eval(s) => &s.model,
        }
    }

    /// The training model of an sft or rl stage.
    pub fn train_model(&self) -> Option<&TrainModel> {
        match self {
            ResolvedStage::Sft(s) => Some(&s.model),
            ResolvedStage::Rl(s) => Some(&s.model),
            ResolvedStage::Eval(_) => None,
        }
    }

    /// The episodes the stage runs (none for an sft stage on files).
    pub fn episodes(&self) -> Option<&Episodes> {
        match self {
            ResolvedStage::Sft(s) => match &s.data.source {
                SftSource::Expert { episodes, .. } => Some(episodes),
                SftSource::Files(_) => None,
            },
            ResolvedStage::Rl(s) => Some(&s.episodes),
            ResolvedStage::Eval(s) => Some(&s.episodes),
        }
    }

    /// The media budgets of the stage.
    pub fn preprocess(&self) -> &PreprocessConfig {
        match self {
            ResolvedStage::Sft(s) => &s.preprocess,
            ResolvedStage::Rl(s) => &s.preprocess,
            ResolvedStage::Eval(s) => &s.preprocess,
        }
    }
}

impl RlStage {
    /// The evaluation an rl stage's validation runs: its validation files, episodes and
    /// validation sampling, `val_prompts_per_step` samples per batch.
    pub fn validation(&self) -> EvalStage {
        EvalStage {
            name: self.name.clone(),
            model: self.model.input.clone(),
            data: EvalData {
                files: self.data.val_files.clone(),
                media_root: self.data.media_root.clone(),
                max_samples: self.data.max_samples,
                check_media: self.data.check_media,
            },
            episodes: self.episodes.clone(),
            preprocess: self.preprocess.clone(),
            prompts_per_step: self.rollout.val_prompts_per_step,
            sampling: self.rollout.val_sampling.clone(),
            judge: self.judge.clone(),
            logging: self.logging.sinks.clone(),
        }
    }
}

/// A stage of `kind` with the reference's defaults and `model` as its checkpoint, for commands
/// that take a model directory and no recipe.
pub fn default_stage(kind: StageKind, model: &std::path::Path, seed: u64) -> Result<ResolvedStage, ResolveError> {
    let mut s = Stage { kind: Some(kind), ..Stage::default() };
    s.model.path = Some(model.to_path_buf());
    s.resolve_defaults(seed);
    resolve_stage(&s)
}

impl ResolvedRecipe {
    /// Resolves every stage of `recipe` (whose kind defaults are already filled); stages that
    /// cannot be resolved are returned as errors instead.
    pub fn new(recipe: &Recipe) -> (ResolvedRecipe, Vec<ResolveError>) {
        let mut stages = Vec::with_capacity(recipe.stages.len());
        let mut errors = Vec::new();
        for stage in &recipe.stages {
            match resolve_stage(stage) {
                Ok(s) => stages.push(s),
                Err(e) => errors.push(e),
            }
        }
        let r = ResolvedRecipe {
            name: recipe.name.clone(),
            seed: recipe.seed,
            output_dir: recipe.output_dir.clone(),
            distributed: recipe.distributed.clone(),
            stages,
        };
        (r, errors)
    }

    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&ResolvedStage> {
        self.stages.iter().find(|s| s.name() == name)
    }

    /// The model directory-or-config a stage's weights are finally defined by, following
    /// `from_stage` links (bounded, so a cycle cannot loop).
    pub fn defining_source<'a>(&'a self, stage: &'a ResolvedStage) -> Option<&'a ModelSource> {
        let mut current = stage;
        for _ in 0..=self.stages.len() {
            match &current.model_ref().source {
                ModelSource::Stage(from) => current = self.stage(from)?,
                other => return Some(other),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(kind: StageKind, set: impl FnOnce(&mut Stage)) -> Result<ResolvedStage, ResolveError> {
        let mut s = Stage { kind: Some(kind), ..Stage::default() };
        s.model.path = Some("ckpt".into());
        set(&mut s);
        s.resolve_defaults(7);
        resolve_stage(&s)
    }

    #[test]
    fn every_kind_resolves_from_its_defaults() {
        for kind in [StageKind::Sft, StageKind::Rl, StageKind::Eval] {
            let r = resolved(kind, |_| {}).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(r.kind(), kind);
            assert_eq!(r.model_ref().source, ModelSource::Checkpoint("ckpt".into()));
        }
        let Ok(ResolvedStage::Sft(sft)) = resolved(StageKind::Sft, |_| {}) else { panic!("sft") };
        // The reference SFT recipe: frozen encoders, lr 1e-5 linear with 3% warm-up, 2 epochs,
        // data_seed = seed.
        assert!(sft.model.freeze_vision_encoder && sft.model.freeze_audio_encoder);
        assert_eq!(
            (sft.optimizer.lr, sft.optimizer.lr_schedule, sft.optimizer.warmup_ratio),
            (1e-5, LrSchedule::Linear, 0.03)
        );
        assert_eq!((sft.schedule.epochs, sft.data.data_seed), (2, 7));
        assert_eq!(sft.data.source, SftSource::Files(Vec::new()));
        let Ok(ResolvedStage::Rl(rl)) = resolved(StageKind::Rl, |_| {}) else { panic!("rl") };
        // The reference RL scripts: the whole thinker trains, 22 steps, strict confidence, n = 8.
        assert!(!rl.model.freeze_vision_encoder && !rl.model.freeze_audio_encoder);
        assert_eq!(rl.model.trainable_parts(), TrainableParts { llm: true, vision: true, audio: true });
        assert_eq!((rl.episodes.settings.limits.max_steps, rl.episodes.settings.strict_confidence), (22, true));
        assert_eq!((rl.rollout.group_size, rl.optimizer.lr), (8, 1e-6));
        let Ok(ResolvedStage::Eval(ev)) = resolved(StageKind::Eval, |_| {}) else { panic!("eval") };
        assert_eq!((ev.episodes.settings.limits.max_steps, ev.episodes.settings.bypass_duration_check), (32, true));
        assert_eq!(ev.sampling, SamplingConfig::eval());
    }

    #[test]
    fn sources_and_missing_models() {
        let r = resolved(StageKind::Sft, |s| {
            s.data.source = DataSource::Expert;
            s.data.train_files = vec!["rl.jsonl".into()];
            s.model.lora = Some(LoraConfig::default());
        });
        let Ok(ResolvedStage::Sft(sft)) = r else { panic!("sft") };
        let SftSource::Expert { prompts, episodes } = &sft.data.source else { panic!("expert") };
        assert_eq!(prompts, &vec![PathBuf::from("rl.jsonl")]);
        // The expert plays with the training settings.
        assert!(episodes.settings.is_train);
        assert_eq!(sft.model.trainable_parts(), TrainableParts { llm: false, vision: false, audio: false });
        let r = resolved(StageKind::Rl, |s| {
            s.model.path = None;
            s.model.from_stage = Some("sft".into());
        });
        assert_eq!(r.map(|s| s.model_ref().source.clone()), Ok(ModelSource::Stage("sft".into())));
        let r = resolved(StageKind::Eval, |s| s.model.path = None);
        assert!(r.is_err());
    }

    fn episodes_of(stage: ResolvedStage) -> Episodes {
        stage.episodes().cloned().unwrap_or_else(|| panic!("{} runs no episodes", stage.name()))
    }

    #[test]
    fn resolved_stages_give_the_reference_settings() {
        let rl = resolved(StageKind::Rl, |_| {}).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(episodes_of(rl).settings, EpisodeSettings::train());
        let ev = resolved(StageKind::Eval, |_| {}).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(episodes_of(ev).settings, EpisodeSettings::eval());
    }

    #[test]
    fn every_environment_key_reaches_the_episode() {
        let r = resolved(StageKind::Rl, |s| {
            let e = &mut s.environment;
            e.max_steps = Some(9);
            e.min_max_steps = 3;
            e.dynamic_steps = false;
            e.max_frames = 30;
            e.max_audio_seconds = 150.0;
            e.max_clip_seconds = 30.0;
            e.min_audio_seconds = 0.5;
            e.min_clip_frames = 8;
            e.strict_confidence = Some(false);
            e.retry_on_format_error = false;
            e.delete_media_on_error = false;
            e.hide_unavailable_audio = false;
            e.clamp_frame_range = true;
            e.bypass_duration_check = Some(true);
            s.rollout.max_prompt_length = 32768;
            s.reward.format_reward = true;
            s.reward.invalid_action_penalty = 0.25;
        });
        let want = EpisodeSettings {
            limits: EpisodeLimits {
                max_steps: 9,
                min_max_steps: 3,
                dynamic_steps: false,
                max_frames: 30,
                max_audio_seconds: 150.0,
                max_clip_seconds: 30.0,
                min_audio_seconds: 0.5,
                min_clip_frames: 8,
                max_prompt_tokens: 32768,
                prompt_tolerance: 32,
            },
            strict_confidence: false,
            terminate_on_invalid: true,
            retry_on_format_error: false,
            delete_media_on_error: false,
            bypass_duration_check: true,
            hide_unavailable_audio: false,
            clamp_frame_range: true,
            is_train: true,
            shaping: Shaping { format_reward: true, invalid_action_penalty: 0.25, length_bonus: None },
        };
        assert_eq!(episodes_of(r.unwrap_or_else(|e| panic!("{e}"))).settings, want);
    }

    #[test]
    fn the_default_template_loads_and_a_missing_file_is_named() {
        let ev = episodes_of(resolved(StageKind::Eval, |_| {}).unwrap_or_else(|e| panic!("{e}")));
        assert!(ev.template().is_ok());
        let missing = Episodes { system_prompt: Some("/nonexistent/prompt.txt".into()), ..ev };
        let err = missing.template().map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/prompt.txt"), "{err}");
    }
}
