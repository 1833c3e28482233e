//! Reads and checks only the header of a `.safetensors` file: an 8-byte little-endian length `N`,
//! then `N` bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
//! {...}}`, then the data section. The data is never read: the header is read with a bounded read
//! and the file size comes from its metadata, so checking a 4 GB shard costs a few kilobytes.
//!
//! Checked, with every tensor problem of a file reported together: `N` fits the file and is below
//! [`MAX_HEADER_BYTES`]; the JSON parses (UTF-8, an object); each entry has a known dtype, a
//! non-negative shape and offsets whose span equals dtype size x element count; the spans tile
//! the data section without gaps or overlaps (as the reference `safetensors` loader requires);
//! the file holds at least `8 + N + data length` bytes (a truncated file is an error naming the
//! expected and the actual size). Extra bytes after the data are reported, not rejected.
//!
//! Left out: the alignment padding rules of writers (irrelevant to reading), and anything about
//! tensor values (NaNs, ranges), which would need the data.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

/// Headers larger than this are rejected (the reference loader's limit; real ones are < 1 MB).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Per-file cap on listed tensor problems; the rest are counted.
const MAX_LISTED: usize = 20;

/// Element types of the safetensors format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Dtype {
    #[serde(rename = "BOOL")]
    Bool,
    U8,
    I8,
    #[serde(rename = "F8_E5M2")]
    F8E5M2,
    #[serde(rename = "F8_E4M3")]
    F8E4M3,
    I16,
    U16,
    F16,
    #[serde(rename = "BF16")]
    Bf16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

const DTYPES: [(Dtype, &str, u64); 15] = [
    (Dtype::Bool, "BOOL", 1),
    (Dtype::U8, "U8", 1),
    (Dtype::I8, "I8", 1),
    (Dtype::F8E5M2, "F8_E5M2", 1),
    (Dtype::F8E4M3, "F8_E4M3", 1),
    (Dtype::I16, "I16", 2),
    (Dtype::U16, "U16", 2),
    (Dtype::F16, "F16", 2),
    (Dtype::Bf16, "BF16", 2),
    (Dtype::I32, "I32", 4),
    (Dtype::U32, "U32", 4),
    (Dtype::F32, "F32", 4),
    (Dtype::F64, "F64", 8),
    (Dtype::I64, "I64", 8),
    (Dtype::U64, "U64", 8),
];

impl Dtype {
    /// The header spelling (`"BF16"`); `None` for anything else, including sub-byte types.
    pub fn from_name(name: &str) -> Option<Dtype> {
        DTYPES.iter().find(|(_, n, _)| *n == name).map(|(d, _, _)| *d)
    }

    pub fn name(self) -> &'static str {
        DTYPES.iter().find(|(d, _, _)| *d == self).map_or("?", |(_, n, _)| n)
    }

    pub fn size_bytes(self) -> u64 {
        DTYPES.iter().find(|(d, _, _)| *d == self).map_or(1, |(_, _, s)| *s)
    }

    /// F32, BF16 or F16: what a thinker's weights may be stored as.
    pub fn is_float_weight(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::Bf16 | Dtype::F16)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    /// Byte range relative to the start of the data section.
    pub data_offsets: [u64; 2],
}

impl TensorInfo {
    pub fn byte_len(&self) -> u64 {
        self.data_offsets[1].saturating_sub(self.data_offsets[0])
    }
}

/// A checked header.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SafetensorsHeader {
    /// `N`, the JSON length.
    pub header_len: u64,
    /// Size of the file on disk.
    pub file_len: u64,
    /// Length of the data section the header describes (largest end offset).
    pub data_len: u64,
    pub tensors: BTreeMap<String, TensorInfo>,
    pub metadata: BTreeMap<String, String>,
}

impl SafetensorsHeader {
    /// `8 + N + data length`: the size a complete file has.
    pub fn expected_file_len(&self) -> u64 {
        8u64.saturating_add(self.header_len).saturating_add(self.data_len)
    }

    /// Bytes after the data section (0 for files written by the reference writer).
    pub fn trailing_bytes(&self) -> u64 {
        self.file_len.saturating_sub(self.expected_file_len())
    }
}

/// Why a header could not be accepted. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("{path}: file not found")]
    NotFound { path: String },
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {file_len} bytes is too short to be a safetensors file")]
    TooShort { path: String, file_len: u64 },
    #[error("{path}: header length {header_len} is impossible ({reason})")]
    BadHeaderLen { path: String, header_len: u64, reason: String },
    #[error("{path}: header is not valid JSON: {message}")]
    Json { path: String, message: String },
    #[error("{path}: {}", problems.join("; "))]
    BadTensors { path: String, problems: Vec<String> },
    #[error(
        "{path}: truncated: expected {expected} bytes (8 + {header_len} header + {data_len} data), \
         found {actual}"
    )]
    Truncated { path: String, expected: u64, actual: u64, header_len: u64, data_len: u64 },
}

impl HeaderError {
    /// The file the error is about, as given to [`read_header`].
    pub fn path(&self) -> &str {
        match self {
            HeaderError::NotFound { path }
            | HeaderError::Io { path, .. }
            | HeaderError::TooShort { path, .. }
            | HeaderError::BadHeaderLen { path, .. }
            | HeaderError::Json { path, .. }
            | HeaderError::BadTensors { path, .. }
            | HeaderError::Truncated { path, .. } => path,
        }
    }

    /// The message without the leading `path: `.
    pub fn message(&self) -> String {
        let full = self.to_string();
        let prefix = format!("{}: ", self.path());
        full.strip_prefix(&prefix).map(str::to_string).unwrap_or(full)
    }
}

#[derive(Deserialize)]
struct RawInfo {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// Reads and checks the header of the safetensors file at `path` (never its data).
pub fn read_header(path: &Path) -> Result<SafetensorsHeader, HeaderError> {
    let p = path.display().to_string();
    let io = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => HeaderError::NotFound { path: p.clone() },
        _ => HeaderError::Io { path: p.clone(), source },
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    if file_len < 8 {
        return Err(HeaderError::TooShort { path: p, file_len });
    }
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(io)?;
    let header_len = u64::from_le_bytes(len_bytes);
    let bad_len = |reason: String| HeaderError::BadHeaderLen { path: p.clone(), header_len, reason };
    if header_len > MAX_HEADER_BYTES {
        return Err(bad_len(format!("the limit is {MAX_HEADER_BYTES} bytes")));
    }
    if header_len > file_len - 8 {
        return Err(bad_len(format!("the file has only {} bytes after the length", file_len - 8)));
    }
    let mut json = Vec::with_capacity(header_len as usize);
    file.take(header_len).read_to_end(&mut json).map_err(io)?;
    let entries: Map<String, Value> =
        serde_json::from_slice(&json).map_err(|e| HeaderError::Json { path: p.clone(), message: e.to_string() })?;

    let mut problems = Vec::new();
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, value) in entries {
        if name == "__metadata__" {
            match serde_json::from_value::<BTreeMap<String, String>>(value) {
                Ok(m) => metadata = m,
                Err(e) => problems.push(format!("__metadata__ is not a map of strings: {e}")),
            }
            continue;
        }
        match parse_entry(value) {
            Ok(info) => {
                tensors.insert(name, info);
            }
            Err(why) => problems.push(format!("tensor `{name}`: {why}")),
        }
    }
    // The spans must tile [0, data_len) in offset order.
    let mut spans: Vec<(&String, [u64; 2])> = tensors.iter().map(|(n, t)| (n, t.data_offsets)).collect();
    spans.sort_by_key(|(_, o)| *o);
    let mut cursor = 0u64;
    for (name, [begin, end]) in spans {
        if begin != cursor {
            let what = if begin > cursor { "leaves a gap before it" } else { "overlaps the tensor before it" };
            problems
                .push(format!("tensor `{name}`: data_offsets [{begin}, {end}] {what} (expected to start at {cursor})"));
        }
        cursor = cursor.max(end);
    }
    if !problems.is_empty() {
        let extra = problems.len().saturating_sub(MAX_LISTED);
        problems.truncate(MAX_LISTED);
        if extra > 0 {
            problems.push(format!("... and {extra} more tensor problems"));
        }
        return Err(HeaderError::BadTensors { path: p, problems });
    }
    let data_len = cursor;
    let expected = 8u64.saturating_add(header_len).saturating_add(data_len);
    if file_len < expected {
        return Err(HeaderError::Truncated { path: p, expected, actual: file_len, header_len, data_len });
    }
    Ok(SafetensorsHeader { header_len, file_len, data_len, tensors, metadata })
}

fn parse_entry(value: Value) -> Result<TensorInfo, String> {
    let raw: RawInfo = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let dtype = Dtype::from_name(&raw.dtype).ok_or_else(|| format!("unsupported dtype `{}`", raw.dtype))?;
    let [begin, end] = raw.data_offsets;
    if end < begin {
        return Err(format!("data_offsets [{begin}, {end}] end before they begin"));
    }
    let numel = raw.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
    let bytes = numel.and_then(|n| n.checked_mul(dtype.size_bytes()));
    let Some(bytes) = bytes else {
        return Err(format!("shape {:?} overflows", raw.shape));
    };
    if end - begin != bytes {
        return Err(format!(
            "data_offsets [{begin}, {end}] span {} bytes but {dtype} {:?} needs {bytes}",
            end - begin,
            raw.shape
        ));
    }
    Ok(TensorInfo { dtype, shape: raw.shape, data_offsets: raw.data_offsets })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Writes `8-byte N | header | data_len zero bytes` and returns the path.
    fn write_raw(dir: &Path, name: &str, n: u64, header: &[u8], data_len: usize) -> PathBuf {
        let path = dir.join(name);
        let mut bytes = n.to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend(std::iter::repeat_n(0u8, data_len));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn write(dir: &Path, name: &str, header: &str, data_len: usize) -> PathBuf {
        write_raw(dir, name, header.len() as u64, header.as_bytes(), data_len)
    }

    const TWO: &str = r#"{"__metadata__":{"format":"pt"},
        "a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},
        "b":{"dtype":"F32","shape":[],"data_offsets":[12,16]}}"#;

    #[test]
    fn reads_a_valid_header() {
        let dir = tempfile::tempdir().unwrap();
        let h = read_header(&write(dir.path(), "ok.safetensors", TWO, 16)).unwrap();
        assert_eq!((h.header_len, h.data_len, h.trailing_bytes()), (TWO.len() as u64, 16, 0));
        assert_eq!(h.tensors["a"], TensorInfo { dtype: Dtype::Bf16, shape: vec![2, 3], data_offsets: [0, 12] });
        assert_eq!(h.tensors["b"].byte_len(), 4);
        assert_eq!(h.metadata["format"], "pt");
        // Trailing bytes are accepted and counted.
        let h = read_header(&write(dir.path(), "long.safetensors", TWO, 20)).unwrap();
        assert_eq!(h.trailing_bytes(), 4);
    }

    #[test]
    fn rejects_bad_files_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let one = |dtype: &str, shape: &str, offs: &str| {
            format!(r#"{{"x":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offs}}}}}"#)
        };
        #[rustfmt::skip]
        let cases: Vec<(PathBuf, &str)> = vec![
            ({ std::fs::write(d.join("short"), b"abc").unwrap(); d.join("short") }, "3 bytes is too short"),
            (write_raw(d, "huge_n", 10_000_000_000, b"{}", 0), "the limit is 100000000 bytes"),
            (write_raw(d, "n_past_end", 1000, b"{}", 0), "has only 2 bytes after the length"),
            (write(d, "garbage", "\u{1}\u{2}not json at all", 0), "not valid JSON"),
            (write_raw(d, "not_utf8", 4, b"\"\xff\xfe\"", 0), "not valid JSON"),
            (write(d, "array", "[1,2]", 0), "not valid JSON: invalid type: sequence"),
            (write(d, "negative", &one("F32", "[-2,3]", "[0,24]"), 24), "tensor `x`: invalid value: integer `-2`"),
            (write(d, "dtype", &one("F4", "[2]", "[0,1]"), 1), "tensor `x`: unsupported dtype `F4`"),
            (write(d, "span", &one("F32", "[2,3]", "[0,12]"), 12), "span 12 bytes but F32 [2, 3] needs 24"),
            (write(d, "backwards", &one("U8", "[0]", "[5,1]"), 5), "end before they begin"),
            (write(d, "overflow", &one("F64", "[4294967296,4294967296]", "[0,8]"), 8), "overflows"),
            (write(d, "gap", &one("U8", "[2]", "[2,4]"), 4), "leaves a gap before it (expected to start at 0)"),
            (write(d, "meta", r#"{"__metadata__":{"n":1}}"#, 0), "__metadata__ is not a map of strings"),
            (write(d, "trunc", TWO, 10), "truncated: expected"),
        ];
        for (path, want) in cases {
            let err = read_header(&path).unwrap_err();
            assert_eq!(err.path(), path.display().to_string());
            assert!(err.to_string().contains(want), "{}: {err}", path.display());
        }
        let overlap = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},
            "b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#;
        let err = read_header(&write(d, "overlap", overlap, 4)).unwrap_err();
        assert!(err.to_string().contains("`b`: data_offsets [2, 4] overlaps"), "{err}");
        let missing = read_header(&d.join("absent.safetensors")).unwrap_err();
        assert!(matches!(missing, HeaderError::NotFound { .. }));
    }

    #[test]
    fn truncation_names_expected_and_actual_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "t.safetensors", TWO, 10);
        let n = TWO.len() as u64;
        match read_header(&path).unwrap_err() {
            HeaderError::Truncated { expected, actual, data_len, .. } => {
                assert_eq!((expected, actual, data_len), (8 + n + 16, 8 + n + 10, 16));
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn every_tensor_problem_is_listed_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<String> =
            (0..25).map(|i| format!(r#""t{i:02}":{{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}}"#)).collect();
        let header = format!("{{{}}}", entries.join(","));
        match read_header(&write(dir.path(), "many", &header, 1)).unwrap_err() {
            HeaderError::BadTensors { problems, .. } => {
                assert_eq!(problems.len(), MAX_LISTED + 1);
                assert_eq!(problems.last().map(String::as_str), Some("... and 5 more tensor problems"));
            }
            other => panic!("{other}"),
        }
    }
}
