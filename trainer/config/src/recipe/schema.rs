//! The typed recipe: a job as ordered stages (`sft`, `rl`, `eval`), each with its sections.
//!
//! Every struct mirrors the YAML one to one, is `#[serde(default, deny_unknown_fields)]`, and
//! defaults to the reference's shipped values (docs/reference.md#hyperparameters for RL,
//! docs/reference.md#sft-recipe for SFT). Values whose reference default differs between SFT
//! and RL (learning rate, schedule, warm-up, frozen encoders, checkpoint cadence) are `Option`s
//! filled by [`Stage::resolve_defaults`], so the resolved recipe printed by `omnirl validate`
//! shows what will actually run.
//! Required values (stage `kind`, model source, data files) are `Option`s that `validate()`
//! checks, so a missing one is reported beside every other problem instead of stopping parsing.

use super::data_section::*;
use super::sections::*;
use rollout::episode::EpisodeSettings;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Recipe {
    /// Run name; also the default run directory name under `output_dir`.
    pub name: String,
    /// Global seed (the reference's `data.seed` and `env.seed` are both 42).
    pub seed: u64,
    /// Where runs are written: `<output_dir>/<name>/`.
    pub output_dir: PathBuf,
    pub distributed: DistributedConfig,
    /// Executed in order; an RL stage may start from an earlier stage's result.
    pub stages: Vec<Stage>,
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            name: "omnirl".into(),
            seed: 42,
            output_dir: PathBuf::from("runs"),
            distributed: DistributedConfig::default(),
            stages: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// Agentic SFT on multi-turn trajectories (docs/reference.md#sft-recipe).
    Sft,
    /// Agentic RL: rollouts, rewards, GRPO/TAURA update (docs/reference.md#overview).
    Rl,
    /// Evaluation on held-out samples (docs/reference.md#evaluation).
    Eval,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Sft => "sft",
            StageKind::Rl => "rl",
            StageKind::Eval => "eval",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stage {
    /// Unique within the recipe; defaults to the kind (`sft`, `rl`, `eval`).
    pub name: Option<String>,
    pub kind: Option<StageKind>,
    pub model: ModelConfig,
    pub data: DataConfig,
    /// Agent environment limits (rl and eval stages).
    pub environment: EnvironmentConfig,
    /// Media preprocessing budgets, as the model's processor applies them.
    pub preprocess: PreprocessConfig,
    /// Episode batching and sampling (rl and eval stages).
    pub rollout: RolloutConfig,
    /// Answer scoring and optional shaping (rl and eval stages).
    pub reward: RewardConfig,
    /// Advantage estimator and policy loss (rl stages).
    pub algorithm: AlgorithmConfig,
    pub optimizer: OptimizerConfig,
    pub schedule: ScheduleConfig,
    pub checkpoint: CheckpointConfig,
    pub logging: LoggingConfig,
}

impl Stage {
    /// The stage's name: its `name`, or its kind.
    pub fn display_name(&self) -> String {
        match (&self.name, self.kind) {
            (Some(n), _) => n.clone(),
            (None, Some(k)) => k.as_str().to_string(),
            (None, None) => "stage".to_string(),
        }
    }

    /// Fills the values whose reference default depends on the stage kind: the one home of
    /// those defaults. Episode defaults are the rollout crate's reference settings
    /// ([`EpisodeSettings::train`] for the rl stage and for the expert an sft stage may play,
    /// [`EpisodeSettings::eval`] for eval stages).
    /// `seed` is the recipe's, the default of `data.data_seed`. Keys an eval stage does not use
    /// (encoder freezing, `data.data_seed`, `logging.log_every`) stay unset there, so a resolved
    /// recipe passes the unused-key check of [`unused_keys`](Self::unused_keys) when read again.
    pub fn resolve_defaults(&mut self, seed: u64) {
        let Some(kind) = self.kind else { return };
        let (sft, eval) = (kind == StageKind::Sft, kind == StageKind::Eval);
        if self.name.is_none() {
            self.name = Some(kind.as_str().to_string());
        }
        let o = &mut self.optimizer;
        o.lr.get_or_insert(if sft { 1.0e-5 } else { 1.0e-6 });
        o.lr_schedule.get_or_insert(if sft { LrSchedule::Linear } else { LrSchedule::Constant });
        o.warmup_ratio.get_or_insert(if sft { 0.03 } else { 0.0 });
        if !eval {
            let m = &mut self.model;
            m.freeze_vision_encoder.get_or_insert(sft);
            m.freeze_audio_encoder.get_or_insert(sft);
            self.data.data_seed.get_or_insert(seed);
            self.logging.log_every.get_or_insert(if sft { 4 } else { 1 });
        }
        let s = &mut self.schedule;
        s.epochs.get_or_insert(if sft { 2 } else { 1 });
        let c = &mut self.checkpoint;
        c.save_every.get_or_insert(if sft { 1024 } else { 10 });
        let base = if eval { EpisodeSettings::eval() } else { EpisodeSettings::train() };
        let e = &mut self.environment;
        e.max_steps.get_or_insert(base.limits.max_steps);
        e.strict_confidence.get_or_insert(base.strict_confidence);
        e.bypass_duration_check.get_or_insert(base.bypass_duration_check);
        if kind == StageKind::Rl {
            let r = &mut self.rollout;
            r.group_size.get_or_insert(8);
            r.sampling.get_or_insert_with(SamplingConfig::train);
        }
    }

    /// Keys set in this stage that its kind does not use, with what to do instead; each is a
    /// `validate` error. Call before [`resolve_defaults`](Self::resolve_defaults) (a value equal
    /// to its default cannot be told from an unset one).
    pub fn unused_keys(&self) -> Vec<(String, String)> {
        let Some(kind) = self.kind else { return Vec::new() };
        let mut out: Vec<(String, String)> = Vec::new();
        let mut flag = |set: bool, key: &str, why: &str| {
            if set {
                out.push((key.to_string(), why.to_string()));
            }
        };
        let (d, r, sched) = (&self.data, &self.rollout, &self.schedule);
        let (dd, rd, sd) = (DataConfig::default(), RolloutConfig::default(), ScheduleConfig::default());
        let expert = d.source == DataSource::Expert;
        match kind {
            StageKind::Sft => {
                let why = "not used by an sft stage with data.source: files (its rows come from the files)";
                flag(!expert && self.environment != EnvironmentConfig::default(), "environment", why);
                flag(!expert && *r != rd, "rollout", why);
                let why = "not used by an sft stage: the expert is scripted (only micro_ratio, max_prompt_length and max_response_length apply)";
                flag(expert && r.prompts_per_step != rd.prompts_per_step, "rollout.prompts_per_step", why);
                flag(expert && r.group_size.is_some(), "rollout.group_size", why);
                flag(expert && r.val_prompts_per_step != rd.val_prompts_per_step, "rollout.val_prompts_per_step", why);
                flag(expert && r.sampling.is_some(), "rollout.sampling", why);
                flag(expert && r.val_sampling != rd.val_sampling, "rollout.val_sampling", why);
                flag(expert && r.prefix_cache_mib != rd.prefix_cache_mib, "rollout.prefix_cache_mib", why);
                let why = "not used by an sft stage (rewards and the policy-gradient update are rl settings)";
                flag(self.reward != RewardConfig::default(), "reward", why);
                flag(self.algorithm != AlgorithmConfig::default(), "algorithm", why);
                let why = "not used by an sft stage (validation during training is an rl setting)";
                flag(!d.val_files.is_empty(), "data.val_files", why);
                flag(sched.val_every != sd.val_every, "schedule.val_every", why);
                flag(sched.val_before_train != sd.val_before_train, "schedule.val_before_train", why);
                let why = "not used by an sft stage (rollout dumps are written by rl stages)";
                flag(
                    self.logging.rollout_dumps != LoggingConfig::default().rollout_dumps,
                    "logging.rollout_dumps",
                    why,
                );
            }
            StageKind::Rl => {
                flag(
                    d.source != dd.source,
                    "data.source",
                    "only sft stages choose a data source; rl stages roll out data.train_files",
                );
                let why = "an sft setting; rl batches are rollout.prompts_per_step x rollout.group_size episodes";
                flag(sched.per_device_batch_size != sd.per_device_batch_size, "schedule.per_device_batch_size", why);
                let g = "schedule.gradient_accumulation_steps";
                flag(sched.gradient_accumulation_steps != sd.gradient_accumulation_steps, g, why);
                let why = "an sft setting; rl prompts are bounded by rollout.max_prompt_length";
                flag(sched.max_seq_length != sd.max_seq_length, "schedule.max_seq_length", why);
            }
            StageKind::Eval => {
                let why = "not used by an eval stage (it trains nothing)";
                flag(self.algorithm != AlgorithmConfig::default(), "algorithm", why);
                flag(self.optimizer != OptimizerConfig::default(), "optimizer", why);
                flag(self.checkpoint != CheckpointConfig::default(), "checkpoint", why);
                flag(*sched != sd, "schedule", why);
                let m = &self.model;
                flag(
                    m.gradient_checkpointing != ModelConfig::default().gradient_checkpointing,
                    "model.gradient_checkpointing",
                    why,
                );
                flag(m.freeze_vision_encoder.is_some(), "model.freeze_vision_encoder", why);
                flag(m.freeze_audio_encoder.is_some(), "model.freeze_audio_encoder", why);
                flag(m.lora.is_some(), "model.lora", why);
                let why = "not used by an eval stage (it reads data.val_files once, in order)";
                flag(!d.train_files.is_empty(), "data.train_files", why);
                flag(d.source != dd.source, "data.source", why);
                flag(d.shuffle != dd.shuffle, "data.shuffle", why);
                flag(d.data_seed.is_some(), "data.data_seed", why);
                let why = "an eval stage runs one episode per sample";
                flag(r.group_size.is_some_and(|g| g != 1), "rollout.group_size", why);
                let why = "an eval stage samples with rollout.val_sampling";
                flag(r.sampling.is_some(), "rollout.sampling", why);
                let why = "an eval stage's batch is rollout.prompts_per_step";
                flag(r.val_prompts_per_step != rd.val_prompts_per_step, "rollout.val_prompts_per_step", why);
                let ld = LoggingConfig::default();
                let why = "not used by an eval stage (it logs its figures once)";
                flag(self.logging.log_every.is_some(), "logging.log_every", why);
                flag(self.logging.progress_bars != ld.progress_bars, "logging.progress_bars", why);
                flag(self.logging.rollout_dumps != ld.rollout_dumps, "logging.rollout_dumps", why);
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributedConfig {
    /// Communication backend: `auto` picks NCCL on GPUs and MPI on CPU.
    pub backend: Backend,
    /// `auto` uses CUDA when libtorch sees a GPU, else the CPU.
    pub device: DeviceKind,
    /// Physical GPU ids this node may use (the reference's GPU_IDS); rank `local_rank` takes
    /// the `local_rank`-th. Empty: CUDA_VISIBLE_DEVICES, or all GPUs.
    pub gpu_ids: Vec<u32>,
    /// Memory of one GPU, for the per-rank estimate.
    pub gpu_memory_gib: f64,
    /// Shard AdamW state across data-parallel ranks (ZeRO-1).
    pub shard_optimizer_state: bool,
    /// A collective that does not complete in this many seconds ends the job with an error.
    pub timeout_s: u64,
}

impl Default for DistributedConfig {
    fn default() -> Self {
        DistributedConfig {
            backend: Backend::Auto,
            device: DeviceKind::Auto,
            gpu_ids: Vec::new(),
            gpu_memory_gib: 80.0,
            shard_optimizer_state: false,
            timeout_s: 1800,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Auto,
    Nccl,
    Mpi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Auto,
    Cpu,
    Cuda,
}
