//! The Qwen2.5-Omni thinker on libtorch: [`weights`] (loading / saving HF checkpoints),
//! [`text`], [`vision`], [`audio`], [`rope`] (TMRoPE), [`thinker`] (merge + forward),
//! [`generate`] (with [`prefix`] caching across turns), [`logprobs`] (training forward), [`lora`], [`policy`] (the rollout `Policy`),
//! [`device`] (`--device`); shared blocks in [`layers`]. Its description without libtorch (the
//! config, its checks, the tensor manifest, fixtures) is `trainer_config::model`, re-exported
//! here.

pub mod audio;
pub mod device;
pub mod generate;
pub mod layers;
pub mod logprobs;
pub mod lora;
pub mod pixels;
pub mod policy;
pub mod prefix;
pub mod rope;
pub mod text;
pub mod thinker;
pub mod vision;
pub mod weights;

pub use device::{DeviceError, parse_device};
pub use trainer_config::model::*;
