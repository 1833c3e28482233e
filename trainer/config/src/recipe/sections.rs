//! The sections of a recipe stage. Defaults are the reference's shipped values; `Option`
//! fields default by stage kind (see `Stage::resolve_defaults`). Field docs say where each
//! value comes from in the reference, in brackets (the reference's values are listed in
//! docs/reference.md#hyperparameters, docs/reference.md#limits and docs/reference.md#sft-recipe).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelInit {
    /// Load weights from `path` (an HF Qwen2.5-Omni checkpoint directory).
    Pretrained,
    /// Random initialisation from the config file `config` (the quickstart's tiny thinker).
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    Bf16,
    F16,
    F32,
}

impl Dtype {
    pub fn bytes(self) -> u64 {
        match self {
            Dtype::Bf16 | Dtype::F16 => 2,
            Dtype::F32 => 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Checkpoint directory, relative to `base_path` when that is set [MODEL_BASE_PATH].
    pub path: Option<PathBuf>,
    /// Prefix for a relative `path` (environment variable MODEL_BASE_PATH).
    pub base_path: Option<PathBuf>,
    /// Start from the result of an earlier stage of this recipe (e.g. RL from `sft`).
    pub from_stage: Option<String>,
    pub init: ModelInit,
    /// config.json for `init: random` (a pretrained model uses `<path>/config.json`).
    pub config: Option<PathBuf>,
    /// tokenizer.json; defaults to `<path>/tokenizer.json`.
    pub tokenizer: Option<PathBuf>,
    /// Parameter and compute dtype [bf16].
    pub dtype: Dtype,
    pub gradient_checkpointing: bool,
    /// Frozen encoders [SFT freezes both; RL trains them]. Default by stage kind.
    pub freeze_vision_encoder: Option<bool>,
    pub freeze_audio_encoder: Option<bool>,
    /// Low-rank adapters on the language model; the frozen base doubles as reference policy.
    pub lora: Option<LoraConfig>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: None,
            base_path: None,
            from_stage: None,
            init: ModelInit::Pretrained,
            config: None,
            tokenizer: None,
            dtype: Dtype::Bf16,
            gradient_checkpointing: true,
            freeze_vision_encoder: None,
            freeze_audio_encoder: None,
            lora: None,
        }
    }
}

impl ModelConfig {
    /// `path` joined onto `base_path` when it is relative.
    pub fn resolved_path(&self) -> Option<PathBuf> {
        let path = self.path.as_ref()?;
        match &self.base_path {
            Some(base) if path.is_relative() => Some(base.join(path)),
            _ => Some(path.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    pub rank: u32,
    pub alpha: f64,
    pub dropout: f64,
    /// Linear layers of the language model that get adapters (HF module names).
    pub target_modules: Vec<String>,
    /// Save checkpoints with the adapters folded into the base weights (a plain HF checkpoint)
    /// instead of the PEFT layout (`adapter_config.json` + `adapter_model.safetensors`).
    pub merge: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 64,
            alpha: 128.0,
            dropout: 0.0,
            target_modules: crate::model::LORA_TARGETS.map(String::from).to_vec(),
            merge: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// Turn budget K [MAX_STEPS; train 22, eval 32]. Default by stage kind.
    pub max_steps: Option<u32>,
    /// Floor of the dynamic budget [MIN_MAX_STEPS = 5].
    pub min_max_steps: u32,
    /// `min(min_max_steps + floor(duration / max_clip_seconds), max_steps)` [USE_DYNAMIC_STEP].
    pub dynamic_steps: bool,
    /// Frames per get_frames [60].
    pub max_frames: u32,
    /// Seconds per get_audio [300].
    pub max_audio_seconds: f64,
    /// Seconds per get_clip [60].
    pub max_clip_seconds: f64,
    /// Shortest get_audio [0.1 s].
    pub min_audio_seconds: f64,
    /// Source frames a clip needs when fps >= 2 [4].
    pub min_clip_frames: u32,
    /// Require a numeric top-level `confidence` [STRICT_CONFIDENCE_CHECK: train true, eval false].
    pub strict_confidence: Option<bool>,
    /// Invalid non-terminal turns are retried and not trained on [RETRY_ON_FORMAT_ERROR].
    pub retry_on_format_error: bool,
    /// After an invalid action all raw media is consolidated [DELETE_MEDIA_WHEN_ERROR].
    pub delete_media_on_error: bool,
    /// Offer get_audio only for videos with an audio track (false: the reference's prompt).
    pub hide_unavailable_audio: bool,
    /// A get_frames past the video's end samples up to the end (false: the reference's
    /// FRAME_TS_OOB error).
    pub clamp_frame_range: bool,
    /// Skip extraction duration sanity checks [BYPASS_DURATION_CHECK: eval true].
    pub bypass_duration_check: Option<bool>,
    /// System-prompt template file (placeholders documented in recipes/prompts/README.md).
    pub system_prompt: Option<PathBuf>,
}

impl Default for EnvironmentConfig {
    /// The episode's own defaults (`rollout::episode::EpisodeLimits` and the switches of
    /// `EpisodeSettings::train`, which evaluation shares), so each default has one home.
    fn default() -> Self {
        let l = rollout::episode::EpisodeLimits::default();
        let switches = rollout::episode::EpisodeSettings::train();
        EnvironmentConfig {
            max_steps: None,
            min_max_steps: l.min_max_steps,
            dynamic_steps: l.dynamic_steps,
            max_frames: l.max_frames,
            max_audio_seconds: l.max_audio_seconds,
            max_clip_seconds: l.max_clip_seconds,
            min_audio_seconds: l.min_audio_seconds,
            min_clip_frames: l.min_clip_frames,
            strict_confidence: None,
            retry_on_format_error: switches.retry_on_format_error,
            delete_media_on_error: switches.delete_media_on_error,
            hide_unavailable_audio: switches.hide_unavailable_audio,
            clamp_frame_range: switches.clamp_frame_range,
            bypass_duration_check: None,
            system_prompt: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreprocessConfig {
    /// Pixel budget of one frame from get_frames [4·28·28 .. 1024·28·28; OMNI_IMAGE_MAX_PIXELS].
    pub image_min_pixels: u64,
    pub image_max_pixels: u64,
    /// Per-frame budget of clip frames [128·28·28 .. 768·28·28; OMNI_VIDEO_FRAME_MAX_PIXELS].
    pub video_min_pixels: u64,
    pub video_frame_max_pixels: u64,
    /// Total pixel budget of one clip [0.9·128000·28·28; VIDEO_MAX_PIXELS].
    pub video_total_pixels: u64,
    /// Clip frame sampling rate [2 fps] and cap [768 frames].
    pub clip_fps: f64,
    pub max_clip_frames: u32,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig {
            image_min_pixels: 4 * 28 * 28,
            image_max_pixels: 1024 * 28 * 28,
            video_min_pixels: 128 * 28 * 28,
            video_frame_max_pixels: 768 * 28 * 28,
            video_total_pixels: 90_316_800,
            clip_fps: 2.0,
            max_clip_frames: 768,
        }
    }
}

impl PreprocessConfig {
    /// The `get_frames` image budget these settings give the media environment.
    pub fn image_sizing(&self) -> rollout::media::ImageSizing {
        rollout::media::ImageSizing {
            min_pixels: self.image_min_pixels as usize,
            max_pixels: self.image_max_pixels as usize,
        }
    }

    /// The `get_clip` sampling these settings give the media environment.
    pub fn video_sampling(&self) -> rollout::media::VideoSampling {
        rollout::media::VideoSampling {
            fps: self.clip_fps,
            max_frames: self.max_clip_frames as usize,
            min_pixels: self.video_min_pixels as usize,
            max_pixels: self.video_frame_max_pixels as usize,
            total_pixels: self.video_total_pixels as f64,
            ..rollout::media::VideoSampling::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    pub temperature: f64,
    pub top_p: f64,
    /// None: no top-k filtering (the reference's -1).
    pub top_k: Option<u32>,
}

impl SamplingConfig {
    /// Training rollouts (docs/reference.md#generation): temperature 1, no top-p/top-k.
    pub fn train() -> Self {
        SamplingConfig { temperature: 1.0, top_p: 1.0, top_k: None }
    }

    /// Validation and evaluation [val_kwargs]: temperature 1, top-k 20, top-p 0.95.
    pub fn eval() -> Self {
        SamplingConfig { temperature: 1.0, top_p: 0.95, top_k: Some(20) }
    }
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self::train()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// Dataset prompts per training step, B [data.train_batch_size = 32].
    pub prompts_per_step: u32,
    /// Episodes per prompt, n: one GRPO group [env.rollout.n = 8; eval 1]. Default by kind.
    pub group_size: Option<u32>,
    /// Prompts per validation batch, each rolled out once [8·n = 64].
    pub val_prompts_per_step: u32,
    /// Live episodes per rank per generation wave [MICRO_RATIO = 2].
    pub micro_ratio: u32,
    /// Longest prompt in tokens, media included [65536], and longest response [4096].
    pub max_prompt_length: u32,
    pub max_response_length: u32,
    /// Sampling of this stage's episodes (rl: training settings; eval: evaluation settings).
    pub sampling: Option<SamplingConfig>,
    /// Sampling of an rl stage's validation episodes.
    pub val_sampling: SamplingConfig,
    /// MiB of each episode's context (keys and values) kept between its turns, so a turn
    /// prefills only what its prompt adds; 0 turns prefix caching off [ours; 1024].
    pub prefix_cache_mib: u32,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            prompts_per_step: 32,
            group_size: None,
            val_prompts_per_step: 64,
            micro_ratio: 2,
            max_prompt_length: 65536,
            max_response_length: 4096,
            sampling: None,
            val_sampling: SamplingConfig::eval(),
            prefix_cache_mib: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardConfig {
    /// `reward = 0.1 + 0.9·reward` for completed answers [FORMAT_REWARD, off].
    pub format_reward: bool,
    /// Subtracted from the reward of each row of an invalid turn, unless `format_reward` is on [off].
    pub invalid_action_penalty: f64,
    /// LLM judge for FF questions [evaluation only; docs/reference.md#reward-judge].
    pub judge: JudgeConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JudgeConfig {
    /// Score FF answers with the judge (without an API key they score 0, with one warning, as
    /// in the reference). Off: FF answers score 0 without a request.
    pub enabled: bool,
    /// OpenAI-compatible endpoint (DASHSCOPE_BASE_URL).
    pub base_url: String,
    pub model: String,
    /// Environment variable holding the key (also read from a `.env` file).
    pub api_key_env: String,
    pub timeout_s: f64,
    pub max_retries: u32,
    pub concurrency: u32,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            enabled: true,
            base_url: "https://dashscope.aliyuncs.com/compatible-mode/v1".into(),
            model: "gpt-5-2025-08-07".into(),
            api_key_env: "DASHSCOPE_API_KEY".into(),
            timeout_s: 15.0,
            max_retries: 5,
            concurrency: 16,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Estimator {
    /// Group-normalised outcome advantage (docs/reference.md#grpo).
    Grpo,
    /// GRPO times each turn's entropy over its group's mean turn entropy (docs/reference.md#taura).
    Taura,
    /// GRPO without dividing by the group standard deviation.
    GrpoNoStd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateFlow {
    /// The reference default (ABS_ON_POLICY=True): one optimizer step over the whole batch,
    /// gradients accumulated per row, per-row token mean (docs/reference.md#update-rule).
    OnPolicy,
    /// Standard PPO mini-batch epochs with clip ratios (ABS_ON_POLICY=False).
    Ppo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossAggregation {
    TokenMean,
    SeqMeanTokenMean,
    SeqMeanTokenSum,
}

/// How the rows (stored turns) of a batch share the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RowWeighting {
    /// Every stored turn weighs the same (the reference): a trajectory with more turns weighs
    /// more in the update.
    #[default]
    PerTurn,
    /// Every trajectory weighs the same; its turns share its weight.
    PerTrajectory,
}

/// Where an RL step's old log-probs and token entropies (TAURA's turn entropies, `actor/entropy`)
/// come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OldLogprobs {
    /// A scoring forward pass over every row before the update (the reference's
    /// `compute_log_prob`).
    #[default]
    Recompute,
    /// The rollout's own forward passes: the same weights score the same tokens while sampling
    /// them, so the step skips the scoring pass (docs/recipes.md).
    Rollout,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlgorithmConfig {
    pub estimator: Estimator,
    /// Added to the group std [1e-6].
    pub epsilon: f64,
    pub update_flow: UpdateFlow,
    /// PPO epochs per batch [PPO_EPOCHS = 1; must be 1 for on-policy].
    pub ppo_epochs: u32,
    /// Rows per PPO mini-batch [16] and per micro-batch per GPU [1].
    pub ppo_mini_batch_size: u32,
    pub micro_batch_size_per_gpu: u32,
    pub clip_ratio_low: f64,
    pub clip_ratio_high: f64,
    /// Dual-clip bound for negative advantages [3.0].
    pub clip_ratio_c: f64,
    pub loss_aggregation: LossAggregation,
    /// How the batch's rows share the loss (per-turn: the reference; per-trajectory: a long
    /// failed episode does not outweigh a short successful one). See docs/recipes.md.
    pub row_weighting: RowWeighting,
    /// [recompute] (docs/recipes.md).
    pub old_logprobs: OldLogprobs,
    /// Truncated importance-sampling cap between sampler and learner [2.0]; None disables.
    pub tis_cap: Option<f64>,
    pub kl_coef: f64,
    pub entropy_coef: f64,
    /// Rows packed into one training forward, up to this many tokens (prompt + response) each;
    /// 0 = one row per forward, the reference's layout [0]. Packing changes the memory and the
    /// speed of the update, not its gradient (docs/recipes.md).
    pub max_tokens_per_forward: u32,
}

impl Default for AlgorithmConfig {
    fn default() -> Self {
        AlgorithmConfig {
            estimator: Estimator::Taura,
            epsilon: 1e-6,
            update_flow: UpdateFlow::OnPolicy,
            ppo_epochs: 1,
            ppo_mini_batch_size: 16,
            micro_batch_size_per_gpu: 1,
            clip_ratio_low: 0.2,
            clip_ratio_high: 0.3,
            clip_ratio_c: 3.0,
            loss_aggregation: LossAggregation::TokenMean,
            row_weighting: RowWeighting::PerTurn,
            old_logprobs: OldLogprobs::Recompute,
            tis_cap: Some(2.0),
            kl_coef: 0.0,
            entropy_coef: 0.0,
            max_tokens_per_forward: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    Constant,
    Linear,
    Cosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    /// AdamW learning rate [sft 1e-5, rl 1e-6]. Default by kind.
    pub lr: Option<f64>,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    /// [sft linear, rl constant]. Default by kind.
    pub lr_schedule: Option<LrSchedule>,
    /// Fraction of steps spent warming up [sft 0.03, rl 0]. Default by kind.
    pub warmup_ratio: Option<f64>,
    /// Global gradient-norm clip [1.0].
    pub grad_clip: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            lr: None,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.01,
            lr_schedule: None,
            warmup_ratio: None,
            grad_clip: 1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Passes over the training data [sft 2, rl 1]. Default by kind.
    pub epochs: Option<u32>,
    /// Stop after this many optimizer steps (None: the epochs decide).
    pub max_steps: Option<u64>,
    /// SFT rows per device per micro-step [1] and micro-steps per optimizer step [2].
    pub per_device_batch_size: u32,
    pub gradient_accumulation_steps: u32,
    /// Longest SFT row in tokens, media included (the reference's 65536 prompt + 4096 response).
    pub max_seq_length: u32,
    /// Validate every N steps (rl) [test_freq 5000] and before training [false].
    pub val_every: Option<u64>,
    pub val_before_train: bool,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            epochs: None,
            max_steps: None,
            per_device_batch_size: 1,
            gradient_accumulation_steps: 2,
            max_seq_length: 69_632,
            val_every: Some(5000),
            val_before_train: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Save every N optimizer steps and at the end [sft 1024, rl 10]. Default by kind.
    pub save_every: Option<u64>,
    /// Complete checkpoints kept; older ones are deleted after a new one is complete.
    pub keep_last: u32,
    pub save_optimizer: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { save_every: None, keep_last: 3, save_optimizer: true }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Log scalars every N steps [sft 4, rl 1]. Default by kind.
    pub log_every: Option<u64>,
    pub tensorboard: bool,
    /// TensorBoard directory (TENSORBOARD_DIR); default `<run>/tensorboard`.
    pub tensorboard_dir: Option<PathBuf>,
    pub jsonl: bool,
    pub progress_bars: bool,
    /// Write each step's rollouts as JSONL [trainer.rollout_data_dir].
    pub rollout_dumps: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            log_every: None,
            tensorboard: true,
            tensorboard_dir: None,
            jsonl: true,
            progress_bars: true,
            rollout_dumps: true,
        }
    }
}
