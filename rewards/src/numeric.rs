//! NUM and SIZE scoring: the reference's number extraction, Python's `round(x, 2)` and the
//! mean relative accuracy (MRA) over the tolerances 0.50, 0.45, ..., 0.05
//! (docs/reference.md#reward-num, docs/reference.md#reward-size).
//!
//! Left out: the reference's float32 arithmetic in MRA (we compute in f64 with exactly
//! constructed tolerances and treat values within 1e-12 of a tolerance as on it; see the
//! crate docs for the artefact this removes), and Unicode digits in the number regex (Python's
//! `\d` matches `"٣"`, we match ASCII digits only).

use crate::error::{RewardError, excerpt};

/// The first match of `[+-]?\d+(?:\.\d+)?` in `text` (ASCII digits only), as text.
///
/// The leftmost match always begins at the first ASCII digit, or at the sign just before it,
/// so no backtracking search is needed.
pub fn find_number(text: &str) -> Option<&str> {
    let b = text.as_bytes();
    let first = b.iter().position(u8::is_ascii_digit)?;
    let start = if first > 0 && matches!(b[first - 1], b'+' | b'-') { first - 1 } else { first };
    let digits_from = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        j
    };
    let mut end = digits_from(first);
    if end + 1 < b.len() && b[end] == b'.' && b[end + 1].is_ascii_digit() {
        end = digits_from(end + 1);
    }
    // All boundaries sit next to ASCII bytes, so they are char boundaries.
    text.get(start..end)
}

/// First match of `[+-]?\d+(?:\.\d+)?` (ASCII digits only), parsed as Python's `float()` does
/// (correctly rounded; too many digits overflow to infinity). `"1e3"` -> 1, `"1,000"` -> 1,
/// `".5"` -> 5, `"-.5"` -> 5, `"x-3.25y"` -> -3.25.
pub fn extract_number(text: &str) -> Option<f64> {
    find_number(text).and_then(|m| m.parse::<f64>().ok())
}

/// Python's `round(x, 2)` for a float: the exact binary value of `x` rounded to 2 decimals,
/// ties to even only on exact binary ties, returned as the nearest `f64`.
/// `0.125` -> 0.12 (exact tie), `0.375` -> 0.38 (exact tie), `2.675` -> 2.67 and `1.005` -> 1.0
/// (their binary values lie below the half), `-2.675` -> -2.67. Non-finite values pass through.
pub fn py_round2(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let bits = x.abs().to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    // |x| = mant * 2^exp exactly.
    let (mant, exp) = if exp_bits == 0 { (frac, -1074) } else { (frac | (1u64 << 52), exp_bits - 1075) };
    if exp >= 0 {
        return x; // an integer already
    }
    let shift = exp.unsigned_abs();
    let scaled = u128::from(mant) * 100; // |x| * 100 * 2^shift, below 2^60
    let q = if shift > 62 {
        0 // |x| * 100 < 2^60 / 2^63 < 0.5, and not a tie
    } else {
        let q = scaled >> shift;
        let rem = scaled & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        if rem > half || (rem == half && q & 1 == 1) { q + 1 } else { q }
    };
    let magnitude = if q < (1u128 << 53) {
        // Both operands are exact, so the quotient is the correctly rounded q / 100.
        q as f64 / 100.0
    } else {
        format!("{}.{:02}", q / 100, q % 100).parse::<f64>().unwrap_or(f64::INFINITY)
    };
    magnitude.copysign(x)
}

/// NUM: 1.0 when `round(gt, 2) == round(pred, 2)` (Python semantics), else 0.0.
pub fn numeric_exact(pred: f64, gt: f64) -> f64 {
    if py_round2(pred) == py_round2(gt) { 1.0 } else { 0.0 }
}

/// Relative distances within this fraction of a tolerance count as equal to it; absorbs the
/// error of representing decimal answers in binary (at most ~1e-14 relative here).
const BOUNDARY_SLACK: f64 = 1e-12;

/// The tolerances `1 - θ` for `θ = 0.50, 0.55, ..., 0.95`, built exactly as `(10 - k) / 20`.
pub const MRA_TOLERANCES: [f64; 10] = {
    let mut t = [0.0; 10];
    let mut k = 0;
    while k < 10 {
        t[k] = (10 - k) as f64 / 20.0;
        k += 1;
    }
    t
};

/// SIZE: mean relative accuracy. With `rel = |pred - gt| / |gt|`, the fraction of the ten
/// tolerances 0.50, 0.45, ..., 0.05 with `rel < tolerance` (strict). A relative error within
/// 1e-12 (relative) of a tolerance counts as equal to it, so decimal answers that sit exactly
/// on a boundary score as their decimal values do (`pred = 1.2, gt = 1` -> rel 0.2, not
/// counted at tolerance 0.2). `gt == 0` -> 1.0 when `pred == 0`, else 0.0. Non-finite inputs
/// -> 0.0 unless handled by the gt == 0 rule.
pub fn mean_relative_accuracy(pred: f64, gt: f64) -> f64 {
    if gt == 0.0 {
        return if pred == 0.0 { 1.0 } else { 0.0 };
    }
    let diff = (pred - gt).abs();
    let scale = gt.abs();
    let hits = MRA_TOLERANCES
        .iter()
        .filter(|&&tol| {
            let bound = tol * scale;
            diff < bound && (bound - diff) > BOUNDARY_SLACK * bound
        })
        .count();
    hits as f64 / 10.0
}

/// The ground-truth number of a NUM/SIZE item: `GT_JSON_PARSE` when it has none.
pub fn ground_truth_number(answer: &str) -> Result<f64, RewardError> {
    extract_number(answer)
        .ok_or_else(|| RewardError::GtJsonParse(format!("cannot parse gt number: {:?}", excerpt(answer, 80))))
}

/// The predicted number of a NUM/SIZE answer: `ANSWER_NOT_STRING` when it has none.
pub fn predicted_number(content: &str) -> Result<f64, RewardError> {
    extract_number(content).ok_or_else(|| RewardError::AnswerNotString("Cannot parse number from answer.".to_owned()))
}

#[cfg(test)]
mod tests;
