//! The thinker (`Qwen2_5OmniThinkerForConditionalGeneration` minus the talker): loads the three
//! parts from one [`Weights`], encodes media, scatters the features into the placeholder
//! positions of the token embeddings (masked scatter, in order: audio, image, video,
//! docs/reference.md#feature-merge), computes TMRoPE positions ([`rope_index`]), and runs the
//! LLM. Batches are left-padded; each row keeps its own positions (a row's result does not
//! depend on what it is batched with). One forward: [`Thinker::inputs`] builds a batch's
//! inputs, [`Thinker::forward`] runs the decoder; logits, scoring, generation and the training
//! forward (`logprobs`) all start there.
//!
//! Inputs are plain buffers + shapes ([`MediaInput`]), what `rollout::media` produces, so the
//! rollout crate needs no tensors; pixel rows may be source bytes, expanded on the vision
//! tower's device (`pixels`). Optional frozen encoders ([`Thinker::freeze_encoders`]) run
//! under `no_grad`; LoRA adapters go on the LLM ([`Thinker::add_lora`]) and share one switch, so
//! the frozen base (adapters off) is the reference model.
//!
//! Left out: the talker / token2wav, cached encoder features across calls (callers may keep the
//! returned [`Encoded`] themselves).

use super::audio::AudioEncoder;
use super::layers::{Linear, Mask, PadGroups};
use super::lora::{Lora, LoraConfig, LoraSwitch};
use super::pixels::pixel_tensor;
use super::rope::{MediaGrids, Positions, RopeSpec, inv_freq, mrope_cos_sin, rope_index};
use super::text::{KvCache, TextModel};
use super::vision::VisionEncoder;
use super::weights::{LoadOptions, Weights, WeightsError};
use crate::model::{KeyLayout, OmniThinkerConfig, SpecialTokens};
use rollout::media::PixelRows;
use std::path::Path;
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("bad input: {0}")]
    Input(String),
    #[error(transparent)]
    Rope(#[from] super::rope::RopeError),
}

pub type MResult<T> = Result<T, ModelError>;

/// One image or video, patchified: `pixel_values [rows, patch_dim]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Visual {
    pub pixels: PixelRows,
    pub grid_thw: [usize; 3],
}

impl Visual {
    /// Rows of already normalised values.
    pub fn values(pixel_values: Vec<f32>, grid_thw: [usize; 3]) -> Visual {
        Visual { pixels: PixelRows::Values(pixel_values), grid_thw }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    pub visual: Visual,
    /// `temporal_patch_size / fps` (1.0 at the processor's default 2 fps).
    pub second_per_grid: f64,
}

/// Log-mel features `[mel_bins, frames]` row-major (valid frames only).
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub mel: Vec<f32>,
    pub frames: usize,
}

/// The media of one sequence, each list in order of appearance in the tokens. An audio track
/// interleaved in a video is listed in `audios` at the place its tokens first appear.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaInput {
    pub images: Vec<Visual>,
    pub videos: Vec<Video>,
    pub audios: Vec<Audio>,
}

impl MediaInput {
    pub fn is_empty(&self) -> bool {
        self.images.is_empty() && self.videos.is_empty() && self.audios.is_empty()
    }

    pub fn grids(&self) -> MediaGrids {
        MediaGrids {
            image_grids: self.images.iter().map(|v| v.grid_thw).collect(),
            video_grids: self.videos.iter().map(|v| v.visual.grid_thw).collect(),
            video_second_per_grid: self.videos.iter().map(|v| v.second_per_grid).collect(),
            audio_tokens: self.audios.iter().map(|a| super::audio::audio_output_len(a.frames)).collect(),
        }
    }
}

/// Encoder outputs of one sequence (`[n_tokens, hidden]` each, `None` when absent).
#[derive(Debug)]
pub struct Encoded {
    pub image: Option<Tensor>,
    pub video: Option<Tensor>,
    pub audio: Option<Tensor>,
}

/// The linear layers of one decoder layer that LoRA can adapt, by module name, in
/// [`LORA_TARGETS`](crate::model::LORA_TARGETS) order; `&` or `&mut` borrows. One list, so
/// the shared and the mutable walk cannot drift apart.
macro_rules! lora_linears {
    ($layer:expr, $($borrow:tt)+) => {{
        let (a, m) = ($($borrow)+ $layer.self_attn, $($borrow)+ $layer.mlp);
        [
            ("self_attn.q_proj", $($borrow)+ a.q_proj),
            ("self_attn.k_proj", $($borrow)+ a.k_proj),
            ("self_attn.v_proj", $($borrow)+ a.v_proj),
            ("self_attn.o_proj", $($borrow)+ a.o_proj),
            ("mlp.gate_proj", $($borrow)+ m.gate_proj),
            ("mlp.up_proj", $($borrow)+ m.up_proj),
            ("mlp.down_proj", $($borrow)+ m.down_proj),
        ]
    }};
}

#[derive(Debug)]
pub struct Thinker {
    pub cfg: OmniThinkerConfig,
    pub weights: Weights,
    pub text: TextModel,
    pub vision: VisionEncoder,
    pub audio: AudioEncoder,
    pub ids: SpecialTokens,
    pub rope: RopeSpec,
    pub lora: LoraSwitch,
    lora_config: Option<LoraConfig>,
    inv_freq: Tensor,
    frozen_encoders: bool,
}

impl Thinker {
    /// Loads a checkpoint directory (see [`Weights::load`]).
    pub fn load(dir: &Path, opts: LoadOptions) -> MResult<Thinker> {
        let (cfg, weights) = Weights::load(dir, opts)?;
        Thinker::new(cfg, weights)
    }

    pub fn new(cfg: OmniThinkerConfig, weights: Weights) -> MResult<Thinker> {
        let th = cfg.thinker();
        let rope = RopeSpec {
            image: th.image_token_index,
            video: th.video_token_index,
            audio: th.audio_token_index,
            vision_start: th.vision_start_token_id,
            audio_start: th.audio_start_token_id,
            spatial_merge_size: cfg.vision().spatial_merge_size,
            position_id_per_seconds: th.position_id_per_seconds,
            seconds_per_chunk: th.seconds_per_chunk,
        };
        let theta = cfg.rope_theta().unwrap_or(1e6);
        let inv_freq = inv_freq(cfg.head_dim(), theta, weights.device)?;
        Ok(Thinker {
            text: TextModel::new(&cfg, &weights)?,
            vision: VisionEncoder::new(&cfg, &weights)?,
            audio: AudioEncoder::new(&cfg, &weights)?,
            ids: cfg.special_tokens(),
            rope,
            lora: LoraSwitch::default(),
            lora_config: None,
            inv_freq,
            frozen_encoders: true,
            cfg,
            weights,
        })
    }

    pub fn device(&self) -> Device {
        self.weights.device
    }

    pub fn kind(&self) -> Kind {
        self.weights.kind
    }

    pub fn vocab_size(&self) -> usize {
        self.cfg.text().vocab_size
    }

    /// Run the encoders under `no_grad` (default true).
    pub fn freeze_encoders(&mut self, frozen: bool) {
        self.frozen_encoders = frozen;
    }

    /// TMRoPE positions of one sequence.
    pub fn positions(&self, ids: &[u32], media: &MediaInput) -> MResult<Positions> {
        Ok(rope_index(ids, &self.rope, &media.grids())?)
    }

    /// Runs the encoders on one sequence's media.
    pub fn encode(&self, media: &MediaInput) -> MResult<Encoded> {
        let run = || -> MResult<Encoded> {
            let vis = |items: Vec<&Visual>| -> MResult<Option<Tensor>> {
                if items.is_empty() {
                    return Ok(None);
                }
                let grids: Vec<[usize; 3]> = items.iter().map(|v| v.grid_thw).collect();
                let pd = self.vision.patch_dim;
                let pixels: Vec<&PixelRows> = items.iter().map(|v| &v.pixels).collect();
                // The grids are checked before any pixel is expanded; `pixel_tensor` refuses a
                // length that is not whole rows.
                let rows = pixels.iter().map(|p| p.len()).sum::<usize>() as i64 / pd.max(1);
                self.vision.check(rows, pd, &grids).map_err(ModelError::Input)?;
                let x = pixel_tensor(&pixels, pd as usize, self.vision.device())
                    .map_err(|e| ModelError::Input(e.to_string()))?;
                Ok(Some(self.vision.forward(&x, &grids)?))
            };
            let image = vis(media.images.iter().collect())?;
            let video = vis(media.videos.iter().map(|v| &v.visual).collect())?;
            let audio = if media.audios.is_empty() {
                None
            } else {
                let mel = self.audio.mel_bins as usize;
                let frames: Vec<usize> = media.audios.iter().map(|a| a.frames).collect();
                let total: usize = frames.iter().sum();
                let mut cols = Vec::with_capacity(media.audios.len());
                for a in &media.audios {
                    if a.frames == 0 || a.mel.len() != mel * a.frames {
                        return Err(ModelError::Input(format!(
                            "audio features hold {} values, expected {mel} x {} frames",
                            a.mel.len(),
                            a.frames
                        )));
                    }
                    cols.push(Tensor::f_from_slice(&a.mel)?.f_view([mel as i64, a.frames as i64])?);
                }
                let x = Tensor::f_cat(&cols, 1)?;
                debug_assert_eq!(x.size()[1], total as i64);
                Some(self.audio.forward(&x, &frames)?)
            };
            Ok(Encoded { image, video, audio })
        };
        if self.frozen_encoders { tch::no_grad(run) } else { run() }
    }

    /// Token embeddings of `ids` with the encoder features scattered into the placeholders:
    /// `[L, hidden]`.
    pub fn embed(&self, ids: &[u32], enc: &Encoded) -> MResult<Tensor> {
        let vocab = self.vocab_size();
        if ids.is_empty() {
            return Err(ModelError::Input("an empty token sequence".into()));
        }
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(ModelError::Input(format!("token id {bad} is outside the vocabulary ({vocab})")));
        }
        let dev = self.device();
        let ids_i64: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        let t = Tensor::f_from_slice(&ids_i64)?.f_to_device(dev)?;
        let mut h = self.text.embed(&t)?;
        for (id, feats, what) in [
            (self.ids.audio, &enc.audio, "audio"),
            (self.ids.image, &enc.image, "image"),
            (self.ids.video, &enc.video, "video"),
        ] {
            let n = ids.iter().filter(|&&i| i == id).count() as i64;
            let have = feats.as_ref().map_or(0, |f| f.size()[0]);
            if n != have {
                return Err(ModelError::Input(format!("{n} {what} placeholder tokens but {have} {what} features")));
            }
            if let Some(f) = feats.as_ref().filter(|_| n > 0) {
                let mask = t.f_eq(i64::from(id))?.f_unsqueeze(-1)?.f_expand_as(&h)?;
                h = h.f_masked_scatter(&mask, &f.f_to_kind(h.kind())?)?;
            }
        }
        Ok(h)
    }

    /// Left-pads `[L_i, D]` rows into `[B, L, D]` and builds positions `[3, B, L]`, the
    /// attention mask and the key-valid flags. Pads take position 1 and attend only to themselves.
    pub(crate) fn batch_inputs(&self, embeds: &[Tensor], pos: &[Positions]) -> MResult<BatchInputs> {
        let dev = self.device();
        let b = embeds.len();
        let l = embeds.iter().map(|e| e.size()[0]).max().unwrap_or(0);
        let d = self.text.embed.size()[1];
        let mut rows = Vec::with_capacity(b);
        let mut p = vec![1i64; 3 * b * l as usize];
        let mut valid = vec![false; b * l as usize];
        for (r, (e, ps)) in embeds.iter().zip(pos).enumerate() {
            let n = e.size()[0];
            let pad = l - n;
            rows.push(if pad > 0 {
                Tensor::f_cat(&[Tensor::f_zeros([pad, d], (e.kind(), dev))?, e.shallow_clone()], 0)?
            } else {
                e.shallow_clone()
            });
            for j in 0..n as usize {
                let at = r * l as usize + pad as usize + j;
                p[at] = ps.t[j];
                p[b * l as usize + at] = ps.h[j];
                p[2 * b * l as usize + at] = ps.w[j];
                valid[at] = true;
            }
        }
        let h = Tensor::f_stack(&rows, 0)?;
        let next_positions = pos.iter().map(|ps| ps.max() + 1).collect();
        let positions = Tensor::f_from_slice(&p)?.f_view([3, b as i64, l])?.f_to_device(dev)?;
        let all_valid = valid.iter().all(|&v| v);
        let valid_t = Tensor::f_from_slice(&valid)?.f_view([b as i64, l])?.f_to_device(dev)?;
        let mask = if all_valid {
            Mask::Causal
        } else {
            let pads: Vec<i64> = embeds.iter().map(|e| l - e.size()[0]).collect();
            Mask::LeftPadCausal(PadGroups::new(&pads, dev)?)
        };
        Ok(BatchInputs { h, positions, mask, valid: valid_t, next_positions })
    }

    /// M-RoPE tables for positions `[3, B, L]`.
    pub fn cos_sin(&self, positions: &Tensor) -> MResult<(Tensor, Tensor)> {
        let section = self.cfg.mrope_section().unwrap_or(&[]);
        Ok(mrope_cos_sin(positions, &self.inv_freq, section, self.kind())?)
    }

    /// The model inputs of a batch of sequences (token ids and their media): TMRoPE positions,
    /// encoder features scattered into the token embeddings, left-padded into one batch.
    pub fn inputs(&self, seqs: &[(&[u32], &MediaInput)]) -> MResult<BatchInputs> {
        let (embeds, positions) = self.embedded(seqs)?;
        self.batch_inputs(&embeds, &positions)
    }

    /// Each sequence's embeddings `[L_i, D]` (encoder features scattered in) and TMRoPE positions.
    pub(crate) fn embedded(&self, seqs: &[(&[u32], &MediaInput)]) -> MResult<(Vec<Tensor>, Vec<Positions>)> {
        let mut embeds = Vec::with_capacity(seqs.len());
        let mut positions = Vec::with_capacity(seqs.len());
        for &(ids, media) in seqs {
            positions.push(self.positions(ids, media)?);
            let enc = self.encode(media)?;
            embeds.push(self.embed(ids, &enc)?);
        }
        Ok((embeds, positions))
    }

    /// The model inputs of several sequences packed into one row (`[1, ΣL, D]`): each keeps its
    /// own TMRoPE positions and attends only to itself ([`Mask::Packed`]); one sequence gives
    /// exactly [`inputs`](Self::inputs). The training forward's micro-batch layout: no padding.
    pub fn packed_inputs(&self, seqs: &[(&[u32], &MediaInput)]) -> MResult<BatchInputs> {
        if seqs.len() <= 1 {
            return self.inputs(seqs);
        }
        let dev = self.device();
        let (embeds, positions) = self.embedded(seqs)?;
        let (mut segments, mut t, mut h, mut w) = (Vec::with_capacity(seqs.len()), Vec::new(), Vec::new(), Vec::new());
        for p in &positions {
            segments.push((t.len() as i64, p.len() as i64));
            t.extend_from_slice(&p.t);
            h.extend_from_slice(&p.h);
            w.extend_from_slice(&p.w);
        }
        let n = t.len() as i64;
        let p: Vec<i64> = [t, h, w].concat();
        Ok(BatchInputs {
            h: Tensor::f_cat(&embeds, 0)?.f_unsqueeze(0)?,
            positions: Tensor::f_from_slice(&p)?.f_view([3, 1, n])?.f_to_device(dev)?,
            mask: Mask::Packed(segments),
            valid: Tensor::f_ones([1, n], (Kind::Bool, dev))?,
            next_positions: Vec::new(),
        })
    }

    /// The forward pass: final-norm hidden states `[B, L, D]` of a batch (filling `cache` when
    /// given). Every caller goes through here: [`logits`](Self::logits), scoring, generation;
    /// the training forward runs the same decoder layer by layer ([`TextModel::decoder`]).
    pub fn forward(&self, inp: &BatchInputs, cache: Option<&mut KvCache>) -> MResult<Tensor> {
        let (cos, sin) = self.cos_sin(&inp.positions)?;
        Ok(self.text.forward(&inp.h, &cos, &sin, &inp.mask, cache)?)
    }

    /// Logits `[L, vocab]` (f32) of one sequence: the parity-test entry point.
    pub fn logits(&self, ids: &[u32], media: &MediaInput) -> MResult<Tensor> {
        let inp = self.inputs(&[(ids, media)])?;
        let h = self.forward(&inp, None)?;
        Ok(self.text.logits(&h.f_get(0)?)?)
    }

    /// Attaches LoRA adapters to the LLM linears named in `lc.targets`.
    pub fn add_lora(&mut self, lc: &LoraConfig) -> MResult<()> {
        lc.validate().map_err(ModelError::Input)?;
        tch::manual_seed(lc.seed);
        let sw = self.lora.clone();
        let mut result = Ok(());
        self.each_linear_mut(|module, lin| {
            let target = module.rsplit('.').next().unwrap_or(module);
            if result.is_ok() && lc.targets.iter().any(|t| t == target) {
                match Lora::new(&lin.w, lc.rank, lc.alpha, sw.clone()) {
                    Ok(l) => lin.lora = Some(l),
                    Err(e) => result = Err(e),
                }
            }
        });
        result?;
        self.lora_config = Some(lc.clone());
        Ok(())
    }

    /// The settings of the attached adapters.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora_config.as_ref()
    }

    /// The adapters by PEFT name (`base_model.model.thinker.model.layers.0.self_attn.q_proj.lora_A.weight`).
    pub fn lora_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.each_linear(|name, lin| {
            if let Some(l) = &lin.lora {
                let p = format!("base_model.model.{}", KeyLayout::ThinkerPrefixed.name(name));
                out.push((format!("{p}.lora_A.weight"), l.a.shallow_clone()));
                out.push((format!("{p}.lora_B.weight"), l.b.shallow_clone()));
            }
        });
        out
    }

    /// The weights with every adapter folded into its base weight (`W + scale·B·A`), leaving
    /// this model untouched: what a merged checkpoint saves.
    pub fn merged_weights(&self) -> MResult<Weights> {
        let mut tensors = std::collections::BTreeMap::new();
        for name in self.weights.names() {
            tensors.insert(name.to_string(), self.weights.get(name)?);
        }
        let mut failure = None;
        self.each_linear(|name, lin| {
            if let Some(lora) = &lin.lora {
                match tch::no_grad(|| lora.merged(&lin.w)) {
                    Ok(w) => {
                        tensors.insert(format!("{name}.weight"), w);
                    }
                    Err(e) => failure = Some(e),
                }
            }
        });
        if let Some(e) = failure {
            return Err(e.into());
        }
        let mut w = Weights::from_map(tensors, self.weights.kind, self.weights.device);
        w.layout = self.weights.layout;
        Ok(w)
    }

    /// Folds every adapter into its base weight, in place (so `weights`, which owns the same
    /// tensor, saves merged values), and removes the adapters.
    pub fn merge_lora(&mut self) -> MResult<()> {
        let mut failure = None;
        self.each_linear_mut(|_, lin| {
            if let Some(lora) = lin.lora.take() {
                let merged = tch::no_grad(|| lora.merged(&lin.w).and_then(|m| lin.w.f_copy_(&m)));
                if let Err(e) = merged {
                    failure = Some(e);
                }
            }
        });
        if let Some(e) = failure {
            return Err(e.into());
        }
        self.lora_config = None;
        Ok(())
    }

    /// Every LLM linear LoRA can adapt, with its module name (`model.layers.3.mlp.up_proj`): the
    /// one list adding, saving, merging and counting adapters walk.
    fn each_linear(&self, mut f: impl FnMut(&str, &Linear)) {
        for (i, l) in self.text.layers.iter().enumerate() {
            for (module, lin) in lora_linears!(l, &) {
                f(&format!("model.layers.{i}.{module}"), lin);
            }
        }
    }

    fn each_linear_mut(&mut self, mut f: impl FnMut(&str, &mut Linear)) {
        for (i, l) in self.text.layers.iter_mut().enumerate() {
            for (module, lin) in lora_linears!(l, &mut) {
                f(&format!("model.layers.{i}.{module}"), lin);
            }
        }
    }

    /// Full fine-tuning: marks the base weights whose bare name starts with one of `prefixes`
    /// (`"model."` = the LLM, `"lm_head."`, `"visual."`, `"audio_tower."`) trainable or frozen.
    /// Unfreezing an encoder also needs [`freeze_encoders(false)`](Self::freeze_encoders) so it
    /// runs with a graph.
    pub fn set_trainable(&mut self, prefixes: &[&str], on: bool) -> usize {
        self.weights.set_requires_grad(|name| prefixes.iter().any(|p| name.starts_with(p)), on)
    }

    /// Every trainable tensor: LoRA adapters, plus base weights whose `requires_grad` was set.
    pub fn trainable(&self) -> Vec<Tensor> {
        let mut out: Vec<Tensor> = self.weights.trainable().into_iter().map(|(_, t)| t).collect();
        self.each_linear(|_, lin| {
            if let Some(l) = &lin.lora {
                out.push(l.a.shallow_clone());
                out.push(l.b.shallow_clone());
            }
        });
        out
    }
}

/// A left-padded batch ready for the LLM.
#[derive(Debug)]
pub struct BatchInputs {
    /// `[B, L, D]` embeddings.
    pub h: Tensor,
    /// `[3, B, L]` int64.
    pub positions: Tensor,
    pub mask: Mask,
    /// `[B, L]` bool: not padding.
    pub valid: Tensor,
    /// Per row, the position the next generated token takes (its TMRoPE maximum + 1).
    pub next_positions: Vec<i64>,
}
