//! `omnirl bench`: throughput, memory and parity measurements of the thinker on libtorch, the
//! figures of `docs/performance.md`. One file per benchmark ([`learner`], [`decode`], [`encoders`],
//! [`rl_memory`], [`parity`], [`nccl`]); the hardware side (GPU name, datasheet peaks, device
//! memory probe, matmul / copy ceilings) in [`hw`]. Every benchmark builds a randomly initialised
//! thinker of a named [`Shape`] directly in memory (no checkpoint on disk) and returns a
//! `Serialize` record that the CLI prints as one JSON line.
//!
//! Shapes: `tiny` (the test fixture's tiny thinker: LLM hidden 32, real vocabulary), `mid` (LLM
//! hidden 512, 4 layers, small encoders; for parity), `7b` (the Qwen2.5-Omni-7B thinker,
//! docs/reference.md#model-numbers). Every benchmark runs at `tiny` on the CPU in seconds, which
//! is what CI checks.
//!
//! Precision: on CUDA the weights live and compute in the asked dtype (bf16 by default). On the CPU,
//! half-precision weights are rounded to that dtype but computed in f32, as `model::weights` loads
//! them (libtorch's CPU bf16 GEMMs are slow and die with SIGILL on this project's CI VMs).
//!
//! Left out: multi-GPU benchmarks (the NCCL check runs at world size 1) and real checkpoints (the
//! figures depend on shapes, not on values).

pub mod decode;
pub mod encoders;
pub mod hw;
pub mod learner;
pub mod nccl;
pub mod parity;
pub mod rl_memory;

use crate::model::thinker::{ModelError, Thinker};
use crate::model::weights::{Weights, WeightsError};
use crate::model::{
    Component, KeyLayout, Manifest, OmniThinkerConfig, QWEN25_OMNI_7B_THINKER_JSON, TensorRole, tiny_test_config,
};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// Standard deviation of the random weights (as `checkpoint::write_random_checkpoint`).
pub const INIT_STD: f64 = 0.02;

/// Token ids the benchmarks feed: below every special id (151643 and up), so no placeholder.
pub const PLAIN_VOCAB: u32 = 151_643;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Learner(#[from] crate::learner::LearnerError),
    #[error(transparent)]
    Nccl(#[from] crate::dist::nccl::NcclError),
    #[error(transparent)]
    Comm(#[from] crate::dist::comm::CommError),
    #[error("{0}")]
    Options(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("benchmark shape config: {0}")]
    Config(String),
}

pub type BResult<T> = Result<T, BenchError>;

/// A named model shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Tiny,
    Mid,
    #[value(name = "7b")]
    #[serde(rename = "7b")]
    Seven,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::Tiny => "tiny",
            Shape::Mid => "mid",
            Shape::Seven => "7b",
        }
    }

    /// The thinker config of this shape.
    pub fn config(self) -> BResult<OmniThinkerConfig> {
        let cfg = match self {
            Shape::Tiny => tiny_test_config(),
            Shape::Seven => parse(QWEN25_OMNI_7B_THINKER_JSON)?,
            Shape::Mid => {
                let mut v: Value = serde_json::from_str(QWEN25_OMNI_7B_THINKER_JSON)
                    .map_err(|e| BenchError::Config(format!("the 7B fixture: {e}")))?;
                v["text_config"]["hidden_size"] = json!(512);
                v["text_config"]["num_hidden_layers"] = json!(4);
                v["text_config"]["num_attention_heads"] = json!(8);
                v["text_config"]["num_key_value_heads"] = json!(2);
                v["text_config"]["intermediate_size"] = json!(1536);
                v["text_config"]["rope_scaling"]["mrope_section"] = json!([8, 12, 12]);
                v["vision_config"] = json!({"depth": 4, "hidden_size": 256, "num_heads": 4,
                    "intermediate_size": 512, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                    "window_size": 112, "fullatt_block_indexes": [3], "out_hidden_size": 512, "in_channels": 3,
                    "hidden_act": "silu"});
                v["audio_config"] = json!({"d_model": 256, "encoder_layers": 4, "encoder_attention_heads": 4,
                    "encoder_ffn_dim": 1024, "num_mel_bins": 128, "max_source_positions": 1500, "n_window": 100,
                    "output_dim": 512, "activation_function": "gelu"});
                parse(&v.to_string())?
            }
        };
        let issues = cfg.validate();
        if !issues.is_empty() {
            let list: Vec<String> = issues.iter().map(ToString::to_string).collect();
            return Err(BenchError::Config(list.join("; ")));
        }
        Ok(cfg)
    }
}

fn parse(text: &str) -> BResult<OmniThinkerConfig> {
    OmniThinkerConfig::from_json_str(text).map_err(|e| BenchError::Config(e.to_string()))
}

/// The fields every benchmark record starts with (flattened into its JSON, so the records
/// keep their keys and their order).
#[derive(Debug, Clone, Serialize)]
pub struct RecordHeader {
    pub bench: &'static str,
    pub implementation: &'static str,
    pub device: hw::DeviceInfo,
    pub shape: ShapeInfo,
    pub dtype: &'static str,
    pub compute_dtype: &'static str,
}

impl RecordHeader {
    /// Our record of `bench` for this device, shape and placement.
    pub fn new(bench: &'static str, device: hw::DeviceInfo, shape: ShapeInfo, p: &Placement) -> RecordHeader {
        RecordHeader {
            bench,
            implementation: "omnirl",
            device,
            shape,
            dtype: kind_name(p.storage),
            compute_dtype: kind_name(p.compute),
        }
    }
}

/// Parameter counts of the LLM that the FLOP and byte formulas use.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeInfo {
    pub name: &'static str,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub vocab: usize,
    /// Every LLM tensor (embedding and lm_head included).
    pub llm_params: u64,
    /// Weights multiplied per token: every LLM tensor but the embedding table, plus lm_head
    /// (the embedding again when tied). The `N` of `6·N·tokens`.
    pub matmul_params: u64,
    pub vision_params: u64,
    pub audio_params: u64,
}

impl ShapeInfo {
    pub fn new(shape: Shape, cfg: &OmniThinkerConfig) -> Self {
        let t = cfg.text();
        let (mut llm, mut vision, mut audio, mut embed) = (0u64, 0u64, 0u64, 0u64);
        for spec in Manifest::new(cfg, KeyLayout::Bare).tensors {
            match spec.component {
                Component::Llm => llm += spec.numel(),
                Component::Vision => vision += spec.numel(),
                Component::Audio => audio += spec.numel(),
            }
            if spec.name == "model.embed_tokens.weight" {
                embed = spec.numel();
            }
        }
        let tied = if cfg.tie_word_embeddings() { embed } else { 0 };
        ShapeInfo {
            name: shape.name(),
            hidden: t.hidden_size,
            layers: t.num_hidden_layers,
            heads: t.num_attention_heads,
            kv_heads: t.num_key_value_heads,
            head_dim: cfg.head_dim(),
            intermediate: t.intermediate_size,
            vocab: t.vocab_size,
            llm_params: llm,
            matmul_params: llm - embed + tied,
            vision_params: vision,
            audio_params: audio,
        }
    }

    /// KV-cache bytes per token over all layers.
    pub fn kv_bytes_per_token(&self, elt: u64) -> u64 {
        2 * (self.layers * self.kv_heads * self.head_dim) as u64 * elt
    }
}

/// `--device` (`model::parse_device`) with the benchmarks' error kinds.
pub fn parse_device(s: &str) -> BResult<Device> {
    crate::model::parse_device(s).map_err(|e| match e {
        crate::model::DeviceError::Unknown(_) => BenchError::Options(e.to_string()),
        crate::model::DeviceError::NoCuda(_) => BenchError::Unavailable(e.to_string()),
    })
}

/// `auto` (bf16 on CUDA, f32 on the CPU), `bf16`, `f16`, `f32`.
pub fn parse_dtype(s: &str, device: Device) -> BResult<Kind> {
    Ok(match s {
        "auto" if device == Device::Cpu => Kind::Float,
        "auto" | "bf16" | "bfloat16" => Kind::BFloat16,
        "f16" | "fp16" | "float16" => Kind::Half,
        "f32" | "fp32" | "float32" => Kind::Float,
        other => return Err(BenchError::Options(format!("--dtype {other}: expected auto, bf16, f16 or f32"))),
    })
}

/// Name of a dtype in the records.
pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::BFloat16 => "bf16",
        Kind::Half => "f16",
        Kind::Float => "f32",
        _ => "other",
    }
}

/// Bytes per element of a dtype.
pub fn kind_bytes(k: Kind) -> u64 {
    match k {
        Kind::BFloat16 | Kind::Half => 2,
        Kind::Double => 8,
        _ => 4,
    }
}

/// `"cpu"` or `"cuda:N"`.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// Waits for the device's queued work (no-op on the CPU).
pub fn sync(d: Device) {
    if let Device::Cuda(i) = d {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Where and in what precision a benchmark's model lives. `storage` is the dtype the weights are
/// rounded to; `compute` the one they are held in (f32 on the CPU, see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub device: Device,
    pub storage: Kind,
    pub compute: Kind,
}

impl Placement {
    pub fn new(device: Device, dtype: Kind) -> Self {
        let compute = if device == Device::Cpu { Kind::Float } else { dtype };
        Placement { device, storage: dtype, compute }
    }

    /// A note for the records when the CPU computes in f32 what was asked in half precision.
    pub fn note(&self) -> Option<String> {
        (self.storage != self.compute)
            .then(|| format!("{} weights computed in f32 on the CPU (see model::weights)", kind_name(self.storage)))
    }
}

/// Random weights for the tensors of `components` (norms 1, biases 0, weights N(0, 0.02²)),
/// drawn in f32 on `gen_device` after seeding libtorch, then rounded to `p.storage` and held in
/// `p.compute` on `p.device`.
pub fn random_weights(
    cfg: &OmniThinkerConfig,
    p: Placement,
    seed: i64,
    components: &[Component],
    gen_device: Device,
) -> BResult<Weights> {
    tch::manual_seed(seed);
    let mut map = BTreeMap::new();
    for spec in Manifest::new(cfg, KeyLayout::Bare).tensors {
        if !components.contains(&spec.component) {
            continue;
        }
        let shape: Vec<i64> = spec.shape.iter().map(|&d| d as i64).collect();
        let opts = (Kind::Float, gen_device);
        let t = match spec.role {
            TensorRole::Norm => Tensor::f_ones(&shape, opts)?,
            TensorRole::Bias => Tensor::f_zeros(&shape, opts)?,
            TensorRole::Weight => Tensor::f_randn(&shape, opts)?.f_mul_scalar(INIT_STD)?,
        };
        let t = t.f_to_device(p.device)?.f_to_kind(p.storage)?.f_to_kind(p.compute)?;
        map.insert(spec.name, t);
    }
    Ok(Weights::from_map(map, p.compute, p.device))
}

/// A whole random thinker (LLM and both encoders), generated on its own device.
pub fn random_thinker(cfg: &OmniThinkerConfig, p: Placement, seed: i64) -> BResult<Thinker> {
    let all = [Component::Llm, Component::Vision, Component::Audio];
    let w = random_weights(cfg, p, seed, &all, p.device)?;
    Ok(Thinker::new(cfg.clone(), w)?)
}

/// `n` deterministic plain token ids (no special or placeholder id).
pub fn plain_ids(n: usize, salt: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i.wrapping_mul(104_729).wrapping_add(salt.wrapping_mul(7_919))) % PLAIN_VOCAB as usize) as u32)
        .collect()
}

/// Mean and minimum of a list of seconds.
pub fn mean_min(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    (mean, xs.iter().copied().fold(f64::INFINITY, f64::min))
}

/// Peak resident memory of this process (`VmHWM`), for CPU runs; `None` where unreadable.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_validate_and_count() {
        for s in [Shape::Tiny, Shape::Mid, Shape::Seven] {
            let cfg = s.config().unwrap();
            let info = ShapeInfo::new(s, &cfg);
            assert!(info.matmul_params > 0 && info.matmul_params < info.llm_params, "{s:?}");
        }
        let seven = ShapeInfo::new(Shape::Seven, &Shape::Seven.config().unwrap());
        // docs/reference.md#model-numbers: LLM 7,615,616,512 including the
        // 545,001,472-element embedding.
        assert_eq!(seven.llm_params, 7_615_616_512);
        assert_eq!(seven.matmul_params, 7_615_616_512 - 152_064 * 3584);
        assert_eq!(seven.vision_params, 676_550_144);
        assert_eq!(seven.audio_params, 639_647_232);
        assert_eq!(seven.kv_bytes_per_token(2), 57_344);
    }

    #[test]
    fn parses_options() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert!(parse_device("gpu").is_err());
        assert_eq!(parse_dtype("auto", Device::Cpu).unwrap(), Kind::Float);
        assert_eq!(parse_dtype("auto", Device::Cuda(0)).unwrap(), Kind::BFloat16);
        assert!(parse_dtype("int8", Device::Cpu).is_err());
        let p = Placement::new(Device::Cpu, Kind::BFloat16);
        assert_eq!(p.compute, Kind::Float);
        assert!(p.note().is_some());
        assert!(plain_ids(1000, 3).iter().all(|&i| i < PLAIN_VOCAB));
    }
}
