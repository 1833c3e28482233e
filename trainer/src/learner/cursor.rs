//! Deterministic data order and the run's own random numbers, both small enough to live in a
//! checkpoint's JSON so a resumed run continues exactly where it stopped.
//!
//! [`DataCursor`] walks `len` samples epoch by epoch. The order of an epoch is a Fisher-Yates
//! permutation driven by [`SplitMix64`] seeded from `(seed, epoch)`, so the cursor's whole state is
//! `(seed, epoch, position)`: no generator state needs saving, and any epoch's order can be
//! recomputed (the reference's `RandomSampler(seed=42)` plays the same role; the permutation
//! itself differs from torch's, which only matters for sample-by-sample parity with a Python run).
//! Batches can drop the epoch's remainder (the RL loader's `drop_last=True`) or return it short
//! (the SFT loader).
//!
//! [`SplitMix64`] is also the generator for any other randomness of the training loop (e.g. the
//! random subset of batch padding); its single `u64` state is saved with the checkpoint. Left out:
//! libtorch's generator, which tch cannot read back: the loop reseeds it per step instead
//! (`checkpoint::train_state::seed_torch`).

use serde::{Deserialize, Serialize};

/// Sebastiano Vigna's SplitMix64: tiny, fast, and fully described by one `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitMix64 {
    pub state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; `n = 0` gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One batch of sample indices and the epoch they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub epoch: u64,
    pub indices: Vec<usize>,
}

/// Position in a dataset of `len` samples (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataCursor {
    pub len: usize,
    pub seed: u64,
    pub shuffle: bool,
    pub drop_last: bool,
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Samples of the current epoch already handed out.
    pub position: usize,
}

impl DataCursor {
    pub fn new(len: usize, seed: u64, shuffle: bool, drop_last: bool) -> Self {
        DataCursor { len, seed, shuffle, drop_last, epoch: 0, position: 0 }
    }

    /// The sample order of `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.len).collect();
        if self.shuffle {
            let mut rng = SplitMix64::new(self.seed ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
            for i in (1..idx.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                idx.swap(i, j);
            }
        }
        idx
    }

    /// Batches per epoch of `batch_size` samples.
    pub fn batches_per_epoch(&self, batch_size: usize) -> usize {
        let b = batch_size.max(1);
        if self.drop_last { self.len / b } else { self.len.div_ceil(b) }
    }

    /// The next batch, moving to the next epoch when the current one cannot supply it (with
    /// `drop_last`) or is exhausted. `None` only for an empty dataset, or when `drop_last` and
    /// `batch_size > len`.
    pub fn next_batch(&mut self, batch_size: usize) -> Option<Batch> {
        let b = batch_size.max(1);
        if self.len == 0 || (self.drop_last && b > self.len) {
            return None;
        }
        // A position beyond the end (a checkpoint of a larger dataset) counts as exhausted.
        let remaining = self.len - self.position.min(self.len);
        if remaining == 0 || (self.drop_last && remaining < b) {
            self.epoch += 1;
            self.position = 0;
        }
        let order = self.order(self.epoch);
        let end = (self.position + b).min(self.len);
        let indices = order[self.position..end].to_vec();
        self.position = end;
        Some(Batch { epoch: self.epoch, indices })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
        let x = SplitMix64::new(7).next_f64();
        assert!((0.0..1.0).contains(&x));
    }

    #[test]
    fn epochs_are_permutations_and_resumable() {
        let mut c = DataCursor::new(10, 42, true, true);
        let first = c.order(0);
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(first, c.order(1));
        // drop_last with batch 4: two batches per epoch, the remainder of 2 is skipped.
        assert_eq!(c.batches_per_epoch(4), 2);
        let b1 = c.next_batch(4).unwrap();
        assert_eq!((b1.epoch, b1.indices.as_slice()), (0, &first[0..4]));
        // A copy taken now (what a checkpoint stores) continues identically.
        let mut resumed: DataCursor = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        let rest: Vec<Batch> = (0..3).filter_map(|_| c.next_batch(4)).collect();
        let rest2: Vec<Batch> = (0..3).filter_map(|_| resumed.next_batch(4)).collect();
        assert_eq!(rest, rest2);
        assert_eq!(rest[0].indices, first[4..8]);
        assert_eq!((rest[1].epoch, rest[1].indices.as_slice()), (1, &c.order(1)[0..4]));
    }

    #[test]
    fn keep_last_partial_batch_without_drop_last() {
        let mut c = DataCursor::new(5, 1, false, false);
        let sizes: Vec<(u64, usize)> =
            (0..4).map(|_| c.next_batch(2).unwrap()).map(|b| (b.epoch, b.indices.len())).collect();
        assert_eq!(sizes, vec![(0, 2), (0, 2), (0, 1), (1, 2)]);
        assert!(DataCursor::new(3, 0, true, true).next_batch(4).is_none());
        assert!(DataCursor::new(0, 0, true, false).next_batch(1).is_none());
    }
}
