//! The learners' input rows (docs/reference.md#training-rows, docs/reference.md#data-sft): one
//! row per stored turn, never concatenated.
//!
//! A row is `ids = prompt ++ response` with `prompt_len`, a loss mask over the response (1 up to and
//! including the first end token), and the media of its prompt passed through untouched (`M` is
//! whatever the policy consumes, e.g. the thinker's `MediaInput`). RL rows add the sampler's
//! log-probs, the GRPO group and trajectory ids, the episode reward and the exceed flag; SFT rows
//! are just the target turn.
//!
//! [`RlRow::from_trajectory`] converts the rollout crate's trajectories; media conversion is left
//! to a caller-supplied function because the rollout's media items and the model's tensors belong
//! to different crates. Dropped trajectories (data errors, prefix failures) yield no rows.

use super::{LearnerError, PackedSeq};
use crate::algo::entropy::response_mask;
use rollout::policy::PolicyScores;
use rollout::trajectory::{Trajectory, Turn};

/// One RL training row (one stored turn).
#[derive(Debug, Clone, PartialEq)]
pub struct RlRow<M> {
    /// Prompt followed by response.
    pub ids: Vec<u32>,
    pub prompt_len: usize,
    /// Loss mask over the response tokens.
    pub mask: Vec<bool>,
    /// The sampler's log-prob of each response token (`None`: no IS correction for this row).
    pub sampler_logprobs: Option<Vec<f32>>,
    /// The policy's own log-probs and entropies of the response tokens, taken during the rollout
    /// (used instead of the learner's scoring pass under `algorithm.old_logprobs: rollout`).
    pub rollout_scores: Option<PolicyScores>,
    pub media: M,
    /// GRPO group (prompt) id.
    pub uid: String,
    pub traj_uid: String,
    /// Episode reward (every turn of a trajectory carries it).
    pub reward: f64,
    /// The trajectory hit a step/token/media limit (`exceed_mask`).
    pub exceed: bool,
}

impl<M> RlRow<M> {
    /// A row whose loss mask runs through the first of `end_ids` in the response.
    pub fn new(
        prompt: &[u32],
        response: &[u32],
        end_ids: &[u32],
        media: M,
        uid: impl Into<String>,
        traj_uid: impl Into<String>,
        reward: f64,
    ) -> Self {
        let mut ids = Vec::with_capacity(prompt.len() + response.len());
        ids.extend_from_slice(prompt);
        ids.extend_from_slice(response);
        RlRow {
            ids,
            prompt_len: prompt.len(),
            mask: response_mask(response, end_ids),
            sampler_logprobs: None,
            rollout_scores: None,
            media,
            uid: uid.into(),
            traj_uid: traj_uid.into(),
            reward,
            exceed: false,
        }
    }

    pub fn with_sampler_logprobs(mut self, logprobs: Vec<f32>) -> Self {
        self.sampler_logprobs = Some(logprobs);
        self
    }

    pub fn response(&self) -> &[u32] {
        &self.ids[self.prompt_len.min(self.ids.len())..]
    }

    /// Unmasked response tokens.
    pub fn loss_tokens(&self) -> usize {
        self.mask.iter().filter(|&&m| m).count()
    }

    /// The row as one sequence of a packed forward (scored from the response on).
    pub fn packed_seq(&self) -> PackedSeq<'_, M> {
        PackedSeq { ids: &self.ids, media: &self.media, start: self.prompt_len }
    }

    /// The rows of one trajectory, in turn order; none when it was dropped. `media` converts a
    /// turn's media for the policy. A row's reward is the trajectory's, less `invalid_penalty`
    /// when its turn's action was invalid (the reference's invalid-action penalty at the last
    /// response token: the row's score is the sum of its token rewards;
    /// docs/reference.md#reward-shaping).
    pub fn from_trajectory<E: std::fmt::Display>(
        traj: &Trajectory,
        end_ids: &[u32],
        invalid_penalty: f64,
        mut media: impl FnMut(&Turn) -> Result<M, E>,
    ) -> Result<Vec<RlRow<M>>, LearnerError> {
        if traj.dropped.is_some() {
            return Ok(Vec::new());
        }
        let exceed = traj.exceeded();
        let mut rows = Vec::with_capacity(traj.turns.len());
        for (i, turn) in traj.turns.iter().enumerate() {
            let m = media(turn).map_err(|e| LearnerError::Row {
                row: i,
                message: format!("trajectory {} turn {}: media: {e}", traj.traj_uid, i + 1),
            })?;
            let mut row = RlRow::new(
                &turn.prompt_ids,
                &turn.response_ids,
                end_ids,
                m,
                traj.group_uid.clone(),
                traj.traj_uid.clone(),
                traj.episode_reward - if turn.outcome.is_action_valid { 0.0 } else { invalid_penalty },
            );
            row.exceed = exceed;
            if !turn.logprobs.is_empty() {
                row.sampler_logprobs = Some(turn.logprobs.clone());
            }
            row.rollout_scores = turn.policy_scores.clone();
            rows.push(row);
        }
        Ok(rows)
    }

    /// Checks lengths; `row` is the index used in the message.
    pub(crate) fn check(&self, row: usize) -> Result<(), LearnerError> {
        let bad = |message: String| Err(LearnerError::Row { row, message });
        let n = self.ids.len().saturating_sub(self.prompt_len);
        if self.prompt_len == 0 || n == 0 {
            return bad(format!("needs a non-empty prompt and response (prompt {}, response {n})", self.prompt_len));
        }
        if self.mask.len() != n {
            return bad(format!("loss mask has {} entries for {n} response tokens", self.mask.len()));
        }
        if let Some(lp) = &self.sampler_logprobs
            && lp.len() != n
        {
            return bad(format!("{} sampler log-probs for {n} response tokens", lp.len()));
        }
        if let Some(s) = &self.rollout_scores
            && (s.logprobs.len() != n || s.entropies.len() != n)
        {
            return bad(format!(
                "{} rollout log-probs and {} rollout entropies for {n} response tokens",
                s.logprobs.len(),
                s.entropies.len()
            ));
        }
        if !self.reward.is_finite() {
            return bad(format!("reward {} is not finite", self.reward));
        }
        Ok(())
    }
}

/// One SFT row: a turn's full context and the agent's output (through the end token).
#[derive(Debug, Clone, PartialEq)]
pub struct SftRow<M> {
    pub ids: Vec<u32>,
    pub prompt_len: usize,
    /// Loss mask over the target tokens.
    pub mask: Vec<bool>,
    pub media: M,
}

impl<M> SftRow<M> {
    /// `target` is the assistant turn's tokens; loss runs through the first of `end_ids` in it
    /// (e.g. `<|im_end|>`) and not beyond (the template's trailing newline is context).
    pub fn new(prompt: &[u32], target: &[u32], end_ids: &[u32], media: M) -> Self {
        let mut ids = Vec::with_capacity(prompt.len() + target.len());
        ids.extend_from_slice(prompt);
        ids.extend_from_slice(target);
        SftRow { ids, prompt_len: prompt.len(), mask: response_mask(target, end_ids), media }
    }

    pub fn loss_tokens(&self) -> usize {
        self.mask.iter().filter(|&&m| m).count()
    }

    /// The row as one sequence of a packed forward (scored from the target on).
    pub fn packed_seq(&self) -> PackedSeq<'_, M> {
        PackedSeq { ids: &self.ids, media: &self.media, start: self.prompt_len }
    }

    pub(crate) fn check(&self, row: usize) -> Result<(), LearnerError> {
        let n = self.ids.len().saturating_sub(self.prompt_len);
        if self.prompt_len == 0 || n == 0 || self.mask.len() != n {
            return Err(LearnerError::Row {
                row,
                message: format!(
                    "needs a non-empty prompt and target with one mask entry per target token (prompt {}, target {n}, mask {})",
                    self.prompt_len,
                    self.mask.len()
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_masks() {
        let r = RlRow::new(&[1, 2], &[3, 9, 0], &[9], (), "g", "t", 1.0);
        assert_eq!(r.ids, vec![1, 2, 3, 9, 0]);
        assert_eq!(r.response(), &[3, 9, 0]);
        assert_eq!(r.mask, vec![true, true, false]);
        assert_eq!(r.loss_tokens(), 2);
        assert!(r.check(0).is_ok());
        assert!(r.clone().with_sampler_logprobs(vec![0.0]).check(3).is_err());
        assert!(RlRow::new(&[], &[3], &[9], (), "g", "t", 1.0).check(0).is_err());
        let s = SftRow::new(&[1], &[4, 5, 9, 10], &[9], ());
        assert_eq!(s.mask, vec![true, true, true, false]);
        assert!(s.check(0).is_ok());
    }

    fn turn(valid: bool) -> Turn {
        let outcome = rollout::episode::StepOutcome {
            step: 1,
            action_type: None,
            error_code: None,
            error_message: None,
            is_action_valid: valid,
            done: false,
            reward: 0.0,
            won: false,
            stored: true,
            data_error: false,
            confidence: None,
            delivered: Default::default(),
            n_raw_media: 0,
            prompt_tokens: None,
        };
        Turn {
            prompt_ids: vec![1, 2],
            spans: Vec::new(),
            response_ids: vec![3, 9],
            logprobs: vec![-0.5, -0.1],
            entropies: None,
            policy_scores: None,
            media: Vec::new(),
            response: String::new(),
            messages: None,
            cur_step: 0,
            outcome,
        }
    }

    #[test]
    fn invalid_turns_carry_the_invalid_action_penalty() {
        let spec = rollout::episode::EpisodeSpec {
            question_id: "q".into(),
            video: "v.mp4".into(),
            question_type: "MCQ".into(),
            qtype: rewards::QuestionType::Mcq,
            question: "?".into(),
            options: Vec::new(),
            answer: "A".into(),
            meta: rollout::episode::VideoMeta { duration: 10.0, fps: None, has_audio: false },
            data_source: None,
            annotations: None,
        };
        let traj = Trajectory {
            group_uid: "g".into(),
            traj_uid: "t".into(),
            sample_index: 0,
            copy: 0,
            spec: std::sync::Arc::new(spec),
            max_steps: 4,
            physical_steps: 2,
            retries: 0,
            turns: vec![turn(false), turn(true)],
            episode_reward: 1.0,
            won: true,
            done: true,
            dropped: None,
        };
        let rows = |penalty| {
            let rows = RlRow::from_trajectory(&traj, &[9], penalty, |_| Ok::<(), String>(())).unwrap();
            rows.iter().map(|r| r.reward).collect::<Vec<_>>()
        };
        assert_eq!(rows(0.0), [1.0, 1.0]);
        assert_eq!(rows(0.25), [0.75, 1.0]);
    }
}
