//! Pixel rows (`rollout::media::PixelRows`) -> the vision tower's `[rows, patch_dim]` float32
//! input on its device.
//!
//! The environment hands over source bytes plus CLIP's per-channel table (`clip_lut`). On a
//! CUDA device the bytes are uploaded (a quarter of the floats' size) and looked up in the
//! same table there; on the CPU they are expanded in Rust, rows in parallel, straight into the
//! buffer the tensor is made from. Both read one table, so they give identical floats, and a
//! test runs the device path on the CPU to check it.
//!
//! Left out: keeping the table on the device between calls (it is 3 KB).

use rollout::media::PixelRows;
use rollout::media::pixels::{clip_lut, expand_codes};
use tch::{Device, Kind, Tensor};

/// Why pixel rows could not become a tensor.
#[derive(Debug, thiserror::Error)]
pub enum PixelError {
    #[error("pixel_values length {len} is not a multiple of {patch_dim}")]
    Width { len: usize, patch_dim: usize },
    #[error(transparent)]
    Media(#[from] rollout::media::MediaError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The items' rows one after another as a float32 `[rows, patch_dim]` tensor on `device`.
pub fn pixel_tensor(items: &[&PixelRows], patch_dim: usize, device: Device) -> Result<Tensor, PixelError> {
    let len: usize = items.iter().map(|p| p.len()).sum();
    if patch_dim == 0 || !len.is_multiple_of(patch_dim) {
        return Err(PixelError::Width { len, patch_dim });
    }
    let rows = (len / patch_dim) as i64;
    let codes: Vec<&[u8]> = items
        .iter()
        .filter_map(|p| match p {
            PixelRows::Codes(c) => Some(c.as_slice()),
            PixelRows::Values(_) => None,
        })
        .collect();
    if device.is_cuda() && codes.len() == items.len() {
        // One video (the usual case) is uploaded as it is, several are joined first.
        return match codes.as_slice() {
            [one] => codes_on_device(one, patch_dim, device),
            many => codes_on_device(&many.concat(), patch_dim, device),
        };
    }
    let mut values = vec![0f32; len];
    let mut rest = values.as_mut_slice();
    for p in items {
        let (part, tail) = rest.split_at_mut(p.len());
        match p {
            PixelRows::Values(v) => part.copy_from_slice(v),
            PixelRows::Codes(c) => expand_codes(c, patch_dim, part)?,
        }
        rest = tail;
    }
    Ok(Tensor::f_from_slice(&values)?.f_view([rows, patch_dim as i64])?)
}

/// Uploads `codes` (rows of `patch_dim`) to `device` and looks each byte up in CLIP's table for
/// its channel there: `[rows, patch_dim]` float32.
pub fn codes_on_device(codes: &[u8], patch_dim: usize, device: Device) -> Result<Tensor, PixelError> {
    if patch_dim == 0 || !patch_dim.is_multiple_of(3) || !codes.len().is_multiple_of(patch_dim) {
        return Err(PixelError::Width { len: codes.len(), patch_dim });
    }
    let (rows, per_channel) = ((codes.len() / patch_dim) as i64, (patch_dim / 3) as i64);
    let table = Tensor::f_from_slice(clip_lut().as_flattened())?.f_to_device(device)?;
    let offsets = Tensor::f_from_slice(&[0i32, 256, 512])?.f_to_device(device)?.f_view([1, 3, 1])?;
    let index = Tensor::f_from_slice(codes)?
        .f_to_device(device)?
        .f_to_kind(Kind::Int)?
        .f_view([rows, 3, per_channel])?
        .f_add(&offsets)?
        .f_flatten(0, -1)?;
    Ok(table.f_index_select(0, &index)?.f_view([rows, patch_dim as i64])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices() -> Vec<Device> {
        let mut d = vec![Device::Cpu];
        if tch::Cuda::is_available() {
            d.push(Device::Cuda(0));
        }
        d
    }

    fn floats(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(&t.to_device(Device::Cpu).flatten(0, -1)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_device_lookup_equals_the_cpu_expansion() {
        // Every byte in every channel block, rows of 12 (blocks of 4).
        let codes: Vec<u8> = (0..256 * 12).map(|i| ((i * 37 + i / 12) % 256) as u8).collect();
        let want = PixelRows::codes(codes.clone()).to_values(12).unwrap_or_else(|e| panic!("{e}"));
        for dev in devices() {
            let t = codes_on_device(&codes, 12, dev).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((t.size(), t.kind()), (vec![256, 12], Kind::Float));
            assert_eq!(floats(&t), want, "{dev:?}");
            let via = pixel_tensor(&[&PixelRows::codes(codes.clone())], 12, dev).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(floats(&via), want, "{dev:?}");
        }
    }

    #[test]
    fn items_concatenate_whatever_their_form() {
        let codes = PixelRows::codes(vec![0, 255, 7, 9, 128, 1]);
        let values = PixelRows::Values(vec![0.25; 6]);
        let mut want = codes.to_values(6).unwrap_or_else(|e| panic!("{e}"));
        want.extend([0.25; 6]);
        for dev in devices() {
            let t = pixel_tensor(&[&codes, &values], 6, dev).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(t.size(), vec![2, 6]);
            assert_eq!(floats(&t), want);
        }
    }

    #[test]
    fn ragged_rows_are_errors() {
        let odd = PixelRows::codes(vec![0; 7]);
        assert!(pixel_tensor(&[&odd], 6, Device::Cpu).is_err());
        assert!(pixel_tensor(&[&PixelRows::codes(vec![0; 8])], 4, Device::Cpu).is_err(), "4 is not 3 channels");
        assert!(codes_on_device(&[0; 8], 4, Device::Cpu).is_err());
        assert!(pixel_tensor(&[], 0, Device::Cpu).is_err());
    }
}
