//! The FF judge of an rl or eval stage (`reward.judge`): after a rollout batch, every FF episode
//! that ended with a valid answer is scored by the LLM judge (`rewards::judge`: concurrency cap,
//! per-request timeout, bounded retries), and the episode's reward and `won` are replaced by
//! the judge's, with the stage's format shaping (`0.1 + 0.9·r`) as the episode applies it.
//!
//! The key is read from the environment variable `reward.judge.api_key_env` (also from a `.env`
//! file); with the default variable, `OSS_ACCESS_KEY` is the fallback, as in the reference.
//! Without a key every FF answer scores 0 and one warning is printed. An item the judge could not
//! score (transport or server errors after the retries) scores 0 with a warning naming the
//! sample. `OMNIRL_JUDGE_BEARER=1` sends `Authorization: Bearer <key>` for endpoints that want it.
//!
//! Left out: judging inside the episode (the judge is batched across episodes instead, so its
//! requests run concurrently), and FF answers' environment feedback (the episode ends at the
//! answer, so the "CORRECT/INCORRECT ANSWER" text it appended is never trained on).

use super::RunError;
use crate::recipe::JudgeConfig as JudgeSpec;
use rewards::QuestionType;
use rewards::judge::{ApiKey, Judge, JudgeConfig, JudgeItem};
use rollout::episode::ActionType;
use rollout::trajectory::Trajectory;
use std::sync::Arc;
use std::time::Duration;

/// The reference's key variable and its fallback.
const DEFAULT_KEY_ENV: &str = "DASHSCOPE_API_KEY";
const FALLBACK_KEY_ENV: &str = "OSS_ACCESS_KEY";

/// A stage's judge.
#[derive(Debug, Clone)]
pub struct FfJudge {
    judge: Arc<Judge>,
}

/// What one rescoring did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rescored {
    /// FF answers sent to the judge.
    pub judged: usize,
    /// Of those, answers the judge accepted.
    pub won: usize,
    /// Items the judge could not score (scored 0).
    pub failed: usize,
}

impl FfJudge {
    /// The judge `spec` describes, its key looked up now.
    pub fn new(spec: &JudgeSpec) -> Result<FfJudge, RunError> {
        let mut key = JudgeConfig::lookup(&spec.api_key_env).and_then(ApiKey::new);
        if key.is_none() && spec.api_key_env == DEFAULT_KEY_ENV {
            key = JudgeConfig::lookup(FALLBACK_KEY_ENV).and_then(ApiKey::new);
        }
        let config = JudgeConfig {
            base_url: spec.base_url.clone(),
            model: spec.model.clone(),
            api_key: key,
            bearer: JudgeConfig::bearer_from(JudgeConfig::lookup("OMNIRL_JUDGE_BEARER").as_deref()),
            timeout: Duration::from_secs_f64(spec.timeout_s),
            max_attempts: spec.max_retries.saturating_add(1),
            concurrency: spec.concurrency.max(1) as usize,
            ..JudgeConfig::default()
        };
        let judge = Judge::new(config).map_err(|e| RunError::Config(format!("reward.judge: {e}")))?;
        Ok(FfJudge { judge: Arc::new(judge) })
    }

    /// Requests sent so far (attempts included).
    pub fn requests_sent(&self) -> usize {
        self.judge.requests_sent()
    }

    /// Scores the FF answers of `trajectories` (see the module doc).
    pub fn rescore(&self, trajectories: &mut [Trajectory], format_reward: bool) -> Result<Rescored, RunError> {
        let mut picked = Vec::new();
        let mut items = Vec::new();
        for (i, t) in trajectories.iter().enumerate() {
            if let Some(item) = ff_item(t) {
                picked.push(i);
                items.push(item);
            }
        }
        let mut out = Rescored { judged: items.len(), ..Rescored::default() };
        if items.is_empty() {
            return Ok(out);
        }
        let scores = self.judge.judge_all_blocking(items).map_err(|e| RunError::Rollout(format!("judge: {e}")))?;
        for (i, score) in picked.into_iter().zip(scores) {
            let t = &mut trajectories[i];
            let (reward, won) = match score {
                Ok(s) => (s.reward, s.won),
                Err(e) => {
                    eprintln!("warning: judge: {}: {e} (scored 0)", t.spec.question_id);
                    out.failed += 1;
                    (0.0, false)
                }
            };
            out.won += usize::from(won);
            let shaped = if format_reward { 0.1 + 0.9 * reward } else { reward };
            if let Some(last) = t.turns.last_mut() {
                t.episode_reward += shaped - last.outcome.reward;
                last.outcome.reward = shaped;
                last.outcome.won = won;
            }
            t.won = won;
        }
        Ok(out)
    }
}

/// The judge's item for an FF episode that ended with a valid answer.
fn ff_item(t: &Trajectory) -> Option<JudgeItem> {
    if t.spec.qtype != QuestionType::Ff || t.dropped.is_some() {
        return None;
    }
    let last = t.turns.last()?;
    let o = &last.outcome;
    if o.action_type != Some(ActionType::Answer) || !o.is_action_valid || o.error_code.is_some() {
        return None;
    }
    let prediction = super::eval::answer_content(&last.response)?;
    Some(JudgeItem { question: t.spec.question.clone(), ground_truth: t.spec.answer.clone(), prediction })
}
