//! The Qwen2.5-Omni thinker as a [`TrainablePolicy`]: [`TrainableThinker`] wraps a
//! [`Thinker`] with its training-forward options (`lm_head` chunk size, activation
//! checkpointing) and delegates to `model::logprobs` (no-grad scoring; chunked forward + backward).
//!
//! Which tensors train ([`TrainableParts`]) is decided by `requires_grad` on the loaded
//! [`Weights`] **before** the thinker is built, because some layers keep views of their weights
//! (e.g. the vision patch projection is reshaped once) and a view created before its base
//! required gradients would not carry them. RL trains everything (the reference wires no freeze
//! path in RL); SFT freezes both encoders ([`TrainableParts::sft`]). With LoRA adapters the base
//! LLM stays frozen, only the adapters train, and the base with adapters switched off is the
//! reference policy for a KL penalty.
//!
//! Saving writes the HF checkpoint through [`Weights::save`] (transformers-loadable, in the
//! checkpoint's own key layout) plus `adapter_model.safetensors` (PEFT names) when adapters exist;
//! loading copies tensors into the existing model in place. [`turn_media`] converts a rollout
//! turn's decoded media for `RlRow::from_trajectory`. Left out: merging adapters on save
//! (`Thinker::merge_lora` exists for an export step).

use super::{ChunkLoss, PolicyError, TokenScores, TrainablePolicy};
use crate::checkpoint::tensor_io::{read_safetensors, write_safetensors};
use crate::model::OmniThinkerConfig;
use crate::model::logprobs::{TrainOptions, forward_backward, score};
use crate::model::policy::push_media;
use crate::model::thinker::{MediaInput, ModelError, Thinker};
use crate::model::weights::{LoadOptions, Weights};
use rollout::trajectory::Turn;
use std::path::Path;
use tch::{Device, Tensor};

/// The adapter file written beside the base weights when LoRA is attached.
pub const ADAPTER_FILE: &str = "adapter_model.safetensors";

/// Which parts of the thinker receive gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainableParts {
    pub llm: bool,
    pub vision: bool,
    pub audio: bool,
}

impl TrainableParts {
    /// RL: the whole thinker, encoders included (spec §6.6).
    pub fn rl() -> Self {
        TrainableParts { llm: true, vision: true, audio: true }
    }

    /// SFT: the LLM only (`freeze_vision_encoder` / `freeze_audio_encoder` true, spec §8).
    pub fn sft() -> Self {
        TrainableParts { llm: true, vision: false, audio: false }
    }

    /// From a recipe's freeze flags.
    pub fn from_freeze(freeze_vision: bool, freeze_audio: bool) -> Self {
        TrainableParts { llm: true, vision: !freeze_vision, audio: !freeze_audio }
    }

    fn wants(&self, name: &str) -> bool {
        if name.starts_with("visual.") {
            self.vision
        } else if name.starts_with("audio_tower.") {
            self.audio
        } else {
            self.llm
        }
    }
}

/// Sets `requires_grad` on every weight per `parts`; returns how many train.
pub fn set_trainable(weights: &Weights, parts: TrainableParts) -> Result<usize, ModelError> {
    let mut n = 0;
    for name in weights.names() {
        let t = weights.get(name)?;
        let on = parts.wants(name) && t.is_floating_point();
        let _ = t.f_set_requires_grad(on)?;
        n += usize::from(on);
    }
    Ok(n)
}

/// The thinker's media inputs of a stored turn (its prompt's decoded media, in prompt order), for
/// `RlRow::from_trajectory`.
pub fn turn_media(turn: &Turn, patch_dim: usize) -> Result<MediaInput, ModelError> {
    let mut m = MediaInput::default();
    for item in &turn.media {
        let inputs = item
            .inputs
            .as_ref()
            .ok_or_else(|| ModelError::Input("a media item of the turn has no decoded inputs".into()))?;
        push_media(&mut m, &item.layout, inputs, patch_dim)?;
    }
    Ok(m)
}

/// A thinker ready for training.
#[derive(Debug)]
pub struct TrainableThinker {
    pub thinker: Thinker,
    pub train: TrainOptions,
    /// Largest safetensors shard written by `save_hf`.
    pub max_shard_bytes: u64,
}

impl TrainableThinker {
    /// Loads `dir`, marks `parts` trainable, builds the thinker (encoders under `no_grad` when
    /// both are frozen).
    pub fn load(dir: &Path, opts: LoadOptions, parts: TrainableParts, train: TrainOptions) -> Result<Self, ModelError> {
        let (cfg, weights) = Weights::load(dir, opts)?;
        Self::from_weights(cfg, weights, parts, train)
    }

    pub fn from_weights(
        cfg: OmniThinkerConfig,
        weights: Weights,
        parts: TrainableParts,
        train: TrainOptions,
    ) -> Result<Self, ModelError> {
        set_trainable(&weights, parts)?;
        let mut thinker = Thinker::new(cfg, weights)?;
        thinker.freeze_encoders(!parts.vision && !parts.audio);
        Ok(TrainableThinker { thinker, train, max_shard_bytes: 5 << 30 })
    }
}

impl TrainablePolicy for TrainableThinker {
    type Media = MediaInput;

    fn device(&self) -> Device {
        self.thinker.device()
    }

    /// Base weights with `requires_grad` (bare HF names), then LoRA adapters (PEFT names).
    fn trainable_variables(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> =
            self.thinker.weights.trainable().into_iter().map(|(n, t)| (n.to_owned(), t)).collect();
        out.extend(self.thinker.lora_tensors().into_iter().filter(|(_, t)| t.requires_grad()));
        out
    }

    fn score(&self, ids: &[u32], media: &MediaInput, start: usize) -> Result<TokenScores, PolicyError> {
        let s = score(&self.thinker, ids, media, start, self.train.chunk_tokens)?;
        Ok(TokenScores { logprobs: s.logprobs, entropies: s.entropies })
    }

    fn forward_backward(
        &self,
        ids: &[u32],
        media: &MediaInput,
        start: usize,
        loss: &mut ChunkLoss<'_>,
    ) -> Result<TokenScores, PolicyError> {
        let mut f = |o: usize, lp: &Tensor, en: &Tensor| loss(o, lp, en).map_err(ModelError::Torch);
        let s = forward_backward(&self.thinker, ids, media, start, self.train, &mut f)?;
        Ok(TokenScores { logprobs: s.logprobs, entropies: s.entropies })
    }

    /// With LoRA: the base model (adapters switched off). Without: none.
    fn reference_logprobs(&self, ids: &[u32], media: &MediaInput, start: usize) -> Result<Option<Tensor>, PolicyError> {
        if self.thinker.lora_tensors().is_empty() {
            return Ok(None);
        }
        let was = self.thinker.lora.get();
        self.thinker.lora.set(false);
        let s = score(&self.thinker, ids, media, start, self.train.chunk_tokens);
        self.thinker.lora.set(was);
        Ok(Some(s?.logprobs))
    }

    fn save_hf(&self, dir: &Path) -> Result<(), PolicyError> {
        let w = &self.thinker.weights;
        w.save(dir, &self.thinker.cfg, w.layout, self.max_shard_bytes).map_err(ModelError::from)?;
        let adapters = self.thinker.lora_tensors();
        if !adapters.is_empty() {
            let path = dir.join(ADAPTER_FILE);
            write_safetensors(&path, &adapters)
                .map_err(|e| PolicyError::Io { path: path.display().to_string(), message: e.to_string() })?;
        }
        Ok(())
    }

    fn load_hf(&mut self, dir: &Path) -> Result<(), PolicyError> {
        let opts = LoadOptions { dtype: Some(self.thinker.kind()), device: self.thinker.device() };
        let loaded = Weights::load_with_config(dir, &self.thinker.cfg, opts).map_err(ModelError::from)?;
        tch::no_grad(|| -> Result<(), PolicyError> {
            for name in loaded.names() {
                let mut dst = self.thinker.weights.get(name).map_err(ModelError::from)?;
                dst.f_copy_(&loaded.get(name).map_err(ModelError::from)?)?;
            }
            Ok(())
        })?;
        let adapters = self.thinker.lora_tensors();
        let path = dir.join(ADAPTER_FILE);
        if !adapters.is_empty() {
            let mut found = 0usize;
            read_safetensors(&path, |name, t| {
                if let Some((_, dst)) = adapters.iter().find(|(n, _)| n == name) {
                    let mut dst = dst.shallow_clone();
                    tch::no_grad(|| dst.f_copy_(&t))?;
                    found += 1;
                }
                Ok(())
            })
            .map_err(|e| PolicyError::Io { path: path.display().to_string(), message: e.to_string() })?;
            if found != adapters.len() {
                return Err(PolicyError::Other(format!(
                    "{}: {found} of {} adapters found",
                    path.display(),
                    adapters.len()
                )));
            }
        }
        Ok(())
    }
}
