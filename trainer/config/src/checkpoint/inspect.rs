//! Checks a Hugging Face model directory against a thinker config without loading any weights:
//! finds the weights (`model.safetensors`, or `model.safetensors.index.json` and its shards),
//! reads every shard header in parallel, and compares what is stored with the tensor manifest the
//! config implies. Every problem is reported at once as a [`Problem`] located at the file to look
//! at (the shard, the index, or the directory).
//!
//! Errors: no weights / several shards without an index / an unparsable index; a shard missing,
//! truncated or with a corrupt header; a tensor the index lists but its shard lacks; expected
//! tensors missing (count per component and the first names); wrong shapes; non-float dtypes.
//! Warnings: mixed dtypes, a stored dtype other than the config's `torch_dtype`, unknown tensors
//! in the thinker namespace, shard tensors the index does not list, an index `total_size` that
//! disagrees with the headers, trailing bytes, a missing `tokenizer.json`. Talker and token2wav
//! tensors are skipped silently.
//!
//! Left out: tensor values (need the data), `generation_config.json` / processor files, and the
//! tokenizer's contents (a later issue loads it).

use super::safetensors_header::{Dtype, HeaderError, SafetensorsHeader, TensorInfo, read_header};
use super::{CONFIG_FILE, INDEX_FILE, SINGLE_FILE};
use crate::model::{Component, FloatDtype, KeyLayout, Manifest, OmniThinkerConfig, ParamCounts};
use crate::problem::Problem;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Individually listed problems of one kind before the rest are only counted.
const MAX_LISTED: usize = 20;
/// Names quoted in a "missing" / "unknown" summary.
const MAX_NAMED: usize = 5;

/// What `omnirl validate` learns about a model directory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelReport {
    pub dir: String,
    /// How the checkpoint spells thinker names (`None` when no thinker tensor was found).
    pub layout: Option<KeyLayout>,
    pub shard_files: Vec<String>,
    /// Tensors the config implies (0 when no usable config).
    pub expected_tensors: usize,
    /// Thinker tensors present in the shards (expected or not).
    pub found_tensors: usize,
    /// Most common dtype among the thinker tensors.
    pub stored_dtype: Option<Dtype>,
    pub dtype_counts: BTreeMap<Dtype, usize>,
    /// Bytes of the thinker tensors, and of everything in the shards (talker included).
    pub thinker_bytes: u64,
    pub total_bytes: u64,
    /// Parameter counts of the config's thinker.
    pub params: Option<ParamCounts>,
    pub problems: Vec<Problem>,
}

impl ModelReport {
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(Problem::is_error)
    }
}

/// A model directory checked end to end: its `config.json` and its weights.
#[derive(Debug, Clone)]
pub struct ModelDirCheck {
    /// The parsed config, when it parses (it may still have validation errors).
    pub config: Option<OmniThinkerConfig>,
    /// Config problems first, then the weights'.
    pub report: ModelReport,
}

/// Checks `dir/config.json` (parse + `validate`) and then the weights against it. With an
/// unusable config the weights are still checked for structure (files, headers, index).
pub fn check_model_dir(dir: &Path) -> ModelDirCheck {
    let config_path = dir.join(CONFIG_FILE);
    let location = config_path.display().to_string();
    let mut problems = Vec::new();
    let config = if !dir.is_dir() {
        None
    } else if !config_path.is_file() {
        problems.push(Problem::error(&location, "config.json not found"));
        None
    } else {
        match OmniThinkerConfig::from_file(&config_path) {
            Ok(cfg) => {
                problems.extend(cfg.validation_problems(&location));
                Some(cfg)
            }
            Err(e) => {
                problems.extend(e.problems());
                None
            }
        }
    };
    let usable = config.as_ref().filter(|c| c.validate().is_empty());
    let mut report = inspect(dir, usable);
    problems.append(&mut report.problems);
    report.problems = problems;
    ModelDirCheck { config, report }
}

/// Checks the weights in `dir` against `cfg` (which should have passed `validate`; if it has
/// not, shapes are not compared and a warning says so).
pub fn inspect_model_dir(dir: &Path, cfg: &OmniThinkerConfig) -> ModelReport {
    if cfg.validate().is_empty() {
        return inspect(dir, Some(cfg));
    }
    let mut report = inspect(dir, None);
    let message = "tensor names and shapes not checked: the config has consistency errors";
    report.problems.push(Problem::warning(dir.display().to_string(), message));
    report
}

#[derive(Deserialize)]
struct RawIndex {
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    weight_map: BTreeMap<String, String>,
}

/// Where the tensors are: tensor name -> shard file (relative to the directory).
struct Weights {
    /// The file a "missing tensor" problem points at (the index, or the single file).
    anchor: String,
    weight_map: Option<BTreeMap<String, String>>,
    files: Vec<String>,
    total_size: Option<u64>,
}

fn locate(dir: &Path, problems: &mut Vec<Problem>) -> Option<Weights> {
    let at = |f: &str| dir.join(f).display().to_string();
    let (index, single) = (dir.join(INDEX_FILE), dir.join(SINGLE_FILE));
    if single.is_file() {
        if index.is_file() {
            let msg = "ignored: model.safetensors is present and takes precedence (as in transformers)";
            problems.push(Problem::warning(at(INDEX_FILE), msg));
        }
        let files = vec![SINGLE_FILE.to_string()];
        return Some(Weights { anchor: at(SINGLE_FILE), weight_map: None, files, total_size: None });
    }
    if !index.is_file() {
        let mut shards: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                let names = entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned());
                names.filter(|n| n.ends_with(".safetensors")).collect()
            })
            .unwrap_or_default();
        shards.sort();
        let message = match shards.len() {
            0 => "no weights: neither model.safetensors nor model.safetensors.index.json".to_string(),
            n => format!(
                "{n} .safetensors file(s) ({}) but no model.safetensors.index.json to map tensors to them",
                shards.iter().take(MAX_NAMED).cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        problems.push(Problem::error(dir.display().to_string(), message));
        return None;
    }
    let parsed = std::fs::read(&index)
        .map_err(|e| format!("cannot read: {e}"))
        .and_then(|bytes| serde_json::from_slice::<RawIndex>(&bytes).map_err(|e| format!("not a valid index: {e}")));
    let raw = match parsed {
        Ok(raw) => raw,
        Err(message) => {
            problems.push(Problem::error(at(INDEX_FILE), message));
            return None;
        }
    };
    let (mut weight_map, mut outside) = (BTreeMap::new(), Vec::new());
    for (name, file) in raw.weight_map {
        let plain = !file.is_empty() && !file.contains(['/', '\\']) && file != "." && file != "..";
        if plain {
            weight_map.insert(name, file);
        } else {
            let msg = format!("weight_map entry `{name}` points outside the directory: `{file}`");
            outside.push(Problem::error(at(INDEX_FILE), msg));
        }
    }
    push_capped(problems, outside, "entries pointing outside the directory");
    if weight_map.is_empty() {
        problems.push(Problem::error(at(INDEX_FILE), "weight_map lists no tensors"));
        return None;
    }
    let files: BTreeSet<String> = weight_map.values().cloned().collect();
    let total_size = raw.metadata.as_ref().and_then(|m| m.get("total_size")).and_then(|v| v.as_u64());
    Some(Weights {
        anchor: at(INDEX_FILE),
        weight_map: Some(weight_map),
        files: files.into_iter().collect(),
        total_size,
    })
}

/// Pushes the first `MAX_LISTED` problems and a count of the rest.
fn push_capped(problems: &mut Vec<Problem>, mut list: Vec<Problem>, what: &str) {
    let extra = list.len().saturating_sub(MAX_LISTED);
    let last = list.get(MAX_LISTED).map(|p| (p.severity, p.location.clone()));
    list.truncate(MAX_LISTED);
    problems.extend(list);
    if let Some((severity, location)) = last {
        let mut p = Problem::error(location, format!("... and {extra} more {what}"));
        p.severity = severity;
        problems.push(p);
    }
}

fn first_names<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names.into_iter().take(MAX_NAMED).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

fn inspect(dir: &Path, cfg: Option<&OmniThinkerConfig>) -> ModelReport {
    let mut report = ModelReport { dir: dir.display().to_string(), ..ModelReport::default() };
    if !dir.is_dir() {
        report.problems.push(Problem::error(&report.dir, "model directory not found"));
        return report;
    }
    if !dir.join("tokenizer.json").is_file() {
        let msg = "tokenizer.json not found (needed to tokenize prompts)";
        report.problems.push(Problem::warning(&report.dir, msg));
    }
    report.params = cfg.map(ParamCounts::of);
    let Some(weights) = locate(dir, &mut report.problems) else {
        return report;
    };
    let headers: Vec<(String, Result<SafetensorsHeader, HeaderError>)> =
        weights.files.par_iter().map(|f| (f.clone(), read_header(&dir.join(f)))).collect();
    let scan = scan_shards(dir, &weights, &headers, &mut report);

    let all_names = scan.found.keys().chain(&scan.accounted).copied();
    let Some(layout) = KeyLayout::detect(all_names) else {
        let msg = "no thinker tensors found (expected names like `thinker.model.embed_tokens.weight`)";
        report.problems.push(Problem::error(&weights.anchor, msg));
        return report;
    };
    report.layout = Some(layout);
    let manifest = cfg.map(|c| Manifest::new(c, layout));
    let expected: Expected<'_> = manifest
        .iter()
        .flat_map(|m| &m.tensors)
        .map(|t| (t.name.as_str(), (t.shape.as_slice(), t.component)))
        .collect();
    report.expected_tensors = expected.len();
    let mut unknown = check_stored(dir, layout, &scan, &expected, manifest.is_some(), &mut report);
    report.stored_dtype = report.dtype_counts.iter().max_by_key(|(_, n)| **n).map(|(d, _)| *d);
    if let Some(cfg) = cfg {
        check_config_fit(cfg, layout, &scan, &expected, &weights.anchor, &mut unknown, &mut report);
    }
    let problems = &mut report.problems;
    if !unknown.is_empty() {
        let msg = format!(
            "{} tensors in the thinker namespace are not part of the configured thinker and are ignored: {}",
            unknown.len(),
            first_names(&unknown)
        );
        problems.push(Problem::warning(&weights.anchor, msg));
    }
    if report.dtype_counts.len() > 1 {
        let mix: Vec<String> = report.dtype_counts.iter().map(|(d, n)| format!("{d} x {n}")).collect();
        let msg = format!("mixed dtypes among thinker tensors: {}", mix.join(", "));
        problems.push(Problem::warning(&weights.anchor, msg));
    }
    report
}

/// Expected tensor name -> (shape, component), from the config's manifest.
type Expected<'a> = BTreeMap<&'a str, (&'a [usize], Component)>;

/// What the shard headers hold.
struct ShardScan<'a> {
    /// Tensor name -> (shard file, header entry).
    found: BTreeMap<&'a str, (&'a str, &'a TensorInfo)>,
    /// Tensors whose absence is already reported, or that sit in an unreadable shard.
    accounted: BTreeSet<&'a str>,
}

/// Reads the shard headers against the index: unreadable or missing shards, tensors the index
/// puts in a shard that lacks them, shard tensors the index does not list, trailing bytes, and
/// an index `total_size` that disagrees with the headers.
fn scan_shards<'a>(
    dir: &Path,
    weights: &'a Weights,
    headers: &'a [(String, Result<SafetensorsHeader, HeaderError>)],
    report: &mut ModelReport,
) -> ShardScan<'a> {
    let at = |f: &str| dir.join(f).display().to_string();
    let mut scan = ShardScan { found: BTreeMap::new(), accounted: BTreeSet::new() };
    let mut lacking = Vec::new();
    let problems = &mut report.problems;
    for (file, header) in headers {
        let listed: Vec<&String> = match &weights.weight_map {
            Some(map) => map.iter().filter(|(_, f)| *f == file).map(|(n, _)| n).collect(),
            None => Vec::new(),
        };
        let header = match header {
            Ok(h) => h,
            Err(e) => {
                let message = match e {
                    HeaderError::NotFound { .. } if weights.weight_map.is_some() => {
                        format!("shard file missing (the index maps {} tensors to it)", listed.len())
                    }
                    _ => e.message(),
                };
                problems.push(Problem::error(at(file), message));
                scan.accounted.extend(listed.iter().map(|n| n.as_str()));
                continue;
            }
        };
        report.shard_files.push(file.clone());
        report.total_bytes = report.total_bytes.saturating_add(header.data_len);
        if header.trailing_bytes() > 0 {
            let msg = format!("{} bytes after the data section", header.trailing_bytes());
            problems.push(Problem::warning(at(file), msg));
        }
        let Some(map) = &weights.weight_map else {
            scan.found.extend(header.tensors.iter().map(|(n, t)| (n.as_str(), (file.as_str(), t))));
            continue;
        };
        for name in &listed {
            match header.tensors.get(name.as_str()) {
                Some(t) => {
                    scan.found.insert(name.as_str(), (file.as_str(), t));
                }
                None => {
                    scan.accounted.insert(name.as_str());
                    let msg = format!(
                        "tensor `{name}` is listed in {INDEX_FILE} for this shard but the shard does not contain it"
                    );
                    lacking.push(Problem::error(at(file), msg));
                }
            }
        }
        let unlisted: Vec<&String> = header.tensors.keys().filter(|n| map.get(*n) != Some(file)).collect();
        if !unlisted.is_empty() {
            let msg = format!(
                "{} tensors in this shard are not mapped to it by the index and are ignored: {}",
                unlisted.len(),
                first_names(unlisted.iter().copied())
            );
            problems.push(Problem::warning(at(file), msg));
        }
    }
    push_capped(problems, lacking, "tensors missing from their shards");
    if let (Some(total), true) = (weights.total_size, scan.accounted.is_empty()) {
        let stored: u64 = scan.found.values().map(|(_, t)| t.byte_len()).sum();
        if total != stored {
            let msg = format!("metadata.total_size {total} differs from the {stored} bytes the shard headers describe");
            problems.push(Problem::warning(&weights.anchor, msg));
        }
    }
    scan
}

/// Counts the stored thinker tensors into `report` and checks their dtypes and shapes against
/// `expected`; returns the thinker tensors the config does not know (only with a manifest).
fn check_stored(
    dir: &Path,
    layout: KeyLayout,
    scan: &ShardScan<'_>,
    expected: &Expected<'_>,
    have_manifest: bool,
    report: &mut ModelReport,
) -> Vec<String> {
    let at = |f: &str| dir.join(f).display().to_string();
    let (mut shapes, mut dtypes, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
    for (&name, &(file, info)) in &scan.found {
        if KeyLayout::is_ignored(name) || !layout.is_thinker_name(name) {
            continue;
        }
        report.found_tensors += 1;
        report.thinker_bytes = report.thinker_bytes.saturating_add(info.byte_len());
        *report.dtype_counts.entry(info.dtype).or_default() += 1;
        if !info.dtype.is_float_weight() {
            let msg = format!("tensor `{name}` is stored as {}; expected F32, BF16 or F16", info.dtype);
            dtypes.push(Problem::error(at(file), msg));
        }
        match expected.get(name) {
            Some((shape, _)) => {
                let same =
                    shape.len() == info.shape.len() && shape.iter().zip(&info.shape).all(|(a, b)| *a as u64 == *b);
                if !same {
                    let msg = format!("tensor `{name}` has shape {:?} but the config implies {shape:?}", info.shape);
                    shapes.push(Problem::error(at(file), msg));
                }
            }
            None if have_manifest => unknown.push(name.to_string()),
            None => {}
        }
    }
    push_capped(&mut report.problems, shapes, "shape mismatches");
    push_capped(&mut report.problems, dtypes, "tensors with a non-float dtype");
    unknown
}

/// What only the config can tell: expected tensors that are missing (per component), a stored
/// `lm_head` the config ties away, and a stored dtype other than the config's.
fn check_config_fit(
    cfg: &OmniThinkerConfig,
    layout: KeyLayout,
    scan: &ShardScan<'_>,
    expected: &Expected<'_>,
    anchor: &str,
    unknown: &mut Vec<String>,
    report: &mut ModelReport,
) {
    let problems = &mut report.problems;
    let missing: Vec<(&str, Component)> = expected
        .iter()
        .filter(|(n, _)| !scan.found.contains_key(*n) && !scan.accounted.contains(*n))
        .map(|(n, (_, c))| (*n, *c))
        .collect();
    if !missing.is_empty() {
        let per = |c: Component| missing.iter().filter(|(_, x)| *x == c).count();
        let names: Vec<String> = missing.iter().map(|(n, _)| n.to_string()).collect();
        let mut msg = format!(
            "{} of {} expected tensors are missing (llm {}, vision {}, audio {}): {}",
            missing.len(),
            expected.len(),
            per(Component::Llm),
            per(Component::Vision),
            per(Component::Audio),
            first_names(&names)
        );
        if names.iter().any(|n| n.ends_with("lm_head.weight")) {
            msg.push_str(" (lm_head is expected because the config has tie_word_embeddings = false)");
        }
        problems.push(Problem::error(anchor, msg));
    }
    let lm_head = layout.name("lm_head.weight");
    if cfg.tie_word_embeddings() && scan.found.contains_key(lm_head.as_str()) {
        unknown.retain(|n| *n != lm_head);
        let msg = format!("`{lm_head}` is stored but the config ties word embeddings; it will be ignored");
        problems.push(Problem::warning(anchor, msg));
    }
    let wanted = cfg.dtype().map(|d| match d {
        FloatDtype::F32 => Dtype::F32,
        FloatDtype::BF16 => Dtype::Bf16,
        FloatDtype::F16 => Dtype::F16,
    });
    if let (Some(stored), Some(wanted), Some(name)) = (report.stored_dtype, wanted, cfg.dtype_name())
        && stored != wanted
    {
        let msg = format!("config.json says {name} but the weights are stored as {stored} (cast on load)");
        problems.push(Problem::warning(anchor, msg));
    }
}
