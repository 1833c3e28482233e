//! The policy interface: given a batch of contexts (token ids plus the media inputs of the
//! prompt), return sampled token ids with their log-probs (and per-token entropies when
//! asked). The rollout crate knows only this trait; the trainer implements it with the
//! Qwen2.5-Omni thinker.
//!
//! Two policies live here, for tests and SFT data synthesis:
//! * [`ScriptedPolicy`] replays given responses (per sample, turn by turn) or asks a closure;
//! * [`ExpertPolicy`] is a rule-based expert that reads the ground truth: on samples with an
//!   annotated timeline it follows [`crate::expert::Timeline`] (look where the plan says,
//!   describe it, answer); otherwise it scans the video with frames, listens (or watches a clip
//!   when the video is silent), then answers with the ground truth, inside every limit.
//!
//! Both return log-prob 0 (probability 1) and entropy 0 for every token, encode their text with
//! the episode's [`PromptEncoder`] so trajectories stay token-exact, and also return the text
//! so nothing is decoded.
//!
//! Left out: sampling itself (temperature, top-p, top-k are the model policy's; [`Sampling`]
//! carries them).

use crate::episode::format::fixed2;
use crate::episode::{EpisodeSpec, MediaItem, Message, PromptEncoder};
use rewards::QuestionType;
use serde_json::json;
use std::sync::Arc;

/// How to sample (the model policy's business; scripted policies ignore it).
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub temperature: f64,
    pub top_p: f64,
    /// `None`: no top-k filtering.
    pub top_k: Option<u32>,
    pub max_new_tokens: u32,
    /// Return per-token entropies of the sampling distribution.
    pub entropies: bool,
    /// Return the policy's own scores of each sampled token ([`PolicyScores`]), so the learner
    /// can skip its scoring pass (`algorithm.old_logprobs: rollout`).
    pub policy_scores: bool,
    pub seed: u64,
}

impl Sampling {
    /// Training rollouts (docs/reference.md#generation): temperature 1, no top-p/top-k, 4096 tokens.
    pub fn train() -> Sampling {
        Sampling {
            temperature: 1.0,
            top_p: 1.0,
            top_k: None,
            max_new_tokens: 4096,
            entropies: true,
            policy_scores: false,
            seed: 42,
        }
    }

    /// Validation and evaluation: temperature 1, top-k 20, top-p 0.95.
    pub fn eval() -> Sampling {
        Sampling { top_p: 0.95, top_k: Some(20), entropies: false, ..Sampling::train() }
    }
}

/// Which episode a context belongs to, and what it is about (scripted policies read it; a
/// model policy needs only the ids and media).
#[derive(Debug, Clone, Copy)]
pub struct ContextInfo<'a> {
    /// Index of the episode in the batch: `sample * group_size + copy`, with the sample's global
    /// index under data parallelism (so per-episode seeds do not depend on the split).
    pub episode: usize,
    /// Index of the prompt (sample) and of the copy within its group.
    pub sample: usize,
    pub copy: usize,
    /// The physical step this generation is for (1-based).
    pub step: u32,
    pub max_steps: u32,
    pub spec: &'a EpisodeSpec,
    pub history: &'a [Message],
}

/// One context to generate from.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub prompt_ids: &'a [u32],
    /// The raw media parts of the prompt, in order (at most one media message's worth).
    pub media: &'a [Arc<MediaItem>],
    pub info: ContextInfo<'a>,
}

/// One sampled response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Generation {
    /// Sampled ids, including the stop id when generation stopped on one.
    pub ids: Vec<u32>,
    /// The sampler's log-prob of each sampled id.
    pub logprobs: Vec<f32>,
    /// Entropy of the sampling distribution at each position, when asked.
    pub entropies: Option<Vec<f32>>,
    /// The policy's own scores of the sampled ids, when asked and the policy has a distribution.
    pub policy_scores: Option<PolicyScores>,
    /// The decoded text, when the policy has it (else the driver decodes `ids`).
    pub text: Option<String>,
}

/// The log-prob and the entropy of the policy's own distribution (temperature 1, no top-k or
/// top-p, the model's whole vocabulary) at each sampled id: what a scoring pass of the learner
/// over the same sequence computes, here taken from the generation's own forward passes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyScores {
    pub logprobs: Vec<f32>,
    pub entropies: Vec<f32>,
}

/// Why a batch could not be generated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("generation failed: {0}")]
    Failed(String),
}

/// A policy: contexts in, sampled responses out (one per context, in order).
pub trait Policy: Send {
    fn generate(&mut self, batch: &[Context<'_>], sampling: &Sampling) -> Result<Vec<Generation>, PolicyError>;
}

/// Text in, a token-exact generation out: the encoder's ids plus its stop id (no ids without
/// an encoder), zero logprobs; for policies that write text rather than sample tokens.
pub fn text_generation(
    encoder: Option<&Arc<dyn PromptEncoder>>,
    text: String,
    sampling: &Sampling,
) -> Result<Generation, PolicyError> {
    let mut ids = match encoder {
        Some(enc) => enc.encode_text(&text).map_err(|e| PolicyError::Failed(e.to_string()))?,
        None => Vec::new(),
    };
    if let Some(stop) = encoder.and_then(|e| e.stop_ids().first().copied()) {
        ids.push(stop);
    }
    let n = ids.len();
    Ok(Generation {
        ids,
        logprobs: vec![0.0; n],
        entropies: sampling.entropies.then(|| vec![0.0; n]),
        policy_scores: None,
        text: Some(text),
    })
}

type ScriptFn = dyn FnMut(&ContextInfo<'_>) -> String + Send;

/// Replays responses: `scripts[sample][step - 1]`, or the output of a closure.
pub struct ScriptedPolicy {
    script: Box<ScriptFn>,
    encoder: Option<Arc<dyn PromptEncoder>>,
}

impl ScriptedPolicy {
    /// Each sample's responses in turn order; past the end of a script, an empty response (an
    /// invalid action).
    pub fn from_scripts(scripts: Vec<Vec<String>>, encoder: Option<Arc<dyn PromptEncoder>>) -> ScriptedPolicy {
        let script = move |info: &ContextInfo<'_>| {
            let turn = info.step.saturating_sub(1) as usize;
            scripts.get(info.sample).and_then(|s| s.get(turn)).cloned().unwrap_or_default()
        };
        ScriptedPolicy { script: Box::new(script), encoder }
    }

    /// Responses from a closure.
    pub fn from_fn(
        f: impl FnMut(&ContextInfo<'_>) -> String + Send + 'static,
        encoder: Option<Arc<dyn PromptEncoder>>,
    ) -> ScriptedPolicy {
        ScriptedPolicy { script: Box::new(f), encoder }
    }
}

impl Policy for ScriptedPolicy {
    fn generate(&mut self, batch: &[Context<'_>], sampling: &Sampling) -> Result<Vec<Generation>, PolicyError> {
        batch.iter().map(|c| text_generation(self.encoder.as_ref(), (self.script)(&c.info), sampling)).collect()
    }
}

/// The rule-based expert (see the module docs).
pub struct ExpertPolicy {
    encoder: Option<Arc<dyn PromptEncoder>>,
    limits: crate::episode::EpisodeLimits,
}

impl ExpertPolicy {
    pub fn new(limits: crate::episode::EpisodeLimits, encoder: Option<Arc<dyn PromptEncoder>>) -> ExpertPolicy {
        ExpertPolicy { encoder, limits }
    }

    /// The expert's response at a context.
    pub fn respond(&self, info: &ContextInfo<'_>) -> String {
        let spec = info.spec;
        if let Some(timeline) = spec.annotations.as_ref().and_then(crate::expert::Timeline::from_annotations) {
            return timeline.respond(spec, info.step, &expert_answer(spec));
        }
        let d = spec.meta.duration.max(0.0);
        let last = info.step >= info.max_steps || info.step >= 3;
        let (observation, think, confidence, action) = if last && info.step > 1 {
            let content = expert_answer(spec);
            let action = json!({"type": "answer", "content": content});
            ("All evidence gathered.", "The evidence supports this answer; nothing contradicts it.", 0.95, action)
        } else if info.step <= 1 {
            let num = self.limits.max_frames.clamp(1, 8);
            let action = json!({"type": "get_frames", "start": 0.0, "end": d, "num": num});
            ("No media inspected yet.", "Scan the whole video first.", 0.2, action)
        } else if spec.meta.has_audio {
            let end = d.min(self.limits.max_audio_seconds).max(self.limits.min_audio_seconds.min(d));
            let action = json!({"type": "get_audio", "start": 0.0, "end": end});
            ("[Frames] the overview is recorded.", "Listen to the soundtrack for more evidence.", 0.6, action)
        } else {
            let end = d.min(self.limits.max_clip_seconds);
            let action = json!({"type": "get_clip", "start": 0.0, "end": end});
            ("[Frames] the overview is recorded.", "Watch the motion in a clip.", 0.6, action)
        };
        let label = format!("[Video 0.00s-{}s]", fixed2(d));
        json!({
            "observation": format!("{label} {observation}"),
            "think": think,
            "confidence": confidence,
            "action": action,
        })
        .to_string()
    }
}

/// The ground truth in the form the answer action wants.
fn expert_answer(spec: &EpisodeSpec) -> String {
    match spec.qtype {
        QuestionType::Mcq => rewards::mcq_ground_truth(&spec.answer).map(String::from).unwrap_or_default(),
        QuestionType::Num | QuestionType::Size => {
            rewards::find_number(&spec.answer).map_or_else(|| spec.answer.clone(), String::from)
        }
        QuestionType::Tr | QuestionType::Ff => spec.answer.clone(),
    }
}

impl Policy for ExpertPolicy {
    fn generate(&mut self, batch: &[Context<'_>], sampling: &Sampling) -> Result<Vec<Generation>, PolicyError> {
        batch.iter().map(|c| text_generation(self.encoder.as_ref(), self.respond(&c.info), sampling)).collect()
    }
}
