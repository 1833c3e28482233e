//! The Hugging Face `config.json` of a Qwen2.5-Omni thinker, as serde structs that mirror the
//! file field for field (candle-transformers style), parsed with every missing or mistyped key
//! named by its JSON path. The consistency checks (`validate`) live in `model/mod.rs`.
//!
//! Two layouts are accepted: the full Omni file (`Qwen2_5OmniForConditionalGeneration` /
//! `Qwen2_5OmniModel`: thinker fields under `thinker_config`, talker and token2wav beside it) and
//! the thinker-only file (`Qwen2_5OmniThinkerForConditionalGeneration`: the same thinker fields at
//! the top level). Unknown fields are accepted and dropped; `talker_config` / `token2wav_config`
//! are kept as opaque JSON so the file round-trips, but nothing here interprets them.
//!
//! Defaults: none for anything that shapes a tensor or a position id. The transformers class
//! defaults are not the real checkpoint's values (`Qwen2_5OmniVisionEncoderConfig.hidden_size` is
//! 3584 there, 1280 in the real file; `Qwen2_5OmniTextConfig.tie_word_embeddings` is `true` there,
//! `false` in the real file), and the real `config.json` spells every field out, so a missing size,
//! special-token id or RoPE setting is an error naming its JSON key path
//! (`thinker_config.text_config.hidden_size`). The one resolved default is the word-embedding tie:
//! the thinker-level `tie_word_embeddings` wins (transformers 5 reads it from the thinker config),
//! then `text_config`'s, then `false` (the thinker class default, which the real file states).
//! Fields that only describe behaviour we do not implement (dropout, init range, sliding windows)
//! are `Option`s that `validate` checks when present.
//!
//! Left out: the talker / token2wav sub-configs (not modelled), the processor's
//! `preprocessor_config.json` and `generation_config.json` (read elsewhere), and RoPE scaling
//! variants other than the default M-RoPE (rejected by `validate`).

use crate::problem::Problem;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::path::Path;

/// `rope_scaling` (transformers 4.x) or `rope_parameters` (5.x) of the text model.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RopeScaling {
    pub mrope_section: Option<Vec<usize>>,
    pub rope_type: Option<String>,
    /// Legacy spelling of `rope_type` in 4.x files.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub rope_theta: Option<f64>,
}

/// `thinker_config.text_config`: the Qwen2 decoder.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Absent in Qwen2 files: `hidden_size / num_attention_heads`.
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    pub rope_theta: Option<f64>,
    pub rope_scaling: Option<RopeScaling>,
    pub rope_parameters: Option<RopeScaling>,
    pub max_position_embeddings: Option<usize>,
    pub hidden_act: Option<String>,
    pub tie_word_embeddings: Option<bool>,
    pub use_sliding_window: Option<bool>,
    pub sliding_window: Option<usize>,
    pub model_type: Option<String>,
    pub torch_dtype: Option<String>,
    pub dtype: Option<String>,
}

/// `thinker_config.vision_config`: the Qwen2.5-VL style ViT (separate q/k/v).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub out_hidden_size: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub spatial_merge_size: usize,
    pub in_channels: usize,
    pub window_size: usize,
    pub fullatt_block_indexes: Vec<usize>,
    /// Legacy duplicate of `hidden_size` in the real file.
    pub embed_dim: Option<usize>,
    pub hidden_act: Option<String>,
    pub tokens_per_second: Option<usize>,
    pub model_type: Option<String>,
}

/// `thinker_config.audio_config`: the Whisper-style audio encoder.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AudioConfig {
    pub d_model: usize,
    pub encoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub encoder_ffn_dim: usize,
    pub num_mel_bins: usize,
    pub output_dim: usize,
    pub n_window: usize,
    pub max_source_positions: usize,
    pub activation_function: Option<String>,
    pub scale_embedding: Option<bool>,
    pub model_type: Option<String>,
}

/// `eos_token_id` may be one id or a list.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

/// The thinker (`Qwen2_5OmniThinkerConfig`): `thinker_config` in the Omni file, the whole
/// thinker-only file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ThinkerConfig {
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    pub audio_config: AudioConfig,
    #[serde(alias = "audio_token_id")]
    pub audio_token_index: u32,
    #[serde(alias = "image_token_id")]
    pub image_token_index: u32,
    #[serde(alias = "video_token_id")]
    pub video_token_index: u32,
    pub audio_start_token_id: u32,
    pub audio_end_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
    pub position_id_per_seconds: u32,
    pub seconds_per_chunk: u32,
    pub vision_token_id: Option<u32>,
    pub user_token_id: Option<u32>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<TokenIds>,
    pub pad_token_id: Option<u32>,
    pub tie_word_embeddings: Option<bool>,
    pub architectures: Option<Vec<String>>,
    pub model_type: Option<String>,
    pub torch_dtype: Option<String>,
    pub dtype: Option<String>,
}

/// The full Omni file (`Qwen2_5OmniConfig`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct OmniConfig {
    pub thinker_config: ThinkerConfig,
    pub talker_config: Option<Value>,
    pub token2wav_config: Option<Value>,
    pub enable_audio_output: Option<bool>,
    pub architectures: Option<Vec<String>>,
    pub model_type: Option<String>,
    pub torch_dtype: Option<String>,
    pub dtype: Option<String>,
}

/// A parsed `config.json` in either layout. Serializes back to the layout it was read from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OmniThinkerConfig {
    Omni(OmniConfig),
    Thinker(ThinkerConfig),
}

/// Floating-point weight dtypes a thinker can be stored and computed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FloatDtype {
    F32,
    BF16,
    F16,
}

impl FloatDtype {
    /// `torch_dtype` spelling: `float32`, `bfloat16`, `float16` (also `fp32`, `bf16`, `fp16`).
    pub fn from_torch_name(name: &str) -> Option<FloatDtype> {
        match name {
            "float32" | "fp32" | "f32" => Some(FloatDtype::F32),
            "bfloat16" | "bf16" => Some(FloatDtype::BF16),
            "float16" | "fp16" | "f16" | "half" => Some(FloatDtype::F16),
            _ => None,
        }
    }

    pub fn bytes(self) -> u64 {
        match self {
            FloatDtype::F32 => 4,
            FloatDtype::BF16 | FloatDtype::F16 => 2,
        }
    }
}

/// The special-token ids the thinker needs, all read from the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecialTokens {
    pub audio: u32,
    pub image: u32,
    pub video: u32,
    pub audio_start: u32,
    pub audio_end: u32,
    pub vision_start: u32,
    pub vision_end: u32,
    pub vision_pad: Option<u32>,
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    pub pad: Option<u32>,
}

impl SpecialTokens {
    /// The media placeholder and marker ids (image, video, audio, and the vision and audio start
    /// and end markers): the tokens that stand for or frame encoder features.
    pub fn media_ids(&self) -> [u32; 7] {
        [self.image, self.video, self.audio, self.vision_start, self.vision_end, self.audio_start, self.audio_end]
    }
}

/// One config problem: the JSON key path it is about and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigIssue {
    pub key: String,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue { key: key.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON (line {line}, column {column}): {message}")]
    Json { path: String, line: usize, column: usize, message: String },
    #[error("{path}: not a Qwen2.5-Omni config: {message}")]
    Layout { path: String, message: String },
    #[error("{path}: {}", join_issues(.issues))]
    Fields { path: String, issues: Vec<ConfigIssue> },
}

fn join_issues(issues: &[ConfigIssue]) -> String {
    issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl ModelConfigError {
    /// One `Problem` per issue, located at the config file.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ModelConfigError::Fields { path, issues } => {
                issues.iter().map(|i| Problem::error(path.clone(), i.to_string())).collect()
            }
            ModelConfigError::Io { path, .. }
            | ModelConfigError::Json { path, .. }
            | ModelConfigError::Layout { path, .. } => {
                let full = self.to_string();
                let message = full.strip_prefix(&format!("{path}: ")).unwrap_or(&full).to_string();
                vec![Problem::error(path.clone(), message)]
            }
        }
    }
}

// Required keys per object, space separated; `a|b` accepts the serde alias `b` for `a`.
const TEXT_REQUIRED: &str = "vocab_size hidden_size intermediate_size num_hidden_layers \
    num_attention_heads num_key_value_heads rms_norm_eps";
const VISION_REQUIRED: &str = "depth hidden_size num_heads intermediate_size out_hidden_size \
    patch_size temporal_patch_size spatial_merge_size in_channels window_size fullatt_block_indexes";
const AUDIO_REQUIRED: &str = "d_model encoder_layers encoder_attention_heads encoder_ffn_dim \
    num_mel_bins output_dim n_window max_source_positions";
const THINKER_REQUIRED: &str = "text_config vision_config audio_config \
    audio_token_index|audio_token_id image_token_index|image_token_id \
    video_token_index|video_token_id audio_start_token_id audio_end_token_id \
    vision_start_token_id vision_end_token_id position_id_per_seconds seconds_per_chunk";

/// Sizes above this are rejected by `validate` (keeps all later arithmetic far from overflow).
pub const MAX_CONFIG_SIZE: usize = 1 << 24;

impl OmniThinkerConfig {
    /// Reads and parses `config.json` (no `validate`; call it separately).
    pub fn from_file(path: &Path) -> Result<Self, ModelConfigError> {
        let label = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ModelConfigError::Io { path: label.clone(), source })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| json_error(&label, &e))?;
        Self::from_value(value, &label)
    }

    /// Parses a `config.json` text; `Err` names the key path of every missing or mistyped field.
    pub fn from_json_str(text: &str) -> Result<Self, ModelConfigError> {
        let label = "config.json";
        let value: Value = serde_json::from_str(text).map_err(|e| json_error(label, &e))?;
        Self::from_value(value, label)
    }

    fn from_value(root: Value, label: &str) -> Result<Self, ModelConfigError> {
        let layout_err = |message: String| ModelConfigError::Layout { path: label.to_string(), message };
        let Value::Object(root_map) = &root else {
            return Err(layout_err("the top level is not a JSON object".into()));
        };
        let (prefix, thinker) = match (root_map.get("thinker_config"), root_map.get("text_config")) {
            (Some(Value::Object(t)), _) => ("thinker_config.", t),
            (Some(_), _) => return Err(layout_err("`thinker_config` is not an object".into())),
            (None, Some(_)) => ("", root_map),
            (None, None) => {
                let model_type = root_map.get("model_type").and_then(Value::as_str).unwrap_or("unknown");
                return Err(layout_err(format!(
                    "neither `thinker_config` nor `text_config` found (model_type {model_type})"
                )));
            }
        };
        let fail = |issues| ModelConfigError::Fields { path: label.to_string(), issues };
        let mut issues = Vec::new();
        check_required(thinker, prefix, THINKER_REQUIRED, &mut issues);
        for (key, required) in
            [("text_config", TEXT_REQUIRED), ("vision_config", VISION_REQUIRED), ("audio_config", AUDIO_REQUIRED)]
        {
            if let Some(Value::Object(sub)) = thinker.get(key) {
                check_required(sub, &format!("{prefix}{key}."), required, &mut issues);
            }
        }
        if let Some(Value::Object(text)) = thinker.get("text_config") {
            check_rope(text, &format!("{prefix}text_config."), &mut issues);
        }
        if !issues.is_empty() {
            return Err(fail(issues));
        }
        // Deserialize the sub-objects first so a type error is located at the deepest object.
        let (p, sub) = (prefix, |key: &str| thinker.get(key).cloned().unwrap_or(Value::Null));
        check_types::<TextConfig>(&sub("text_config"), &format!("{p}text_config"), &mut issues);
        check_types::<VisionConfig>(&sub("vision_config"), &format!("{p}vision_config"), &mut issues);
        check_types::<AudioConfig>(&sub("audio_config"), &format!("{p}audio_config"), &mut issues);
        if issues.is_empty() {
            let thinker_value = Value::Object(thinker.clone());
            check_types::<ThinkerConfig>(&thinker_value, p.trim_end_matches('.'), &mut issues);
        }
        if issues.is_empty() && !prefix.is_empty() {
            check_types::<OmniConfig>(&root, "", &mut issues);
        }
        if !issues.is_empty() {
            return Err(fail(issues));
        }
        let parsed = if prefix.is_empty() {
            serde_json::from_value(root).map(OmniThinkerConfig::Thinker)
        } else {
            serde_json::from_value(root).map(OmniThinkerConfig::Omni)
        };
        parsed.map_err(|e| fail(vec![ConfigIssue::new("(top level)", e.to_string())]))
    }

    pub fn thinker(&self) -> &ThinkerConfig {
        match self {
            OmniThinkerConfig::Omni(o) => &o.thinker_config,
            OmniThinkerConfig::Thinker(t) => t,
        }
    }

    pub fn text(&self) -> &TextConfig {
        &self.thinker().text_config
    }

    pub fn vision(&self) -> &VisionConfig {
        &self.thinker().vision_config
    }

    pub fn audio(&self) -> &AudioConfig {
        &self.thinker().audio_config
    }

    /// `"thinker_config."` for the Omni layout, `""` for thinker-only: prefix of JSON key paths.
    pub fn key_prefix(&self) -> &'static str {
        match self {
            OmniThinkerConfig::Omni(_) => "thinker_config.",
            OmniThinkerConfig::Thinker(_) => "",
        }
    }

    /// Per-head width of the LLM attention (`head_dim`, else `hidden_size / num_attention_heads`).
    pub fn head_dim(&self) -> usize {
        let t = self.text();
        t.head_dim.unwrap_or_else(|| t.hidden_size.checked_div(t.num_attention_heads).unwrap_or(0))
    }

    /// Whether `lm_head` is tied to `embed_tokens` (see the module doc for the resolution order).
    pub fn tie_word_embeddings(&self) -> bool {
        self.thinker().tie_word_embeddings.or(self.text().tie_word_embeddings).unwrap_or(false)
    }

    /// The M-RoPE split (t, h, w) of the rotary frequency pairs.
    pub fn mrope_section(&self) -> Option<&[usize]> {
        let t = self.text();
        [&t.rope_parameters, &t.rope_scaling].into_iter().flatten().find_map(|r| r.mrope_section.as_deref())
    }

    pub fn rope_theta(&self) -> Option<f64> {
        let t = self.text();
        t.rope_theta.or_else(|| [&t.rope_parameters, &t.rope_scaling].into_iter().flatten().find_map(|r| r.rope_theta))
    }

    /// The stored weight dtype name (`torch_dtype` or `dtype`, outermost level first).
    pub fn dtype_name(&self) -> Option<&str> {
        let (th, tx) = (self.thinker(), self.text());
        let outer = match self {
            OmniThinkerConfig::Omni(o) => o.torch_dtype.as_deref().or(o.dtype.as_deref()),
            OmniThinkerConfig::Thinker(_) => None,
        };
        outer
            .or(th.torch_dtype.as_deref())
            .or(th.dtype.as_deref())
            .or(tx.torch_dtype.as_deref())
            .or(tx.dtype.as_deref())
    }

    pub fn dtype(&self) -> Option<FloatDtype> {
        self.dtype_name().and_then(FloatDtype::from_torch_name)
    }

    pub fn special_tokens(&self) -> SpecialTokens {
        let th = self.thinker();
        let eos = match &th.eos_token_id {
            Some(TokenIds::One(id)) => vec![*id],
            Some(TokenIds::Many(ids)) => ids.clone(),
            None => Vec::new(),
        };
        SpecialTokens {
            audio: th.audio_token_index,
            image: th.image_token_index,
            video: th.video_token_index,
            audio_start: th.audio_start_token_id,
            audio_end: th.audio_end_token_id,
            vision_start: th.vision_start_token_id,
            vision_end: th.vision_end_token_id,
            vision_pad: th.vision_token_id,
            bos: th.bos_token_id,
            eos,
            pad: th.pad_token_id,
        }
    }

    /// Pretty `config.json` text in the layout this config was read from, without the `null`s
    /// of absent optional fields (transformers would read `"head_dim": null` as a value).
    pub fn to_json_string(&self) -> Result<String, serde_json::Error> {
        let mut value = serde_json::to_value(self)?;
        strip_nulls(&mut value);
        serde_json::to_string_pretty(&value)
    }
}

fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn json_error(label: &str, e: &serde_json::Error) -> ModelConfigError {
    ModelConfigError::Json { path: label.to_string(), line: e.line(), column: e.column(), message: e.to_string() }
}

fn check_required(obj: &Map<String, Value>, prefix: &str, required: &str, issues: &mut Vec<ConfigIssue>) {
    for names in required.split_whitespace() {
        let present = names.split('|').any(|n| obj.get(n).is_some_and(|v| !v.is_null()));
        if !present {
            let key = format!("{prefix}{}", names.split('|').next().unwrap_or_default());
            let message = "missing required key".into();
            issues.push(ConfigIssue { key, message });
        }
    }
}

fn check_rope(text: &Map<String, Value>, prefix: &str, issues: &mut Vec<ConfigIssue>) {
    let nested = |field: &str| {
        let present = |r: &str| text.get(r).and_then(|o| o.get(field)).is_some_and(|v| !v.is_null());
        present("rope_parameters") || present("rope_scaling")
    };
    if !nested("mrope_section") {
        let message = "missing required key (or rope_parameters.mrope_section)";
        issues.push(ConfigIssue::new(format!("{prefix}rope_scaling.mrope_section"), message));
    }
    if text.get("rope_theta").is_none_or(Value::is_null) && !nested("rope_theta") {
        let message = "missing required key (or rope_parameters.rope_theta)";
        issues.push(ConfigIssue::new(format!("{prefix}rope_theta"), message));
    }
}

/// Deserializes `value` as `T`; on failure finds the first key whose entry makes it fail (serde
/// visits entries in map order, so the shortest failing prefix of entries ends at the culprit).
fn check_types<T: DeserializeOwned>(value: &Value, path: &str, issues: &mut Vec<ConfigIssue>) {
    let Err(err) = serde_json::from_value::<T>(value.clone()) else {
        return;
    };
    if let Value::Object(map) = value {
        let mut partial = Map::new();
        for (k, v) in map {
            partial.insert(k.clone(), v.clone());
            if let Err(e) = serde_json::from_value::<T>(Value::Object(partial.clone())) {
                let message = e.to_string();
                if !message.starts_with("missing field") {
                    let key = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    issues.push(ConfigIssue::new(key, message));
                    return;
                }
            }
        }
    }
    let key = if path.is_empty() { "(top level)" } else { path };
    issues.push(ConfigIssue::new(key, err.to_string()));
}
