//! Stopping a run cleanly when the job is pre-empted: `omnirl train` installs handlers for
//! SIGTERM and SIGINT that only record the signal; the training loops ask, after each step,
//! whether any rank received one ([`agreed`]), publish a step checkpoint and stop with
//! [`RunError::Interrupted`], which the binary reports with the command that continues the run.
//! A second signal ends the process at once (exit status 1), for a run that must die now.
//!
//! Left out: stopping inside a step, an evaluation or the data preparation before a stage's
//! first step (the signal is acted on at the next step boundary).

use super::RunError;
use super::world::World;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Whether a stop signal arrived, and the number of the last one (0: none).
fn flags() -> &'static (Arc<AtomicBool>, Arc<AtomicUsize>) {
    static FLAGS: OnceLock<(Arc<AtomicBool>, Arc<AtomicUsize>)> = OnceLock::new();
    FLAGS.get_or_init(|| (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0))))
}

/// Installs the SIGTERM/SIGINT handlers (once per process).
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let (stopping, number) = flags();
    for sig in [SIGTERM, SIGINT] {
        // Registered first, so it sees the flag as it was before this signal's own store: the
        // second signal exits.
        signal_hook::flag::register_conditional_shutdown(sig, 1, stopping.clone())?;
        signal_hook::flag::register(sig, stopping.clone())?;
        signal_hook::flag::register_usize(sig, number.clone(), sig as usize)?;
    }
    Ok(())
}

/// The signal this process received, if any.
pub fn signal() -> Option<i32> {
    let (stopping, number) = flags();
    stopping.load(Ordering::SeqCst).then(|| number.load(Ordering::SeqCst) as i32)
}

/// Whether any rank received a stop signal (a collective: every rank must call it at the same
/// step).
pub fn agreed(world: &World) -> Result<bool, RunError> {
    let mut v = [f64::from(u8::from(signal().is_some()))];
    world.sum(&mut v)?;
    Ok(v[0] > 0.0)
}

/// The error a stage returns after publishing its checkpoint at `step` (on a rank that received
/// no signal itself, SIGTERM's number: another rank was asked to stop).
pub fn interrupted(stage: &str, step: u64) -> RunError {
    let sigterm = signal_hook::consts::SIGTERM;
    RunError::Interrupted { stage: stage.to_owned(), step, signal: signal().unwrap_or(sigterm) }
}
