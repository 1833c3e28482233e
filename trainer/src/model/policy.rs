//! The rollout [`Policy`] implemented by the thinker: each context's prompt ids and decoded media
//! (`rollout::media::ModelInputs`, in prompt order) become a [`Prompt`], and the batch goes
//! through [`generate`]. Also the conversion from the media crate's plain inputs to the model's
//! [`MediaInput`], used by the CLI as well.
//!
//! Sampling: `temperature <= 0` means greedy; ids at or above the tokenizer's size are masked
//! (padding rows of the embedding), stop ids are the config's eos and pad ids. Each context gets
//! its own seed from the sampling seed, its episode index and its step, so a trajectory's tokens
//! do not depend on which other contexts share its batch.
//!
//! Each episode's context is kept between its turns, within a byte budget, so a turn prefills
//! only what its prompt adds (`model::prefix`).
//!
//! Left out: continuous batching across calls (one call = one padded batch).

use super::generate::{Prompt, SamplingParams, generate_cached};
use super::prefix::PrefixStore;
use super::thinker::{Audio, MediaInput, ModelError, Thinker, Video, Visual};
use rollout::chat::Part;
use rollout::media::{ModelInputs, VisionInputs};
use rollout::policy::{Context, Generation, Policy, PolicyError, PolicyScores, Sampling};

/// The thinker as a rollout policy.
#[derive(Debug)]
pub struct ThinkerPolicy<'a> {
    /// Borrowed for the rollout (mutably only because a libtorch tensor may not be shared
    /// between threads; generation reads the weights).
    pub thinker: &'a mut Thinker,
    /// The tokenizer's vocabulary size (ids at or above it are never sampled).
    pub vocab_limit: Option<usize>,
    /// Each episode's context kept for its next turn ([`super::prefix`]). A policy lives for
    /// one rollout, so what it keeps never outlives the weights it was computed with.
    pub prefixes: PrefixStore,
    /// Prompt tokens taken from kept contexts instead of prefilled, over this policy's calls.
    pub cached_prompt_tokens: usize,
}

impl<'a> ThinkerPolicy<'a> {
    /// A policy keeping at most `prefix_cache_bytes` of episode contexts between turns (0: none).
    pub fn new(thinker: &'a mut Thinker, vocab_limit: Option<usize>, prefix_cache_bytes: u64) -> Self {
        ThinkerPolicy { thinker, vocab_limit, prefixes: PrefixStore::new(prefix_cache_bytes), cached_prompt_tokens: 0 }
    }
}

fn split_visual(v: &VisionInputs, patch_dim: usize) -> Result<Vec<Visual>, ModelError> {
    let mut out = Vec::with_capacity(v.grid_thw.len());
    let mut row = 0usize;
    for g in &v.grid_thw {
        let n = g[0] * g[1] * g[2];
        let (a, b) = (row * patch_dim, (row + n) * patch_dim);
        let Some(pixels) = v.pixels.slice(a, b) else {
            return Err(ModelError::Input(format!(
                "pixel_values hold fewer rows than the grids {:?} imply",
                v.grid_thw
            )));
        };
        out.push(Visual { pixels, grid_thw: *g });
        row += n;
    }
    Ok(out)
}

/// Appends one media item's decoded inputs to `m`, following its layout.
pub fn push_media(m: &mut MediaInput, layout: &Part, inputs: &ModelInputs, patch_dim: usize) -> Result<(), ModelError> {
    let missing = |what: &str| ModelError::Input(format!("a {what} part has no decoded {what} inputs"));
    let video = |m: &mut MediaInput| -> Result<(), ModelError> {
        let v = inputs.video.as_ref().ok_or_else(|| missing("video"))?;
        let spg = inputs.video_second_per_grid.unwrap_or(1.0);
        for visual in split_visual(v, patch_dim)? {
            m.videos.push(Video { visual, second_per_grid: spg });
        }
        Ok(())
    };
    let audio = |m: &mut MediaInput| -> Result<(), ModelError> {
        let a = inputs.audio.as_ref().ok_or_else(|| missing("audio"))?;
        m.audios.push(Audio { mel: a.data.clone(), frames: a.frames });
        Ok(())
    };
    match layout {
        Part::Image { .. } => {
            let v = inputs.images.as_ref().ok_or_else(|| missing("image"))?;
            m.images.extend(split_visual(v, patch_dim)?);
        }
        Part::Video { .. } => video(m)?,
        Part::Audio { .. } => audio(m)?,
        Part::VideoWithAudio { .. } => {
            video(m)?;
            audio(m)?;
        }
        Part::Text(_) => {}
    }
    Ok(())
}

fn row_seed(seed: u64, c: &Context<'_>) -> u64 {
    seed ^ (c.info.episode as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(c.info.step).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

impl Policy for ThinkerPolicy<'_> {
    fn generate(&mut self, batch: &[Context<'_>], sampling: &Sampling) -> Result<Vec<Generation>, PolicyError> {
        let fail = |e: ModelError| PolicyError::Failed(e.to_string());
        let patch_dim = self.thinker.vision.patch_dim as usize;
        let mut media = Vec::with_capacity(batch.len());
        for c in batch {
            let mut m = MediaInput::default();
            for item in c.media {
                let inputs = item
                    .inputs
                    .as_ref()
                    .ok_or_else(|| PolicyError::Failed("a media item in the prompt has no decoded inputs".into()))?;
                push_media(&mut m, &item.layout, inputs, patch_dim).map_err(fail)?;
            }
            media.push(m);
        }
        let prompts: Vec<Prompt<'_>> = batch
            .iter()
            .zip(&media)
            .map(|(c, m)| Prompt { ids: c.prompt_ids, media: m, seed: Some(row_seed(sampling.seed, c)) })
            .collect();
        let params = SamplingParams {
            max_new_tokens: sampling.max_new_tokens as usize,
            greedy: sampling.temperature <= 0.0,
            temperature: sampling.temperature,
            top_k: sampling.top_k.map(|k| k as usize),
            top_p: sampling.top_p,
            seed: sampling.seed,
            stop: Vec::new(),
            ignore_eos: false,
            entropies: sampling.entropies,
            policy_scores: sampling.policy_scores,
            vocab_limit: self.vocab_limit,
        };
        // A store without a budget holds nothing, so every lookup there is `None`.
        let prefixes =
            batch.iter().map(|c| self.prefixes.take(c.info.episode, c.prompt_ids)).collect::<Result<Vec<_>, _>>();
        let keep = self.prefixes.enabled();
        let (out, kept, timing) =
            generate_cached(self.thinker, &prompts, prefixes.map_err(fail)?, &params, keep).map_err(fail)?;
        self.cached_prompt_tokens += timing.cached_tokens;
        for (c, k) in batch.iter().zip(kept) {
            if let Some(k) = k {
                self.prefixes.put(c.info.episode, k);
            }
        }
        Ok(out
            .into_iter()
            .map(|g| {
                let policy_scores = match (g.policy_logprobs, g.policy_entropies) {
                    (Some(logprobs), Some(entropies)) => Some(PolicyScores { logprobs, entropies }),
                    _ => None,
                };
                Generation { ids: g.ids, logprobs: g.logprobs, entropies: g.entropies, policy_scores, text: None }
            })
            .collect())
    }
}
