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
//! A KL penalty needs a reference policy: with adapters it is the base (adapters switched off);
//! without, [`TrainableThinker::keep_reference`] keeps a frozen copy of every trained tensor (the
//! frozen ones are shared, not copied).
//!
//! Saving writes the HF checkpoint through [`Weights::save`] (transformers-loadable, in the
//! checkpoint's own key layout) plus, when adapters exist, PEFT's `adapter_model.safetensors` and
//! `adapter_config.json`; [`TrainableThinker::save_merged`] writes the adapters folded into the
//! weights instead. Loading copies tensors into the existing model in place. [`turn_media`]
//! converts a rollout turn's decoded media for `RlRow::from_trajectory`.

use super::{ChunkLoss, PackedSeq, PolicyError, TokenScores, TrainablePolicy};
use crate::checkpoint::tensor_io::{read_safetensors, write_safetensors};
use crate::model::OmniThinkerConfig;
use crate::model::logprobs::{TrainOptions, forward_backward, forward_backward_packed, score_packed};
use crate::model::lora::{ADAPTER_CONFIG_FILE, peft_config};
use crate::model::policy::push_media;
use crate::model::thinker::{MediaInput, ModelError, Thinker};
use crate::model::weights::{LoadOptions, Weights};
use rollout::episode::MediaItem;
use rollout::trajectory::Turn;
use std::path::Path;
use tch::{Device, Tensor};

pub use crate::model::lora::ADAPTER_FILE;

pub use crate::model::TrainableParts;

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
    items_media(&turn.media, patch_dim)
}

/// The thinker's media inputs of decoded media items, in order.
pub fn items_media(items: &[std::sync::Arc<MediaItem>], patch_dim: usize) -> Result<MediaInput, ModelError> {
    let mut m = MediaInput::default();
    for item in items {
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
    /// A frozen copy of the trained weights, the KL reference when there are no adapters.
    pub reference: Option<Thinker>,
    /// The model the adapters were trained on (`base_model_name_or_path` of adapter_config.json).
    pub base_model: String,
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
        Ok(TrainableThinker { thinker, train, max_shard_bytes: 5 << 30, reference: None, base_model: String::new() })
    }

    /// Keeps a frozen copy of every trainable base tensor as the KL reference (frozen tensors are
    /// shared with the policy). Adapters need none: the base with adapters off is the reference.
    pub fn keep_reference(&mut self) -> Result<(), ModelError> {
        let w = &self.thinker.weights;
        let mut tensors = std::collections::BTreeMap::new();
        for name in w.names() {
            let t = w.get(name)?;
            let t = if t.requires_grad() {
                tch::no_grad(|| -> Result<Tensor, tch::TchError> {
                    let mut c = t.f_zeros_like()?;
                    c.f_copy_(&t)?;
                    Ok(c)
                })?
            } else {
                t
            };
            tensors.insert(name.to_string(), t);
        }
        let copy = Weights::from_map(tensors, w.kind, w.device);
        self.reference = Some(Thinker::new(self.thinker.cfg.clone(), copy)?);
        Ok(())
    }

    /// Writes the weights with the adapters folded in: a plain HF checkpoint.
    pub fn save_merged(&self, dir: &Path) -> Result<(), PolicyError> {
        let w = self.thinker.merged_weights()?;
        w.save(dir, &self.thinker.cfg, w.layout, self.max_shard_bytes).map_err(ModelError::from)?;
        Ok(())
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
        self.score_packed(&[PackedSeq { ids, media, start }])
    }

    fn score_packed(&self, seqs: &[PackedSeq<'_, MediaInput>]) -> Result<TokenScores, PolicyError> {
        let s = score_packed(&self.thinker, seqs, self.train.chunk_tokens)?;
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

    /// One packed row through the decoder ([`forward_backward_packed`]).
    fn forward_backward_packed(
        &self,
        seqs: &[PackedSeq<'_, MediaInput>],
        loss: &mut ChunkLoss<'_>,
    ) -> Result<TokenScores, PolicyError> {
        let mut f = |o: usize, lp: &Tensor, en: &Tensor| loss(o, lp, en).map_err(ModelError::Torch);
        let s = forward_backward_packed(&self.thinker, seqs, self.train, &mut f)?;
        Ok(TokenScores { logprobs: s.logprobs, entropies: s.entropies })
    }

    /// The kept frozen copy; else with LoRA, the base model (adapters switched off); else none.
    fn reference_logprobs(&self, ids: &[u32], media: &MediaInput, start: usize) -> Result<Option<Tensor>, PolicyError> {
        self.reference_logprobs_packed(&[PackedSeq { ids, media, start }])
    }

    fn reference_logprobs_packed(&self, seqs: &[PackedSeq<'_, MediaInput>]) -> Result<Option<Tensor>, PolicyError> {
        let chunk = self.train.chunk_tokens;
        if let Some(r) = &self.reference {
            return Ok(Some(score_packed(r, seqs, chunk)?.logprobs));
        }
        if self.thinker.lora_tensors().is_empty() {
            return Ok(None);
        }
        let was = self.thinker.lora.get();
        self.thinker.lora.set(false);
        let s = score_packed(&self.thinker, seqs, chunk);
        self.thinker.lora.set(was);
        Ok(Some(s?.logprobs))
    }

    fn save_hf(&self, dir: &Path) -> Result<(), PolicyError> {
        let w = &self.thinker.weights;
        w.save(dir, &self.thinker.cfg, w.layout, self.max_shard_bytes).map_err(ModelError::from)?;
        let adapters = self.thinker.lora_tensors();
        if let Some(cfg) = self.thinker.lora_config() {
            let path = dir.join(ADAPTER_FILE);
            write_safetensors(&path, &adapters)
                .map_err(|e| PolicyError::Io { path: path.display().to_string(), message: e.to_string() })?;
            let path = dir.join(ADAPTER_CONFIG_FILE);
            let text = serde_json::to_string_pretty(&peft_config(cfg, &self.base_model)).unwrap_or_default();
            std::fs::write(&path, text)
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
