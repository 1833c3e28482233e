//! Streaming safetensors I/O for training state (optimizer moments, master weights, small models):
//! [`write_safetensors`] writes the header from shapes and dtypes, then each tensor's bytes one
//! tensor at a time (so a 7B model's fp32 moments never need a second copy in host memory), and
//! `fsync`s the file; [`read_safetensors`] validates the header (`read_header`) and hands back one
//! tensor at a time. The header carries `__metadata__ {"format": "pt"}` as `save_pretrained`
//! writes it, so transformers and the `safetensors` library read these files.
//!
//! Left out: sharding (one file per kind of state is enough; safetensors has no size limit) and
//! memory-mapped reads.

use super::safetensors_header::{Dtype, read_header};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum TensorIoError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path}: tensor `{name}` has unsupported dtype {dtype}")]
    Dtype { path: String, name: String, dtype: String },
    #[error("{path}: libtorch: {source}")]
    Torch {
        path: String,
        #[source]
        source: tch::TchError,
    },
}

fn dtype_of(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Float => "F32",
        Kind::Double => "F64",
        Kind::BFloat16 => "BF16",
        Kind::Half => "F16",
        Kind::Int64 => "I64",
        Kind::Int => "I32",
        Kind::Int16 => "I16",
        Kind::Int8 => "I8",
        Kind::Uint8 => "U8",
        Kind::Bool => "BOOL",
        _ => return None,
    })
}

fn kind_of(d: Dtype) -> Option<Kind> {
    Some(match d {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::Bf16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::Bool => Kind::Bool,
        _ => return None,
    })
}

/// Writes `tensors` (any device; names unique) to `path` and syncs it. Returns the data bytes.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<u64, TensorIoError> {
    let p = path.display().to_string();
    let io = |e: std::io::Error| TensorIoError::Io { path: p.clone(), message: e.to_string() };
    let torch = |source| TensorIoError::Torch { path: p.clone(), source };
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0u64;
    for (name, t) in tensors {
        let dtype = dtype_of(t.kind()).ok_or_else(|| TensorIoError::Dtype {
            path: p.clone(),
            name: name.clone(),
            dtype: format!("{:?}", t.kind()),
        })?;
        let bytes = (t.numel() * t.kind().elt_size_in_bytes()) as u64;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": t.size(), "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let file = File::create(path).map_err(io)?;
    let mut out = BufWriter::with_capacity(8 << 20, file);
    out.write_all(&(json.len() as u64).to_le_bytes()).map_err(io)?;
    out.write_all(&json).map_err(io)?;
    let mut buf = Vec::new();
    for (_, t) in tensors {
        let c = t.f_detach().and_then(|x| x.f_to_device(Device::Cpu)).and_then(|x| x.f_contiguous()).map_err(torch)?;
        let numel = c.numel();
        buf.resize(numel * c.kind().elt_size_in_bytes(), 0);
        c.f_copy_data_u8(&mut buf, numel).map_err(torch)?;
        out.write_all(&buf).map_err(io)?;
    }
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(offset)
}

/// Calls `each(name, tensor)` for every tensor of `path` (CPU, stored dtype), in file order.
pub fn read_safetensors(
    path: &Path,
    mut each: impl FnMut(&str, Tensor) -> Result<(), tch::TchError>,
) -> Result<(), TensorIoError> {
    let p = path.display().to_string();
    let io = |m: String| TensorIoError::Io { path: p.clone(), message: m };
    let header = read_header(path).map_err(|e| io(e.to_string()))?;
    let data_start = 8 + header.header_len;
    let mut entries: Vec<_> = header.tensors.iter().collect();
    entries.sort_by_key(|(_, info)| info.data_offsets[0]);
    let mut f = File::open(path).map_err(|e| io(e.to_string()))?;
    let mut buf = Vec::new();
    for (name, info) in entries {
        let kind = kind_of(info.dtype).ok_or_else(|| TensorIoError::Dtype {
            path: p.clone(),
            name: name.clone(),
            dtype: info.dtype.to_string(),
        })?;
        let len = usize::try_from(info.byte_len()).map_err(|_| io(format!("tensor `{name}` is too large")))?;
        f.seek(SeekFrom::Start(data_start + info.data_offsets[0])).map_err(|e| io(e.to_string()))?;
        buf.resize(len, 0);
        f.read_exact(&mut buf).map_err(|e| io(e.to_string()))?;
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(&buf, &shape, kind)
            .map_err(|source| TensorIoError::Torch { path: p.clone(), source })?;
        each(name, t).map_err(|source| TensorIoError::Torch { path: p.clone(), source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_bitwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.safetensors");
        let a = Tensor::randn([3, 5], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([7], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        let c = Tensor::from_slice(&[1i64, -2, 3]);
        let tensors = vec![
            ("exp_avg.w".to_owned(), a.shallow_clone()),
            ("master.b".into(), b.shallow_clone()),
            ("n".into(), c.shallow_clone()),
        ];
        let bytes = write_safetensors(&path, &tensors).unwrap();
        assert_eq!(bytes, 15 * 4 + 7 * 2 + 3 * 8);
        let header = read_header(&path).unwrap();
        assert_eq!(header.metadata.get("format").map(String::as_str), Some("pt"));
        let mut back = Vec::new();
        read_safetensors(&path, |n, t| {
            back.push((n.to_owned(), t));
            Ok(())
        })
        .unwrap();
        assert_eq!(back.len(), 3);
        for (name, t) in &tensors {
            let (_, r) = back.iter().find(|(n, _)| n == name).unwrap();
            assert!(r.equal(t), "{name}");
            assert_eq!(r.kind(), t.kind());
        }
    }
}
