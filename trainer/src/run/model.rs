//! A stage's model: where its weights come from, its tokenizer, and loading it the way the
//! stage uses it.
//!
//! * [`Loading`]: dtype, device, the trainable parts, activation checkpointing, LoRA adapters
//!   and a frozen KL reference copy, from the resolved stage (`Loading::train`, `Loading::eval`).
//!   On the CPU, bf16 and f16 weights are rounded to their dtype and computed in f32 (see
//!   `model::weights`); the runner says so when a stage starts.
//! * [`Model::load`]: the checkpoint, with the PEFT adapters a directory carries folded into its
//!   weights, then the stage's own adapters attached.
//! * [`Model::save_result`]: a stage's `final/` checkpoint: the weights plus PEFT adapter files,
//!   or with `lora.merge` the adapters folded into the weights; the tokenizer is copied along.
//! * [`encoder_for`]: the prompt tokenizer of a model directory.
//!
//! [`Model::rollout`] lends the thinker to the rollout driver as a `ThinkerPolicy` and takes it
//! back (the same tensors, so the optimizer keeps pointing at them).

use super::RunError;
use super::tokenizer::SmallTokenizer;
use crate::learner::TrainablePolicy;
use crate::learner::thinker::{TrainableParts, TrainableThinker};
use crate::model::OmniThinkerConfig;
use crate::model::logprobs::TrainOptions;
use crate::model::lora::{LoraConfig, fold_adapter_dir};
use crate::model::policy::ThinkerPolicy;
use crate::model::weights::{LoadOptions, Weights};
use crate::recipe::Dtype;
use crate::recipe::resolved::TrainModel;
use rollout::driver::{Driver, DriverConfig, MediaOpener, RolloutBatch};
use rollout::episode::{EpisodeSpec, PromptEncoder};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Device, Kind};

/// How a stage loads its model.
#[derive(Debug, Clone, PartialEq)]
pub struct Loading {
    pub device: Device,
    pub dtype: Dtype,
    pub parts: TrainableParts,
    pub gradient_checkpointing: bool,
    /// Adapters the stage trains (the base LLM then stays frozen).
    pub lora: Option<LoraConfig>,
    /// Keep a frozen copy of the trained weights as the KL reference (no adapters to switch off).
    pub reference_copy: bool,
}

impl Loading {
    /// A training stage's model: `kl` asks for a reference policy.
    pub fn train(model: &TrainModel, device: Device, kl: bool, seed: u64) -> Loading {
        let TrainModel { input, gradient_checkpointing, freeze_vision_encoder: _, freeze_audio_encoder: _, lora } =
            model;
        Loading {
            device,
            dtype: input.dtype,
            parts: model.trainable_parts(),
            gradient_checkpointing: *gradient_checkpointing,
            lora: lora.as_ref().map(|l| LoraConfig {
                rank: l.rank as usize,
                alpha: l.alpha,
                targets: l.target_modules.clone(),
                seed: seed as i64,
            }),
            reference_copy: kl && lora.is_none(),
        }
    }

    /// A model that only generates (evaluation, inference, synthesis).
    pub fn eval(device: Device, dtype: Dtype) -> Loading {
        Loading {
            device,
            dtype,
            parts: TrainableParts { llm: false, vision: false, audio: false },
            gradient_checkpointing: false,
            lora: None,
            reference_copy: false,
        }
    }

    /// What this loading computes in, when it differs from the recipe's dtype (the CPU's f32).
    pub fn cpu_fallback(&self) -> Option<String> {
        (self.device == Device::Cpu && self.dtype != Dtype::F32).then(|| {
            format!(
                "model.dtype {} runs in f32 on the CPU (weights rounded to {} values; libtorch's CPU \
                 half-precision kernels are slow and crash on some CPUs)",
                dtype_name(self.dtype),
                dtype_name(self.dtype)
            )
        })
    }
}

fn dtype_name(d: Dtype) -> &'static str {
    match d {
        Dtype::Bf16 => "bf16",
        Dtype::F16 => "f16",
        Dtype::F32 => "f32",
    }
}

/// The libtorch dtype of a recipe dtype.
pub fn kind_of(d: Dtype) -> Kind {
    match d {
        Dtype::Bf16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::F32 => Kind::Float,
    }
}

/// A loaded thinker and the tokenizer its prompts use.
pub struct Model {
    tt: TrainableThinker,
    pub encoder: Arc<dyn PromptEncoder>,
    pub vocab_limit: Option<usize>,
    /// The `tokenizer.json` the model was loaded with, copied into every saved checkpoint.
    tokenizer_file: Option<PathBuf>,
}

impl Model {
    /// Loads `dir` as `how` says (see the module doc).
    pub fn load(
        dir: &Path,
        how: &Loading,
        encoder: Arc<dyn PromptEncoder>,
        vocab_limit: Option<usize>,
    ) -> Result<Model, RunError> {
        let fail = |e: &dyn std::fmt::Display| RunError::Model(format!("{}: {e}", dir.display()));
        let opts = LoadOptions { dtype: Some(kind_of(how.dtype)), device: how.device };
        let (cfg, weights) = Weights::load(dir, opts).map_err(|e| fail(&e))?;
        fold_adapter_dir(&weights, dir).map_err(|e| fail(&e))?;
        let train = TrainOptions { checkpoint: how.gradient_checkpointing, ..TrainOptions::default() };
        let mut tt = TrainableThinker::from_weights(cfg, weights, how.parts, train).map_err(|e| fail(&e))?;
        tt.base_model = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()).display().to_string();
        if let Some(lora) = &how.lora {
            tt.thinker.add_lora(lora).map_err(|e| fail(&e))?;
        }
        if how.reference_copy {
            tt.keep_reference().map_err(|e| fail(&e))?;
        }
        let tokenizer_file = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
        Ok(Model { tt, encoder, vocab_limit, tokenizer_file })
    }

    /// The thinker (for scoring and training).
    pub fn thinker(&self) -> &TrainableThinker {
        &self.tt
    }

    /// The thinker, to load weights into.
    pub fn thinker_mut(&mut self) -> &mut TrainableThinker {
        &mut self.tt
    }

    /// The patch width of the vision tower (what media rows are cut into).
    pub fn patch_dim(&self) -> Result<usize, RunError> {
        Ok(self.thinker().thinker.vision.patch_dim as usize)
    }

    /// Rolls `specs` out with the thinker as the policy, keeping at most `prefix_cache_bytes` of
    /// episode contexts between turns.
    pub fn rollout(
        &mut self,
        driver: &Driver,
        specs: &[Arc<EpisodeSpec>],
        opener: Arc<MediaOpener>,
        prefix_cache_bytes: u64,
    ) -> Result<RolloutBatch, RunError> {
        let vocab_limit = self.vocab_limit;
        let thinker = &mut self.thinker_mut().thinker;
        // On the CPU every generation batch waits for all pending media, so which episodes share
        // a batch never depends on decoding speed and rollouts are bitwise reproducible
        // (docs/checkpoints.md); on CUDA generation overlaps media extraction.
        let fixed_batches = (thinker.device() == tch::Device::Cpu && driver.config.overlap).then(|| Driver {
            settings: driver.settings.clone(),
            template: driver.template.clone(),
            encoder: driver.encoder.clone(),
            config: DriverConfig { overlap: false, ..driver.config.clone() },
        });
        let driver = fixed_batches.as_ref().unwrap_or(driver);
        let mut policy = ThinkerPolicy::new(thinker, vocab_limit, prefix_cache_bytes);
        let mut out =
            tch::no_grad(|| driver.run(&mut policy, specs, opener)).map_err(|e| RunError::Rollout(e.to_string()))?;
        out.stats.cached_prompt_tokens = policy.cached_prompt_tokens;
        Ok(out)
    }

    /// Writes a stage's result to `dir` (through a temporary sibling and a rename): the weights
    /// plus PEFT adapter files, or with `merge_adapters` the adapters folded into the weights.
    pub fn save_result(&self, dir: &Path, merge_adapters: bool) -> Result<(), RunError> {
        let tmp = staging_dir(dir);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(RunError::io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(RunError::io(&tmp))?;
        let tt = self.thinker();
        let saved = if merge_adapters { tt.save_merged(&tmp) } else { tt.save_hf(&tmp) };
        saved.map_err(|e| RunError::Model(format!("saving {}: {e}", dir.display())))?;
        self.copy_tokenizer(&tmp)?;
        publish(&tmp, dir)
    }

    /// Copies the model's tokenizer into a checkpoint directory being written.
    pub fn copy_tokenizer(&self, dir: &Path) -> Result<(), RunError> {
        if let Some(tok) = &self.tokenizer_file {
            let to = dir.join("tokenizer.json");
            std::fs::copy(tok, &to).map_err(RunError::io(&to))?;
        }
        Ok(())
    }
}

/// The temporary sibling a checkpoint of `dir` is built in before [`publish`] renames it.
pub fn staging_dir(dir: &Path) -> PathBuf {
    dir.with_extension("tmp-save")
}

/// Puts the complete directory `tmp` in place of `dir`. The previous `dir` is moved aside first
/// and removed only after the rename, so a crash leaves either checkpoint whole.
pub fn publish(tmp: &Path, dir: &Path) -> Result<(), RunError> {
    let old = dir.with_extension("tmp-old");
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(RunError::io(&old))?;
    }
    // Durable before it becomes visible, as `checkpoint::atomic` publishes step directories.
    crate::checkpoint::atomic::sync_tree(tmp).map_err(RunError::io(tmp))?;
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(RunError::io(dir))?;
    }
    std::fs::rename(tmp, dir).map_err(RunError::io(dir))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::checkpoint::atomic::sync_dir(parent).map_err(RunError::io(parent))?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(RunError::io(&old))?;
    }
    Ok(())
}

/// The prompt tokenizer of the model in `dir`: `tokenizer` when given, else the directory's
/// `tokenizer.json`, else the small byte tokenizer over the config's special ids. Returns it
/// with the vocabulary size the sampler may emit.
pub fn encoder_for(dir: &Path, tokenizer: Option<&Path>) -> Result<(Arc<dyn PromptEncoder>, Option<usize>), RunError> {
    let tok = tokenizer.map_or_else(|| dir.join("tokenizer.json"), Path::to_path_buf);
    if tok.is_file() {
        let t = crate::model::chat_tokenizer_for_model(dir, &tok).map_err(RunError::Model)?;
        let limit = t.vocab_size();
        return Ok((Arc::new(t), Some(limit)));
    }
    let cfg_path = dir.join("config.json");
    let cfg =
        OmniThinkerConfig::from_file(&cfg_path).map_err(|e| RunError::Model(format!("{}: {e}", cfg_path.display())))?;
    let t = SmallTokenizer::from_config(&cfg).ok_or_else(|| {
        RunError::Model(format!(
            "{}: no tokenizer.json, and the config's special ids do not fit a byte tokenizer",
            dir.display()
        ))
    })?;
    let limit = t.vocab_limit();
    Ok((Arc::new(t), Some(limit)))
}
