//! The one reading of a `--device` argument, shared by every command that loads a model:
//! `auto` (the first GPU when libtorch sees one, else the CPU), `cpu`, `cuda` or `cuda:N`.
//! A recipe's device is chosen per rank by `run::World::device` instead (GPU ids, local rank).

use tch::Device;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeviceError {
    #[error("--device {0}: expected auto, cpu, cuda or cuda:N")]
    Unknown(String),
    #[error("--device {0}: libtorch reports no CUDA device (a CPU-only build or libtorch, or no GPU)")]
    NoCuda(String),
}

/// The device `spec` names (see the module doc).
pub fn parse_device(spec: &str) -> Result<Device, DeviceError> {
    let index = match spec {
        "auto" => return Ok(Device::cuda_if_available()),
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => {
            other.strip_prefix("cuda:").and_then(|n| n.parse().ok()).ok_or_else(|| DeviceError::Unknown(spec.into()))?
        }
    };
    if !tch::Cuda::is_available() {
        return Err(DeviceError::NoCuda(spec.into()));
    }
    Ok(Device::Cuda(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!(parse_device("cpu"), Ok(Device::Cpu));
        assert_eq!(parse_device("auto"), Ok(Device::cuda_if_available()));
        for bad in ["gpu", "cuda:x", "cuda0", ""] {
            assert_eq!(parse_device(bad), Err(DeviceError::Unknown(bad.into())));
        }
        if !tch::Cuda::is_available() {
            assert_eq!(parse_device("cuda:1"), Err(DeviceError::NoCuda("cuda:1".into())));
        }
    }
}
