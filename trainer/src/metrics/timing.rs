//! Wall-clock split of a training step between its phases: generation, media, log-probs, update
//! and checkpointing (plus "other"), logged as `timing_s/<phase>` and `timing_frac/<phase>`.
//!
//! Phases are timed by whoever runs them ([`PhaseTimes::time`] or [`PhaseTimes::add`]); the
//! learners fill `logprobs` and `update`, the rollout driver `generation` and `media`, the loop
//! `checkpoint`. Left out: GPU-synchronised timing (CUDA kernels are asynchronous; the loop's
//! phases end in host-side reads that synchronise, which is good enough for a split).

use std::time::Instant;

/// A phase of a training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Generation,
    Media,
    Logprobs,
    Update,
    Checkpoint,
    Other,
}

impl Phase {
    pub const ALL: [Phase; 6] =
        [Phase::Generation, Phase::Media, Phase::Logprobs, Phase::Update, Phase::Checkpoint, Phase::Other];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Generation => "generation",
            Phase::Media => "media",
            Phase::Logprobs => "logprobs",
            Phase::Update => "update",
            Phase::Checkpoint => "checkpoint",
            Phase::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Seconds spent per phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseTimes {
    seconds: [f64; 6],
}

impl PhaseTimes {
    pub fn add(&mut self, phase: Phase, seconds: f64) {
        self.seconds[phase.index()] += seconds;
    }

    /// Runs `f`, adding its duration to `phase`.
    pub fn time<T>(&mut self, phase: Phase, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.add(phase, start.elapsed().as_secs_f64());
        out
    }

    pub fn get(&self, phase: Phase) -> f64 {
        self.seconds[phase.index()]
    }

    pub fn total(&self) -> f64 {
        self.seconds.iter().sum()
    }

    pub fn merge(&mut self, other: &PhaseTimes) {
        for p in Phase::ALL {
            self.add(p, other.get(p));
        }
    }

    /// `timing_s/<phase>` for every phase, `timing_s/step` (the sum) and `timing_frac/<phase>`.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let total = self.total();
        let mut out = Vec::with_capacity(13);
        for p in Phase::ALL {
            out.push((format!("timing_s/{}", p.name()), self.get(p)));
        }
        out.push(("timing_s/step".to_owned(), total));
        for p in Phase::ALL {
            let frac = if total > 0.0 { self.get(p) / total } else { 0.0 };
            out.push((format!("timing_frac/{}", p.name()), frac));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_fractions() {
        let mut t = PhaseTimes::default();
        t.add(Phase::Generation, 3.0);
        t.add(Phase::Update, 1.0);
        let x = t.time(Phase::Other, || 7);
        assert_eq!(x, 7);
        let mut u = PhaseTimes::default();
        u.add(Phase::Update, 1.0);
        t.merge(&u);
        let s = t.scalars();
        let get = |k: &str| s.iter().find(|(n, _)| n == k).map(|(_, v)| *v).unwrap();
        assert_eq!(get("timing_s/update"), 2.0);
        let total = get("timing_s/step");
        assert!((get("timing_frac/generation") - 3.0 / total).abs() < 1e-12);
        assert_eq!(get("timing_s/media"), 0.0);
    }
}
