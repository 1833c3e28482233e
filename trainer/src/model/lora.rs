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
//! Left out: dropout on the adapter input, rank-stabilised scaling, adapters on the encoders.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{Kind, Tensor};

/// The LLM linears LoRA may target (PEFT module names).
pub const LORA_TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

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
