//! The knobs of one episode: limits (docs/reference.md#limits) and behaviour switches
//! (docs/reference.md#parsing through docs/reference.md#prompt-guard, and
//! docs/reference.md#reward-shaping), with the reference's training and evaluation settings as
//! constructors.
//!
//! | knob | [`EpisodeSettings::train`] | [`EpisodeSettings::eval`] | reference |
//! |---|---|---|---|
//! | `max_steps` (K cap) | 22 | 32 | `env.max_steps` (train_TAURA.sh / eval) |
//! | `min_max_steps`, `dynamic_steps` | 5, on | 5, on | MIN_MAX_STEPS, USE_DYNAMIC_STEP |
//! | frames / audio s / clip s | 60 / 300 / 60 | 60 / 300 / 60 | video_star.* |
//! | min audio s / min clip frames | 0.1 / 4 | 0.1 / 4 | hard-coded |
//! | prompt limit / tolerance | 65536 / 32 | 65536 / 32 | max_prompt_length, tok_len_tol |
//! | `strict_confidence` | on | off | STRICT_CONFIDENCE_CHECK (train script / demo eval) |
//! | `terminate_on_invalid` | off | off | `is_train and not RETRY_ON_FORMAT_ERROR` |
//! | `retry_on_format_error` | on | on | RETRY_ON_FORMAT_ERROR (also at eval) |
//! | `delete_media_on_error` | on | on | DELETE_MEDIA_WHEN_ERROR |
//! | `bypass_duration_check` | off | on | BYPASS_DURATION_CHECK |
//! | `format_reward`, length bonus | off | off | FORMAT_REWARD, LEN_BONUS_ENABLE |
//! | `hide_unavailable_audio` | on | on | ours (off = the reference's prompt and NO_AUDIO text) |
//! | `clamp_frame_range` | off | off | ours (off = the reference's `FRAME_TS_OOB` past the end) |
//!
//! Left out: RANDOM_RESOURCE_SFT (randomised limits for teacher data collection): a data
//! collection run can draw its own limits and build one `EpisodeSettings` per episode; and the
//! reasoning-quality judge (REASONING_REWARD), which needs an LLM and is off everywhere.

/// Budgets and limits of one episode.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeLimits {
    /// Turn budget cap K (the effective budget is dynamic, see `budget.rs`).
    pub max_steps: u32,
    /// Floor of the dynamic budget.
    pub min_max_steps: u32,
    /// `min(min_max_steps + floor(duration / max_clip_seconds), max_steps)` when on.
    pub dynamic_steps: bool,
    /// Frames per `get_frames`.
    pub max_frames: u32,
    /// Longest `get_audio`, seconds.
    pub max_audio_seconds: f64,
    /// Longest `get_clip`, seconds.
    pub max_clip_seconds: f64,
    /// Shortest `get_audio`, seconds.
    pub min_audio_seconds: f64,
    /// Source frames a clip must span when the video has fps >= 2.
    pub min_clip_frames: u32,
    /// Longest prompt in tokens, media included.
    pub max_prompt_tokens: u32,
    /// The guard fires when a prompt exceeds `max_prompt_tokens - prompt_tolerance`.
    pub prompt_tolerance: u32,
}

impl Default for EpisodeLimits {
    fn default() -> Self {
        EpisodeLimits {
            max_steps: 22,
            min_max_steps: 5,
            dynamic_steps: true,
            max_frames: 60,
            max_audio_seconds: 300.0,
            max_clip_seconds: 60.0,
            min_audio_seconds: 0.1,
            min_clip_frames: 4,
            max_prompt_tokens: 65536,
            prompt_tolerance: 32,
        }
    }
}

/// Optional reward shaping (docs/reference.md#reward-shaping), all off by default as in the
/// shipped scripts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Shaping {
    /// `reward = 0.1 + 0.9 * reward` for a completed answer (not for a rejected TR answer).
    pub format_reward: bool,
    /// Subtracted at the last token of each invalid stored turn by the trainer; recorded on
    /// the turn (the env reward is unchanged).
    pub invalid_action_penalty: f64,
    /// Length bonus for won training episodes: `max * exp(-beta * max(avg_tokens + 1, 100))`.
    pub length_bonus: Option<LengthBonus>,
}

/// Parameters of the length bonus (LEN_BETA, LEN_BONUS_MAX).
#[derive(Debug, Clone, PartialEq)]
pub struct LengthBonus {
    pub beta: f64,
    pub max: f64,
}

impl Default for LengthBonus {
    fn default() -> Self {
        LengthBonus { beta: 0.25, max: 0.5 }
    }
}

/// Everything an episode needs besides its sample and its prompt template.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeSettings {
    pub limits: EpisodeLimits,
    /// `confidence` is a required key.
    pub strict_confidence: bool,
    /// An invalid action ends the episode (the reference: training without retry mode).
    pub terminate_on_invalid: bool,
    /// Invalid non-terminal turns are not stored for training (their history stays).
    pub retry_on_format_error: bool,
    /// After an invalid action all raw media, the newest included, becomes placeholders.
    pub delete_media_on_error: bool,
    /// Skip the extracted-media duration sanity checks (tolerance 99999 s instead of 1 s).
    pub bypass_duration_check: bool,
    /// Videos without audio: `get_audio` is left out of the prompt and a request for it gets
    /// an explanatory `NO_AUDIO` message. Off: the reference's prompt and bare `NO_AUDIO`.
    pub hide_unavailable_audio: bool,
    /// A `get_frames` whose `end` is past the video's end samples up to the end instead of
    /// failing with `FRAME_TS_OOB` (a `start` past the end still fails). Off: the reference.
    pub clamp_frame_range: bool,
    /// Training episode (the length bonus applies only there).
    pub is_train: bool,
    pub shaping: Shaping,
}

impl EpisodeSettings {
    /// The reference's RL training settings (`train_TAURA.sh`).
    pub fn train() -> Self {
        EpisodeSettings {
            limits: EpisodeLimits::default(),
            strict_confidence: true,
            terminate_on_invalid: false,
            retry_on_format_error: true,
            delete_media_on_error: true,
            bypass_duration_check: false,
            hide_unavailable_audio: true,
            clamp_frame_range: false,
            is_train: true,
            shaping: Shaping::default(),
        }
    }

    /// The reference's evaluation settings (standalone eval and `eval.sh`): 32 steps, no
    /// strict confidence, duration checks bypassed, invalid actions never terminate.
    pub fn eval() -> Self {
        EpisodeSettings {
            limits: EpisodeLimits { max_steps: 32, ..EpisodeLimits::default() },
            strict_confidence: false,
            bypass_duration_check: true,
            is_train: false,
            ..EpisodeSettings::train()
        }
    }

    /// The duration tolerance of the extraction sanity checks (`dur_tol`).
    pub fn duration_tolerance(&self) -> f64 {
        if self.bypass_duration_check { 99999.0 } else { 1.0 }
    }
}

impl Default for EpisodeSettings {
    fn default() -> Self {
        Self::train()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_and_eval_are_the_reference_settings() {
        let t = EpisodeSettings::train();
        assert_eq!((t.limits.max_steps, t.limits.min_max_steps, t.limits.dynamic_steps), (22, 5, true));
        assert_eq!((t.limits.max_frames, t.limits.max_audio_seconds, t.limits.max_clip_seconds), (60, 300.0, 60.0));
        assert_eq!((t.limits.min_audio_seconds, t.limits.min_clip_frames), (0.1, 4));
        assert_eq!((t.limits.max_prompt_tokens, t.limits.prompt_tolerance), (65536, 32));
        assert!(t.strict_confidence && t.retry_on_format_error && t.delete_media_on_error && !t.bypass_duration_check);
        assert!(!t.terminate_on_invalid && t.is_train && t.shaping == Shaping::default());
        let e = EpisodeSettings::eval();
        assert_eq!(e.limits.max_steps, 32);
        assert!(!e.strict_confidence && e.bypass_duration_check && !e.terminate_on_invalid && !e.is_train);
        assert!(e.retry_on_format_error && e.delete_media_on_error);
        assert_eq!((t.duration_tolerance(), e.duration_tolerance()), (1.0, 99999.0));
    }
}
