//! Hugging Face checkpoint directories: writing a randomly initialised thinker checkpoint in the
//! real on-disk format ([`write_random_checkpoint`]) for tests and the quickstart. Reading
//! safetensors headers and checking a directory against its config without loading weights
//! (`safetensors_header`, `inspect`) are `trainer_config::checkpoint`'s, re-exported here.
//!
//! The writer uses libtorch (`tch`) and the manifest's HF names, so what it writes is what the
//! loader and `omnirl validate` read: one `model.safetensors`, or `model-0000k-of-0000n` shards
//! plus `model.safetensors.index.json`, and `config.json`. Initialisation follows transformers:
//! matrices ~ N(0, 0.02), norm scales 1, biases 0.
//!
//! Loading weights is `model::weights`; training-state checkpoints (weights, optimizer, data
//! cursor, RNG) are [`train_state`], published atomically by [`atomic`]. Left out: an atomic
//! random-checkpoint writer (it targets fresh directories; the runner renames its output into
//! place).

pub mod atomic;
pub mod tensor_io;
pub mod train_state;

pub use trainer_config::checkpoint::*;

use crate::model::{ConfigIssue, FloatDtype, KeyLayout, Manifest, OmniThinkerConfig, TensorRole, TensorSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Standard deviation of random matrices (transformers' `initializer_range` default).
pub const INIT_STD: f64 = 0.02;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointWriteError {
    #[error("the config is inconsistent: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidConfig(Vec<ConfigIssue>),
    #[error("shard count must be at least 1")]
    NoShards,
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: libtorch: {source}")]
    Torch {
        path: String,
        #[source]
        source: tch::TchError,
    },
    #[error("{path}: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// How [`write_random_checkpoint_with`] writes.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomCheckpointOptions {
    /// Key spelling; the released checkpoint's `thinker.` prefix by default.
    pub layout: KeyLayout,
    /// Stored dtype; BF16 by default.
    pub dtype: FloatDtype,
    /// Seeds libtorch's global generator first (`tch::manual_seed`) when set.
    pub seed: Option<i64>,
    /// Also writes `config.json` (the config as given, in its layout).
    pub write_config: bool,
}

impl Default for RandomCheckpointOptions {
    fn default() -> Self {
        RandomCheckpointOptions {
            layout: KeyLayout::ThinkerPrefixed,
            dtype: FloatDtype::BF16,
            seed: None,
            write_config: true,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenCheckpoint {
    /// The weight files, in order (the index, if any, is not included).
    pub shard_files: Vec<PathBuf>,
    pub tensors: usize,
    /// Bytes of tensor data (the index's `total_size`).
    pub total_bytes: u64,
}

/// Writes a randomly initialised thinker for `cfg` into `dir` (created if needed) as `shards`
/// safetensors files (split by size; fewer when there are too few tensors), BF16, `thinker.` keys,
/// with `config.json`. Existing files of the same names are overwritten.
pub fn write_random_checkpoint(
    cfg: &OmniThinkerConfig,
    dir: &Path,
    shards: usize,
) -> Result<WrittenCheckpoint, CheckpointWriteError> {
    write_random_checkpoint_with(cfg, dir, shards, &RandomCheckpointOptions::default())
}

/// [`write_random_checkpoint`] with explicit options.
pub fn write_random_checkpoint_with(
    cfg: &OmniThinkerConfig,
    dir: &Path,
    shards: usize,
    opts: &RandomCheckpointOptions,
) -> Result<WrittenCheckpoint, CheckpointWriteError> {
    let issues = cfg.validate();
    if !issues.is_empty() {
        return Err(CheckpointWriteError::InvalidConfig(issues));
    }
    if shards == 0 {
        return Err(CheckpointWriteError::NoShards);
    }
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| CheckpointWriteError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let manifest = Manifest::new(cfg, opts.layout);
    let kind = match opts.dtype {
        FloatDtype::F32 => Kind::Float,
        FloatDtype::BF16 => Kind::BFloat16,
        FloatDtype::F16 => Kind::Half,
    };
    let elt = opts.dtype.bytes();
    let total_bytes: u64 = manifest.tensors.iter().map(|t| t.numel() * elt).sum();
    // Tensor i goes to shard floor(bytes before it * shards / total); empty shards are dropped.
    let mut groups: Vec<Vec<&TensorSpec>> = vec![Vec::new(); shards];
    let mut before = 0u64;
    for t in &manifest.tensors {
        let k = (u128::from(before) * shards as u128 / u128::from(total_bytes.max(1))) as usize;
        groups[k.min(shards - 1)].push(t);
        before += t.numel() * elt;
    }
    groups.retain(|g| !g.is_empty());
    if let Some(seed) = opts.seed {
        tch::manual_seed(seed);
    }
    let n = groups.len();
    let mut weight_map = BTreeMap::new();
    let mut shard_files = Vec::new();
    for (k, group) in groups.iter().enumerate() {
        let file = if n == 1 { SINGLE_FILE.to_string() } else { format!("model-{:05}-of-{n:05}.safetensors", k + 1) };
        let path = dir.join(&file);
        let torch = |source| CheckpointWriteError::Torch { path: path.display().to_string(), source };
        let mut named = Vec::with_capacity(group.len());
        for spec in group {
            named.push((spec.name.as_str(), random_tensor(spec, kind).map_err(torch)?));
            weight_map.insert(spec.name.clone(), file.clone());
        }
        Tensor::write_safetensors(&named, &path).map_err(torch)?;
        shard_files.push(path);
    }
    let json = |path: &Path| {
        let path = path.display().to_string();
        move |source| CheckpointWriteError::Json { path, source }
    };
    if n > 1 {
        let path = dir.join(INDEX_FILE);
        let index = serde_json::json!({"metadata": {"total_size": total_bytes}, "weight_map": weight_map});
        let text = serde_json::to_string_pretty(&index).map_err(json(&path))?;
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    if opts.write_config {
        let path = dir.join(CONFIG_FILE);
        let text = cfg.to_json_string().map_err(json(&path))?;
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(WrittenCheckpoint { shard_files, tensors: manifest.tensors.len(), total_bytes })
}

fn random_tensor(spec: &TensorSpec, kind: Kind) -> Result<Tensor, tch::TchError> {
    let mut shape = Vec::with_capacity(spec.shape.len());
    for &d in &spec.shape {
        shape.push(i64::try_from(d).map_err(|_| tch::TchError::Convert(format!("dimension {d} too large")))?);
    }
    let opts = (Kind::Float, Device::Cpu);
    let t = match spec.role {
        TensorRole::Norm => Tensor::f_ones(&shape, opts)?,
        TensorRole::Bias => Tensor::f_zeros(&shape, opts)?,
        TensorRole::Weight => Tensor::f_randn(&shape, opts)?.f_mul_scalar(INIT_STD)?,
    };
    t.f_to_kind(kind)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_file_written_by_libtorch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let w = tch::Tensor::zeros([3, 5], (tch::Kind::BFloat16, tch::Device::Cpu));
        let b = tch::Tensor::zeros([7], (tch::Kind::Float, tch::Device::Cpu));
        tch::Tensor::write_safetensors(&[("w", &w), ("b", &b)], &path).unwrap();
        let h = super::read_header(&path).unwrap();
        assert_eq!((h.tensors["w"].dtype, h.tensors["w"].shape.clone()), (super::Dtype::Bf16, vec![3, 5]));
        assert_eq!((h.tensors["b"].dtype, h.data_len), (super::Dtype::F32, 3 * 5 * 2 + 7 * 4));
        assert_eq!(h.expected_file_len(), std::fs::metadata(&path).unwrap().len());
    }

    use super::*;
    use crate::model::{QWEN25_OMNI_7B_THINKER_JSON, tiny_test_config};

    #[test]
    fn writes_sharded_checkpoint_that_matches_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny_test_config();
        let written = write_random_checkpoint(&cfg, dir.path(), 2).unwrap();
        // 9,860,800 params x 2 bytes (see the manifest's hand count).
        assert_eq!(
            (written.tensors, written.total_bytes),
            (Manifest::new(&cfg, KeyLayout::ThinkerPrefixed).tensors.len(), 19_721_600)
        );
        let names: Vec<String> =
            written.shard_files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect();
        assert_eq!(names, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(INDEX_FILE)).unwrap()).unwrap();
        assert_eq!(index["metadata"]["total_size"], 19_721_600);
        let mut stored = BTreeMap::new();
        for (file, path) in names.iter().zip(&written.shard_files) {
            for (name, info) in read_header(path).unwrap().tensors {
                assert_eq!(index["weight_map"][&name], file.as_str());
                stored.insert(name, info);
            }
        }
        for spec in Manifest::new(&cfg, KeyLayout::ThinkerPrefixed).tensors {
            let info = &stored[&spec.name];
            assert_eq!(info.shape, spec.shape.iter().map(|d| *d as u64).collect::<Vec<_>>(), "{}", spec.name);
            assert_eq!(info.dtype, Dtype::Bf16);
        }
        assert_eq!(OmniThinkerConfig::from_file(&dir.path().join(CONFIG_FILE)).unwrap(), cfg);
    }

    #[test]
    fn single_file_bare_f32_with_hf_initialisation() {
        let dir = tempfile::tempdir().unwrap();
        let opts = RandomCheckpointOptions {
            layout: KeyLayout::Bare,
            dtype: FloatDtype::F32,
            seed: Some(7),
            write_config: false,
        };
        let written = write_random_checkpoint_with(&tiny_test_config(), dir.path(), 1, &opts).unwrap();
        assert_eq!(written.shard_files, [dir.path().join(SINGLE_FILE)]);
        assert!(!dir.path().join(INDEX_FILE).exists() && !dir.path().join(CONFIG_FILE).exists());
        let tensors: BTreeMap<String, Tensor> =
            Tensor::read_safetensors(&written.shard_files[0]).unwrap().into_iter().collect();
        assert_eq!(tensors["model.norm.weight"].sum(Kind::Double).double_value(&[]), 32.0);
        assert_eq!(tensors["audio_tower.proj.bias"].abs().sum(Kind::Double).double_value(&[]), 0.0);
        let std = tensors["model.embed_tokens.weight"].std(true).double_value(&[]);
        assert!((std - INIT_STD).abs() < 0.001, "{std}");
    }

    #[test]
    fn refuses_bad_requests() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_random_checkpoint(&tiny_test_config(), dir.path(), 0).unwrap_err();
        assert!(matches!(err, CheckpointWriteError::NoShards));
        let bad = QWEN25_OMNI_7B_THINKER_JSON.replacen("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 5", 1);
        let bad = OmniThinkerConfig::from_json_str(&bad).unwrap();
        let err = write_random_checkpoint(&bad, dir.path(), 1).unwrap_err();
        assert!(err.to_string().contains("text_config.num_key_value_heads"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

#[cfg(test)]
mod inspect_tests {
    use super::*;
    use crate::checkpoint::{RandomCheckpointOptions, write_random_checkpoint, write_random_checkpoint_with};
    use crate::model::tiny_test_config;
    use crate::problem::Severity;
    use std::path::PathBuf;
    use tch::{Kind, Tensor};

    /// A 2-shard tiny checkpoint with a tokenizer.json.
    fn tiny_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write_random_checkpoint(&tiny_test_config(), dir.path(), 2).unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        dir
    }

    /// The shard file the index maps `name` to.
    fn shard_of(dir: &Path, name: &str) -> PathBuf {
        let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(INDEX_FILE)).unwrap()).unwrap();
        dir.join(index["weight_map"][name].as_str().unwrap())
    }

    fn rewrite(path: &Path, edit: impl Fn(Vec<(String, Tensor)>) -> Vec<(String, Tensor)>) {
        let tensors = edit(Tensor::read_safetensors(path).unwrap());
        Tensor::write_safetensors(&tensors, path).unwrap();
    }

    fn replace(dir: &Path, name: &str, with: Tensor) {
        let with = std::cell::RefCell::new(Some(with));
        rewrite(&shard_of(dir, name), |ts| {
            ts.into_iter()
                .map(|(n, t)| if n == name { (n, with.borrow_mut().take().unwrap()) } else { (n, t) })
                .collect()
        });
    }

    /// (severity, location relative to the directory, message) of every problem.
    fn problems(dir: &Path) -> Vec<(Severity, String, String)> {
        let report = check_model_dir(dir).report;
        let root = dir.display().to_string();
        report
            .problems
            .into_iter()
            .map(|p| {
                (
                    p.severity,
                    p.location.strip_prefix(&root).unwrap_or(&p.location).trim_start_matches('/').to_string(),
                    p.message,
                )
            })
            .collect()
    }

    #[test]
    fn a_clean_checkpoint_passes_with_the_right_totals() {
        let dir = tiny_dir();
        let check = check_model_dir(dir.path());
        let r = check.report;
        assert_eq!(r.problems, vec![]);
        assert_eq!(check.config, Some(tiny_test_config()));
        assert_eq!(
            (r.layout, r.shard_files.len(), r.stored_dtype),
            (Some(KeyLayout::ThinkerPrefixed), 2, Some(Dtype::Bf16))
        );
        // LLM 1 + 2 x 12 + 1 + 1 = 27; ViT 1 + 2 x 16 + 5 = 38; audio 4 + 1 + 2 x 15 + 4 = 39.
        assert_eq!((r.expected_tensors, r.found_tensors), (104, 104));
        // 9,860,800 params (manifest hand count) x 2 bytes.
        assert_eq!(
            (r.thinker_bytes, r.total_bytes, r.params.map(|p| p.total())),
            (19_721_600, 19_721_600, Some(9_860_800))
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            (json["dtype_counts"]["BF16"].as_u64(), json["layout"].as_str()),
            (Some(104), Some("ThinkerPrefixed"))
        );
        // Without a tokenizer: exactly one warning.
        std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
        let ps = problems(dir.path());
        assert_eq!(ps.len(), 1);
        assert_eq!((ps[0].0, ps[0].1.as_str()), (Severity::Warning, ""));
        assert!(ps[0].2.contains("tokenizer.json not found"));
    }

    #[test]
    fn every_defect_is_reported_at_its_file() {
        type Damage = fn(&Path) -> String;
        #[rustfmt::skip]
        let cases: Vec<(&str, Damage, Severity, &str)> = vec![
            ("shard lacks a tensor", |d| {
                let name = "thinker.audio_tower.proj.bias";
                rewrite(&shard_of(d, name), |ts| ts.into_iter().filter(|(n, _)| n != name).collect());
                "model-00002-of-00002.safetensors".into()
            }, Severity::Error, "tensor `thinker.audio_tower.proj.bias` is listed in model.safetensors.index.json for this shard but the shard does not contain it"),
            ("wrong shape", |d| {
                replace(d, "thinker.model.norm.weight", Tensor::ones([33], (Kind::BFloat16, tch::Device::Cpu)));
                shard_of(d, "thinker.model.norm.weight").file_name().unwrap().to_string_lossy().into()
            }, Severity::Error, "tensor `thinker.model.norm.weight` has shape [33] but the config implies [32]"),
            ("integer dtype", |d| {
                replace(d, "thinker.model.norm.weight", Tensor::ones([32], (Kind::Int64, tch::Device::Cpu)));
                shard_of(d, "thinker.model.norm.weight").file_name().unwrap().to_string_lossy().into()
            }, Severity::Error, "tensor `thinker.model.norm.weight` is stored as I64; expected F32, BF16 or F16"),
            ("truncated shard", |d| {
                let f = std::fs::OpenOptions::new().write(true).open(d.join("model-00001-of-00002.safetensors")).unwrap();
                let len = f.metadata().unwrap().len();
                f.set_len(len - 100).unwrap();
                "model-00001-of-00002.safetensors".into()
            }, Severity::Error, "truncated: expected"),
            ("missing shard", |d| {
                std::fs::remove_file(d.join("model-00002-of-00002.safetensors")).unwrap();
                "model-00002-of-00002.safetensors".into()
            }, Severity::Error, "shard file missing (the index maps"),
            ("garbage header", |d| {
                std::fs::write(d.join("model-00001-of-00002.safetensors"), b"\x10\0\0\0\0\0\0\0this is not json").unwrap();
                "model-00001-of-00002.safetensors".into()
            }, Severity::Error, "header is not valid JSON"),
            ("garbage index", |d| { std::fs::write(d.join(INDEX_FILE), "{not json").unwrap(); INDEX_FILE.into() },
             Severity::Error, "not a valid index: key must be a string at line 1 column 2"),
            ("index without weight_map", |d| { std::fs::write(d.join(INDEX_FILE), "{\"metadata\": {}}").unwrap(); INDEX_FILE.into() },
             Severity::Error, "missing field `weight_map`"),
            ("shards without index", |d| { std::fs::remove_file(d.join(INDEX_FILE)).unwrap(); String::new() },
             Severity::Error, "2 .safetensors file(s) (model-00001-of-00002.safetensors, model-00002-of-00002.safetensors) but no"),
            ("inconsistent config", |d| {
                let text = std::fs::read_to_string(d.join(CONFIG_FILE)).unwrap();
                std::fs::write(d.join(CONFIG_FILE), text.replacen("\"num_key_value_heads\": 1", "\"num_key_value_heads\": 3", 1)).unwrap();
                CONFIG_FILE.into()
            }, Severity::Error, "thinker_config.text_config.num_key_value_heads: 3 KV heads do not divide 2 attention heads"),
            ("no config", |d| { std::fs::remove_file(d.join(CONFIG_FILE)).unwrap(); CONFIG_FILE.into() },
             Severity::Error, "config.json not found"),
            ("extra thinker tensor, talker ignored", |d| {
                let extra = |n: &str| (n.to_string(), Tensor::zeros([2], (Kind::BFloat16, tch::Device::Cpu)));
                rewrite(&d.join("model-00001-of-00002.safetensors"), |mut ts| { ts.push(extra("thinker.extra.weight")); ts.push(extra("talker.x")); ts });
                let index = std::fs::read_to_string(d.join(INDEX_FILE)).unwrap().replacen("\"weight_map\": {",
                    "\"weight_map\": {\"thinker.extra.weight\": \"model-00001-of-00002.safetensors\", \"talker.x\": \"model-00001-of-00002.safetensors\",", 1);
                std::fs::write(d.join(INDEX_FILE), index).unwrap();
                INDEX_FILE.into()
            }, Severity::Warning, "1 tensors in the thinker namespace are not part of the configured thinker and are ignored: `thinker.extra.weight`"),
        ];
        for (what, damage, severity, message) in cases {
            let dir = tiny_dir();
            let location = damage(dir.path());
            let found = problems(dir.path());
            assert!(
                found.iter().any(|(s, l, m)| *s == severity && *l == location && m.contains(message)),
                "{what}: want {severity:?} at `{location}` containing {message:?}, got {found:#?}"
            );
            // Absences already named per shard (or in unreadable shards) are not re-counted.
            assert!(!found.iter().any(|(_, _, m)| m.contains("expected tensors are missing")), "{what}: {found:#?}");
            if severity == Severity::Warning {
                assert!(found.iter().all(|(s, _, _)| *s == Severity::Warning), "{what}: {found:#?}");
            }
        }
    }

    #[test]
    fn missing_components_and_dtype_drift_in_a_single_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let opts =
            RandomCheckpointOptions { dtype: crate::model::FloatDtype::F32, ..RandomCheckpointOptions::default() };
        write_random_checkpoint_with(&tiny_test_config(), d, 1, &opts).unwrap();
        rewrite(&d.join(SINGLE_FILE), |ts| {
            ts.into_iter()
                .filter(|(n, _)| !n.starts_with("thinker.audio_tower.") && n != "thinker.lm_head.weight")
                .collect()
        });
        let found = problems(d);
        let msgs: Vec<&str> = found.iter().map(|(_, _, m)| m.as_str()).collect();
        // Tiny audio tower: conv1/conv2 weight+bias 4, bos/eos 1, 2 layers x 15, ln_post 2, proj 2.
        assert!(
            msgs.iter().any(|m| m.contains("40 of ")
                && m.contains("(llm 1, vision 0, audio 39)")
                && m.contains("tie_word_embeddings = false")),
            "{found:#?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("config.json says bfloat16 but the weights are stored as F32")),
            "{found:#?}"
        );
        assert!(found.iter().all(|(_, l, _)| l == SINGLE_FILE || l.is_empty()), "{found:#?}");
    }

    #[test]
    fn thinker_only_bare_and_transformers5_layouts_pass() {
        let cfg = OmniThinkerConfig::Thinker(tiny_test_config().thinker().clone());
        for layout in [KeyLayout::Bare, KeyLayout::Transformers5] {
            let dir = tempfile::tempdir().unwrap();
            let opts = RandomCheckpointOptions { layout, ..RandomCheckpointOptions::default() };
            write_random_checkpoint_with(&cfg, dir.path(), 1, &opts).unwrap();
            std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
            let check = check_model_dir(dir.path());
            assert_eq!(check.report.problems, vec![], "{layout:?}");
            assert_eq!((check.report.layout, check.config.as_ref()), (Some(layout), Some(&cfg)));
        }
    }

    #[test]
    fn missing_or_empty_directories() {
        let dir = tempfile::tempdir().unwrap();
        let r = inspect_model_dir(&dir.path().join("absent"), &tiny_test_config());
        assert!(r.problems.iter().any(|p| p.is_error() && p.message == "model directory not found"));
        let r = inspect_model_dir(dir.path(), &tiny_test_config());
        assert!(r.problems.iter().any(|p| p.is_error() && p.message.starts_with("no weights")), "{:?}", r.problems);
    }
}
