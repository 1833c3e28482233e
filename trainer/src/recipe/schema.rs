//! The typed recipe: a job as ordered stages (`sft`, `rl`, `eval`), each with its sections.
//!
//! Every struct mirrors the YAML one to one, is `#[serde(default, deny_unknown_fields)]`, and
//! defaults to the reference's shipped values (omniagent-spec §7 for RL, §8 for SFT). Values
//! whose reference default differs between SFT and RL (learning rate, schedule, warm-up,
//! frozen encoders, checkpoint cadence) are `Option`s filled by [`Stage::resolve_defaults`], so
//! the resolved recipe printed by `omnirl validate` shows what will actually run.
//! Required values (stage `kind`, model source, data files) are `Option`s that `validate()`
//! checks, so a missing one is reported beside every other problem instead of stopping parsing.

use super::sections::*;
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
    /// Agentic SFT on multi-turn trajectories (spec §8).
    Sft,
    /// Agentic RL: rollouts, rewards, GRPO/TAURA update (spec §3-§7).
    Rl,
    /// Evaluation on held-out samples (spec §10).
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

    /// Fills the values whose reference default depends on the stage kind.
    pub fn resolve_defaults(&mut self) {
        let Some(kind) = self.kind else { return };
        let sft = kind == StageKind::Sft;
        if self.name.is_none() {
            self.name = Some(kind.as_str().to_string());
        }
        let o = &mut self.optimizer;
        o.lr.get_or_insert(if sft { 1.0e-5 } else { 1.0e-6 });
        o.lr_schedule.get_or_insert(if sft { LrSchedule::Linear } else { LrSchedule::Constant });
        o.warmup_ratio.get_or_insert(if sft { 0.03 } else { 0.0 });
        let m = &mut self.model;
        m.freeze_vision_encoder.get_or_insert(sft);
        m.freeze_audio_encoder.get_or_insert(sft);
        let s = &mut self.schedule;
        s.epochs.get_or_insert(if sft { 2 } else { 1 });
        let c = &mut self.checkpoint;
        c.save_every.get_or_insert(if sft { 1024 } else { 10 });
        let l = &mut self.logging;
        l.log_every.get_or_insert(if sft { 4 } else { 1 });
        if kind != StageKind::Sft {
            let eval = kind == StageKind::Eval;
            let e = &mut self.environment;
            e.max_steps.get_or_insert(if eval { 32 } else { 22 });
            e.strict_confidence.get_or_insert(!eval);
            e.bypass_duration_check.get_or_insert(eval);
            let r = &mut self.rollout;
            r.group_size.get_or_insert(if eval { 1 } else { 8 });
            r.sampling.get_or_insert_with(|| if eval { SamplingConfig::eval() } else { SamplingConfig::train() });
        }
    }

    /// Sections set in this stage that its kind does not use. Call before `resolve_defaults`.
    pub fn unused_sections(&self) -> Vec<&'static str> {
        let Some(kind) = self.kind else { return Vec::new() };
        let mut unused = Vec::new();
        match kind {
            StageKind::Sft => {
                if self.environment != EnvironmentConfig::default() {
                    unused.push("environment");
                }
                if self.rollout != RolloutConfig::default() {
                    unused.push("rollout");
                }
                if self.reward != RewardConfig::default() {
                    unused.push("reward");
                }
                if self.algorithm != AlgorithmConfig::default() {
                    unused.push("algorithm");
                }
            }
            StageKind::Rl => {}
            StageKind::Eval => {
                if self.algorithm != AlgorithmConfig::default() {
                    unused.push("algorithm");
                }
                if self.optimizer != OptimizerConfig::default() {
                    unused.push("optimizer");
                }
                if self.checkpoint != CheckpointConfig::default() {
                    unused.push("checkpoint");
                }
            }
        }
        unused
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
