//! Response masks and turn entropies (docs/reference.md#training-rows, docs/reference.md#taura
//! steps 1-2).
//!
//! * [`response_mask`]: the reference's `get_response_mask`: 1 for every response token up to
//!   **and including** the first end token, 0 after it (padding, or anything generated past a
//!   stop the sampler did not honour).
//! * [`turn_entropy`]: TAURA's `h_r = Σ_t m_t H_t / (Σ_t m_t + 1e-8)`, the masked mean of the
//!   token entropies of one row (one turn), in `f64`. A fully masked row has `h_r = 0`.
//!
//! Token entropies themselves (`logsumexp(z) − Σ softmax(z)·z` over the full vocabulary) come from
//! the model's training forward (`model::logprobs`); this file only reduces them. Left out: the
//! reference's disabled token-level top-k entropy mask.

/// The constant in the denominator of the masked mean.
pub const TURN_ENTROPY_EPSILON: f64 = 1e-8;

/// 1 up to and including the first token in `end_ids`, 0 after; all 1 when none occurs.
pub fn response_mask(response: &[u32], end_ids: &[u32]) -> Vec<bool> {
    let cut = response.iter().position(|t| end_ids.contains(t)).map_or(response.len(), |i| i + 1);
    (0..response.len()).map(|i| i < cut).collect()
}

/// `Σ m·H / (Σ m + 1e-8)`; positions beyond the shorter of the two slices count as masked out.
pub fn turn_entropy(token_entropies: &[f64], mask: &[bool]) -> f64 {
    let (mut sum, mut n) = (0.0f64, 0.0f64);
    for (&h, &m) in token_entropies.iter().zip(mask) {
        if m {
            sum += h;
            n += 1.0;
        }
    }
    sum / (n + TURN_ENTROPY_EPSILON)
}

/// [`turn_entropy`] of `f32` entropies (what the model returns).
pub fn turn_entropy_f32(token_entropies: &[f32], mask: &[bool]) -> f64 {
    let h: Vec<f64> = token_entropies.iter().map(|&x| f64::from(x)).collect();
    turn_entropy(&h, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_masks() {
        // (response, end ids, mask)
        let table: [(&[u32], &[u32], &[bool]); 5] = [
            (&[5, 6, 9, 0, 0], &[9], &[true, true, true, false, false]),
            (&[5, 6, 7], &[9], &[true, true, true]),
            (&[9, 5], &[9], &[true, false]),
            (&[5, 8, 9], &[9, 8], &[true, true, false]),
            (&[], &[9], &[]),
        ];
        for (resp, ends, want) in table {
            assert_eq!(response_mask(resp, ends), want, "{resp:?}");
        }
    }

    #[test]
    fn turn_entropies() {
        // (H, mask, h): masked mean with 1e-8 in the denominator.
        let table: [(&[f64], &[bool], f64); 4] = [
            (&[1.0, 2.0, 3.0], &[true, true, true], 6.0 / (3.0 + 1e-8)),
            (&[1.0, 2.0, 30.0], &[true, true, false], 3.0 / (2.0 + 1e-8)),
            (&[4.0], &[false], 0.0),
            (&[0.5, 0.25], &[true], 0.5 / (1.0 + 1e-8)),
        ];
        for (h, m, want) in table {
            assert_eq!(turn_entropy(h, m), want, "{h:?} {m:?}");
        }
        assert_eq!(turn_entropy_f32(&[0.5, 1.5], &[true, true]), 2.0 / (2.0 + 1e-8));
    }
}
