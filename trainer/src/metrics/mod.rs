//! Observability: named scalars per step written to TensorBoard event files ([`tensorboard`],
//! our own writer) and JSONL ([`jsonl`]), the time split of a step ([`timing`]), progress bars
//! ([`progress`]) and the scalars of a rollout batch ([`rollout_stats`]).
//!
//! [`Scalars`] is an ordered list of `(name, value)`; the learners, the rollout statistics and
//! the timers each produce one and the loop concatenates them. [`MetricsLogger`] sends them to
//! the sinks a recipe's `logging` section enables, every `log_every` steps (always on the last).
//! Names follow verl's where one exists (`actor/pg_loss`, `actor/grad_norm`, `actor/lr`,
//! `training/entropy_weight/mean`, ...). Left out: wandb and other remote sinks.

pub mod jsonl;
pub mod progress;
pub mod rollout_stats;
pub mod tensorboard;
pub mod timing;

pub use jsonl::JsonlWriter;
pub use progress::Progress;
pub use rollout_stats::{EpisodeSummary, media_scalars, rollout_scalars, summary_scalars};
pub use tensorboard::EventWriter;
pub use timing::{Phase, PhaseTimes};

use crate::recipe::resolved::MetricSinks;
use std::io;
use std::path::Path;

/// An ordered list of named values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scalars(pub Vec<(String, f64)>);

impl Scalars {
    pub fn push(&mut self, name: impl Into<String>, value: f64) {
        self.0.push((name.into(), value));
    }

    pub fn extend(&mut self, other: impl IntoIterator<Item = (String, f64)>) {
        self.0.extend(other);
    }

    /// The last value logged under `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `<prefix>/mean`, `/std` (population), `/max`, `/min` of `values` (nothing when empty).
    pub fn describe(&mut self, prefix: &str, values: &[f64]) {
        if values.is_empty() {
            return;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        self.push(format!("{prefix}/mean"), mean);
        self.push(format!("{prefix}/std"), var.sqrt());
        self.push(format!("{prefix}/max"), values.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        self.push(format!("{prefix}/min"), values.iter().copied().fold(f64::INFINITY, f64::min));
    }
}

impl IntoIterator for Scalars {
    type Item = (String, f64);
    type IntoIter = std::vec::IntoIter<(String, f64)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The metric sinks of one run.
#[derive(Debug)]
pub struct MetricsLogger {
    pub tensorboard: Option<EventWriter>,
    pub jsonl: Option<JsonlWriter>,
    log_every: u64,
}

impl MetricsLogger {
    /// Opens the sinks `cfg` enables under `run_dir` (`tensorboard/` or `tensorboard_dir`,
    /// `metrics.jsonl`), logging every `log_every` steps. `resume_step` trims JSONL lines logged
    /// after that step.
    pub fn open(
        run_dir: &Path,
        cfg: &MetricSinks,
        log_every: u64,
        resume_step: Option<u64>,
    ) -> io::Result<MetricsLogger> {
        let tensorboard = if cfg.tensorboard {
            let dir = cfg.tensorboard_dir.clone().unwrap_or_else(|| run_dir.join("tensorboard"));
            Some(match resume_step {
                Some(step) => EventWriter::resume(&dir, step + 1)?,
                None => EventWriter::create(&dir)?,
            })
        } else {
            None
        };
        let jsonl = if cfg.jsonl {
            let path = run_dir.join("metrics.jsonl");
            Some(match resume_step {
                Some(step) => JsonlWriter::resume(&path, step)?,
                None => JsonlWriter::create(&path)?,
            })
        } else {
            None
        };
        Ok(MetricsLogger { tensorboard, jsonl, log_every: log_every.max(1) })
    }

    /// Whether `step` is logged (`step % log_every == 0`, or `last`).
    pub fn due(&self, step: u64, last: bool) -> bool {
        last || step.is_multiple_of(self.log_every)
    }

    /// Writes `scalars` at `step` to every sink if [`due`](Self::due).
    pub fn log(&mut self, step: u64, last: bool, scalars: &Scalars) -> io::Result<()> {
        if !self.due(step, last) {
            return Ok(());
        }
        if let Some(tb) = &mut self.tensorboard {
            tb.add_scalars(step, &scalars.0)?;
        }
        if let Some(j) = &mut self.jsonl {
            j.write(step, &scalars.0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_and_logger() {
        let mut s = Scalars::default();
        // [1, 2, 3, 6]: mean 3, population var (4 + 1 + 0 + 9)/4 = 3.5.
        s.describe("adv", &[1.0, 2.0, 3.0, 6.0]);
        s.describe("none", &[]);
        assert_eq!(s.get("adv/mean"), Some(3.0));
        assert_eq!(s.get("adv/std"), Some(3.5f64.sqrt()));
        assert_eq!((s.get("adv/max"), s.get("adv/min")), (Some(6.0), Some(1.0)));
        assert_eq!(s.0.len(), 4);

        let dir = tempfile::tempdir().unwrap();
        let cfg = MetricSinks { tensorboard: true, tensorboard_dir: None, jsonl: true };
        let mut log = MetricsLogger::open(dir.path(), &cfg, 2, None).unwrap();
        for step in 1..=3 {
            log.log(step, step == 3, &s).unwrap();
        }
        let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 2);
        let tb = log.tensorboard.as_ref().unwrap().path().to_path_buf();
        let steps: Vec<i64> = tensorboard::read_events(&tb).unwrap().iter().skip(1).map(|e| e.step).collect();
        assert_eq!(steps, vec![2, 3]);
    }
}
