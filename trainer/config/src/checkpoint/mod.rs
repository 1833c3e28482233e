//! Hugging Face checkpoint directories as `omnirl validate` sees them, without loading weights:
//! safetensors headers ([`safetensors_header`]) and a model directory checked against its
//! config ([`inspect`]). Writing and loading weights is the `trainer` crate's.

pub mod inspect;
pub mod safetensors_header;

pub use inspect::{ModelDirCheck, ModelReport, check_model_dir, inspect_model_dir};
pub use safetensors_header::{Dtype, HeaderError, SafetensorsHeader, TensorInfo, read_header};

pub const CONFIG_FILE: &str = "config.json";
pub const INDEX_FILE: &str = "model.safetensors.index.json";
pub const SINGLE_FILE: &str = "model.safetensors";
