//! Property tests of temporal IoU and of Python-compatible rounding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rewards::{TimeSpan, py_round2, temporal_iou};

/// A non-reversed span on a 0.25 s grid within [0, 100] (exact binary values, so splitting
/// points are exact too), or with arbitrary finite bounds.
fn span() -> impl Strategy<Value = TimeSpan> {
    prop_oneof![
        (0u32..400, 0u32..80).prop_map(|(s, len)| {
            let start = f64::from(s) / 4.0;
            TimeSpan::new(start, start + f64::from(len) / 4.0)
        }),
        (-1e6f64..1e6, 0f64..1e4).prop_map(|(s, len)| TimeSpan::new(s, s + len)),
    ]
}

fn spans() -> impl Strategy<Value = Vec<TimeSpan>> {
    prop::collection::vec(span(), 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn iou_is_symmetric(p in spans(), g in spans()) {
        prop_assert_eq!(temporal_iou(&p, &g).to_bits(), temporal_iou(&g, &p).to_bits());
    }

    #[test]
    fn iou_is_in_unit_interval(p in spans(), g in spans()) {
        let v = temporal_iou(&p, &g);
        prop_assert!((0.0..=1.0).contains(&v), "{v}");
    }

    #[test]
    fn identical_sets_score_one(p in spans()) {
        prop_assert_eq!(temporal_iou(&p, &p), 1.0);
    }

    #[test]
    fn span_order_does_not_matter(p in spans(), g in spans(), seed in any::<u64>()) {
        let mut shuffled = p.clone();
        // Deterministic shuffle from the seed (Fisher-Yates with an LCG).
        let mut state = seed;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = (state >> 33) as usize % (i + 1);
            shuffled.swap(i, j);
        }
        prop_assert_eq!(temporal_iou(&p, &g).to_bits(), temporal_iou(&shuffled, &g).to_bits());
    }

    #[test]
    fn splitting_a_span_does_not_matter(p in prop::collection::vec(span(), 1..8), g in spans(),
                                        which in any::<prop::sample::Index>(), at in 0.0f64..=1.0) {
        let k = which.index(p.len());
        let s = p[k];
        let mid = (s.start + (s.end - s.start) * at).clamp(s.start, s.end);
        let mut split = p.clone();
        split[k] = TimeSpan::new(s.start, mid);
        split.push(TimeSpan::new(mid, s.end));
        prop_assert_eq!(temporal_iou(&p, &g).to_bits(), temporal_iou(&split, &g).to_bits());
    }

    #[test]
    fn disjoint_sets_score_zero(p in prop::collection::vec(span(), 1..8), shift in 1e7f64..1e8) {
        let g: Vec<TimeSpan> = p.iter().map(|s| TimeSpan::new(s.start + shift, s.end + shift + 1.0)).collect();
        prop_assert_eq!(temporal_iou(&p, &g), 0.0);
    }

    /// Rust's `{:.2}` formatting is exact with ties to even, an independent implementation of
    /// Python's `round(x, 2)` followed by `float()`.
    #[test]
    fn round2_agrees_with_exact_formatting(x in prop_oneof![
        any::<f64>().prop_filter("finite", |x| x.is_finite() && x.abs() < 1e20),
        (-100_000i64..100_000).prop_map(|n| n as f64 / 1000.0),   // many decimal ties
        (-100_000i64..100_000).prop_map(|n| n as f64 / 8.0),      // exact binary ties
    ]) {
        let want: f64 = format!("{x:.2}").parse().unwrap();
        prop_assert_eq!(py_round2(x), want, "x = {:e}", x);
    }
}
