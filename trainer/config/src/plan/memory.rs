//! Per-rank GPU memory estimate for training the thinker: a pure function of parameter counts
//! (from the manifest), LLM dimensions and the training setup, so `omnirl validate` can say
//! "this does not fit" before any GPU is touched. The static parts (weights, reference,
//! gradients, master weights, optimizer state) are the tensors `omnirl train` allocates, byte
//! for byte (`trainer/tests/stage_models.rs` checks them against a loaded model and its
//! optimizer).
//!
//! Notation: `P_llm, P_vit, P_audio` parameters per component; `b` compute-dtype bytes (bf16 2,
//! f32 4); `D` trainable base parameters (the LLM in full fine-tuning, plus each trained
//! encoder); `A` LoRA adapter parameters (`r x (in + out)` per adapted linear, per layer; kept in
//! fp32); `T = D + A`; `W` world size; `L, h, I, V` LLM layers, hidden, MLP width, vocabulary;
//! `kv` = KV heads x head_dim.
//!
//! * weights    = (P_llm + P_vit + P_audio) x b + A x 4.
//! * reference  = D x b when a frozen copy of the trained weights is kept for the KL term
//!   (no adapters to switch off); LoRA uses the base with adapters off, so 0.
//! * grads      = D x b + A x 4: a gradient has its parameter's dtype.
//! * master     = D x 4 with fp32 master weights and b < 4 (adapters are fp32 already).
//! * optimizer  = T x 8 (AdamW m and v in fp32).
//! * ZeRO-1 keeps master and optimizer state only for the tensors a rank owns: with the
//!   trainable tensors' sizes ([`MemoryInputs::tensors`]) the estimate is the most loaded rank of
//!   the same whole-tensor partition the optimizer uses (`dist::zero1::partition`), else
//!   `⌈x / W⌉`. Weights and grads stay replicated.
//! * activations, per token of the micro-batch: one decoder layer saves for backward
//!   `S = 8h + b(5h + 2kv + 4I)` bytes (fp32 inputs of both RMSNorms; q, k, v, attention output,
//!   its reshaped copy, the post-norm output; gate, up, silu(gate), their product), and backward
//!   holds `G = b(h + 2I)` of gradients at a time. With activation checkpointing only the layer
//!   inputs persist: `L x h x b + S + G`; without: `L x S + G`. 7B bf16: 501,760 B/token with,
//!   6,190,080 B/token without.
//! * kv_cache   = rollout tokens (concurrent sequences x length) x 2 x L x kv x b (57,344 B/token
//!   for the 7B in bf16), plus the prefix cache's budget (episode contexts kept between turns).
//! * logits     = log-prob chunk tokens x V x 4 (one fp32 chunk of the vocabulary projection).
//! * overhead   = a fixed CUDA context + allocator fragmentation allowance.
//! * total      = weights + reference + grads + master + optimizer + overhead plus the larger of
//!   kv_cache and activations + logits: rollout and training are sequential phases of a step, and
//!   the caching allocator reuses the KV cache's blocks for the training activations.
//!
//! Left out (so the estimate is a floor, not a bound): activations of trained encoders (ViT
//! patches are 4x the visual tokens over 32 blocks) and the transient encoder forward under
//! no-grad; the logits chunk's gradient and bf16 copy during backward; attention-score memory of
//! non-fused attention (assumes SDPA/flash, no L^2 buffer); NCCL buffers; input tensors (pixel
//! patches, mel features); fragmentation beyond the fixed allowance.

use crate::model::{OmniThinkerConfig, ParamCounts};
use crate::problem::Problem;
use serde::Serialize;
use std::fmt;

pub const GIB: u64 = 1 << 30;
/// CUDA context with cuBLAS/cuDNN workspaces (~1 GiB) plus fragmentation allowance (~1 GiB).
pub const DEFAULT_OVERHEAD_BYTES: u64 = 2 * GIB;
/// Default log-prob chunk (tokens per vocabulary projection), docs/reference.md#logprobs.
pub const DEFAULT_LOGPROB_CHUNK: u64 = 1024;

/// The LLM sizes the estimate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LlmDims {
    pub layers: u64,
    pub hidden: u64,
    pub intermediate: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub vocab: u64,
}

impl LlmDims {
    pub fn of(cfg: &OmniThinkerConfig) -> LlmDims {
        let t = cfg.text();
        LlmDims {
            layers: t.num_hidden_layers as u64,
            hidden: t.hidden_size as u64,
            intermediate: t.intermediate_size as u64,
            heads: t.num_attention_heads as u64,
            kv_heads: t.num_key_value_heads as u64,
            head_dim: cfg.head_dim() as u64,
            vocab: t.vocab_size as u64,
        }
    }

    /// `2 x L x kv_heads x head_dim x bytes`: K and V of every layer for one token.
    pub fn kv_bytes_per_token(&self, dtype_bytes: u64) -> u64 {
        prod(&[2, self.layers, self.kv_heads, self.head_dim, dtype_bytes])
    }
}

/// The LLM linears LoRA can adapt (HF module names `q_proj` ... `down_proj`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
}

impl LoraTarget {
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::QProj,
        LoraTarget::KProj,
        LoraTarget::VProj,
        LoraTarget::OProj,
        LoraTarget::GateProj,
        LoraTarget::UpProj,
        LoraTarget::DownProj,
    ];

    /// `"q_proj"` ... `"down_proj"`.
    pub fn from_module_name(name: &str) -> Option<LoraTarget> {
        LoraTarget::ALL.into_iter().find(|t| t.module_name() == name)
    }

    /// The HF module name (`crate::model::LORA_TARGETS`, in the same order as [`Self::ALL`]).
    pub fn module_name(self) -> &'static str {
        crate::model::LORA_TARGETS[self as usize]
    }

    /// `(in, out)` features of this linear.
    pub fn features(self, d: &LlmDims) -> (u64, u64) {
        let (q, kv) = (prod(&[d.heads, d.head_dim]), prod(&[d.kv_heads, d.head_dim]));
        match self {
            LoraTarget::QProj => (d.hidden, q),
            LoraTarget::KProj | LoraTarget::VProj => (d.hidden, kv),
            LoraTarget::OProj => (q, d.hidden),
            LoraTarget::GateProj | LoraTarget::UpProj => (d.hidden, d.intermediate),
            LoraTarget::DownProj => (d.intermediate, d.hidden),
        }
    }
}

/// How the LLM is trained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainMode {
    /// Every LLM parameter is trained.
    Full,
    /// Rank-`rank` adapters on `targets` in every layer; the base LLM is frozen.
    Lora { rank: u64, targets: Vec<LoraTarget> },
}

/// LoRA adapter parameters: `rank x (in + out)` per target per layer.
pub fn lora_params(dims: &LlmDims, rank: u64, targets: &[LoraTarget]) -> u64 {
    let per_layer = targets.iter().map(|t| t.features(dims)).fold(0, |n, (i, o)| sum(&[n, i, o]));
    prod(&[rank, per_layer, dims.layers])
}

/// Saturating sum and product: absurd inputs give a huge estimate, never an overflow panic.
fn sum(xs: &[u64]) -> u64 {
    xs.iter().fold(0u64, |a, x| a.saturating_add(*x))
}

fn prod(xs: &[u64]) -> u64 {
    xs.iter().fold(1u64, |a, x| a.saturating_mul(*x))
}

/// Everything the estimate depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryInputs {
    pub params: ParamCounts,
    pub llm: LlmDims,
    /// Bytes of the compute dtype: 2 (bf16/f16) or 4 (f32).
    pub compute_dtype_bytes: u64,
    pub mode: TrainMode,
    pub train_vision: bool,
    pub train_audio: bool,
    pub fp32_master_weights: bool,
    /// ZeRO-1: shard master weights and optimizer states over `world_size` ranks.
    pub zero1: bool,
    pub world_size: u64,
    pub activation_checkpointing: bool,
    /// Tokens in one training micro-batch (sequences x prompt+response length).
    pub micro_batch_tokens: u64,
    /// Tokens held in the rollout KV cache at once (concurrent sequences x length).
    pub kv_cache_tokens: u64,
    /// Bytes of episode contexts kept between turns (`rollout.prefix_cache_mib`).
    pub prefix_cache_bytes: u64,
    /// Tokens per chunk of the fp32 log-prob computation.
    pub logprob_chunk_tokens: u64,
    /// A frozen copy of the trained weights for the KL term (ignored with LoRA).
    pub separate_reference: bool,
    pub overhead_bytes: u64,
    /// Element counts of the trainable tensors (base ones first, then adapters), for the exact
    /// ZeRO-1 partition; `None`: divide evenly.
    pub tensors: Option<Vec<TrainableTensor>>,
}

/// One tensor the optimizer updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrainableTensor {
    pub numel: u64,
    /// A LoRA adapter (fp32, no master copy) rather than a base weight.
    pub adapter: bool,
}

impl MemoryInputs {
    /// Sizes from `cfg` and the recommended single-GPU setup (docs/reference.md#memory-budget):
    /// compute dtype from `torch_dtype` (bf16 if absent), full fine-tuning of the LLM with frozen
    /// encoders, fp32 master weights, checkpointing on, no ZeRO, one rank, no tokens; set the rest.
    pub fn for_config(cfg: &OmniThinkerConfig) -> MemoryInputs {
        MemoryInputs {
            params: ParamCounts::of(cfg),
            llm: LlmDims::of(cfg),
            compute_dtype_bytes: cfg.dtype().map_or(2, |d| d.bytes()),
            mode: TrainMode::Full,
            train_vision: false,
            train_audio: false,
            fp32_master_weights: true,
            zero1: false,
            world_size: 1,
            activation_checkpointing: true,
            micro_batch_tokens: 0,
            kv_cache_tokens: 0,
            prefix_cache_bytes: 0,
            logprob_chunk_tokens: DEFAULT_LOGPROB_CHUNK,
            separate_reference: false,
            overhead_bytes: DEFAULT_OVERHEAD_BYTES,
            tensors: None,
        }
    }
}

/// The estimate, in bytes per rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryBreakdown {
    pub trainable_params: u64,
    pub weights: u64,
    pub reference: u64,
    pub grads: u64,
    pub master: u64,
    pub optimizer: u64,
    pub activations: u64,
    pub kv_cache: u64,
    pub logits: u64,
    pub overhead: u64,
    /// Peak: static parts + overhead + max(kv_cache, activations + logits).
    pub total: u64,
}

/// Master and optimizer bytes of the most loaded ZeRO-1 rank (see the module doc); without
/// ZeRO-1 the one rank holds everything.
fn sharded_state(inp: &MemoryInputs, master_bytes: u64, dense: u64, trainable: u64) -> (u64, u64) {
    let shards = if inp.zero1 { inp.world_size.max(1) } else { 1 };
    let even = (prod(&[dense, master_bytes]).div_ceil(shards), prod(&[trainable, 8]).div_ceil(shards));
    let Some(tensors) = inp.tensors.as_ref() else { return even };
    let numels: Vec<usize> = tensors.iter().map(|t| usize::try_from(t.numel).unwrap_or(usize::MAX)).collect();
    let Ok(owners) = crate::dist::shard::partition(&numels, shards as u32) else { return even };
    let mut per_rank = vec![(0u64, 0u64); shards as usize];
    for (t, owner) in tensors.iter().zip(owners) {
        let r = &mut per_rank[owner as usize];
        if !t.adapter {
            r.0 = sum(&[r.0, prod(&[t.numel, master_bytes])]);
        }
        r.1 = sum(&[r.1, prod(&[t.numel, 8])]);
    }
    per_rank.into_iter().max_by_key(|(m, o)| sum(&[*m, *o])).unwrap_or(even)
}

/// Computes the per-rank estimate (see the module doc for every formula).
pub fn estimate(inp: &MemoryInputs) -> MemoryBreakdown {
    let b = inp.compute_dtype_bytes;
    let d = &inp.llm;
    let p = &inp.params;
    let adapters = match &inp.mode {
        TrainMode::Full => 0,
        TrainMode::Lora { rank, targets } => lora_params(d, *rank, targets),
    };
    let llm_dense = if inp.mode == TrainMode::Full { p.llm } else { 0 };
    let vision = if inp.train_vision { p.vision } else { 0 };
    let audio = if inp.train_audio { p.audio } else { 0 };
    let dense = sum(&[llm_dense, vision, audio]);
    let trainable = sum(&[dense, adapters]);
    let master_bytes = if inp.fp32_master_weights && b < 4 { 4 } else { 0 };

    let weights = sum(&[prod(&[p.total(), b]), prod(&[adapters, 4])]);
    let reference = if inp.separate_reference && adapters == 0 { prod(&[dense, b]) } else { 0 };
    let grads = sum(&[prod(&[dense, b]), prod(&[adapters, 4])]);
    let (master, optimizer) = sharded_state(inp, master_bytes, dense, trainable);

    let (h, i, kv) = (d.hidden, d.intermediate, prod(&[d.kv_heads, d.head_dim]));
    let saved_per_layer = sum(&[prod(&[8, h]), prod(&[b, sum(&[prod(&[5, h]), prod(&[2, kv]), prod(&[4, i])])])]);
    let backward = prod(&[b, sum(&[h, prod(&[2, i])])]);
    let per_token = if inp.activation_checkpointing {
        sum(&[prod(&[d.layers, h, b]), saved_per_layer, backward])
    } else {
        sum(&[prod(&[d.layers, saved_per_layer]), backward])
    };
    let activations = prod(&[inp.micro_batch_tokens, per_token]);
    let kv_cache = sum(&[prod(&[inp.kv_cache_tokens, d.kv_bytes_per_token(b)]), inp.prefix_cache_bytes]);
    let logits = prod(&[inp.logprob_chunk_tokens, d.vocab, 4]);
    let overhead = inp.overhead_bytes;
    let peak_phase = kv_cache.max(sum(&[activations, logits]));
    let total = sum(&[weights, reference, grads, master, optimizer, overhead, peak_phase]);
    MemoryBreakdown {
        trainable_params: trainable,
        weights,
        reference,
        grads,
        master,
        optimizer,
        activations,
        kv_cache,
        logits,
        overhead,
        total,
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / GIB as f64
}

impl fmt::Display for MemoryBreakdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = [
            ("weights", self.weights),
            ("reference", self.reference),
            ("grads", self.grads),
            ("master", self.master),
            ("optimizer", self.optimizer),
            ("activations", self.activations),
            ("kv_cache", self.kv_cache),
            ("logits", self.logits),
            ("overhead", self.overhead),
        ];
        for (name, bytes) in rows {
            writeln!(f, "  {name:<12}{:>9.2} GiB", gib(bytes))?;
        }
        write!(
            f,
            "  {:<12}{:>9.2} GiB per rank (static + overhead + max(kv_cache, activations + logits))",
            "total",
            gib(self.total)
        )
    }
}

/// A warning when the estimate exceeds `capacity_bytes` (the device's usable memory), located at
/// `location` (e.g. the recipe key that sets the device memory); `None` when it fits.
pub fn check_capacity(b: &MemoryBreakdown, capacity_bytes: u64, location: &str) -> Option<Problem> {
    if b.total <= capacity_bytes {
        return None;
    }
    let mut parts = [
        ("weights", b.weights),
        ("reference", b.reference),
        ("grads", b.grads),
        ("master", b.master),
        ("optimizer", b.optimizer),
        ("activations", b.activations),
        ("kv_cache", b.kv_cache),
    ];
    parts.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    let largest: Vec<String> = parts.iter().take(3).map(|(n, x)| format!("{n} {:.1}", gib(*x))).collect();
    let message = format!(
        "estimated GPU memory {:.1} GiB per rank exceeds the {:.1} GiB available (largest, GiB: {}); \
         consider LoRA, freezing the encoders, ZeRO-1 over more ranks, activation checkpointing, \
         or fewer tokens per micro-batch / rollout",
        gib(b.total),
        gib(capacity_bytes),
        largest.join(", ")
    );
    Some(Problem::warning(location, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::QWEN25_OMNI_7B_THINKER_JSON;

    fn seven_b() -> MemoryInputs {
        let cfg = OmniThinkerConfig::from_json_str(QWEN25_OMNI_7B_THINKER_JSON).unwrap();
        MemoryInputs::for_config(&cfg)
    }

    /// H100 80 GB: about 78 GiB usable (docs/reference.md#memory-budget).
    const H100: u64 = 78 * GIB;

    #[test]
    fn lora_targets_are_the_hf_module_names_in_order() {
        let names: Vec<&str> = LoraTarget::ALL.iter().map(|t| t.module_name()).collect();
        assert_eq!(names, crate::model::LORA_TARGETS);
        assert!(LoraTarget::ALL.iter().all(|&t| LoraTarget::from_module_name(t.module_name()) == Some(t)));
    }

    #[test]
    fn kv_cache_and_lora_sizes_match_qwen_omni_md() {
        let d = seven_b().llm;
        // docs/reference.md#model-numbers: 2 x 28 layers x 4 KV heads x 128 x 2 bytes
        // = 57,344 B/token.
        assert_eq!(d.kv_bytes_per_token(2), 57_344);
        // docs/reference.md#memory-budget: r x 90,112 per layer
        // (q 7168 + k 4096 + v 4096 + o 7168 + gate/up/down 3 x 22,528).
        assert_eq!(lora_params(&d, 64, &LoraTarget::ALL), 64 * 90_112 * 28);
        assert_eq!(lora_params(&d, 64, &LoraTarget::ALL), 161_480_704);
        // q and v only, r 8: 8 x (7168 + 4096) x 28.
        assert_eq!(lora_params(&d, 8, &[LoraTarget::QProj, LoraTarget::VProj]), 2_523_136);
        assert_eq!(LoraTarget::from_module_name("gate_proj"), Some(LoraTarget::GateProj));
        assert_eq!(LoraTarget::from_module_name("qkv"), None);
    }

    /// Hand calculations for the 7B (P = 8,931,813,888; P_llm = 7,615,616,512; A_64 = 161,480,704):
    /// checkpointed activations 28 x 3584 x 2 + S 218,112 + G 82,944 = 501,760 B/token where
    /// S = 8 x 3584 + 2 x (5 x 3584 + 2 x 512 + 4 x 18,944), G = 2 x (3584 + 2 x 18,944);
    /// logits 1024 x 152,064 x 4 = 622,854,144; KV 57,344 B/token; overhead 2 GiB.
    #[test]
    fn seven_b_scenarios() {
        struct Case {
            what: &'static str,
            setup: fn(&mut MemoryInputs),
            // weights, reference, grads, master, optimizer, activations, kv_cache, total
            want: [u64; 8],
            fits_h100: bool,
        }
        #[rustfmt::skip]
        let cases = [
            // 16 B/param: bf16 weight 2 + bf16 grad 2 + fp32 master 4 + Adam 8 = 142,909,022,208
            // static + 2 GiB + 8192 x 501,760 + logits.
            Case { what: "1 GPU, full FT of the whole thinker", setup: |m| {
                    m.train_vision = true; m.train_audio = true; m.micro_batch_tokens = 8192;
                }, want: [17_863_627_776, 0, 17_863_627_776, 35_727_255_552, 71_454_511_104, 4_110_417_920, 0, 149_789_777_920],
                fits_h100: false },
            // LLM only: 17,863,627,776 + 14 x P_llm = 124,482,258,944 static.
            Case { what: "1 GPU, full FT of the LLM", setup: |m| m.micro_batch_tokens = 16384,
                want: [17_863_627_776, 0, 15_231_233_024, 30_462_466_048, 60_924_932_096, 8_220_835_840, 0, 135_473_432_576],
                fits_h100: false },
            // Adapters fp32: weights 17,863,627,776 + 4A; grads 4A; Adam 8A; static 20,447,319,040
            // (≈20.5 GB); rollout 16 x 20,480 tokens x 57,344 beats 16K-token training.
            Case { what: "1 GPU, LoRA r=64, all linears", setup: |m| {
                    m.mode = TrainMode::Lora { rank: 64, targets: LoraTarget::ALL.to_vec() };
                    m.micro_batch_tokens = 16384; m.kv_cache_tokens = 16 * 20_480; m.separate_reference = true;
                }, want: [18_509_550_592, 0, 645_922_816, 0, 1_291_845_632, 8_220_835_840, 18_790_481_920, 41_385_284_608],
                fits_h100: true },
            // ZeRO-1 over 8: master 30,462,466,048 / 8, Adam 60,924,932,096 / 8; 4 x 20,480 rollout tokens.
            Case { what: "8 GPUs ZeRO-1, full FT of the LLM", setup: |m| {
                    m.zero1 = true; m.world_size = 8; m.micro_batch_tokens = 16384; m.kv_cache_tokens = 4 * 20_480;
                }, want: [17_863_627_776, 0, 15_231_233_024, 3_807_808_256, 7_615_616_512, 8_220_835_840, 4_697_620_480, 55_509_459_200],
                fits_h100: true },
            Case { what: "8 GPUs ZeRO-1, full FT of the whole thinker", setup: |m| {
                    m.zero1 = true; m.world_size = 8; m.micro_batch_tokens = 16384; m.train_vision = true; m.train_audio = true;
                }, want: [17_863_627_776, 0, 17_863_627_776, 4_465_906_944, 8_931_813_888, 8_220_835_840, 0, 60_116_150_016],
                fits_h100: true },
            // No checkpointing: 28 x S + G = 6,190,080 B/token; 16,384 tokens = 101,418,270,720 B.
            Case { what: "1 GPU, LoRA without checkpointing", setup: |m| {
                    m.mode = TrainMode::Lora { rank: 64, targets: LoraTarget::ALL.to_vec() };
                    m.micro_batch_tokens = 16384; m.activation_checkpointing = false;
                }, want: [18_509_550_592, 0, 645_922_816, 0, 1_291_845_632, 101_418_270_720, 0, 124_635_927_552],
                fits_h100: false },
            // Pure bf16 (no master): grads 2 x P_llm; reference copy 2 x P_llm; fp32 Adam 8 x P_llm.
            Case { what: "1 GPU, bf16 full FT of the LLM with a reference copy", setup: |m| {
                    m.fp32_master_weights = false; m.separate_reference = true;
                }, want: [17_863_627_776, 15_231_233_024, 15_231_233_024, 0, 60_924_932_096, 0, 0, 112_021_363_712],
                fits_h100: false },
        ];
        for case in cases {
            let mut inputs = seven_b();
            (case.setup)(&mut inputs);
            let b = estimate(&inputs);
            let got = [b.weights, b.reference, b.grads, b.master, b.optimizer, b.activations, b.kv_cache, b.total];
            assert_eq!(got, case.want, "{}", case.what);
            assert_eq!((b.logits, b.overhead), (622_854_144, 2 * GIB), "{}", case.what);
            assert_eq!(
                check_capacity(&b, H100, "distributed.gpu_memory_gib").is_none(),
                case.fits_h100,
                "{}",
                case.what
            );
        }
    }

    #[test]
    fn zero1_with_tensor_sizes_is_the_most_loaded_rank() {
        // Tensors of 6, 5, 4, 3, 2 elements over 2 ranks, longest first to the least loaded:
        // rank 0 gets 6 + 3 + 2 = 11, rank 1 gets 5 + 4 = 9. bf16 base weights: master 4 B,
        // Adam 8 B per element; the adapter (numel 3) has no master.
        let mut inputs = seven_b();
        inputs.zero1 = true;
        inputs.world_size = 2;
        inputs.tensors = Some(
            [(6, false), (5, false), (4, false), (3, true), (2, false)]
                .map(|(numel, adapter)| TrainableTensor { numel, adapter })
                .to_vec(),
        );
        let b = estimate(&inputs);
        assert_eq!((b.master, b.optimizer), ((6 + 2) * 4, 11 * 8));
        inputs.world_size = 1;
        assert_eq!((estimate(&inputs).master, estimate(&inputs).optimizer), ((6 + 5 + 4 + 2) * 4, 20 * 8));
    }

    #[test]
    fn absurd_inputs_saturate_instead_of_panicking() {
        let mut inputs = seven_b();
        inputs.micro_batch_tokens = u64::MAX;
        inputs.llm.layers = u64::MAX;
        inputs.mode = TrainMode::Lora { rank: u64::MAX, targets: LoraTarget::ALL.to_vec() };
        assert_eq!(estimate(&inputs).total, u64::MAX);
    }

    #[test]
    fn warning_and_display() {
        let mut inputs = seven_b();
        inputs.micro_batch_tokens = 16384;
        let b = estimate(&inputs);
        let p = check_capacity(&b, H100, "distributed.gpu_memory_gib").unwrap();
        assert!(!p.is_error());
        assert_eq!(p.location, "distributed.gpu_memory_gib");
        // 135,473,432,576 B = 126.17 GiB; optimizer 60,924,932,096 B = 56.74 GiB.
        assert!(p.message.starts_with("estimated GPU memory 126.2 GiB per rank exceeds the 78.0 GiB"), "{}", p.message);
        assert!(p.message.contains("largest, GiB: optimizer 56.7, master 28.4, weights 16.6"), "{}", p.message);
        let text = b.to_string();
        assert!(text.contains("  weights         16.64 GiB\n"), "{text}");
        assert!(text.contains("  total          126.17 GiB per rank"), "{text}");
        let json = serde_json::to_value(b).unwrap();
        assert_eq!(json["total"], 135_473_432_576u64);
    }
}
