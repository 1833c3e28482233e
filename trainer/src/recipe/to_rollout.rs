//! From a recipe's sections to the rollout crate's episode settings. The rollout crate does not
//! know recipes (it must not depend on the trainer), so the conversion lives here.
//!
//! * `From<&EnvironmentConfig> for EpisodeLimits`: the limits, with the prompt limit at its
//!   default (it lives in the rollout section; [`episode_settings`] sets it).
//! * [`episode_settings`]: a whole stage's settings: the environment switches, the kind's
//!   defaults for the values the recipe left unset (`max_steps`, `strict_confidence`,
//!   `bypass_duration_check`: see `Stage::resolve_defaults`), `is_train` for rl stages, the
//!   rollout section's `max_prompt_length`, and the reward section's shaping.
//! * [`system_prompt`]: the stage's template file, or the compiled-in default.
//!
//! Left out: the length bonus (no recipe key; the reference leaves it off).

use super::schema::{Stage, StageKind};
use super::sections::EnvironmentConfig;
use rollout::episode::{EpisodeLimits, EpisodeSettings, Shaping};
use rollout::prompt::{PromptTemplate, TemplateError};

impl From<&EnvironmentConfig> for EpisodeLimits {
    fn from(e: &EnvironmentConfig) -> Self {
        let base = EpisodeLimits::default();
        EpisodeLimits {
            max_steps: e.max_steps.unwrap_or(base.max_steps),
            min_max_steps: e.min_max_steps,
            dynamic_steps: e.dynamic_steps,
            max_frames: e.max_frames,
            max_audio_seconds: e.max_audio_seconds,
            max_clip_seconds: e.max_clip_seconds,
            min_audio_seconds: e.min_audio_seconds,
            min_clip_frames: e.min_clip_frames,
            ..base
        }
    }
}

/// The episode settings of an rl or eval stage (an sft stage gets the training settings).
pub fn episode_settings(stage: &Stage) -> EpisodeSettings {
    let eval = stage.kind == Some(StageKind::Eval);
    let base = if eval { EpisodeSettings::eval() } else { EpisodeSettings::train() };
    let e = &stage.environment;
    let mut limits = EpisodeLimits::from(e);
    limits.max_steps = e.max_steps.unwrap_or(base.limits.max_steps);
    limits.max_prompt_tokens = stage.rollout.max_prompt_length;
    EpisodeSettings {
        limits,
        strict_confidence: e.strict_confidence.unwrap_or(base.strict_confidence),
        terminate_on_invalid: !eval && !e.retry_on_format_error,
        retry_on_format_error: e.retry_on_format_error,
        delete_media_on_error: e.delete_media_on_error,
        bypass_duration_check: e.bypass_duration_check.unwrap_or(base.bypass_duration_check),
        hide_unavailable_audio: e.hide_unavailable_audio,
        is_train: !eval,
        shaping: Shaping {
            format_reward: stage.reward.format_reward,
            invalid_action_penalty: stage.reward.invalid_action_penalty,
            length_bonus: None,
        },
    }
}

/// The stage's system-prompt template.
pub fn system_prompt(env: &EnvironmentConfig) -> Result<PromptTemplate, TemplateError> {
    match &env.system_prompt {
        Some(path) => PromptTemplate::from_file(path),
        None => PromptTemplate::default_template(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(kind: StageKind) -> Stage {
        let mut s = Stage { kind: Some(kind), ..Stage::default() };
        s.resolve_defaults();
        s
    }

    #[test]
    fn resolved_stages_give_the_reference_settings() {
        assert_eq!(episode_settings(&stage(StageKind::Rl)), EpisodeSettings::train());
        assert_eq!(episode_settings(&stage(StageKind::Eval)), EpisodeSettings::eval());
        // Unresolved options fall back to the kind's defaults too.
        let raw = Stage { kind: Some(StageKind::Eval), ..Stage::default() };
        assert_eq!(episode_settings(&raw), EpisodeSettings::eval());
    }

    #[test]
    fn every_environment_key_reaches_the_episode() {
        let mut s = stage(StageKind::Rl);
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
        e.bypass_duration_check = Some(true);
        s.rollout.max_prompt_length = 32768;
        s.reward.format_reward = true;
        s.reward.invalid_action_penalty = 0.25;
        let got = episode_settings(&s);
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
            is_train: true,
            shaping: Shaping { format_reward: true, invalid_action_penalty: 0.25, length_bonus: None },
        };
        assert_eq!(got, want);
    }

    #[test]
    fn the_default_template_loads_and_a_missing_file_is_named() {
        assert!(system_prompt(&EnvironmentConfig::default()).is_ok());
        let env =
            EnvironmentConfig { system_prompt: Some("/nonexistent/prompt.txt".into()), ..EnvironmentConfig::default() };
        let err = system_prompt(&env).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/prompt.txt"), "{err}");
    }
}
