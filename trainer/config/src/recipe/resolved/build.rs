//! Building a [`ResolvedStage`] from a stage whose kind defaults are filled: each kind takes the
//! sections it uses, and a setting still left to default is a [`ResolveError`] naming its key
//! (`Recipe::validate` reports the same stage first, so users see that message).

use super::*;

/// Resolves one stage whose kind defaults are filled (see the module doc).
pub fn resolve_stage(stage: &Stage) -> Result<ResolvedStage, ResolveError> {
    let name = stage.display_name();
    let err = |message: String| ResolveError { stage: name.clone(), message };
    let missing = |key: &str| err(format!("`{key}` has no value (an unresolved default)"));
    let kind = stage.kind.ok_or_else(|| err("no `kind`".into()))?;
    let input = model_ref(&stage.model).ok_or_else(|| err("no model: set model.path, from_stage or init".into()))?;
    let d = &stage.data;
    let data_seed = || d.data_seed.ok_or_else(|| missing("data.data_seed"));
    Ok(match kind {
        StageKind::Sft => {
            let s = &stage.schedule;
            let source = match d.source {
                DataSource::Files => SftSource::Files(d.train_files.clone()),
                DataSource::Expert => {
                    SftSource::Expert { prompts: d.train_files.clone(), episodes: episodes(stage, kind)? }
                }
            };
            ResolvedStage::Sft(SftStage {
                name: name.clone(),
                model: train_model(&stage.model, input).ok_or_else(|| missing("model.freeze_*_encoder"))?,
                data: SftData {
                    source,
                    media_root: d.media_root.clone(),
                    shuffle: d.shuffle,
                    data_seed: data_seed()?,
                    max_samples: d.max_samples,
                    check_media: d.check_media,
                    num_workers: d.num_workers,
                },
                preprocess: stage.preprocess.clone(),
                optimizer: Optimizer::from_config(&stage.optimizer).ok_or_else(|| missing("optimizer"))?,
                schedule: SftSchedule {
                    epochs: s.epochs.ok_or_else(|| missing("schedule.epochs"))?,
                    max_steps: s.max_steps,
                    per_device_batch_size: s.per_device_batch_size,
                    gradient_accumulation_steps: s.gradient_accumulation_steps,
                    max_seq_length: s.max_seq_length,
                },
                checkpoint: checkpointing(&stage.checkpoint).ok_or_else(|| missing("checkpoint.save_every"))?,
                logging: logging(&stage.logging).ok_or_else(|| missing("logging.log_every"))?,
            })
        }
        StageKind::Rl => {
            let r = &stage.rollout;
            let s = &stage.schedule;
            ResolvedStage::Rl(RlStage {
                name: name.clone(),
                model: train_model(&stage.model, input).ok_or_else(|| missing("model.freeze_*_encoder"))?,
                data: RlData {
                    train_files: d.train_files.clone(),
                    val_files: d.val_files.clone(),
                    media_root: d.media_root.clone(),
                    shuffle: d.shuffle,
                    data_seed: data_seed()?,
                    max_samples: d.max_samples,
                    check_media: d.check_media,
                    pass_rate_filter: d.pass_rate_filter,
                },
                episodes: episodes(stage, kind)?,
                preprocess: stage.preprocess.clone(),
                rollout: RlRollout {
                    prompts_per_step: r.prompts_per_step,
                    group_size: r.group_size.ok_or_else(|| missing("rollout.group_size"))?,
                    val_prompts_per_step: r.val_prompts_per_step,
                    sampling: r.sampling.clone().ok_or_else(|| missing("rollout.sampling"))?,
                    val_sampling: r.val_sampling.clone(),
                },
                judge: judge(&stage.reward.judge),
                algorithm: stage.algorithm.clone(),
                optimizer: Optimizer::from_config(&stage.optimizer).ok_or_else(|| missing("optimizer"))?,
                schedule: RlSchedule {
                    epochs: s.epochs.ok_or_else(|| missing("schedule.epochs"))?,
                    max_steps: s.max_steps,
                    val_every: s.val_every,
                    val_before_train: s.val_before_train,
                },
                checkpoint: checkpointing(&stage.checkpoint).ok_or_else(|| missing("checkpoint.save_every"))?,
                logging: logging(&stage.logging).ok_or_else(|| missing("logging.log_every"))?,
                rollout_dumps: stage.logging.rollout_dumps,
            })
        }
        StageKind::Eval => ResolvedStage::Eval(EvalStage {
            name: name.clone(),
            model: input,
            data: EvalData {
                files: d.val_files.clone(),
                media_root: d.media_root.clone(),
                max_samples: d.max_samples,
                check_media: d.check_media,
            },
            episodes: episodes(stage, kind)?,
            preprocess: stage.preprocess.clone(),
            prompts_per_step: stage.rollout.prompts_per_step,
            sampling: stage.rollout.val_sampling.clone(),
            judge: judge(&stage.reward.judge),
            logging: sinks(&stage.logging),
        }),
    })
}

fn model_ref(m: &ModelConfig) -> Option<ModelRef> {
    let source = match (&m.from_stage, m.init) {
        (Some(from), _) => ModelSource::Stage(from.clone()),
        (None, ModelInit::Random) => ModelSource::Random(m.config.clone()?),
        (None, ModelInit::Pretrained) => ModelSource::Checkpoint(m.resolved_path()?),
    };
    Some(ModelRef { source, tokenizer: m.tokenizer.clone(), dtype: m.dtype })
}

fn train_model(m: &ModelConfig, input: ModelRef) -> Option<TrainModel> {
    Some(TrainModel {
        input,
        gradient_checkpointing: m.gradient_checkpointing,
        freeze_vision_encoder: m.freeze_vision_encoder?,
        freeze_audio_encoder: m.freeze_audio_encoder?,
        lora: m.lora.clone(),
    })
}

impl Optimizer {
    /// The optimizer section with its kind defaults filled (`None` while one is unset).
    pub fn from_config(o: &OptimizerConfig) -> Option<Optimizer> {
        Some(Optimizer {
            lr: o.lr?,
            betas: o.betas,
            eps: o.eps,
            weight_decay: o.weight_decay,
            lr_schedule: o.lr_schedule?,
            warmup_ratio: o.warmup_ratio?,
            grad_clip: o.grad_clip,
        })
    }
}

fn checkpointing(c: &CheckpointConfig) -> Option<Checkpointing> {
    Some(Checkpointing { save_every: c.save_every?, keep_last: c.keep_last, save_optimizer: c.save_optimizer })
}

fn sinks(l: &LoggingConfig) -> MetricSinks {
    MetricSinks { tensorboard: l.tensorboard, tensorboard_dir: l.tensorboard_dir.clone(), jsonl: l.jsonl }
}

fn logging(l: &LoggingConfig) -> Option<Logging> {
    Some(Logging { sinks: sinks(l), log_every: l.log_every?, progress_bars: l.progress_bars })
}

/// The judge section when the judge is on (`reward.judge.enabled`).
fn judge(j: &JudgeConfig) -> Option<JudgeConfig> {
    j.enabled.then(|| j.clone())
}

/// The episode settings of a stage that runs episodes: the environment section with its kind's
/// defaults already filled, the rollout section's prompt limit, and the reward section's shaping.
fn episodes(stage: &Stage, kind: StageKind) -> Result<Episodes, ResolveError> {
    let e = &stage.environment;
    let name = stage.display_name();
    let missing = |key: &str| ResolveError {
        stage: name.clone(),
        message: format!("`environment.{key}` has no value (an unresolved default)"),
    };
    let base = EpisodeLimits::default();
    let limits = EpisodeLimits {
        max_steps: e.max_steps.ok_or_else(|| missing("max_steps"))?,
        min_max_steps: e.min_max_steps,
        dynamic_steps: e.dynamic_steps,
        max_frames: e.max_frames,
        max_audio_seconds: e.max_audio_seconds,
        max_clip_seconds: e.max_clip_seconds,
        min_audio_seconds: e.min_audio_seconds,
        min_clip_frames: e.min_clip_frames,
        max_prompt_tokens: stage.rollout.max_prompt_length,
        prompt_tolerance: base.prompt_tolerance,
    };
    let eval = kind == StageKind::Eval;
    let settings = EpisodeSettings {
        limits,
        strict_confidence: e.strict_confidence.ok_or_else(|| missing("strict_confidence"))?,
        terminate_on_invalid: !eval && !e.retry_on_format_error,
        retry_on_format_error: e.retry_on_format_error,
        delete_media_on_error: e.delete_media_on_error,
        bypass_duration_check: e.bypass_duration_check.ok_or_else(|| missing("bypass_duration_check"))?,
        hide_unavailable_audio: e.hide_unavailable_audio,
        clamp_frame_range: e.clamp_frame_range,
        is_train: !eval,
        shaping: Shaping {
            format_reward: stage.reward.format_reward,
            invalid_action_penalty: stage.reward.invalid_action_penalty,
            length_bonus: None,
        },
    };
    Ok(Episodes {
        settings,
        system_prompt: e.system_prompt.clone(),
        micro_ratio: stage.rollout.micro_ratio,
        max_response_length: stage.rollout.max_response_length,
        media_threads: stage.data.num_workers,
        media_cache_bytes: u64::from(stage.data.media_cache_mib.unwrap_or(DEFAULT_MEDIA_CACHE_MIB)) << 20,
        prefix_cache_bytes: u64::from(stage.rollout.prefix_cache_mib) << 20,
    })
}
