//! Token-exact trajectories and their exports.
//!
//! A [`Turn`] is one stored step: the exact prompt ids (with where each message sits in
//! them), the sampled response ids and the sampler's log-probs (and entropies), the media
//! inputs of the prompt, and the environment's verdict. A [`Trajectory`] holds the stored
//! turns of one episode (retry semantics: invalid non-terminal turns are not stored,
//! docs/reference.md#retry-mode), its GRPO group and trajectory ids, and the episode reward (the
//! sum of stored step rewards = the answer reward). [`Trajectory::verify_prefix`] checks that
//! each stored turn's prompt extends the previous stored one (`episode::tokens::check_extends`).
//!
//! Exports:
//! * [`Trajectory::dump_lines`]: the rollout dump, one JSON object per stored turn with the
//!   reference's row metadata (docs/reference.md#training-rows: `uid`/`traj_uid`, `cur_step`,
//!   `action_type` ("ERROR" for errored steps), `error_code` ("OK"), `rewards`, `n_frames`,
//!   clip/audio ranges) plus episode reward and length, token counts, mean log-prob and
//!   entropies;
//! * [`Trajectory::sft_lines`]: the SFT format of docs/reference.md#data-sft, one line per kept
//!   turn, with the reference export's filter (won trajectories only; turns with `FFMPEG_*`,
//!   `STEP_LIMIT_REACHED` or `TOKEN_LIMIT_EXCEEDED` dropped) as the default.
//!
//! SFT media parts name files under `media_dir/<traj_uid>/` with the reference's file names,
//! and carry `source_video`, `start` and `end` so the files can be produced from the video
//! (the rollout never writes media). Left out: the tensors themselves (the trainer builds rows
//! from the turns in memory).

use crate::data::{PartKind, Role};
use crate::episode::tokens::{PrefixError, PromptView, SegmentSpan, check_extends};
use crate::episode::{EpisodeSpec, ErrorCode, MediaItem, Message, Part, StepOutcome};
use crate::policy::PolicyScores;
use serde_json::{Map, Value, json};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One stored step.
#[derive(Debug, Clone)]
pub struct Turn {
    pub prompt_ids: Vec<u32>,
    pub spans: Vec<SegmentSpan>,
    pub response_ids: Vec<u32>,
    pub logprobs: Vec<f32>,
    pub entropies: Option<Vec<f32>>,
    /// The policy's own scores of the response ids, when the sampling asked for them.
    pub policy_scores: Option<PolicyScores>,
    /// The raw media of the prompt.
    pub media: Vec<Arc<MediaItem>>,
    /// The decoded response.
    pub response: String,
    /// The context as messages (for the SFT export), when recorded.
    pub messages: Option<Vec<Message>>,
    /// Physical steps taken before this one (the reference's `cur_step`).
    pub cur_step: u32,
    pub outcome: StepOutcome,
}

impl Turn {
    fn view(&self) -> PromptView<'_> {
        PromptView { step: self.cur_step + 1, ids: &self.prompt_ids, spans: &self.spans, response: &self.response_ids }
    }

    /// Mean of the per-token entropies (TAURA's turn entropy), when recorded.
    pub fn mean_entropy(&self) -> Option<f64> {
        let e = self.entropies.as_ref().filter(|e| !e.is_empty())?;
        Some(e.iter().map(|&x| f64::from(x)).sum::<f64>() / e.len() as f64)
    }
}

/// Why a trajectory must not be trained on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DropReason {
    #[error("the sample's ground truth cannot be scored")]
    DataError,
    #[error("prefix check failed: {0}")]
    Prefix(PrefixError),
    #[error("token encoding failed: {0}")]
    Encoding(String),
    #[error("the policy failed: {0}")]
    Policy(String),
}

/// One episode's stored turns.
#[derive(Debug, Clone)]
pub struct Trajectory {
    /// GRPO group id (one per prompt; the `n` copies share it).
    pub group_uid: String,
    pub traj_uid: String,
    pub sample_index: usize,
    pub copy: usize,
    pub spec: Arc<EpisodeSpec>,
    pub max_steps: u32,
    /// Physical steps taken (dropped retries included).
    pub physical_steps: u32,
    pub retries: u32,
    pub turns: Vec<Turn>,
    pub episode_reward: f64,
    /// `won` of the last stored turn.
    pub won: bool,
    pub done: bool,
    pub dropped: Option<DropReason>,
}

/// Codes that mark a trajectory as exceeding a limit (the reference's `exceed_mask`).
pub const EXCEED_CODES: [ErrorCode; 5] = [
    ErrorCode::StepLimitReached,
    ErrorCode::TokenLimitExceeded,
    ErrorCode::FfmpegAudioFail,
    ErrorCode::FfmpegFrameFail,
    ErrorCode::FfmpegClipFail,
];

impl Trajectory {
    pub fn new(group_uid: String, traj_uid: String, sample_index: usize, copy: usize, spec: Arc<EpisodeSpec>) -> Self {
        Trajectory {
            group_uid,
            traj_uid,
            sample_index,
            copy,
            spec,
            max_steps: 0,
            physical_steps: 0,
            retries: 0,
            turns: Vec::new(),
            episode_reward: 0.0,
            won: false,
            done: false,
            dropped: None,
        }
    }

    /// Adds a stored turn, checking that its prompt extends the previous stored one.
    /// `assistant` builds the assistant segment of a response (`TokenContext::assistant_segment`).
    pub fn push(&mut self, turn: Turn, assistant: impl Fn(&[u32]) -> Vec<u32>) -> Result<(), PrefixError> {
        if let Some(prev) = self.turns.last() {
            check_extends(&prev.view(), &turn.view(), assistant)?;
        }
        self.episode_reward += turn.outcome.reward;
        self.won = turn.outcome.won;
        self.turns.push(turn);
        Ok(())
    }

    /// Re-checks every consecutive pair of stored turns.
    pub fn verify_prefix(&self, assistant: impl Fn(&[u32]) -> Vec<u32>) -> Result<(), PrefixError> {
        self.turns.windows(2).try_for_each(|w| check_extends(&w[0].view(), &w[1].view(), &assistant))
    }

    /// Whether a stored step hit a limit (`exceed_mask`).
    pub fn exceeded(&self) -> bool {
        self.turns.iter().any(|t| t.outcome.error_code.is_some_and(|c| EXCEED_CODES.contains(&c)))
    }

    /// The rollout dump: one object per stored turn.
    pub fn dump_lines(&self) -> Vec<Value> {
        let exceed = self.exceeded();
        self.turns
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let o = &t.outcome;
                let d = &o.delivered;
                let (clip_start, clip_end) = split(d.clip_or_frames_range());
                let (audio_start, audio_end) = split(d.audio_range);
                let logprob_mean = (!t.logprobs.is_empty())
                    .then(|| t.logprobs.iter().map(|&x| f64::from(x)).sum::<f64>() / t.logprobs.len() as f64);
                json!({
                    "uid": self.group_uid,
                    "traj_uid": self.traj_uid,
                    "sample_index": self.sample_index,
                    "question_id": self.spec.question_id,
                    "question_type": self.spec.question_type,
                    "data_source": self.spec.data_source,
                    "turn": i + 1,
                    "cur_step": t.cur_step,
                    "max_steps": self.max_steps,
                    "action_type": o.action_name(),
                    "is_action_valid": o.is_action_valid,
                    "error_code": o.error_name(),
                    "error_message": o.error_message,
                    "done": o.done,
                    "rewards": o.reward,
                    "won": o.won,
                    "episode_reward": self.episode_reward,
                    "episode_length": self.turns.len(),
                    "retries": self.retries,
                    "exceed": exceed,
                    "dropped": self.dropped.as_ref().map(ToString::to_string),
                    "prompt_tokens": t.prompt_ids.len(),
                    "response_tokens": t.response_ids.len(),
                    "logprob_mean": logprob_mean,
                    "entropy_mean": t.mean_entropy(),
                    "entropies": t.entropies,
                    "confidence": o.confidence,
                    "n_frames": d.n_frames,
                    "clip_start": clip_start,
                    "clip_end": clip_end,
                    "clip_dur": span_len(d.clip_or_frames_range()),
                    "audio_start": audio_start,
                    "audio_end": audio_end,
                    "audio_dur": span_len(d.audio_range),
                    "response": t.response,
                })
            })
            .collect()
    }

    /// SFT lines (docs/reference.md#data-sft) of this trajectory under `filter`; empty when it is
    /// filtered out or its turns were recorded without messages.
    pub fn sft_lines(&self, filter: &SftFilter, media_dir: &Path, mode: &str) -> Vec<Value> {
        if self.dropped.is_some() || (filter.won_only && !self.won) {
            return Vec::new();
        }
        let spec = &self.spec;
        let dir = media_dir.join(&self.traj_uid);
        let mut out = Vec::new();
        let mut total_tokens = 0usize;
        for (i, t) in self.turns.iter().enumerate() {
            total_tokens += t.response_ids.len();
            let Some(messages) = &t.messages else { return Vec::new() };
            let o = &t.outcome;
            if o.error_code.is_some_and(|c| filter.drop_codes.contains(&c)) {
                continue;
            }
            let raw_input: Vec<Value> = messages.iter().map(|m| message_json(m, &dir, spec)).collect();
            out.push(json!({
                "question_id": spec.question_id,
                "traj_id": self.traj_uid,
                "step": i + 1,
                "raw_input": raw_input,
                "output": t.response,
                "step_reward": o.reward,
                "done": o.done,
                "extra_info": {
                    "video": spec.video.display().to_string(),
                    "fps": spec.meta.fps,
                    "duration_seconds": spec.meta.duration,
                    "has_audio": spec.meta.has_audio,
                    "question_type": spec.question_type,
                    "question": spec.question,
                    "answer": spec.answer,
                    "options": spec.options,
                    "mode": mode,
                    "max_steps": self.max_steps,
                    "won": o.won,
                    "is_action_valid": o.is_action_valid,
                    "reward": o.reward,
                    "token_stats": {
                        "final_history_tokens": o.prompt_tokens,
                        "total_assistant_tokens": total_tokens,
                        "avg_assistant_tokens": total_tokens as f64 / (i + 1) as f64,
                    },
                },
                "episode_reward": self.episode_reward,
            }));
        }
        out
    }
}

/// Writes the rollout dump of `trajectories` as JSONL (one line per stored turn).
pub fn write_dump<'a>(
    out: &mut impl Write,
    trajectories: impl IntoIterator<Item = &'a Trajectory>,
) -> io::Result<usize> {
    write_lines(out, trajectories.into_iter().flat_map(Trajectory::dump_lines))
}

/// Writes the SFT lines (docs/reference.md#data-sft) of `trajectories` as JSONL; see
/// [`Trajectory::sft_lines`].
pub fn write_sft<'a>(
    out: &mut impl Write,
    trajectories: impl IntoIterator<Item = &'a Trajectory>,
    filter: &SftFilter,
    media_dir: &Path,
    mode: &str,
) -> io::Result<usize> {
    write_lines(out, trajectories.into_iter().flat_map(|t| t.sft_lines(filter, media_dir, mode)))
}

fn write_lines(out: &mut impl Write, lines: impl Iterator<Item = Value>) -> io::Result<usize> {
    let mut n = 0;
    for line in lines {
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}

/// Which turns the SFT export keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct SftFilter {
    pub won_only: bool,
    pub drop_codes: Vec<ErrorCode>,
}

impl Default for SftFilter {
    /// The reference export (`filter_and_export_sft.py`).
    fn default() -> Self {
        let drop_codes = [
            ErrorCode::FfmpegFrameFail,
            ErrorCode::FfmpegAudioFail,
            ErrorCode::FfmpegClipFail,
            ErrorCode::StepLimitReached,
            ErrorCode::TokenLimitExceeded,
        ];
        SftFilter { won_only: true, drop_codes: drop_codes.to_vec() }
    }
}

fn split(range: Option<(f64, f64)>) -> (Option<f64>, Option<f64>) {
    (range.map(|r| r.0), range.map(|r| r.1))
}

fn span_len(range: Option<(f64, f64)>) -> Option<f64> {
    range.map(|(s, e)| e - s)
}

/// A message as `raw_input` JSON: `{role, content: [{type, text|image|audio|video}]}`.
fn message_json(m: &Message, dir: &Path, spec: &EpisodeSpec) -> Value {
    let content: Vec<Value> = m
        .parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => json!({"type": "text", "text": t}),
            Part::Media(media) => {
                let kind = media.kind.as_str();
                let mut part = Map::new();
                part.insert("type".into(), kind.into());
                let path: PathBuf = dir.join(&media.name);
                part.insert(kind.into(), path.display().to_string().into());
                part.insert("source_video".into(), spec.video.display().to_string().into());
                if let Some((s, e)) = name_range(&media.name, media.kind) {
                    part.insert("start".into(), s.into());
                    part.insert("end".into(), e.into());
                }
                Value::Object(part)
            }
        })
        .collect();
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    json!({"role": role, "content": content})
}

/// The time range encoded in a media file name (`STEP_2_audio_8.000_16.000.wav`; a frame's
/// single time is its start and end).
fn name_range(name: &str, kind: PartKind) -> Option<(f64, f64)> {
    let stem = name.rsplit_once('.')?.0;
    let mut fields = stem.rsplit('_');
    match kind {
        PartKind::Image => {
            let t = fields.next()?.parse().ok()?;
            Some((t, t))
        }
        _ => {
            let e = fields.next()?.parse().ok()?;
            let s = fields.next()?.parse().ok()?;
            Some((s, e))
        }
    }
}
