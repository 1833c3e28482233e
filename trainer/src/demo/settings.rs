//! The runtime settings a person may change on the demo page (docs/reference.md#limits and
//! #generation): turn budget, frames per `get_frames`, longest `get_audio` and `get_clip`, the
//! response length, sampling temperature, greedy decoding and the seed. Each is bounded by the
//! recipe stage the server runs (a value above the stage's limit is refused, never raised).
//!
//! Left out: top-p and top-k other than greedy (the evaluation defaults apply), and the
//! preprocessing pixel budgets (fixed by the stage: the model was trained at them).

use crate::run::single::StageSettings;
use rollout::policy::Sampling;
use serde::Serialize;

/// The limits of the stage, and the page's defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    pub max_steps: u32,
    pub max_frames: u32,
    pub max_audio_seconds: f64,
    pub max_clip_seconds: f64,
    pub max_response_tokens: u32,
    pub max_temperature: f64,
}

impl Limits {
    /// The stage's limits.
    pub fn of(stage: &StageSettings) -> Limits {
        let l = &stage.episodes.settings.limits;
        Limits {
            max_steps: l.max_steps,
            max_frames: l.max_frames,
            max_audio_seconds: l.max_audio_seconds,
            max_clip_seconds: l.max_clip_seconds,
            max_response_tokens: stage.episodes.max_response_length,
            max_temperature: 2.0,
        }
    }
}

/// One run's settings (all present after [`RunSettings::defaults`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSettings {
    pub max_steps: u32,
    pub max_frames: u32,
    pub max_audio_seconds: f64,
    pub max_clip_seconds: f64,
    pub max_response_tokens: u32,
    pub temperature: f64,
    pub greedy: bool,
    pub seed: u64,
}

impl RunSettings {
    /// The stage's limits, evaluation sampling (temperature 1, top-k 20, top-p 0.95).
    pub fn defaults(l: &Limits) -> RunSettings {
        RunSettings {
            max_steps: l.max_steps,
            max_frames: l.max_frames,
            max_audio_seconds: l.max_audio_seconds,
            max_clip_seconds: l.max_clip_seconds,
            max_response_tokens: l.max_response_tokens,
            temperature: 1.0,
            greedy: false,
            seed: 42,
        }
    }

    /// Sets `key` from a form value; an unknown key, a malformed value or one outside the
    /// limits is an error that names it.
    pub fn set(&mut self, l: &Limits, key: &str, value: &str) -> Result<(), String> {
        let v = value.trim();
        let int = |max: u32| -> Result<u32, String> {
            let n: u32 = v.parse().map_err(|_| format!("{key}: `{v}` is not a whole number"))?;
            if n == 0 || n > max {
                return Err(format!("{key} must be between 1 and {max} (the recipe's limit)"));
            }
            Ok(n)
        };
        let real = |lo: f64, max: f64| -> Result<f64, String> {
            let x: f64 = v.parse().map_err(|_| format!("{key}: `{v}` is not a number"))?;
            if !x.is_finite() || x < lo || x > max {
                return Err(format!("{key} must be between {lo} and {max} (the recipe's limit)"));
            }
            Ok(x)
        };
        match key {
            "max_steps" => self.max_steps = int(l.max_steps)?,
            "max_frames" => self.max_frames = int(l.max_frames)?,
            "max_response_tokens" => self.max_response_tokens = int(l.max_response_tokens)?,
            "max_audio_seconds" => self.max_audio_seconds = real(0.1, l.max_audio_seconds)?,
            "max_clip_seconds" => self.max_clip_seconds = real(0.1, l.max_clip_seconds)?,
            "temperature" => self.temperature = real(0.0, l.max_temperature)?,
            "greedy" => self.greedy = matches!(v, "1" | "true" | "on" | "yes"),
            "seed" => self.seed = v.parse().map_err(|_| format!("seed: `{v}` is not a whole number"))?,
            _ => return Err(format!("unknown setting `{key}`")),
        }
        Ok(())
    }

    /// The stage settings with these limits applied.
    pub fn apply(&self, stage: &StageSettings) -> StageSettings {
        let mut s = stage.clone();
        let l = &mut s.episodes.settings.limits;
        l.max_steps = self.max_steps;
        l.min_max_steps = l.min_max_steps.min(self.max_steps);
        l.max_frames = self.max_frames;
        l.max_audio_seconds = self.max_audio_seconds;
        l.min_audio_seconds = l.min_audio_seconds.min(self.max_audio_seconds);
        l.max_clip_seconds = self.max_clip_seconds;
        s.episodes.max_response_length = self.max_response_tokens;
        s
    }

    /// Sampling: evaluation top-k and top-p, greedy as top-k 1 (as `omnirl infer --greedy`).
    pub fn sampling(&self) -> Sampling {
        let eval = Sampling::eval();
        Sampling {
            temperature: self.temperature.max(1e-3),
            top_k: if self.greedy { Some(1) } else { eval.top_k },
            max_new_tokens: self.max_response_tokens,
            seed: self.seed,
            ..eval
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_steps: 4,
            max_frames: 8,
            max_audio_seconds: 10.0,
            max_clip_seconds: 8.0,
            max_response_tokens: 128,
            max_temperature: 2.0,
        }
    }

    #[test]
    fn values_within_the_limits_are_taken_and_others_refused() {
        let l = limits();
        let mut s = RunSettings::defaults(&l);
        assert!(s.set(&l, "max_frames", "3").is_ok());
        assert_eq!(s.max_frames, 3);
        assert!(s.set(&l, "max_frames", "9").is_err_and(|e| e.contains("between 1 and 8")));
        assert!(s.set(&l, "max_steps", "0").is_err());
        assert!(s.set(&l, "temperature", "NaN").is_err());
        assert!(s.set(&l, "max_clip_seconds", "abc").is_err_and(|e| e.contains("not a number")));
        assert!(s.set(&l, "greedy", "on").is_ok() && s.greedy);
        assert_eq!(s.sampling().top_k, Some(1));
        assert!(s.set(&l, "nope", "1").is_err());
    }
}
