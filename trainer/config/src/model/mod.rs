//! The Qwen2.5-Omni thinker's description, without libtorch: its `config.json` ([`config`]),
//! the consistency checks `omnirl validate` runs on it ([`OmniThinkerConfig::validate`], here),
//! the tensors it implies ([`manifest`]), which parts train ([`TrainableParts`]), the chat
//! template settings it implies ([`chat_config`]), and the config fixtures tests and the
//! quickstart use: the real 7B values ([`QWEN25_OMNI_7B_THINKER_JSON`]) and a tiny model
//! ([`tiny_test_config`]). The network itself is the `trainer` crate's `model`.
//!
//! Left out: tokenizer checks (the tokenizer and chat template live in `rollout::chat`).

pub mod config;
pub mod manifest;
mod parts;

pub use config::{ConfigIssue, FloatDtype, ModelConfigError, OmniThinkerConfig, SpecialTokens};
pub use manifest::{Component, KeyLayout, Manifest, ParamCounts, TensorRole, TensorSpec};
pub use parts::TrainableParts;

/// The language model's linear layers LoRA may target, by their Hugging Face (and PEFT) module
/// names: the one list the recipe checks, the recipe default, the memory plan and the adapters
/// use.
pub const LORA_TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

use crate::problem::Problem;
use config::MAX_CONFIG_SIZE;
use std::path::Path;

/// Collects issues under one JSON key prefix.
struct Issues<'a> {
    prefix: String,
    out: &'a mut Vec<ConfigIssue>,
}

impl Issues<'_> {
    fn check(&mut self, ok: bool, key: &str, message: String) {
        if !ok {
            self.out.push(ConfigIssue::new(format!("{}{key}", self.prefix), message));
        }
    }

    fn sizes(&mut self, sizes: &[(&str, usize)]) {
        for &(key, n) in sizes {
            self.check(n > 0, key, "must be positive".into());
            let big = format!("{n} is implausibly large (> {MAX_CONFIG_SIZE})");
            self.check(n <= MAX_CONFIG_SIZE, key, big);
        }
    }

    fn name(&mut self, key: &str, value: Option<&str>, want: &str) {
        let found = value.unwrap_or(want);
        let msg = format!("`{found}` is not supported (only `{want}`)");
        self.check(found == want, key, msg);
    }
}

impl OmniThinkerConfig {
    /// Every inconsistency at once, keyed by JSON path (empty when the config is usable): sizes
    /// positive and sane, heads divide widths, KV heads divide heads, `mrope_section` sums to
    /// `head_dim / 2`, full-attention blocks `< depth`, encoder outputs match the LLM width,
    /// special-token ids distinct and inside the vocabulary, activations and RoPE type supported.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut out = Vec::new();
        self.validate_text(&mut out);
        self.validate_vision(&mut out);
        self.validate_audio(&mut out);
        self.validate_thinker(&mut out);
        out
    }

    fn validate_text(&self, out: &mut Vec<ConfigIssue>) {
        let t = self.text();
        let mut c = Issues { prefix: format!("{}text_config.", self.key_prefix()), out };
        c.sizes(&[
            ("vocab_size", t.vocab_size),
            ("hidden_size", t.hidden_size),
            ("intermediate_size", t.intermediate_size),
            ("num_hidden_layers", t.num_hidden_layers),
            ("num_attention_heads", t.num_attention_heads),
            ("num_key_value_heads", t.num_key_value_heads),
        ]);
        let (heads, kv, hs) = (t.num_attention_heads.max(1), t.num_key_value_heads.max(1), t.hidden_size);
        let ok = t.head_dim.is_some() || hs.is_multiple_of(heads);
        c.check(ok, "num_attention_heads", format!("{heads} heads do not divide hidden_size {hs}"));
        let msg = format!("{kv} KV heads do not divide {heads} attention heads");
        c.check(heads.is_multiple_of(kv), "num_key_value_heads", msg);
        let hd = self.head_dim();
        let msg = format!("head_dim {hd} must be positive and even (rotary embeddings)");
        c.check(hd.is_multiple_of(2) && hd > 0, "hidden_size", msg);
        let in_params = t.rope_parameters.as_ref().is_some_and(|r| r.mrope_section.is_some());
        let key = if in_params { "rope_parameters" } else { "rope_scaling" };
        let section = self.mrope_section().unwrap_or_default();
        let sum = section.iter().fold(0usize, |s, x| s.saturating_add(*x));
        let msg = format!("{section:?} must be 3 numbers summing to head_dim / 2 = {}", hd / 2);
        c.check(section.len() == 3 && sum == hd / 2, &format!("{key}.mrope_section"), msg);
        let theta = self.rope_theta().unwrap_or(0.0);
        for (key, x) in [("rope_theta", theta), ("rms_norm_eps", t.rms_norm_eps)] {
            c.check(x.is_finite() && x > 0.0, key, format!("{x} must be a positive number"));
        }
        for (key, rope) in [("rope_scaling", &t.rope_scaling), ("rope_parameters", &t.rope_parameters)] {
            let Some(rope) = rope else { continue };
            let kind = rope.rope_type.as_deref().or(rope.type_.as_deref()).unwrap_or("default");
            let msg = format!("rope type `{kind}` is not supported (only the default M-RoPE)");
            c.check(kind == "default" || kind == "mrope", key, msg);
        }
        c.name("hidden_act", t.hidden_act.as_deref(), "silu");
        let msg = "sliding-window attention is not supported".into();
        c.check(t.use_sliding_window != Some(true), "use_sliding_window", msg);
    }

    fn validate_vision(&self, out: &mut Vec<ConfigIssue>) {
        let (t, v) = (self.text(), self.vision());
        let mut c = Issues { prefix: format!("{}vision_config.", self.key_prefix()), out };
        c.sizes(&[
            ("depth", v.depth),
            ("hidden_size", v.hidden_size),
            ("num_heads", v.num_heads),
            ("intermediate_size", v.intermediate_size),
            ("out_hidden_size", v.out_hidden_size),
            ("patch_size", v.patch_size),
            ("temporal_patch_size", v.temporal_patch_size),
            ("spatial_merge_size", v.spatial_merge_size),
            ("in_channels", v.in_channels),
            ("window_size", v.window_size),
        ]);
        let (vheads, vhs) = (v.num_heads.max(1), v.hidden_size);
        let msg = format!("{vheads} heads must split hidden_size {vhs} into a head_dim divisible by 4");
        c.check(vhs.is_multiple_of(vheads) && (vhs / vheads).is_multiple_of(4), "num_heads", msg);
        for (i, &block) in v.fullatt_block_indexes.iter().enumerate() {
            let key = format!("fullatt_block_indexes[{i}]");
            c.check(block < v.depth, &key, format!("block {block} is not < depth {}", v.depth));
            let unique = !v.fullatt_block_indexes[..i].contains(&block);
            c.check(unique, &key, format!("block {block} is listed twice"));
        }
        let px = v.patch_size.saturating_mul(v.spatial_merge_size).max(1);
        let msg = format!("{} is not a multiple of patch_size x spatial_merge_size = {px}", v.window_size);
        c.check(v.window_size.is_multiple_of(px), "window_size", msg);
        let msg = format!("{} differs from text_config.hidden_size {}", v.out_hidden_size, t.hidden_size);
        c.check(v.out_hidden_size == t.hidden_size, "out_hidden_size", msg);
        let embed_dim = v.embed_dim.unwrap_or(vhs);
        let msg = format!("{embed_dim} differs from hidden_size {vhs}");
        c.check(embed_dim == vhs, "embed_dim", msg);
        c.name("hidden_act", v.hidden_act.as_deref(), "silu");
    }

    fn validate_audio(&self, out: &mut Vec<ConfigIssue>) {
        let (t, a) = (self.text(), self.audio());
        let mut c = Issues { prefix: format!("{}audio_config.", self.key_prefix()), out };
        c.sizes(&[
            ("d_model", a.d_model),
            ("encoder_layers", a.encoder_layers),
            ("encoder_attention_heads", a.encoder_attention_heads),
            ("encoder_ffn_dim", a.encoder_ffn_dim),
            ("num_mel_bins", a.num_mel_bins),
            ("output_dim", a.output_dim),
            ("n_window", a.n_window),
            ("max_source_positions", a.max_source_positions),
        ]);
        let (aheads, d) = (a.encoder_attention_heads.max(1), a.d_model);
        let msg = format!("{aheads} heads do not divide d_model {d}");
        c.check(d.is_multiple_of(aheads), "encoder_attention_heads", msg);
        let msg = format!("{d} must be even and >= 4 (sinusoidal positions)");
        c.check(d.is_multiple_of(2) && d >= 4, "d_model", msg);
        let msg = format!("{} exceeds max_source_positions {}", a.n_window, a.max_source_positions);
        c.check(a.n_window <= a.max_source_positions, "n_window", msg);
        let msg = format!("{} differs from text_config.hidden_size {}", a.output_dim, t.hidden_size);
        c.check(a.output_dim == t.hidden_size, "output_dim", msg);
        c.name("activation_function", a.activation_function.as_deref(), "gelu");
    }

    /// Special-token ids, TMRoPE time settings and `torch_dtype`.
    fn validate_thinker(&self, out: &mut Vec<ConfigIssue>) {
        let (p, t, th) = (self.key_prefix(), self.text(), self.thinker());
        let mut c = Issues { prefix: p.to_string(), out };
        let ids = [
            ("audio_token_index", Some(th.audio_token_index)),
            ("image_token_index", Some(th.image_token_index)),
            ("video_token_index", Some(th.video_token_index)),
            ("audio_start_token_id", Some(th.audio_start_token_id)),
            ("audio_end_token_id", Some(th.audio_end_token_id)),
            ("vision_start_token_id", Some(th.vision_start_token_id)),
            ("vision_end_token_id", Some(th.vision_end_token_id)),
            ("vision_token_id", th.vision_token_id),
        ];
        let present: Vec<(&str, u32)> = ids.iter().filter_map(|(k, id)| Some((*k, (*id)?))).collect();
        for (i, &(key, id)) in present.iter().enumerate() {
            let msg = format!("token id {id} is outside the vocabulary ({})", t.vocab_size);
            c.check((id as usize) < t.vocab_size, key, msg);
            if let Some((other, _)) = present[..i].iter().find(|(_, o)| *o == id) {
                c.check(false, key, format!("token id {id} is also {p}{other}"));
            }
        }
        for (key, n) in
            [("position_id_per_seconds", th.position_id_per_seconds), ("seconds_per_chunk", th.seconds_per_chunk)]
        {
            c.check(n > 0, key, "must be positive".into());
        }
        if let Some(name) = self.dtype_name() {
            let msg = format!("`{name}` is not one of float32, bfloat16, float16");
            c.check(FloatDtype::from_torch_name(name).is_some(), "torch_dtype", msg);
        }
    }

    /// [`validate`](Self::validate) as error `Problem`s located at `location` (the config file).
    pub fn validation_problems(&self, location: &str) -> Vec<Problem> {
        self.validate().into_iter().map(|i| Problem::error(location, i.to_string())).collect()
    }
}

/// The Qwen2.5-Omni-7B thinker values (docs/reference.md#model-numbers), thinker-only layout
/// (`trainer/tests/fixtures/qwen25_omni_7b_thinker_config.json`).
pub const QWEN25_OMNI_7B_THINKER_JSON: &str =
    include_str!("../../../tests/fixtures/qwen25_omni_7b_thinker_config.json");

/// A tiny thinker in the full Omni layout with the real vocabulary size and special-token ids
/// (so the real tokenizer works with it): LLM hidden 32, 2 layers, 2 heads / 1 KV head
/// (head_dim 16, mrope [2, 3, 3]), untied lm_head; ViT depth 2 (full attention in block 1), hidden
/// 32; audio 2 layers, d_model 32. 9,860,800 parameters, 19.7 MB in bf16
/// (`trainer/tests/fixtures/tiny_omni_config.json`).
pub const TINY_OMNI_CONFIG_JSON: &str = include_str!("../../../tests/fixtures/tiny_omni_config.json");

/// [`TINY_OMNI_CONFIG_JSON`], parsed.
pub fn tiny_test_config() -> OmniThinkerConfig {
    match OmniThinkerConfig::from_json_str(TINY_OMNI_CONFIG_JSON) {
        Ok(cfg) => cfg,
        // A fixed constant covered by `fixtures_parse_and_validate`: a bug here, not bad input.
        Err(e) => unreachable!("TINY_OMNI_CONFIG_JSON does not parse: {e}"),
    }
}

/// The chat template's media ids and expansion constants from a thinker config.
pub fn chat_config(cfg: &OmniThinkerConfig) -> rollout::chat::ChatConfig {
    let t = cfg.thinker();
    rollout::chat::ChatConfig {
        image: t.image_token_index,
        video: t.video_token_index,
        audio: t.audio_token_index,
        vision_bos: t.vision_start_token_id,
        vision_eos: t.vision_end_token_id,
        audio_bos: t.audio_start_token_id,
        audio_eos: t.audio_end_token_id,
        spatial_merge_size: cfg.vision().spatial_merge_size,
        position_id_per_seconds: f64::from(t.position_id_per_seconds),
        seconds_per_chunk: f64::from(t.seconds_per_chunk),
    }
}

/// The chat tokenizer for `tokenizer` used with the model in `model_dir`: media ids from the
/// model's `config.json` when it has one, else looked up by their Qwen2.5-Omni token names.
pub fn chat_tokenizer_for_model(model_dir: &Path, tokenizer: &Path) -> Result<rollout::chat::ChatTokenizer, String> {
    let label = tokenizer.display().to_string();
    let bytes = std::fs::read(tokenizer).map_err(|e| format!("cannot read tokenizer {label}: {e}"))?;
    let media = match OmniThinkerConfig::from_file(&model_dir.join("config.json")) {
        Ok(cfg) => chat_config(&cfg),
        Err(_) => rollout::chat::ChatConfig::from_token_names(&bytes, &label).map_err(|e| e.to_string())?,
    };
    rollout::chat::ChatTokenizer::from_bytes(&bytes, media, &label).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn tiny_value() -> Value {
        serde_json::from_str(TINY_OMNI_CONFIG_JSON).unwrap()
    }

    /// `path` is dotted; `None` removes the key.
    fn edit(mut v: Value, path: &str, new: Option<Value>) -> Value {
        let mut keys: Vec<&str> = path.split('.').collect();
        let last = keys.pop().unwrap();
        let mut cur = &mut v;
        for k in keys {
            cur = cur.get_mut(k).unwrap();
        }
        let obj = cur.as_object_mut().unwrap();
        match new {
            Some(x) => obj.insert(last.to_string(), x),
            None => obj.remove(last),
        };
        v
    }

    fn parse(v: &Value) -> Result<OmniThinkerConfig, ModelConfigError> {
        OmniThinkerConfig::from_json_str(&v.to_string())
    }

    fn issue_keys(err: ModelConfigError) -> Vec<String> {
        match err {
            ModelConfigError::Fields { issues, .. } => issues.into_iter().map(|i| i.key).collect(),
            other => panic!("expected field issues, got {other}"),
        }
    }

    #[test]
    fn fixtures_parse_and_validate() {
        let seven = OmniThinkerConfig::from_json_str(QWEN25_OMNI_7B_THINKER_JSON).unwrap();
        assert_eq!(seven.validate(), vec![]);
        assert_eq!(seven.key_prefix(), "");
        assert_eq!(seven.head_dim(), 128);
        assert_eq!(seven.mrope_section(), Some(&[16, 24, 24][..]));
        assert_eq!(seven.rope_theta(), Some(1e6));
        assert_eq!(seven.dtype(), Some(FloatDtype::BF16));
        assert!(!seven.tie_word_embeddings());
        // docs/reference.md#token-ids.
        let ids = seven.special_tokens();
        let got = [ids.audio, ids.audio_start, ids.audio_end, ids.vision_start, ids.vision_end];
        assert_eq!(got, [151646, 151647, 151648, 151652, 151653]);
        assert_eq!((ids.image, ids.video, ids.eos.clone(), ids.pad), (151655, 151656, vec![151645], Some(151643)));
        let tiny = tiny_test_config();
        assert_eq!(tiny.validate(), vec![]);
        assert_eq!(tiny.key_prefix(), "thinker_config.");
        assert_eq!(tiny.head_dim(), 16);
    }

    #[test]
    fn omni_and_thinker_layouts_agree_and_extra_fields_are_accepted() {
        let thinker: Value = serde_json::from_str(QWEN25_OMNI_7B_THINKER_JSON).unwrap();
        let mut t = edit(thinker.clone(), "text_config.some_future_field", Some(json!({"x": [1]})));
        t = edit(t, "vision_config._attn_implementation", Some(json!("sdpa")));
        let omni = json!({"architectures": ["Qwen2_5OmniModel"], "thinker_config": t,
            "talker_config": {"hidden_size": 896}, "token2wav_config": {"dit_config": {}},
            "enable_audio_output": true, "transformers_version": "4.50.0.dev0"});
        let omni = parse(&omni).unwrap();
        let only = parse(&thinker).unwrap();
        assert_eq!(omni.thinker(), only.thinker());
        assert!(matches!(omni, OmniThinkerConfig::Omni(_)));
        // transformers 5 spelling: rope_parameters, `dtype`, `*_token_id` aliases.
        let mut v5 = edit(thinker, "text_config.rope_scaling", None);
        v5 = edit(v5, "text_config.rope_theta", None);
        v5 = edit(
            v5,
            "text_config.rope_parameters",
            Some(json!({"rope_type": "default",
            "rope_theta": 1e6, "mrope_section": [16, 24, 24]})),
        );
        v5 = edit(edit(v5, "audio_token_index", None), "audio_token_id", Some(json!(151646)));
        v5 = edit(edit(v5, "torch_dtype", None), "dtype", Some(json!("bfloat16")));
        let v5 = parse(&v5).unwrap();
        assert_eq!(v5.validate(), vec![]);
        assert_eq!((v5.mrope_section(), v5.rope_theta()), (only.mrope_section(), Some(1e6)));
        assert_eq!((v5.special_tokens(), v5.dtype()), (only.special_tokens(), only.dtype()));
    }

    #[test]
    fn round_trips_through_json() {
        for cfg in [tiny_test_config(), OmniThinkerConfig::from_json_str(QWEN25_OMNI_7B_THINKER_JSON).unwrap()] {
            let text = cfg.to_json_string().unwrap();
            assert!(!text.contains("null"), "{text}");
            assert_eq!(OmniThinkerConfig::from_json_str(&text).unwrap(), cfg);
        }
    }

    #[test]
    fn missing_keys_are_all_named_by_path() {
        // (keys removed, keys the error names), all under thinker_config.
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("text_config.hidden_size", "text_config.hidden_size"),
            ("vision_config.depth", "vision_config.depth"),
            ("audio_config.d_model", "audio_config.d_model"),
            ("vision_start_token_id", "vision_start_token_id"),
            ("vision_config", "vision_config"),
            ("text_config.rope_scaling", "text_config.rope_scaling.mrope_section"),
            ("text_config.rope_theta audio_config.n_window seconds_per_chunk",
             "audio_config.n_window seconds_per_chunk text_config.rope_theta"),
        ];
        for (removed, expected) in cases {
            let mut v = tiny_value();
            for path in removed.split(' ') {
                v = edit(v, &format!("thinker_config.{path}"), None);
            }
            let mut keys = issue_keys(parse(&v).unwrap_err());
            let mut want: Vec<String> = expected.split(' ').map(|k| format!("thinker_config.{k}")).collect();
            keys.sort();
            want.sort();
            assert_eq!(keys, want, "removed {removed}");
        }
        // A null counts as missing.
        let key = "thinker_config.text_config.vocab_size";
        let v = edit(tiny_value(), key, Some(Value::Null));
        assert_eq!(issue_keys(parse(&v).unwrap_err()), [key]);
    }

    #[test]
    fn mistyped_values_are_named_by_path() {
        #[rustfmt::skip]
        let cases = [
            ("thinker_config.text_config.hidden_size", json!("big")),
            ("thinker_config.text_config.num_key_value_heads", json!(-4)),
            ("thinker_config.vision_config.fullatt_block_indexes", json!([1, "x"])),
            ("thinker_config.audio_config.n_window", json!(1.5)),
            ("thinker_config.image_token_index", json!(-1)),
            ("thinker_config.eos_token_id", json!("eos")),
            ("architectures", json!(7)),
        ];
        for (path, value) in cases {
            let v = edit(tiny_value(), path, Some(value));
            assert_eq!(issue_keys(parse(&v).unwrap_err()), [path], "{path}");
        }
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        #[rustfmt::skip]
        let cases: [(&[u8], &str); 5] = [
            (b"{\"thinker_config\": ", "not valid JSON"),
            (b"[1, 2]", "top level is not a JSON object"),
            (b"{\"model_type\": \"llama\", \"hidden_size\": 8}", "neither `thinker_config` nor `text_config`"),
            (b"{\"thinker_config\": 3}", "`thinker_config` is not an object"),
            (b"{\"a\": \"\xff\xfe\"}", "not valid JSON"),
        ];
        for (i, (bytes, want)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("config{i}.json"));
            std::fs::write(&path, bytes).unwrap();
            let err = OmniThinkerConfig::from_file(&path).unwrap_err();
            let problems = err.problems();
            assert_eq!(problems.len(), 1);
            assert!(problems[0].message.contains(want), "{}", problems[0]);
            assert_eq!(problems[0].location, path.display().to_string());
        }
        let missing = OmniThinkerConfig::from_file(&dir.path().join("absent.json")).unwrap_err();
        assert!(matches!(missing, ModelConfigError::Io { .. }));
    }

    #[test]
    fn validate_reports_every_inconsistency() {
        // (edits "path=json;..." under thinker_config, expected issue keys under thinker_config)
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            // 3 heads do not divide 32; head_dim 32 / 3 = 10, so mrope 2+3+3 = 8 != 5.
            ("text_config.num_attention_heads=3", "text_config.num_attention_heads text_config.rope_scaling.mrope_section"),
            ("text_config.num_key_value_heads=3", "text_config.num_key_value_heads"),
            ("text_config.rope_scaling={\"mrope_section\":[2,2,2]}", "text_config.rope_scaling.mrope_section"),
            ("text_config.rope_scaling={\"mrope_section\":[2,3,3],\"type\":\"yarn\"}", "text_config.rope_scaling"),
            // vocab 1000: all 8 special-token ids fall outside it.
            ("text_config.vocab_size=1000", "audio_token_index image_token_index video_token_index \
                audio_start_token_id audio_end_token_id vision_start_token_id vision_end_token_id vision_token_id"),
            ("vision_config.fullatt_block_indexes=[1,2,1]",
             "vision_config.fullatt_block_indexes[1] vision_config.fullatt_block_indexes[2]"),
            ("vision_config.out_hidden_size=64;audio_config.output_dim=16", "vision_config.out_hidden_size audio_config.output_dim"),
            // 32 / 16 heads = head_dim 2, not divisible by 4.
            ("vision_config.num_heads=16", "vision_config.num_heads"),
            ("vision_config.window_size=100", "vision_config.window_size"),
            ("audio_config.encoder_attention_heads=5", "audio_config.encoder_attention_heads"),
            ("audio_config.n_window=2000", "audio_config.n_window"),
            ("text_config.hidden_act=\"gelu\";text_config.torch_dtype=\"int8\"", "text_config.hidden_act torch_dtype"),
            ("video_token_index=151646", "video_token_index"),
            ("text_config.use_sliding_window=true", "text_config.use_sliding_window"),
            // hidden 0: itself, head_dim 0, mrope sum != 0, both encoder outputs != 0.
            ("text_config.hidden_size=0", "text_config.hidden_size text_config.hidden_size \
                text_config.rope_scaling.mrope_section vision_config.out_hidden_size audio_config.output_dim"),
            ("vision_config.depth=16777217", "vision_config.depth"),
        ];
        for (edits, want) in cases {
            let mut v = edit(tiny_value(), "torch_dtype", None);
            for e in edits.split(';') {
                let (path, value) = e.split_once('=').unwrap();
                let value = serde_json::from_str(value).unwrap();
                v = edit(v, &format!("thinker_config.{path}"), Some(value));
            }
            let mut got: Vec<String> = parse(&v).unwrap().validate().into_iter().map(|i| i.key).collect();
            let mut want: Vec<String> = want.split_whitespace().map(|k| format!("thinker_config.{k}")).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{edits}");
        }
    }
}
