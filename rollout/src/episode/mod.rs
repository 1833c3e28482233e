//! The Observation-Thought-Action episode (docs/reference.md#agent-loop): the state machine that
//! turns model text into actions, runs them on a [`MediaEnv`], consolidates memory, enforces the
//! budgets and keeps a token-exact context for training.
//!
//! One step, in the reference's exact order:
//! 1. append the assistant message (always, even when invalid);
//! 2. a finished episode answers `ENV_ALREADY_DONE` (terminal; the step is not counted);
//! 3. count the step; 4. parse (`action.rs`); 5. `step > max_steps` or 6. `step == max_steps`
//!    and not an answer -> `STEP_LIMIT_REACHED` (terminal, the action is not executed);
//! 7. an answer at step 1 -> `EARLY_ANSWER`; 8. range checks (`validate.rs`) and extraction,
//!    or scoring of the answer (`rewards`);
//! 9. finalize: consolidate media (keep 1, or 0 after an invalid action with
//!    `delete_media_on_error`), refresh the notice, re-encode the changed messages, run the
//!    prompt-length guard.
//!
//! Failures (`_fail`, docs/reference.md#invalid-actions) append `[ERROR] <marker>: <message>` as
//! a new user message, plus
//! the `[SYSTEM]` retry sentence when the episode goes on; the reward is 0 and the step counts.
//! A failure terminates when its code says so, at the last step, or always with
//! `terminate_on_invalid`. With `retry_on_format_error`, an invalid turn that does not end the
//! episode is not stored for training ([`StepOutcome::stored`]); its messages stay in the
//! history. The episode reward is the answer reward (shaping of docs/reference.md#reward-shaping
//! optional, off).
//!
//! Media extraction can run elsewhere: [`Episode::begin`] does everything up to the media
//! request, [`extract`] runs it (on any thread), [`Episode::complete`] finishes the step.
//! [`Episode::step`] does all three.
//!
//! Decisions on the reference's known bugs (docs/reference.md#known-bugs), each tested in
//! `rollout/tests/episode_*.rs`:
//! * the prompt-length guard runs only when the episode goes on: a prompt that will never be
//!   generated from cannot overflow, so a correct final answer keeps its reward (the reference
//!   zeroes it when the closing history is long; docs/reference.md#token-limit-after-answer);
//! * `GT_JSON_PARSE` is a data error: terminal, counted valid, reward 0, and
//!   [`StepOutcome::data_error`] set so the driver drops the trajectory
//!   (docs/reference.md#gt-parse-error);
//! * fps 0 or unknown skips the `CLIP_TOO_SHORT` rule (`validate.rs`;
//!   docs/reference.md#clip-too-short-fps);
//! * Python JSON quirks: see `action.rs` and `pyjson.rs` (docs/reference.md#json-quirks);
//! * number formatting: `format.rs`; META for an unknown or non-finite value prints `unknown`
//!   (the reference crashes on infinities; docs/reference.md#python-formatting);
//! * modality masking: see `settings.rs` (`hide_unavailable_audio`;
//!   docs/reference.md#hide-unavailable-audio);
//! * dropped retries: kept (`retry_on_format_error`; docs/reference.md#dropped-retries). A
//!   dropped retry leaves no training row, so nothing pushes the policy away from it; with retry
//!   off every turn is stored, and `Shaping::invalid_action_penalty` lowers the reward of the
//!   rows of invalid turns (applied by the trainer);
//! * the default system prompt is our own text (`recipes/prompts/omniagent.txt`); the
//!   reference's exact text (builder or SFT variant) can be supplied as a template file
//!   (docs/reference.md#system-prompt-text);
//! * TITO compaction is not ported: the policy receives expanded ids and media inputs
//!   (docs/reference.md#tito);
//! * no media files are written: part names are labels only (docs/reference.md#frame-filenames);
//! * answer scoring (docs/reference.md#mcq-ground-truth, docs/reference.md#number-regex,
//!   docs/reference.md#iou-semantics) is the `rewards` crate's;
//! * FF answers score 0 inside the episode (no judge, as the reference's RL reward).
//!
//! Nothing here panics on any input: arbitrary response strings are fuzzed in
//! `rollout/tests/episode_fuzz.rs`.
//!
//! Left out: the reference's per-step `info` dict (the outcome carries what training and logs
//! read), temp directories and media files, and the reasoning judge and random resources
//! (off in every shipped script; see `settings.rs`).

pub mod action;
pub mod budget;
mod deliver;
pub mod format;
pub mod media;
pub mod memory;
pub mod settings;
pub mod spec;
pub mod tokens;
pub mod validate;
pub mod video_env;

pub use rewards::pyjson;

pub use action::{Action, ActionType, Num, ParsedAction, parse_action};
pub use media::extract;
pub use media::{MediaEnv, MediaFailure, MediaItem, Observation, SyntheticMedia};
pub use memory::{MediaPart, Message, Part, to_chat};
pub use settings::{EpisodeLimits, EpisodeSettings, LengthBonus, Shaping};
pub use spec::{Delivered, EpisodeSpec, Response, StepOutcome};
pub use tokens::{ByteTokenizer, EncodeError, PromptEncoder, SegmentSpan, TokenContext};
pub use validate::{ErrorCode, Failure, MediaRequest, VideoMeta};
pub use video_env::{VideoEnv, media_file_item};

use crate::chat;
use crate::data::Role;
use crate::prompt::{PromptTemplate, PromptVars, question::question_text};
use std::sync::Arc;
use validate::Termination;

/// The sentence added to an `[ERROR]` when the episode goes on.
pub const RETRY_HINT: &str = "\n[SYSTEM] The previous action was invalid. Analyze the error diagnostic above, resolve the \
conflict, and issue a corrected command to avoid wasting steps.";

/// A step waiting for its media.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingMedia {
    pub request: MediaRequest,
    /// Physical step the request belongs to.
    pub step: u32,
    confidence: Option<f64>,
}

/// What [`Episode::begin`] leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// The step finished without media (invalid action, answer, step limit).
    Done(StepOutcome),
    /// Extract this, then call [`Episode::complete`].
    Media(PendingMedia),
}

/// How a step ends, before finalization.
struct Ending {
    reward: f64,
    done: bool,
    won: bool,
    valid: bool,
    failure: Option<Failure>,
    action_type: Option<ActionType>,
    confidence: Option<f64>,
    delivered: Delivered,
}

/// One episode: a video, a question, a history and a budget.
pub struct Episode {
    spec: Arc<EpisodeSpec>,
    settings: Arc<EpisodeSettings>,
    max_steps: u32,
    step: u32,
    done: bool,
    retries: u32,
    data_error: bool,
    history: Vec<Message>,
    encoder: Option<Arc<dyn PromptEncoder>>,
    tokens: Option<TokenContext>,
    broken: Option<String>,
    awaiting: Option<PendingMedia>,
    response_tokens: usize,
}

impl std::fmt::Debug for Episode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Episode")
            .field("question_id", &self.spec.question_id)
            .field("step", &self.step)
            .field("max_steps", &self.max_steps)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Episode {
    /// Resets an episode: system prompt, first user message and the step-0 notice. With an
    /// encoder the token context is built too (an encoding failure is reported by
    /// [`Episode::broken`], not a panic).
    pub fn new(
        spec: Arc<EpisodeSpec>,
        settings: Arc<EpisodeSettings>,
        template: &PromptTemplate,
        encoder: Option<Arc<dyn PromptEncoder>>,
    ) -> Episode {
        let limits = &settings.limits;
        let max_steps = budget::effective_max_steps(spec.meta.duration, limits);
        let vars = PromptVars {
            max_frames: limits.max_frames,
            max_audio_seconds: limits.max_audio_seconds,
            max_clip_seconds: limits.max_clip_seconds,
            min_audio_seconds: limits.min_audio_seconds,
            min_clip_frames: limits.min_clip_frames,
            max_steps,
            audio_available: spec.meta.has_audio || !settings.hide_unavailable_audio,
        };
        let first = question_text(spec.qtype, &spec.question, &spec.options, &spec.meta);
        let mut history = vec![Message::text(Role::System, template.render(&vars)), Message::text(Role::User, first)];
        memory::refresh_notice(&mut history, &budget::notice_text(0, max_steps, false));
        let mut ep = Episode {
            spec,
            settings,
            max_steps,
            step: 0,
            done: false,
            retries: 0,
            data_error: false,
            history,
            encoder,
            tokens: None,
            broken: None,
            awaiting: None,
            response_tokens: 0,
        };
        if let Some(enc) = ep.encoder.clone() {
            match TokenContext::new(enc.as_ref(), &ep.chat_history()) {
                Ok(ctx) => ep.tokens = Some(ctx),
                Err(e) => ep.broken = Some(e.to_string()),
            }
        }
        ep
    }

    pub fn spec(&self) -> &Arc<EpisodeSpec> {
        &self.spec
    }

    pub fn settings(&self) -> &Arc<EpisodeSettings> {
        &self.settings
    }

    /// The effective turn budget.
    pub fn max_steps(&self) -> u32 {
        self.max_steps
    }

    /// Physical steps taken (dropped retries included).
    pub fn steps_taken(&self) -> u32 {
        self.step
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Failed steps so far (the reference's `current_turn_retries`).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The ground truth could not be scored (a data error, see the module docs).
    pub fn data_error(&self) -> bool {
        self.data_error
    }

    /// Why the token context is unusable, if it is.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    pub fn history(&self) -> &[Message] {
        &self.history
    }

    /// The history in the chat template's form.
    pub fn chat_history(&self) -> Vec<chat::Message> {
        self.history.iter().map(to_chat).collect()
    }

    /// Media messages not yet consolidated.
    pub fn raw_media_messages(&self) -> usize {
        memory::raw_media_messages(&self.history)
    }

    /// The media parts of the next prompt.
    pub fn raw_media(&self) -> Vec<Arc<MediaItem>> {
        memory::raw_media(&self.history)
    }

    /// The next prompt's token ids and segment spans (`None` without an encoder).
    pub fn prompt(&self) -> Option<(Vec<u32>, Vec<SegmentSpan>)> {
        self.tokens.as_ref().map(TokenContext::prompt)
    }

    /// Tokens of the next prompt (`None` without an encoder).
    pub fn prompt_len(&self) -> Option<usize> {
        self.tokens.as_ref().map(TokenContext::prompt_len)
    }

    /// The token context (for the prefix check's assistant segments).
    pub fn tokens(&self) -> Option<&TokenContext> {
        self.tokens.as_ref()
    }

    /// Parses and validates a response; stops before media extraction.
    pub fn begin(&mut self, response: Response) -> Begin {
        if let Some(pending) = self.awaiting.take() {
            // A caller that never completed its media: fail that step before taking this one.
            self.complete(pending, Err(MediaFailure::new("step abandoned before its media arrived")));
        }
        let step_in_progress = self.step.saturating_add(1);
        let ids = match (&response.ids, &self.encoder) {
            (Some(ids), _) => Some(ids.clone()),
            (None, Some(enc)) => match enc.encode_text(&response.text) {
                Ok(ids) => Some(ids),
                Err(e) => {
                    self.broken.get_or_insert(e.to_string());
                    None
                }
            },
            (None, None) => None,
        };
        self.response_tokens += ids.as_ref().map_or(0, Vec::len);
        self.history.push(Message::text(Role::Assistant, response.text.clone()));
        if let (Some(ctx), Some(ids)) = (self.tokens.as_mut(), ids.as_ref()) {
            ctx.push_assistant(ids, step_in_progress);
        }
        if self.done {
            return Begin::Done(self.fail(Failure::new(ErrorCode::EnvAlreadyDone, None), None, None));
        }
        self.step = step_in_progress;
        if response.not_a_string {
            return Begin::Done(self.fail(Failure::parse(ErrorCode::InvalidJson, "not a string"), None, None));
        }
        let parsed = match parse_action(&response.text, self.settings.strict_confidence) {
            Ok(p) => p,
            Err(e) => return Begin::Done(self.fail(Failure::parse(e.code, &e.detail), None, None)),
        };
        let atype = parsed.action.action_type();
        let conf = parsed.confidence;
        if self.step > self.max_steps || (self.step == self.max_steps && atype != ActionType::Answer) {
            return Begin::Done(self.fail(Failure::new(ErrorCode::StepLimitReached, None), Some(atype), conf));
        }
        if atype == ActionType::Answer && self.step == 1 {
            let f = Failure::new(ErrorCode::EarlyAnswer, Some("Must gather evidence before answering".into()));
            return Begin::Done(self.fail(f, Some(atype), conf));
        }
        if let Action::Answer { content } = &parsed.action {
            return Begin::Done(self.answer(content, conf));
        }
        match validate::check_media_action(&parsed.action, &self.spec.meta, &self.settings) {
            Ok(request) => {
                let pending = PendingMedia { request, step: self.step, confidence: conf };
                self.awaiting = Some(pending.clone());
                Begin::Media(pending)
            }
            Err(f) => Begin::Done(self.fail(f, Some(atype), conf)),
        }
    }

    /// Finishes a step with the result of its media request.
    pub fn complete(&mut self, pending: PendingMedia, result: Result<Observation, MediaFailure>) -> StepOutcome {
        if self.awaiting.as_ref().is_some_and(|a| a.step == pending.step) {
            self.awaiting = None;
        }
        let conf = pending.confidence;
        let atype = Some(pending.request.action_type());
        let (message, delivered) = match self.deliver(&pending.request, result) {
            Ok(done) => done,
            Err(f) => return self.fail(f, atype, conf),
        };
        self.history.push(message);
        self.finalize(Ending {
            reward: 0.0,
            done: false,
            won: false,
            valid: true,
            failure: None,
            action_type: atype,
            confidence: conf,
            delivered,
        })
    }

    /// One whole step: [`begin`](Self::begin), extraction on `env`, [`complete`](Self::complete).
    pub fn step(&mut self, response: Response, env: &dyn MediaEnv) -> StepOutcome {
        match self.begin(response) {
            Begin::Done(outcome) => outcome,
            Begin::Media(pending) => {
                let result = extract(&pending.request, env);
                self.complete(pending, result)
            }
        }
    }

    fn answer(&mut self, content: &str, confidence: Option<f64>) -> StepOutcome {
        let atype = Some(ActionType::Answer);
        let score = match rewards::score(self.spec.qtype, content, &self.spec.answer) {
            Ok(score) => score,
            Err(e) => {
                let code = ErrorCode::from_name(e.code()).unwrap_or(ErrorCode::UnknownQtype);
                self.data_error |= code == ErrorCode::GtJsonParse;
                return self.fail(Failure::new(code, Some(e.detail().to_string())), atype, confidence);
            }
        };
        let mut reward = score.reward;
        let shaping = &self.settings.shaping;
        if shaping.format_reward && !score.rejected {
            reward = 0.1 + 0.9 * reward;
        }
        if let Some(bonus) = shaping.length_bonus.as_ref().filter(|_| self.settings.is_train && score.won) {
            let avg = self.response_tokens as f64 / f64::from(self.step.max(1));
            reward += bonus.max * (-bonus.beta * (avg + 1.0).max(100.0)).exp();
        }
        let text = if score.won { "CORRECT ANSWER" } else { "INCORRECT ANSWER" };
        self.history.push(Message::text(Role::User, text));
        self.finalize(Ending {
            reward,
            done: true,
            won: score.won,
            valid: true,
            failure: None,
            action_type: atype,
            confidence,
            delivered: Delivered::default(),
        })
    }

    /// `_fail`: the `[ERROR]` message, then finalization.
    fn fail(&mut self, failure: Failure, action_type: Option<ActionType>, confidence: Option<f64>) -> StepOutcome {
        self.retries += 1;
        let terminate = match failure.code.termination() {
            Termination::Always => true,
            Termination::Never => false,
            Termination::Default => self.step >= self.max_steps || self.settings.terminate_on_invalid,
        };
        let mut text = failure.error_text();
        if !terminate {
            text.push_str(RETRY_HINT);
        }
        self.history.push(Message::text(Role::User, text));
        let valid = failure.code.is_valid_action();
        self.finalize(Ending {
            reward: 0.0,
            done: terminate,
            won: false,
            valid,
            failure: Some(failure),
            action_type,
            confidence,
            delivered: Delivered::default(),
        })
    }

    /// `_finalize`: consolidation, notice, tokens, prompt-length guard.
    fn finalize(&mut self, mut end: Ending) -> StepOutcome {
        let already_done = self.done;
        let keep = if self.settings.delete_media_on_error && !end.valid { 0 } else { 1 };
        let mut dirty = memory::consolidate(&mut self.history, keep);
        dirty.extend(memory::refresh_notice(
            &mut self.history,
            &budget::notice_text(self.step, self.max_steps, end.done),
        ));
        self.sync_tokens(&dirty);
        let limits = &self.settings.limits;
        let limit = i64::from(limits.max_prompt_tokens) - i64::from(limits.prompt_tolerance);
        if let Some(count) = self.prompt_len().filter(|&n| !end.done && n as i64 > limit) {
            let msg = format!("Prompt length {count} > {}", limits.max_prompt_tokens);
            let text = format!("[ERROR] TOKEN_LIMIT_EXCEEDED: {msg}");
            match self.history.last_mut().filter(|m| m.role == Role::User) {
                Some(last) => last.parts.push(Part::Text(text)),
                None => self.history.push(Message::text(Role::User, text)),
            }
            end.reward = 0.0;
            end.done = true;
            end.won = false;
            end.failure =
                Some(Failure { code: ErrorCode::TokenLimitExceeded, marker: "TOKEN_LIMIT_EXCEEDED", message: msg });
            let mut dirty =
                memory::refresh_notice(&mut self.history, &budget::notice_text(self.step, self.max_steps, true));
            dirty.push(self.history.len() - 1);
            self.sync_tokens(&dirty);
        }
        if end.done {
            self.done = true;
        }
        let (error_code, error_message) = match end.failure {
            Some(f) => (Some(f.code), Some(f.message)),
            None => (None, None),
        };
        let dropped_retry = self.settings.retry_on_format_error && !end.valid && !end.done;
        let stored = !already_done && !dropped_retry;
        StepOutcome {
            step: self.step,
            action_type: end.action_type,
            error_code,
            error_message,
            is_action_valid: end.valid,
            done: end.done,
            reward: end.reward,
            won: end.won,
            stored,
            data_error: self.data_error,
            confidence: end.confidence,
            delivered: end.delivered,
            n_raw_media: self.raw_media_messages(),
            prompt_tokens: self.prompt_len(),
        }
    }

    fn sync_tokens(&mut self, dirty: &[usize]) {
        let (Some(enc), Some(_)) = (self.encoder.clone(), self.tokens.as_ref()) else { return };
        let history = self.chat_history();
        let result = self.tokens.as_mut().map(|ctx| ctx.sync(enc.as_ref(), &history, dirty, self.step));
        if let Some(Err(e)) = result {
            self.broken.get_or_insert(e.to_string());
            self.tokens = None;
        }
    }
}
