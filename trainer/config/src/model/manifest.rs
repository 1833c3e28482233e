//! The complete list of tensors a thinker config implies, with their Hugging Face checkpoint names
//! and shapes (docs/reference.md#checkpoint-layout), and the parameter count of each component
//! (LLM including `embed_tokens` and an untied `lm_head`, ViT, audio encoder).
//!
//! Names are built from the un-prefixed thinker name (`model.layers.0.mlp.up_proj.weight`) and a
//! [`KeyLayout`], detected from the names a checkpoint holds: `thinker.`-prefixed (the released
//! Omni checkpoint and thinker-only fine-tunes saved from it), bare (`model.*`, `visual.*`), or
//! transformers 5's in-memory renaming (`model.language_model.*`, `model.visual.*`).
//!
//! Left out: non-persistent buffers (RoPE tables, the audio sinusoid table), which are never
//! stored; the talker and token2wav (names starting `talker.` / `token2wav.` are "ignored", see
//! [`KeyLayout::is_ignored`]); fused-`qkv` Qwen2.5-VL vision checkpoints.

use super::config::OmniThinkerConfig;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Llm,
    Vision,
    Audio,
}

/// What a tensor is, for initialisation (and, later, weight-decay groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TensorRole {
    /// A matrix, convolution kernel or embedding table.
    Weight,
    /// A linear / convolution / LayerNorm bias.
    Bias,
    /// An RMSNorm / LayerNorm scale (initialised to 1).
    Norm,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorSpec {
    /// Full checkpoint name in the manifest's layout.
    pub name: String,
    pub shape: Vec<usize>,
    pub component: Component,
    pub role: TensorRole,
}

impl TensorSpec {
    /// Number of elements (saturating; `validate` keeps real configs far below the limit).
    pub fn numel(&self) -> u64 {
        self.shape.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64))
    }
}

/// How a checkpoint spells thinker tensor names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyLayout {
    /// `thinker.model.*`, `thinker.lm_head.weight`, `thinker.visual.*`, `thinker.audio_tower.*`.
    ThinkerPrefixed,
    /// `model.*`, `lm_head.weight`, `visual.*`, `audio_tower.*`.
    Bare,
    /// `model.language_model.*`, `lm_head.weight`, `model.visual.*`, `model.audio_tower.*`.
    Transformers5,
}

const BARE_ROOTS: [&str; 4] = ["model.", "lm_head.", "visual.", "audio_tower."];
const V5_ROOTS: [&str; 3] = ["model.language_model.", "model.visual.", "model.audio_tower."];

impl KeyLayout {
    /// The layout of a set of checkpoint names: `thinker.` wins, then transformers 5 names, then
    /// bare ones; `None` when no name looks like a thinker tensor.
    pub fn detect<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<KeyLayout> {
        let (mut v5, mut bare) = (false, false);
        for name in names {
            if name.starts_with("thinker.") {
                return Some(KeyLayout::ThinkerPrefixed);
            }
            v5 |= V5_ROOTS.iter().any(|r| name.starts_with(r));
            bare |= BARE_ROOTS.iter().any(|r| name.starts_with(r));
        }
        match (v5, bare) {
            (true, _) => Some(KeyLayout::Transformers5),
            (false, true) => Some(KeyLayout::Bare),
            (false, false) => None,
        }
    }

    /// The checkpoint name of the thinker tensor whose bare name is `bare`.
    pub fn name(self, bare: &str) -> String {
        match self {
            KeyLayout::ThinkerPrefixed => format!("thinker.{bare}"),
            KeyLayout::Bare => bare.to_string(),
            KeyLayout::Transformers5 => {
                for (from, to) in [("model.", "model.language_model."), ("visual.", "model.visual.")] {
                    if let Some(rest) = bare.strip_prefix(from) {
                        return format!("{to}{rest}");
                    }
                }
                match bare.strip_prefix("audio_tower.") {
                    Some(rest) => format!("model.audio_tower.{rest}"),
                    None => bare.to_string(),
                }
            }
        }
    }

    /// Whether `name` lies in this layout's thinker namespace (so an unknown one is suspicious).
    pub fn is_thinker_name(self, name: &str) -> bool {
        match self {
            KeyLayout::ThinkerPrefixed => name.starts_with("thinker."),
            KeyLayout::Bare | KeyLayout::Transformers5 => BARE_ROOTS.iter().any(|r| name.starts_with(r)),
        }
    }

    /// Talker and token2wav tensors: present in the full Omni checkpoint, never loaded.
    pub fn is_ignored(name: &str) -> bool {
        name.starts_with("talker.") || name.starts_with("token2wav.")
    }
}

/// Parameter counts per component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ParamCounts {
    /// Qwen2 decoder including `embed_tokens`, the final norm and (when untied) `lm_head`.
    pub llm: u64,
    pub vision: u64,
    pub audio: u64,
}

impl ParamCounts {
    pub fn total(&self) -> u64 {
        self.llm.saturating_add(self.vision).saturating_add(self.audio)
    }

    /// Counts of a config, independent of the key layout.
    pub fn of(cfg: &OmniThinkerConfig) -> ParamCounts {
        Manifest::new(cfg, KeyLayout::Bare).param_counts()
    }
}

/// Every tensor the thinker of a config implies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    pub layout: KeyLayout,
    pub tensors: Vec<TensorSpec>,
}

impl Manifest {
    /// The tensors of `cfg`'s thinker in `layout` (LLM, then ViT, then audio). Expects a config
    /// that passed `validate`; an inconsistent one still yields a list, with meaningless shapes.
    pub fn new(cfg: &OmniThinkerConfig, layout: KeyLayout) -> Manifest {
        let mut tensors = Vec::new();
        let mut push = |component, role, bare: String, shape: &[usize]| {
            let name = layout.name(&bare);
            tensors.push(TensorSpec { name, shape: shape.to_vec(), component, role });
        };
        use Component::{Audio, Llm, Vision};
        use TensorRole::{Bias, Norm, Weight};

        let t = cfg.text();
        let (h, v, i) = (t.hidden_size, t.vocab_size, t.intermediate_size);
        let hd = cfg.head_dim();
        let (q, kv) = (t.num_attention_heads.saturating_mul(hd), t.num_key_value_heads.saturating_mul(hd));
        push(Llm, Weight, "model.embed_tokens.weight".into(), &[v, h]);
        for l in 0..t.num_hidden_layers {
            let p = format!("model.layers.{l}");
            push(Llm, Norm, format!("{p}.input_layernorm.weight"), &[h]);
            for (proj, out) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                push(Llm, Weight, format!("{p}.self_attn.{proj}.weight"), &[out, h]);
                push(Llm, Bias, format!("{p}.self_attn.{proj}.bias"), &[out]);
            }
            push(Llm, Weight, format!("{p}.self_attn.o_proj.weight"), &[h, q]);
            push(Llm, Norm, format!("{p}.post_attention_layernorm.weight"), &[h]);
            push(Llm, Weight, format!("{p}.mlp.gate_proj.weight"), &[i, h]);
            push(Llm, Weight, format!("{p}.mlp.up_proj.weight"), &[i, h]);
            push(Llm, Weight, format!("{p}.mlp.down_proj.weight"), &[h, i]);
        }
        push(Llm, Norm, "model.norm.weight".into(), &[h]);
        if !cfg.tie_word_embeddings() {
            push(Llm, Weight, "lm_head.weight".into(), &[v, h]);
        }

        let vc = cfg.vision();
        let (vh, vi) = (vc.hidden_size, vc.intermediate_size);
        let (ps, merged) = (vc.patch_size, vh.saturating_mul(vc.spatial_merge_size.saturating_pow(2)));
        let patch = [vh, vc.in_channels, vc.temporal_patch_size, ps, ps];
        push(Vision, Weight, "visual.patch_embed.proj.weight".into(), &patch);
        for b in 0..vc.depth {
            let p = format!("visual.blocks.{b}");
            push(Vision, Norm, format!("{p}.norm1.weight"), &[vh]);
            push(Vision, Norm, format!("{p}.norm2.weight"), &[vh]);
            for proj in ["q", "k", "v", "proj"] {
                push(Vision, Weight, format!("{p}.attn.{proj}.weight"), &[vh, vh]);
                push(Vision, Bias, format!("{p}.attn.{proj}.bias"), &[vh]);
            }
            for (proj, out, inp) in [("gate_proj", vi, vh), ("up_proj", vi, vh), ("down_proj", vh, vi)] {
                push(Vision, Weight, format!("{p}.mlp.{proj}.weight"), &[out, inp]);
                push(Vision, Bias, format!("{p}.mlp.{proj}.bias"), &[out]);
            }
        }
        push(Vision, Norm, "visual.merger.ln_q.weight".into(), &[vh]);
        push(Vision, Weight, "visual.merger.mlp.0.weight".into(), &[merged, merged]);
        push(Vision, Bias, "visual.merger.mlp.0.bias".into(), &[merged]);
        push(Vision, Weight, "visual.merger.mlp.2.weight".into(), &[vc.out_hidden_size, merged]);
        push(Vision, Bias, "visual.merger.mlp.2.bias".into(), &[vc.out_hidden_size]);

        let ac = cfg.audio();
        let (d, f, out) = (ac.d_model, ac.encoder_ffn_dim, ac.output_dim);
        push(Audio, Weight, "audio_tower.conv1.weight".into(), &[d, ac.num_mel_bins, 3]);
        push(Audio, Bias, "audio_tower.conv1.bias".into(), &[d]);
        push(Audio, Weight, "audio_tower.conv2.weight".into(), &[d, d, 3]);
        push(Audio, Bias, "audio_tower.conv2.bias".into(), &[d]);
        push(Audio, Weight, "audio_tower.audio_bos_eos_token.weight".into(), &[2, out]);
        for l in 0..ac.encoder_layers {
            let p = format!("audio_tower.layers.{l}");
            push(Audio, Norm, format!("{p}.self_attn_layer_norm.weight"), &[d]);
            push(Audio, Bias, format!("{p}.self_attn_layer_norm.bias"), &[d]);
            for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                push(Audio, Weight, format!("{p}.self_attn.{proj}.weight"), &[d, d]);
                if proj != "k_proj" {
                    push(Audio, Bias, format!("{p}.self_attn.{proj}.bias"), &[d]);
                }
            }
            push(Audio, Norm, format!("{p}.final_layer_norm.weight"), &[d]);
            push(Audio, Bias, format!("{p}.final_layer_norm.bias"), &[d]);
            push(Audio, Weight, format!("{p}.fc1.weight"), &[f, d]);
            push(Audio, Bias, format!("{p}.fc1.bias"), &[f]);
            push(Audio, Weight, format!("{p}.fc2.weight"), &[d, f]);
            push(Audio, Bias, format!("{p}.fc2.bias"), &[d]);
        }
        push(Audio, Norm, "audio_tower.ln_post.weight".into(), &[d]);
        push(Audio, Bias, "audio_tower.ln_post.bias".into(), &[d]);
        push(Audio, Weight, "audio_tower.proj.weight".into(), &[out, d]);
        push(Audio, Bias, "audio_tower.proj.bias".into(), &[out]);
        Manifest { layout, tensors }
    }

    pub fn param_counts(&self) -> ParamCounts {
        let mut counts = ParamCounts::default();
        for t in &self.tensors {
            let slot = match t.component {
                Component::Llm => &mut counts.llm,
                Component::Vision => &mut counts.vision,
                Component::Audio => &mut counts.audio,
            };
            *slot = slot.saturating_add(t.numel());
        }
        counts
    }

    pub fn get(&self, name: &str) -> Option<&TensorSpec> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{QWEN25_OMNI_7B_THINKER_JSON, tiny_test_config};

    fn seven_b() -> OmniThinkerConfig {
        OmniThinkerConfig::from_json_str(QWEN25_OMNI_7B_THINKER_JSON).unwrap()
    }

    #[test]
    fn seven_b_counts_match_qwen_omni_md() {
        let m = Manifest::new(&seven_b(), KeyLayout::ThinkerPrefixed);
        let c = m.param_counts();
        // docs/reference.md#model-numbers.
        assert_eq!(c.llm, 7_615_616_512);
        assert_eq!(c.vision, 676_550_144);
        assert_eq!(c.audio, 639_647_232);
        assert_eq!(c.total(), 8_931_813_888);
        assert_eq!(c.total() * 2, 17_863_627_776); // bf16 bytes = index total_size
        // Tensor counts per prefix (docs/reference.md#checkpoint-layout).
        let count = |p: &str| m.tensors.iter().filter(|t| t.name.starts_with(p)).count();
        let counts = [count("thinker.visual."), count("thinker.audio_tower."), count("thinker.model.")];
        assert_eq!(counts, [518, 489, 338]);
        assert_eq!((count("thinker.lm_head.weight"), m.tensors.len()), (1, 1346));
    }

    #[test]
    fn seven_b_shapes_match_qwen_omni_md() {
        let m = Manifest::new(&seven_b(), KeyLayout::ThinkerPrefixed);
        let cases: &[(&str, &[usize])] = &[
            ("thinker.model.embed_tokens.weight", &[152064, 3584]),
            ("thinker.model.layers.27.input_layernorm.weight", &[3584]),
            ("thinker.model.layers.0.self_attn.q_proj.weight", &[3584, 3584]),
            ("thinker.model.layers.0.self_attn.q_proj.bias", &[3584]),
            ("thinker.model.layers.5.self_attn.k_proj.weight", &[512, 3584]),
            ("thinker.model.layers.5.self_attn.v_proj.bias", &[512]),
            ("thinker.model.layers.0.self_attn.o_proj.weight", &[3584, 3584]),
            ("thinker.model.layers.0.mlp.gate_proj.weight", &[18944, 3584]),
            ("thinker.model.layers.0.mlp.down_proj.weight", &[3584, 18944]),
            ("thinker.model.norm.weight", &[3584]),
            ("thinker.lm_head.weight", &[152064, 3584]),
            ("thinker.visual.patch_embed.proj.weight", &[1280, 3, 2, 14, 14]),
            ("thinker.visual.blocks.31.norm2.weight", &[1280]),
            ("thinker.visual.blocks.0.attn.k.bias", &[1280]),
            ("thinker.visual.blocks.0.attn.proj.weight", &[1280, 1280]),
            ("thinker.visual.blocks.0.mlp.up_proj.weight", &[3420, 1280]),
            ("thinker.visual.blocks.0.mlp.down_proj.bias", &[1280]),
            ("thinker.visual.merger.ln_q.weight", &[1280]),
            ("thinker.visual.merger.mlp.0.weight", &[5120, 5120]),
            ("thinker.visual.merger.mlp.2.weight", &[3584, 5120]),
            ("thinker.audio_tower.conv1.weight", &[1280, 128, 3]),
            ("thinker.audio_tower.conv2.weight", &[1280, 1280, 3]),
            ("thinker.audio_tower.audio_bos_eos_token.weight", &[2, 3584]),
            ("thinker.audio_tower.layers.31.self_attn_layer_norm.bias", &[1280]),
            ("thinker.audio_tower.layers.0.self_attn.k_proj.weight", &[1280, 1280]),
            ("thinker.audio_tower.layers.0.fc1.weight", &[5120, 1280]),
            ("thinker.audio_tower.layers.0.fc2.bias", &[1280]),
            ("thinker.audio_tower.ln_post.bias", &[1280]),
            ("thinker.audio_tower.proj.weight", &[3584, 1280]),
        ];
        for (name, shape) in cases {
            assert_eq!(m.get(name).map(|t| t.shape.as_slice()), Some(*shape), "{name}");
        }
        // Biases that do not exist (docs/reference.md#checkpoint-layout).
        for absent in [
            "thinker.model.layers.0.self_attn.o_proj.bias",
            "thinker.model.layers.0.mlp.gate_proj.bias",
            "thinker.visual.patch_embed.proj.bias",
            "thinker.audio_tower.layers.0.self_attn.k_proj.bias",
        ] {
            assert!(m.get(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn tiny_counts_by_hand() {
        let c = ParamCounts::of(&tiny_test_config());
        // LLM: embed + lm_head 2 x 152064 x 32 = 9,732,096; per layer norms 64 + q 1056 + k 528
        // + v 528 + o 1024 + mlp 3 x 32 x 64 = 6144 -> 9344, x 2 = 18,688; final norm 32.
        assert_eq!(c.llm, 9_732_096 + 18_688 + 32);
        // ViT: patch 32x3x2x14x14 = 37,632; per block norms 64 + q/k/v 3 x 1056 + proj 1056
        // + gate/up 2 x 1584 + down 1568 = 9024, x 2 = 18,048; ln_q 32; mlp.0 128x128+128 =
        // 16,512; mlp.2 32x128+32 = 4128.
        assert_eq!(c.vision, 37_632 + 18_048 + 32 + 16_512 + 4_128);
        // Audio: conv1 32x128x3+32 = 12,320; conv2 32x32x3+32 = 3104; bos/eos 64; per layer
        // ln 64 + q 1056 + k 1024 + v 1056 + out 1056 + ln 64 + fc1 2112 + fc2 2080 = 8512,
        // x 2 = 17,024; ln_post 64; proj 1056.
        assert_eq!(c.audio, 12_320 + 3_104 + 64 + 17_024 + 64 + 1_056);
        assert_eq!(c.total(), 9_860_800);
    }

    #[test]
    fn tied_embeddings_drop_lm_head() {
        let text =
            QWEN25_OMNI_7B_THINKER_JSON.replacen("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true", 1);
        let tied = OmniThinkerConfig::from_json_str(&text).unwrap();
        assert!(tied.tie_word_embeddings());
        let m = Manifest::new(&tied, KeyLayout::ThinkerPrefixed);
        assert!(m.get("thinker.lm_head.weight").is_none());
        assert_eq!(m.param_counts().llm, 7_615_616_512 - 152_064 * 3584);
    }

    #[test]
    fn layouts_are_detected_and_spelled() {
        let cases: &[(&[&str], Option<KeyLayout>)] = &[
            (&["talker.model.norm.weight", "thinker.model.norm.weight"], Some(KeyLayout::ThinkerPrefixed)),
            (&["model.norm.weight", "visual.merger.ln_q.weight"], Some(KeyLayout::Bare)),
            (&["lm_head.weight", "model.language_model.norm.weight"], Some(KeyLayout::Transformers5)),
            (&["talker.codec_head.weight", "token2wav.x"], None),
            (&[], None),
        ];
        for (names, want) in cases {
            assert_eq!(KeyLayout::detect(names.iter().copied()), *want, "{names:?}");
        }
        let spelled = [
            (
                KeyLayout::ThinkerPrefixed,
                ["thinker.model.norm.weight", "thinker.visual.x", "thinker.audio_tower.x", "thinker.lm_head.weight"],
            ),
            (KeyLayout::Bare, ["model.norm.weight", "visual.x", "audio_tower.x", "lm_head.weight"]),
            (
                KeyLayout::Transformers5,
                ["model.language_model.norm.weight", "model.visual.x", "model.audio_tower.x", "lm_head.weight"],
            ),
        ];
        for (layout, want) in spelled {
            let got = ["model.norm.weight", "visual.x", "audio_tower.x", "lm_head.weight"].map(|b| layout.name(b));
            assert_eq!(got, want);
            assert!(want.iter().all(|n| layout.is_thinker_name(n)));
        }
        assert!(KeyLayout::is_ignored("token2wav.code2wav_dit_model.proj_out.weight"));
        assert!(!KeyLayout::ThinkerPrefixed.is_thinker_name("talker.model.norm.weight"));
    }
}
