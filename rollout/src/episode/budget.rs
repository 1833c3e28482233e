//! The step budget and its countdown notices (docs/reference.md#step-budget).
//!
//! Budget: `max_steps` when static; dynamic (the default) `min(min_max_steps +
//! floor(duration / max_clip_seconds), max_steps)`: < 60 s -> 5, 287 s -> 9, >= 1020 s -> 22
//! (train cap), >= 1620 s -> 32 (eval cap). The reference casts `max_clip_len` to `int` before
//! dividing; we use the configured value as it is (identical for the integral defaults).
//! A budget is never below 1; a duration that is unknown or not finite counts as 0.
//!
//! Notices (`remain = max_steps - step`), one text part on the last user message:
//! * not done, `remain == 1`: `\n[NOTICE] FINAL STEP! You MUST provide your answer now.`
//! * not done: `\n[NOTICE] Step {step}/{max}. {remain} steps remaining.`
//! * done, `remain <= 0`: `\n[NOTICE] STEP LIMIT REACHED. Operation terminated.`
//! * done, `remain > 0`: `\n[NOTICE] Operation terminated. Steps used: {step}/{max}.`
//!
//! Left out: RANDOM_RESOURCE_SFT's random budgets (see `settings.rs`).

use super::settings::EpisodeLimits;

/// The effective turn budget of a video of `duration` seconds.
pub fn effective_max_steps(duration: f64, limits: &EpisodeLimits) -> u32 {
    let cap = limits.max_steps.max(1);
    if !limits.dynamic_steps {
        return cap;
    }
    let per_clip = if duration.is_finite() && duration > 0.0 && limits.max_clip_seconds > 0.0 {
        (duration / limits.max_clip_seconds).floor()
    } else {
        0.0
    };
    // Saturating: a float above u32::MAX casts to u32::MAX.
    let extra = per_clip as u32;
    limits.min_max_steps.saturating_add(extra).min(cap).max(1)
}

/// The countdown notice after `step` of `max_steps` physical steps.
pub fn notice_text(step: u32, max_steps: u32, done: bool) -> String {
    let remain = i64::from(max_steps) - i64::from(step);
    match (done, remain) {
        (true, r) if r <= 0 => "\n[NOTICE] STEP LIMIT REACHED. Operation terminated.".to_string(),
        (true, _) => format!("\n[NOTICE] Operation terminated. Steps used: {step}/{max_steps}."),
        (false, 1) => "\n[NOTICE] FINAL STEP! You MUST provide your answer now.".to_string(),
        (false, r) => format!("\n[NOTICE] Step {step}/{max_steps}. {r} steps remaining."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_budget_examples() {
        let train = EpisodeLimits::default();
        let eval = EpisodeLimits { max_steps: 32, ..EpisodeLimits::default() };
        // (duration, train budget, eval budget), from the examples of docs/reference.md#step-budget
        // and the formula.
        let cases: &[(f64, u32, u32)] = &[
            (0.5, 5, 5),
            (59.999, 5, 5),
            (60.0, 6, 6),
            (287.0, 9, 9),
            (1019.9, 21, 21),
            (1020.0, 22, 22),
            (1620.0, 22, 32),
            (1e9, 22, 32),
            (f64::NAN, 5, 5),
            (-3.0, 5, 5),
        ];
        for &(d, t, e) in cases {
            assert_eq!(effective_max_steps(d, &train), t, "train {d}");
            assert_eq!(effective_max_steps(d, &eval), e, "eval {d}");
        }
        let fixed = EpisodeLimits { dynamic_steps: false, ..EpisodeLimits::default() };
        assert_eq!(effective_max_steps(10.0, &fixed), 22);
        let tiny = EpisodeLimits { max_steps: 0, min_max_steps: 0, ..EpisodeLimits::default() };
        assert_eq!(effective_max_steps(10.0, &tiny), 1);
        let odd_clip = EpisodeLimits { max_clip_seconds: 34.5, ..EpisodeLimits::default() };
        assert_eq!(effective_max_steps(100.0, &odd_clip), 7);
    }

    #[test]
    fn notices_are_verbatim() {
        assert_eq!(notice_text(0, 9, false), "\n[NOTICE] Step 0/9. 9 steps remaining.");
        assert_eq!(notice_text(3, 5, false), "\n[NOTICE] Step 3/5. 2 steps remaining.");
        assert_eq!(notice_text(4, 5, false), "\n[NOTICE] FINAL STEP! You MUST provide your answer now.");
        assert_eq!(notice_text(0, 1, false), "\n[NOTICE] FINAL STEP! You MUST provide your answer now.");
        assert_eq!(notice_text(5, 5, true), "\n[NOTICE] STEP LIMIT REACHED. Operation terminated.");
        assert_eq!(notice_text(3, 5, true), "\n[NOTICE] Operation terminated. Steps used: 3/5.");
    }
}
