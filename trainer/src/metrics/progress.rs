//! Progress bars for long loops (training steps, rollout waves, checkpoint writes) on stderr via
//! `indicatif`. A bar is drawn only when enabled (`logging.progress_bars`) and stderr is a
//! terminal, so logs redirected to files and CI output stay clean; otherwise every call is a no-op.
//! Left out: multi-bar layouts (one bar per loop is enough to see where a run is).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar over `total` items labelled `label`; hidden unless `enabled` and stderr is a terminal.
    pub fn new(total: u64, label: &str, enabled: bool) -> Progress {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta}) {msg}")
        {
            bar.set_style(style);
        }
        bar.set_prefix(label.to_owned());
        Progress { bar: Some(bar) }
    }

    /// A bar that draws nothing.
    pub fn hidden() -> Progress {
        Progress { bar: None }
    }

    pub fn is_visible(&self) -> bool {
        self.bar.is_some()
    }

    pub fn set_position(&self, pos: u64) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn set_message(&self, msg: impl Into<String>) {
        if let Some(b) = &self.bar {
            b.set_message(msg.into());
        }
    }

    /// Prints a line above the bar (or to stderr when hidden).
    pub fn println(&self, line: impl AsRef<str>) {
        match &self.bar {
            Some(b) => b.println(line.as_ref()),
            None => eprintln!("{}", line.as_ref()),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_bars_are_no_ops() {
        // Test runs have no terminal on stderr, so even an enabled bar is hidden.
        let p = Progress::new(10, "steps", false);
        assert!(!p.is_visible());
        p.inc(3);
        p.set_position(5);
        p.set_message("x");
        p.finish();
    }
}
