//! LoRA adapters on the LLM's linear layers (Hu et al. 2021, PEFT conventions): for a target
//! `W [out, in]`, trainable `A [r, in]` ~ kaiming-uniform and `B [out, r] = 0`, output
//! `x Wᵀ + (alpha / r) · x Aᵀ Bᵀ`. The base weights stay frozen, so the same model with adapters
//! switched off ([`LoraSwitch::set`]) is the reference policy: no second copy of the weights.
//!
//! Adapters are kept in fp32 (the trainable master copy) and the activation is cast to fp32 for
//! the adapter branch, then back. Names follow PEFT (`...q_proj.lora_A.weight`), so
//! [`lora_tensors`](crate::model::thinker::Thinker::lora_tensors) can be saved as an adapter file,
//! and [`Thinker::merge_lora`](crate::model::thinker::Thinker::merge_lora) folds them into the
//! base for a plain HF checkpoint.
//!
//! On disk the adapters follow PEFT: `adapter_model.safetensors` with those names and
//! `adapter_config.json` ([`peft_config`]); [`fold_adapter_dir`] merges such a directory's
//! adapters into loaded base weights (what `merge_and_unload` does), so a saved adapter
//! checkpoint loads as the model it describes.
//!
//! Left out: dropout on the adapter input (a recipe with `lora.dropout > 0` is refused),
//! adapters on the encoders, DoRA.

use super::weights::{Weights, WeightsError};
use crate::checkpoint::tensor_io::read_safetensors;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{Kind, Tensor};

/// The adapter weights of a checkpoint directory (PEFT's name).
pub const ADAPTER_FILE: &str = "adapter_model.safetensors";
/// The adapter settings of a checkpoint directory (PEFT's name).
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";

pub use crate::model::LORA_TARGETS;

/// Adapter settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// Module names from [`LORA_TARGETS`].
    pub targets: Vec<String>,
    /// Seeds the initialisation of the A matrices.
    pub seed: i64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig { rank: 16, alpha: 32.0, targets: LORA_TARGETS.iter().map(|s| s.to_string()).collect(), seed: 0 }
    }
}

impl LoraConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.rank == 0 {
            return Err("LoRA rank must be positive".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(format!("LoRA alpha {} must be positive", self.alpha));
        }
        if self.targets.is_empty() {
            return Err("LoRA needs at least one target module".into());
        }
        for t in &self.targets {
            if !LORA_TARGETS.contains(&t.as_str()) {
                return Err(format!("unknown LoRA target `{t}` (expected one of {LORA_TARGETS:?})"));
            }
        }
        Ok(())
    }
}

/// Shared on/off switch of every adapter of a model.
#[derive(Debug, Clone)]
pub struct LoraSwitch(Arc<AtomicBool>);

impl Default for LoraSwitch {
    fn default() -> Self {
        LoraSwitch(Arc::new(AtomicBool::new(true)))
    }
}

impl LoraSwitch {
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One adapter pair.
#[derive(Debug)]
pub struct Lora {
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f64,
    pub switch: LoraSwitch,
}

impl Lora {
    /// A fresh adapter for `w [out, in]` (A kaiming-uniform(a=√5) like PEFT, B zero), trainable.
    pub fn new(w: &Tensor, rank: usize, alpha: f64, switch: LoraSwitch) -> Result<Lora, tch::TchError> {
        let (out, inp) = match w.size()[..] {
            [o, i] => (o, i),
            _ => return Err(tch::TchError::Shape(format!("LoRA target must be a matrix, got {:?}", w.size()))),
        };
        let dev = w.device();
        let r = rank as i64;
        // kaiming_uniform(a = sqrt(5)) bound = 1 / sqrt(fan_in)
        let bound = 1.0 / (inp as f64).sqrt();
        let a = Tensor::f_rand([r, inp], (Kind::Float, dev))?.f_mul_scalar(2.0 * bound)?.f_sub_scalar(bound)?;
        let b = Tensor::f_zeros([out, r], (Kind::Float, dev))?;
        Ok(Lora {
            a: a.f_set_requires_grad(true)?,
            b: b.f_set_requires_grad(true)?,
            scale: alpha / rank as f64,
            switch,
        })
    }

    pub fn enabled(&self) -> bool {
        self.switch.get()
    }

    /// `scale · x Aᵀ Bᵀ` in fp32, cast to `x`'s dtype.
    pub fn delta(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let xf = x.f_to_kind(Kind::Float)?;
        xf.f_matmul(&self.a.f_tr()?)?.f_matmul(&self.b.f_tr()?)?.f_mul_scalar(self.scale)?.f_to_kind(x.kind())
    }

    /// `W + scale · B A` in `W`'s dtype.
    pub fn merged(&self, w: &Tensor) -> Result<Tensor, tch::TchError> {
        let d = self.b.f_matmul(&self.a)?.f_mul_scalar(self.scale)?;
        w.f_to_kind(Kind::Float)?.f_add(&d)?.f_to_kind(w.kind())
    }
}

/// PEFT's `adapter_config.json` for adapters `cfg` on the model in `base_model`.
pub fn peft_config(cfg: &LoraConfig, base_model: &str) -> serde_json::Value {
    serde_json::json!({
        "peft_type": "LORA",
        "base_model_name_or_path": base_model,
        "r": cfg.rank,
        "lora_alpha": cfg.alpha,
        "lora_dropout": 0.0,
        "target_modules": cfg.targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "use_dora": false,
        "init_lora_weights": true,
        "inference_mode": true,
        "modules_to_save": null,
    })
}

/// The bare weight name (`model.layers.0.self_attn.q_proj.weight`) a PEFT adapter key adapts,
/// and whether the key is its `A` matrix; `None` for keys that are not LoRA matrices.
fn adapted_weight(key: &str) -> Option<(String, bool)> {
    let rest = key.strip_prefix("base_model.model.").unwrap_or(key);
    let rest = rest.strip_prefix("thinker.").unwrap_or(rest);
    let (module, is_a) = match (rest.strip_suffix(".lora_A.weight"), rest.strip_suffix(".lora_B.weight")) {
        (Some(m), _) => (m, true),
        (_, Some(m)) => (m, false),
        _ => return None,
    };
    Some((format!("{module}.weight"), is_a))
}

/// Merges the PEFT adapters of `dir` (when it has [`ADAPTER_CONFIG_FILE`]) into `weights`:
/// `W + (lora_alpha / r)·B·A` per adapted weight, in the weight's dtype. Returns how many weights
/// changed (0 without adapters).
pub fn fold_adapter_dir(weights: &Weights, dir: &Path) -> Result<usize, WeightsError> {
    let cfg_path = dir.join(ADAPTER_CONFIG_FILE);
    if !cfg_path.is_file() {
        return Ok(0);
    }
    let io = |path: &Path, message: String| WeightsError::Io { path: path.display().to_string(), message };
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| io(&cfg_path, e.to_string()))?;
    let cfg: serde_json::Value = serde_json::from_str(&text).map_err(|e| io(&cfg_path, format!("not JSON: {e}")))?;
    let rank = cfg.get("r").and_then(serde_json::Value::as_f64).filter(|r| *r > 0.0);
    let alpha = cfg.get("lora_alpha").and_then(serde_json::Value::as_f64);
    let (Some(rank), Some(alpha)) = (rank, alpha) else {
        return Err(io(&cfg_path, "needs a positive `r` and a numeric `lora_alpha`".into()));
    };
    let rslora = cfg.get("use_rslora").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let scale = if rslora { alpha / rank.sqrt() } else { alpha / rank };
    let file = dir.join(ADAPTER_FILE);
    let mut pairs: BTreeMap<String, (Option<tch::Tensor>, Option<tch::Tensor>)> = BTreeMap::new();
    read_safetensors(&file, |key, t| {
        if let Some((weight, is_a)) = adapted_weight(key) {
            let slot = pairs.entry(weight).or_default();
            if is_a { slot.0 = Some(t) } else { slot.1 = Some(t) }
        }
        Ok(())
    })
    .map_err(|e| io(&file, e.to_string()))?;
    let n = pairs.len();
    for (weight, pair) in pairs {
        let (Some(a), Some(b)) = pair else {
            return Err(io(&file, format!("`{weight}` has only one of lora_A / lora_B")));
        };
        let w = weights.get(&weight).map_err(|_| io(&file, format!("adapts `{weight}`, which the model lacks")))?;
        let merged = tch::no_grad(|| -> Result<tch::Tensor, tch::TchError> {
            let d = b.f_to_kind(Kind::Float)?.f_matmul(&a.f_to_kind(Kind::Float)?)?.f_mul_scalar(scale)?;
            w.f_to_kind(Kind::Float)?.f_add(&d.f_to_device(w.device())?)?.f_to_kind(w.kind())
        })?;
        weights.assign(&weight, &merged).map_err(|e| io(&file, e.to_string()))?;
    }
    Ok(n)
}
