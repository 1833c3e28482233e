//! Thinker weights as plain libtorch tensors keyed by their bare Hugging Face names
//! (`model.layers.0.self_attn.q_proj.weight`, `visual.blocks.3.attn.q.bias`, ...): loading a
//! checkpoint directory (one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`) tensor by tensor, and saving in the same format.
//!
//! Why not `tch::nn::VarStore`: VarStore names its own variables and loads whole files; here every
//! tensor keeps its HF name (so loading, saving and LoRA target selection are name lookups), only
//! the thinker's tensors are read (talker / token2wav bytes are never touched, a file is never
//! read whole), and trainability is per tensor (`requires_grad`), which is all an optimizer over
//! [`Weights::trainable`] needs.
//!
//! Loading checks every tensor the config implies (the [`Manifest`]) before reading data: missing
//! tensors, shape mismatches and non-float dtypes are reported together, by name and file. A
//! missing `lm_head.weight` is accepted only when the config ties embeddings. Data is converted to
//! the requested dtype (default: the stored one) and moved to the requested device one tensor at a
//! time. On CPU, bf16 / f16 weights keep their values but are computed in f32: libtorch's CPU
//! half-precision GEMMs are slow, and on machines that advertise AMX without enabling it (this
//! project's CI VMs) oneDNN's bf16 kernels die with SIGILL — PyTorch itself does too. So a bf16
//! checkpoint on CPU gives what transformers gives with `dtype=torch.float32`. Saving writes `__metadata__ {"format": "pt"}` like `save_pretrained`, so transformers
//! loads the result; names are written in the layout asked for (default: `thinker.`-prefixed).
//!
//! One owner per tensor: `Weights` owns every tensor of the model, by name. The layer structs
//! built from it ([`Weights::scope`]) hold handles to the same tensors (`shallow_clone` shares
//! the storage and the autograd state, it copies nothing), and every later change is made in
//! place: optimizer steps, [`Weights::set_requires_grad`], folding LoRA adapters
//! ([`Weights::assign`]). So the name map (what saving, trainability and adapter folding look
//! up) and the layers (what `forward` runs) can never disagree, and no tensor is replaced.
//!
//! Left out: memory-mapping (reads are sequential per tensor, which is as fast for a one-time
//! load), the talker / token2wav (skipped), quantized dtypes.

use super::layers::{LayerNorm, Linear, RmsNorm};
use crate::checkpoint::{CONFIG_FILE, INDEX_FILE, SINGLE_FILE, read_header};
use crate::checkpoint::{Dtype, TensorInfo};
use crate::model::{FloatDtype, KeyLayout, Manifest, OmniThinkerConfig};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{dir}: {message}")]
    Layout { dir: String, message: String },
    #[error("{dir}: {count} tensor problem(s): {}", .problems.join("; "))]
    Tensors { dir: String, count: usize, problems: Vec<String> },
    #[error("weight `{0}` is not loaded")]
    Missing(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Where and in what precision to load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadOptions {
    /// Compute dtype; `None` keeps the stored dtype.
    pub dtype: Option<Kind>,
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { dtype: None, device: Device::Cpu }
    }
}

/// Thinker tensors by bare HF name.
#[derive(Debug)]
pub struct Weights {
    tensors: BTreeMap<String, Tensor>,
    pub kind: Kind,
    pub device: Device,
    /// The key layout the checkpoint used (saving defaults to it).
    pub layout: KeyLayout,
}

pub fn kind_of(d: FloatDtype) -> Kind {
    match d {
        FloatDtype::F32 => Kind::Float,
        FloatDtype::BF16 => Kind::BFloat16,
        FloatDtype::F16 => Kind::Half,
    }
}

fn stored_kind(d: Dtype) -> Option<Kind> {
    match d {
        Dtype::F32 => Some(Kind::Float),
        Dtype::Bf16 => Some(Kind::BFloat16),
        Dtype::F16 => Some(Kind::Half),
        _ => None,
    }
}

fn safetensors_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "BF16",
        Kind::Half => "F16",
        _ => "F32",
    }
}

impl Weights {
    /// Builds from named tensors (bare names); used by tests and random initialisation.
    pub fn from_map(tensors: BTreeMap<String, Tensor>, kind: Kind, device: Device) -> Self {
        Weights { tensors, kind, device, layout: KeyLayout::ThinkerPrefixed }
    }

    pub fn get(&self, name: &str) -> Result<Tensor, WeightsError> {
        self.tensors.get(name).map(Tensor::shallow_clone).ok_or_else(|| WeightsError::Missing(name.to_string()))
    }

    /// The tensors under `prefix` (`model.layers.3`), read by their HF suffixes: the one way
    /// the model files build their layers.
    pub fn scope(&self, prefix: impl Into<String>) -> Scope<'_> {
        Scope { weights: self, prefix: prefix.into() }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Overwrites the values of tensor `name` in place with `values` (cast to its dtype and
    /// device), e.g. when folding LoRA adapters into a base weight. In place, so every layer
    /// holding this tensor sees the new values (see the module doc: one owner per tensor).
    pub fn assign(&self, name: &str, values: &Tensor) -> Result<(), WeightsError> {
        let mut t = self.get(name)?;
        if t.size() != values.size() {
            return Err(WeightsError::Tensors {
                dir: String::new(),
                count: 1,
                problems: vec![format!("`{name}` has shape {:?}, the new values {:?}", t.size(), values.size())],
            });
        }
        tch::no_grad(|| t.f_copy_(values))?;
        Ok(())
    }

    /// Sets `requires_grad` on every tensor whose name passes `select`; returns how many.
    pub fn set_requires_grad(&self, select: impl Fn(&str) -> bool, on: bool) -> usize {
        let mut n = 0;
        for (name, t) in &self.tensors {
            if select(name) && t.f_set_requires_grad(on).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Tensors with `requires_grad` set, by name.
    pub fn trainable(&self) -> Vec<(&str, Tensor)> {
        self.tensors.iter().filter(|(_, t)| t.requires_grad()).map(|(n, t)| (n.as_str(), t.shallow_clone())).collect()
    }

    /// Loads the thinker of the checkpoint in `dir` (see the module doc).
    pub fn load(dir: &Path, opts: LoadOptions) -> Result<(OmniThinkerConfig, Weights), WeightsError> {
        let cfg_path = dir.join(CONFIG_FILE);
        let cfg = OmniThinkerConfig::from_file(&cfg_path)
            .map_err(|e| WeightsError::Config { path: cfg_path.display().to_string(), message: e.to_string() })?;
        let issues = cfg.validate();
        if !issues.is_empty() {
            let message = issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            return Err(WeightsError::Config { path: cfg_path.display().to_string(), message });
        }
        let weights = Self::load_with_config(dir, &cfg, opts)?;
        Ok((cfg, weights))
    }

    /// Loads the tensors `cfg` implies from the checkpoint in `dir`.
    pub fn load_with_config(dir: &Path, cfg: &OmniThinkerConfig, opts: LoadOptions) -> Result<Weights, WeightsError> {
        let d = dir.display().to_string();
        let files = shard_files(dir)?;
        // name -> (file, header entry, data start)
        let mut located: BTreeMap<String, (PathBuf, TensorInfo, u64)> = BTreeMap::new();
        for file in &files {
            let header = read_header(file)
                .map_err(|e| WeightsError::Io { path: file.display().to_string(), message: e.to_string() })?;
            let data_start = 8 + header.header_len;
            for (name, info) in header.tensors {
                if !KeyLayout::is_ignored(&name) {
                    located.insert(name, (file.clone(), info, data_start));
                }
            }
        }
        let layout = KeyLayout::detect(located.keys().map(String::as_str))
            .ok_or_else(|| WeightsError::Layout { dir: d.clone(), message: "no thinker tensors found".into() })?;
        let manifest = Manifest::new(cfg, layout);
        let bare = Manifest::new(cfg, KeyLayout::Bare);
        let mut problems = Vec::new();
        let mut stored = None;
        for spec in &manifest.tensors {
            match located.get(&spec.name) {
                None => problems.push(format!("missing tensor `{}`", spec.name)),
                Some((file, info, _)) => {
                    let want: Vec<u64> = spec.shape.iter().map(|&x| x as u64).collect();
                    let f = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    if info.shape != want {
                        problems.push(format!(
                            "`{}` in {f} has shape {:?}, the config implies {want:?}",
                            spec.name, info.shape
                        ));
                    }
                    match stored_kind(info.dtype) {
                        None => {
                            problems.push(format!("`{}` in {f} is stored as {}, not a float", spec.name, info.dtype))
                        }
                        Some(k) => stored = stored.or(Some(k)),
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(WeightsError::Tensors { dir: d, count: problems.len(), problems: truncate(problems) });
        }
        let wanted = opts.dtype.or(stored).unwrap_or(Kind::Float);
        // On CPU, half precision is rounded to its values but computed in f32 (see the module doc).
        let kind = if opts.device == Device::Cpu { Kind::Float } else { wanted };
        let mut tensors = BTreeMap::new();
        for (spec, bare_spec) in manifest.tensors.iter().zip(&bare.tensors) {
            let Some((file, info, start)) = located.get(&spec.name) else { continue };
            let t = read_tensor(file, info, *start)?;
            let t = t.f_to_kind(wanted)?.f_to_kind(kind)?.f_to_device(opts.device)?;
            tensors.insert(bare_spec.name.clone(), t);
        }
        Ok(Weights { tensors, kind, device: opts.device, layout })
    }

    /// Writes every tensor (in `layout`, on CPU, in its current dtype) plus `config.json` into
    /// `dir`, one file or shards of at most `max_shard_bytes` with an index.
    pub fn save(
        &self,
        dir: &Path,
        cfg: &OmniThinkerConfig,
        layout: KeyLayout,
        max_shard_bytes: u64,
    ) -> Result<Vec<PathBuf>, WeightsError> {
        let io =
            |p: &Path, e: std::io::Error| WeightsError::Io { path: p.display().to_string(), message: e.to_string() };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut groups: Vec<Vec<(String, &Tensor)>> = vec![Vec::new()];
        let mut size = 0u64;
        for (name, t) in &self.tensors {
            let bytes = (t.numel() * t.kind().elt_size_in_bytes()) as u64;
            if size > 0 && size + bytes > max_shard_bytes.max(1) {
                groups.push(Vec::new());
                size = 0;
            }
            size += bytes;
            if let Some(g) = groups.last_mut() {
                g.push((layout.name(name), t));
            }
        }
        let n = groups.len();
        let mut files = Vec::new();
        let mut weight_map = BTreeMap::new();
        let mut total = 0u64;
        for (k, group) in groups.iter().enumerate() {
            let file =
                if n == 1 { SINGLE_FILE.to_string() } else { format!("model-{:05}-of-{n:05}.safetensors", k + 1) };
            let path = dir.join(&file);
            total += write_safetensors(&path, group)?;
            for (name, _) in group {
                weight_map.insert(name.clone(), file.clone());
            }
            files.push(path);
        }
        if n > 1 {
            let path = dir.join(INDEX_FILE);
            let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
            std::fs::write(&path, index.to_string()).map_err(|e| io(&path, e))?;
        }
        let path = dir.join(CONFIG_FILE);
        let text = cfg
            .to_json_string()
            .map_err(|e| WeightsError::Config { path: path.display().to_string(), message: e.to_string() })?;
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
        Ok(files)
    }
}

fn truncate(mut problems: Vec<String>) -> Vec<String> {
    let n = problems.len();
    if n > 12 {
        problems.truncate(12);
        problems.push(format!("... and {} more", n - 12));
    }
    problems
}

/// The weight files of a checkpoint directory: the index's shards, or the single file.
fn shard_files(dir: &Path) -> Result<Vec<PathBuf>, WeightsError> {
    let d = dir.display().to_string();
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let text = std::fs::read(&index)
            .map_err(|e| WeightsError::Io { path: index.display().to_string(), message: e.to_string() })?;
        let v: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| WeightsError::Io { path: index.display().to_string(), message: format!("not JSON: {e}") })?;
        let Some(map) = v.get("weight_map").and_then(|m| m.as_object()) else {
            return Err(WeightsError::Io {
                path: index.display().to_string(),
                message: "no `weight_map` object".into(),
            });
        };
        let mut files: Vec<PathBuf> = Vec::new();
        for (name, file) in map {
            if KeyLayout::is_ignored(name) {
                continue;
            }
            let Some(file) = file.as_str().filter(|f| !f.contains('/') && !f.contains("..")) else {
                let message = format!("bad file entry for `{name}`");
                return Err(WeightsError::Io { path: index.display().to_string(), message });
            };
            let path = dir.join(file);
            if !files.contains(&path) {
                files.push(path);
            }
        }
        files.sort();
        return Ok(files);
    }
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let message = format!("neither {INDEX_FILE} nor {SINGLE_FILE} found");
    Err(WeightsError::Layout { dir: d, message })
}

fn read_tensor(file: &Path, info: &TensorInfo, data_start: u64) -> Result<Tensor, WeightsError> {
    let io = |e: std::io::Error| WeightsError::Io { path: file.display().to_string(), message: e.to_string() };
    let kind = stored_kind(info.dtype).unwrap_or(Kind::Float);
    let len = usize::try_from(info.byte_len()).map_err(|_| io(std::io::Error::other("tensor too large")))?;
    let mut f = std::fs::File::open(file).map_err(io)?;
    f.seek(SeekFrom::Start(data_start + info.data_offsets[0])).map_err(io)?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).map_err(io)?;
    let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
    Ok(Tensor::f_from_data_size(&buf, &shape, kind)?)
}

/// A safetensors file with `__metadata__ {"format": "pt"}`; returns the data bytes written.
fn write_safetensors(path: &Path, tensors: &[(String, &Tensor)]) -> Result<u64, WeightsError> {
    let io = |e: std::io::Error| WeightsError::Io { path: path.display().to_string(), message: e.to_string() };
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut datas = Vec::with_capacity(tensors.len());
    let mut offset = 0u64;
    for (name, t) in tensors {
        let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
        let kind = match t.kind() {
            Kind::BFloat16 | Kind::Half | Kind::Float => t.kind(),
            _ => Kind::Float,
        };
        let t = t.f_to_kind(kind)?;
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * kind.elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel)?;
        let end = offset + bytes.len() as u64;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": safetensors_name(kind), "shape": t.size(), "data_offsets": [offset, end]}),
        );
        offset = end;
        datas.push(bytes);
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    f.write_all(&(json.len() as u64).to_le_bytes()).map_err(io)?;
    f.write_all(&json).map_err(io)?;
    for d in &datas {
        f.write_all(d).map_err(io)?;
    }
    f.flush().map_err(io)?;
    Ok(offset)
}
/// A [`Weights::scope`]: tensor names are `<prefix>.<suffix>`.
#[derive(Debug)]
pub struct Scope<'w> {
    weights: &'w Weights,
    prefix: String,
}

impl Scope<'_> {
    /// `<prefix>.<suffix>`.
    pub fn get(&self, suffix: &str) -> Result<Tensor, WeightsError> {
        self.weights.get(&format!("{}.{suffix}", self.prefix))
    }

    /// The linear layer `<prefix>.<name>` (`.weight`, and `.bias` when it has one).
    pub fn linear(&self, name: &str, bias: bool) -> Result<Linear, WeightsError> {
        let b = if bias { Some(self.get(&format!("{name}.bias"))?) } else { None };
        Ok(Linear::new(self.get(&format!("{name}.weight"))?, b))
    }

    /// The LayerNorm `<prefix>.<name>` (weight and bias).
    pub fn layer_norm(&self, name: &str, eps: f64) -> Result<LayerNorm, WeightsError> {
        Ok(LayerNorm { w: self.get(&format!("{name}.weight"))?, b: self.get(&format!("{name}.bias"))?, eps })
    }

    /// The RMSNorm `<prefix>.<name>` (weight only).
    pub fn rms_norm(&self, name: &str, eps: f64) -> Result<RmsNorm, WeightsError> {
        Ok(RmsNorm { w: self.get(&format!("{name}.weight"))?, eps })
    }
}
