//! Batch, step and budget arithmetic of a stage for a given world size: the rules the
//! reference only enforces minutes into a run (or never), computed before anything starts.
//!
//! RL (docs/reference.md#rollout, docs/reference.md#update-rule,
//! docs/reference.md#hyperparameters): `B` prompts × `n` copies = `B·n` episodes per
//! step, which must split evenly over `W` ranks; generation runs in waves of `W·micro_ratio`
//! episodes; PPO mini-batches of `m` prompts need `m·n` divisible by `W` and the per-rank
//! share a multiple of the micro-batch; the data loader drops the last partial batch.
//! SFT (docs/reference.md#sft-recipe): global batch = per-device × accumulation × `W`. Turn
//! budget (docs/reference.md#step-budget):
//! `min(min_max_steps + floor(duration / int(max_clip_seconds)), max_steps)`.
//! Media token bounds (docs/reference.md#preprocessing, docs/reference.md#chat-template) say
//! whether one media action at its limit fits the prompt.

use crate::recipe::resolved::{RlRollout, SftSchedule};
use crate::recipe::{AlgorithmConfig, PreprocessConfig, UpdateFlow};
use rollout::episode::EpisodeLimits;
use serde::Serialize;

/// A problem with the dotted key (relative to the stage) it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchIssue {
    pub key: &'static str,
    pub error: bool,
    pub message: String,
}

fn issue(key: &'static str, error: bool, message: String) -> BatchIssue {
    BatchIssue { key, error, message }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RlBatch {
    pub prompts_per_step: u32,
    pub group_size: u32,
    pub episodes_per_step: u64,
    pub episodes_per_rank: u64,
    /// Episodes generated together: world_size × micro_ratio.
    pub wave_size: u64,
    pub waves_per_step: u64,
    /// Rows per PPO mini-batch per rank (ppo flow only).
    pub ppo_rows_per_rank: Option<u64>,
}

/// RL batch layout for `world` ranks generating `micro_ratio` episodes each per wave.
pub fn rl_batch(r: &RlRollout, micro_ratio: u32, a: &AlgorithmConfig, world: u32) -> (RlBatch, Vec<BatchIssue>) {
    let mut issues = Vec::new();
    let (b, n, w) = (u64::from(r.prompts_per_step), u64::from(r.group_size.max(1)), u64::from(world.max(1)));
    let episodes = b * n;
    if episodes % w != 0 {
        let fix = (b..b + w).find(|x| (x * n) % w == 0).unwrap_or(w);
        issues.push(issue(
            "rollout.prompts_per_step",
            true,
            format!(
                "prompts_per_step {b} × group_size {n} = {episodes} episodes do not split evenly over world size {w}; \
                 use a multiple such as prompts_per_step {fix}"
            ),
        ));
    }
    let wave = w * u64::from(micro_ratio.max(1));
    let mut ppo_rows_per_rank = None;
    if a.update_flow == UpdateFlow::Ppo {
        let mini = u64::from(a.ppo_mini_batch_size) * n;
        let micro = u64::from(a.micro_batch_size_per_gpu.max(1));
        if mini % w != 0 {
            issues.push(issue(
                "algorithm.ppo_mini_batch_size",
                true,
                format!(
                    "ppo_mini_batch_size {} × group_size {n} = {mini} rows do not split evenly over world size {w}",
                    a.ppo_mini_batch_size
                ),
            ));
        } else if (mini / w) % micro != 0 || mini / w == 0 {
            issues.push(issue(
                "algorithm.micro_batch_size_per_gpu",
                true,
                format!(
                    "{} rows per rank per mini-batch is not a positive multiple of micro_batch_size_per_gpu {micro}",
                    mini / w
                ),
            ));
        } else {
            ppo_rows_per_rank = Some(mini / w);
        }
        if a.ppo_mini_batch_size > r.prompts_per_step {
            issues.push(issue(
                "algorithm.ppo_mini_batch_size",
                false,
                format!("larger than prompts_per_step {b}: one mini-batch per step"),
            ));
        }
    }
    let batch = RlBatch {
        prompts_per_step: r.prompts_per_step,
        group_size: n as u32,
        episodes_per_step: episodes,
        episodes_per_rank: episodes / w,
        wave_size: wave,
        waves_per_step: episodes.div_ceil(wave),
        ppo_rows_per_rank,
    };
    (batch, issues)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SftBatch {
    pub per_device_batch_size: u32,
    pub gradient_accumulation_steps: u32,
    pub global_batch_size: u64,
}

pub fn sft_batch(s: &SftSchedule, world: u32) -> SftBatch {
    SftBatch {
        per_device_batch_size: s.per_device_batch_size,
        gradient_accumulation_steps: s.gradient_accumulation_steps,
        global_batch_size: u64::from(s.per_device_batch_size)
            * u64::from(s.gradient_accumulation_steps)
            * u64::from(world.max(1)),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepPlan {
    pub samples: u64,
    pub steps_per_epoch: u64,
    pub epochs: u32,
    pub total_steps: u64,
    pub warmup_steps: u64,
    pub checkpoints: u64,
}

/// How long a stage runs: `epochs` passes, or exactly `max_steps` when set (see
/// [`total_steps`]), warm-up and checkpoints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRule {
    pub epochs: u32,
    pub max_steps: Option<u64>,
    pub warmup_ratio: f64,
    pub save_every: u64,
}

/// Optimizer steps of a stage: `max_steps` when set (it may run past the epochs, as the
/// reference's trainers do), else `epochs` passes. The runner and the plan both use this.
pub fn total_steps(steps_per_epoch: u64, epochs: u32, max_steps: Option<u64>) -> u64 {
    max_steps.unwrap_or(steps_per_epoch.saturating_mul(u64::from(epochs.max(1))))
}

/// Optimizer steps for `samples` rows at `per_step` rows a step. RL drops the last partial
/// batch (the reference's loader does); SFT keeps it.
pub fn steps(samples: u64, per_step: u64, drop_last: bool, rule: StepRule) -> (StepPlan, Vec<BatchIssue>) {
    let StepRule { epochs, max_steps, warmup_ratio, save_every } = rule;
    let mut issues = Vec::new();
    let per_step = per_step.max(1);
    let steps_per_epoch = if drop_last { samples / per_step } else { samples.div_ceil(per_step) };
    let epochs = epochs.max(1);
    let total = if steps_per_epoch == 0 { 0 } else { total_steps(steps_per_epoch, epochs, max_steps) };
    if samples > 0 && steps_per_epoch == 0 {
        issues.push(issue(
            "rollout.prompts_per_step",
            true,
            format!("the training data has {samples} valid samples, fewer than the {per_step} one step needs: the run would train for 0 steps"),
        ));
    }
    let warmup = (warmup_ratio * total as f64).ceil() as u64;
    let plan = StepPlan {
        samples,
        steps_per_epoch,
        epochs,
        total_steps: total,
        warmup_steps: warmup,
        // Every `save_every` steps, plus one at the end when it does not fall on the cadence.
        checkpoints: if total == 0 { 0 } else { total / save_every.max(1) + u64::from(total % save_every.max(1) != 0) },
    };
    (plan, issues)
}

/// The per-episode turn budget for a video of `duration` seconds: exactly the episode's own rule
/// (`rollout::episode::budget::effective_max_steps`), so the plan shows what the episodes will use.
pub fn turn_budget(limits: &EpisodeLimits, duration: f64) -> u32 {
    rollout::episode::budget::effective_max_steps(duration, limits)
}

/// Upper bounds on the prompt tokens one media action at its limit adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaTokenBounds {
    pub get_frames: u64,
    pub get_clip: u64,
    pub get_audio: u64,
}

/// Audio tokens per second after the encoder's two stride-2 reductions (25 per second,
/// docs/reference.md#audio-encoder).
pub const AUDIO_TOKENS_PER_SECOND: f64 = 25.0;
/// Text around each frame (`Frame 12.34s:` label and the vision bos/eos pair), generous.
const FRAME_TEXT_TOKENS: u64 = 12;
/// Tokens of the system prompt, first user message and notices, generously (the reference's
/// prompt is about 6 KB of English text), when the prompt's size is not known.
pub const PROMPT_OVERHEAD_TOKENS: u64 = 2_000;

/// Tokens of a system prompt of `chars` characters plus the first user message and notices,
/// generously: 3 characters per token (English BPE averages about 4), and 256 for the rest.
pub fn prompt_overhead_tokens(chars: Option<usize>) -> u64 {
    chars.map_or(PROMPT_OVERHEAD_TOKENS, |c| c as u64 / 3 + 256)
}

fn floor_even(x: u64) -> u64 {
    x - x % 2
}

pub fn media_token_bounds(e: &EpisodeLimits, p: &PreprocessConfig) -> MediaTokenBounds {
    let patch = 28 * 28;
    let frame_tokens = p.image_max_pixels / patch;
    let get_frames = u64::from(e.max_frames) * (frame_tokens + FRAME_TEXT_TOKENS);
    // Clip frames: 2 fps, even count, at least 2, at most max_clip_frames
    // (docs/reference.md#video-preprocessing).
    let nframes =
        floor_even(((e.max_clip_seconds * p.clip_fps).floor() as u64).clamp(2, u64::from(p.max_clip_frames))).max(2);
    let per_frame_cap = (p.video_total_pixels as f64 / nframes as f64 * 2.0).min(p.video_frame_max_pixels as f64);
    let per_frame = per_frame_cap.max(1.05 * p.video_min_pixels as f64);
    let clip_video = (nframes / 2) * (per_frame as u64 / patch);
    let clip_audio = (e.max_clip_seconds * AUDIO_TOKENS_PER_SECOND).ceil() as u64;
    MediaTokenBounds {
        get_frames,
        get_clip: clip_video + clip_audio + 4,
        get_audio: (e.max_audio_seconds * AUDIO_TOKENS_PER_SECOND).ceil() as u64 + 2,
    }
}

/// Warnings for media actions that cannot fit `max_prompt_length` even in an empty episode.
pub fn media_issues(bounds: &MediaTokenBounds, max_prompt_length: u32, overhead: u64) -> Vec<BatchIssue> {
    // The environment ends an episode once its prompt exceeds max_prompt_length - 32
    // (docs/reference.md#prompt-guard).
    let room = u64::from(max_prompt_length).saturating_sub(32 + overhead);
    let mut out = Vec::new();
    for (action, tokens, key) in [
        ("get_frames", bounds.get_frames, "environment.max_frames"),
        ("get_clip", bounds.get_clip, "environment.max_clip_seconds"),
        ("get_audio", bounds.get_audio, "environment.max_audio_seconds"),
    ] {
        if tokens > room {
            out.push(issue(
                key,
                false,
                format!(
                    "a {action} at this limit can add up to {tokens} prompt tokens but max_prompt_length {} leaves about {room} \
                     after the system prompt: such turns end the episode with TOKEN_LIMIT_EXCEEDED",
                    max_prompt_length
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(b: u32, n: u32) -> RlRollout {
        let s = crate::recipe::SamplingConfig::train();
        RlRollout { prompts_per_step: b, group_size: n, val_prompts_per_step: 64, sampling: s.clone(), val_sampling: s }
    }

    #[test]
    fn reference_rl_layout_on_64_gpus() {
        // docs/reference.md#hyperparameters: B 32, n 8, W 64, MICRO_RATIO 2 → 256 episodes,
        // 4 per rank, waves of 128, 2 waves.
        let (b, issues) = rl_batch(&rollout(32, 8), 2, &AlgorithmConfig::default(), 64);
        assert!(issues.is_empty());
        assert_eq!((b.episodes_per_step, b.episodes_per_rank, b.wave_size, b.waves_per_step), (256, 4, 128, 2));
    }

    #[test]
    fn rl_divisibility_rules() {
        // (B, n, W, flow, mini, micro, expected error key)
        type Case = (u32, u32, u32, UpdateFlow, u32, u32, Option<&'static str>);
        let cases: &[Case] = &[
            (32, 8, 3, UpdateFlow::OnPolicy, 16, 1, Some("rollout.prompts_per_step")), // 256 % 3 = 1
            (33, 8, 3, UpdateFlow::OnPolicy, 16, 1, None),                             // 264 = 3·88
            (32, 8, 8, UpdateFlow::Ppo, 16, 1, None),                                  // 128/8 = 16 rows
            (32, 8, 64, UpdateFlow::Ppo, 12, 1, Some("algorithm.ppo_mini_batch_size")), // 96 % 64 ≠ 0
            (32, 8, 8, UpdateFlow::Ppo, 16, 3, Some("algorithm.micro_batch_size_per_gpu")), // 16 % 3 ≠ 0
        ];
        for &(b, n, w, flow, mini, micro, want) in cases {
            let a = AlgorithmConfig {
                update_flow: flow,
                ppo_mini_batch_size: mini,
                micro_batch_size_per_gpu: micro,
                ..Default::default()
            };
            let (_, issues) = rl_batch(&rollout(b, n), 2, &a, w);
            let errors: Vec<&str> = issues.iter().filter(|i| i.error).map(|i| i.key).collect();
            assert_eq!(errors.first().copied(), want, "B{b} n{n} W{w}");
        }
        let (_, issues) = rl_batch(&rollout(32, 8), 2, &AlgorithmConfig::default(), 3);
        assert!(issues[0].message.contains("prompts_per_step 33"), "{}", issues[0].message);
    }

    #[test]
    fn step_counts() {
        let rule = |warmup_ratio, save_every| StepRule { epochs: 2, max_steps: None, warmup_ratio, save_every };
        // RL: 100 samples / 32 per step, drop_last → 3 steps/epoch, 6 total; save every 4 → at 4 and 6.
        let (p, issues) = steps(100, 32, true, rule(0.0, 4));
        assert!(issues.is_empty());
        assert_eq!((p.steps_per_epoch, p.total_steps, p.checkpoints), (3, 6, 2));
        // SFT: 100 rows / 16 → ceil 7 per epoch, 14 total, warm-up ceil(0.03·14) = 1.
        let (p, _) = steps(100, 16, false, rule(0.03, 1024));
        assert_eq!((p.steps_per_epoch, p.total_steps, p.warmup_steps, p.checkpoints), (7, 14, 1, 1));
        let (p, issues) = steps(20, 32, true, rule(0.0, 10));
        assert_eq!(p.total_steps, 0);
        assert!(issues[0].error && issues[0].message.contains("20 valid samples"));
        let capped = StepRule { max_steps: Some(5), ..rule(0.0, 10) };
        assert_eq!(steps(1000, 32, true, capped).0.total_steps, 5);
        // max_steps decides even past the epochs (3 per epoch x 2 = 6 < 8).
        let longer = StepRule { max_steps: Some(8), ..rule(0.0, 10) };
        assert_eq!(steps(100, 32, true, longer).0.total_steps, 8);
    }

    #[test]
    fn turn_budget_matches_the_reference_examples() {
        // docs/reference.md#step-budget: <60 s → 5; 287 s → 9; ≥ 1020 s → 22 (train cap);
        // ≥ 1620 s → 32 (eval cap).
        let train = EpisodeLimits { max_steps: 22, ..Default::default() };
        let eval = EpisodeLimits { max_steps: 32, ..Default::default() };
        for (env, d, want) in [
            (&train, 59.9, 5),
            (&train, 287.0, 9),
            (&train, 1020.0, 22),
            (&train, 5000.0, 22),
            (&eval, 1619.0, 31),
            (&eval, 1620.0, 32),
        ] {
            assert_eq!(turn_budget(env, d), want, "{d}");
        }
        let fixed = EpisodeLimits { max_steps: 22, dynamic_steps: false, ..Default::default() };
        assert_eq!(turn_budget(&fixed, 10.0), 22);
    }

    #[test]
    fn media_bounds_for_the_reference_limits() {
        let e = EpisodeLimits::default();
        let p = PreprocessConfig::default();
        let b = media_token_bounds(&e, &p);
        // 60 frames × (802816/784 = 1024 + 12) = 62,160.
        assert_eq!(b.get_frames, 62_160);
        // 60 s × 2 fps = 120 frames → 60 grids × 602112/784 = 768 tokens = 46,080; + 1,500 audio + 4.
        assert_eq!(b.get_clip, 47_584);
        // 300 s × 25 + 2.
        assert_eq!(b.get_audio, 7_502);
        assert!(media_issues(&b, 65_536, PROMPT_OVERHEAD_TOKENS).is_empty());
        let keys: Vec<&str> = media_issues(&b, 32_768, PROMPT_OVERHEAD_TOKENS).iter().map(|i| i.key).collect();
        assert_eq!(keys, ["environment.max_frames", "environment.max_clip_seconds"]);
        assert_eq!(prompt_overhead_tokens(Some(900)), 556);
        assert_eq!(prompt_overhead_tokens(None), PROMPT_OVERHEAD_TOKENS);
    }
}
