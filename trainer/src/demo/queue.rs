//! The demo's run queue: at most `bound` runs wait behind the one the worker runs; one more is
//! refused as busy (never queued, so the backlog is bounded). Every waiting run is told its
//! position (`queued` events, 1 = next) whenever the queue moves. A run's cancel flag is set
//! when its event stream closes (a closed tab); a waiting run is then dropped at once (its upload
//! with it) and the running one stops before its next turn.
//!
//! The worker is a plain thread (libtorch is not async), so this is a mutex and a condition
//! variable rather than an async channel. Left out: priorities and per-client quotas.

use super::settings::RunSettings;
use super::uploads::Upload;
use crate::run::single::Question;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use tokio::sync::mpsc::UnboundedSender;

/// One server-sent event of a run: its name and JSON data.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent {
    pub name: &'static str,
    pub data: Value,
}

/// A run waiting for, or held by, the worker.
#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub question: Question,
    pub settings: RunSettings,
    /// The uploaded file, removed when the job is dropped.
    pub upload: Option<Upload>,
    pub events: UnboundedSender<RunEvent>,
    pub cancel: Arc<AtomicBool>,
}

impl Job {
    /// Sends an event (a closed stream is not an error: the run is cancelled instead).
    pub fn send(&self, name: &'static str, data: Value) {
        if self.events.send(RunEvent { name, data }).is_err() {
            self.cancel.store(true, Ordering::SeqCst);
        }
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Default)]
struct State {
    waiting: VecDeque<Job>,
    /// The cancel flag of the run the worker holds.
    running: Option<Arc<AtomicBool>>,
    shutdown: bool,
}

/// The queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("busy: {waiting} run(s) already wait behind the running one")]
pub struct Busy {
    pub waiting: usize,
}

/// The bounded queue shared by the routes and the worker.
#[derive(Debug)]
pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    pub bound: usize,
}

impl Queue {
    pub fn new(bound: usize) -> Queue {
        Queue { state: Mutex::new(State::default()), ready: Condvar::new(), bound }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops cancelled waiting runs and tells the others their positions.
    fn tidy(state: &mut State) {
        state.waiting.retain(|j| !j.cancelled());
        for (i, job) in state.waiting.iter().enumerate() {
            job.send("queued", json!({"run_id": job.id, "position": i + 1}));
        }
    }

    /// Queues a job; its position (1 = next), or [`Busy`] (the job is handed back dropped).
    pub fn submit(&self, job: Job) -> Result<usize, Busy> {
        let mut state = self.lock();
        state.waiting.retain(|j| !j.cancelled());
        if state.shutdown || state.waiting.len() >= self.bound {
            return Err(Busy { waiting: state.waiting.len() });
        }
        let position = state.waiting.len() + 1;
        job.send("queued", json!({"run_id": job.id, "position": position}));
        state.waiting.push_back(job);
        self.ready.notify_all();
        Ok(position)
    }

    /// The next job for the worker (blocks); `None` once the queue is shut down.
    pub fn next(&self) -> Option<Job> {
        let mut state = self.lock();
        loop {
            state.running = None;
            if state.shutdown {
                return None;
            }
            state.waiting.retain(|j| !j.cancelled());
            if let Some(job) = state.waiting.pop_front() {
                state.running = Some(job.cancel.clone());
                Self::tidy(&mut state);
                return Some(job);
            }
            state = self.ready.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A run's stream closed: drops it if it waits (telling the others), else the worker stops it.
    pub fn cancelled(&self) {
        let mut state = self.lock();
        Self::tidy(&mut state);
    }

    /// Runs waiting now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Stops taking runs: cancels the waiting ones and the running one, wakes the worker.
    pub fn shutdown(&self) {
        let mut state = self.lock();
        state.shutdown = true;
        for job in state.waiting.drain(..) {
            job.cancel.store(true, Ordering::SeqCst);
        }
        if let Some(flag) = &state.running {
            flag.store(true, Ordering::SeqCst);
        }
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::settings::{Limits, RunSettings};
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    fn job(id: &str) -> (Job, UnboundedReceiver<RunEvent>) {
        let (tx, rx) = unbounded_channel();
        let l = Limits {
            max_steps: 1,
            max_frames: 1,
            max_audio_seconds: 1.0,
            max_clip_seconds: 1.0,
            max_response_tokens: 1,
            max_temperature: 1.0,
        };
        let question = Question {
            video: "v.mp4".into(),
            question: "q".into(),
            options: vec![],
            question_type: None,
            answer: None,
        };
        let j = Job {
            id: id.into(),
            question,
            settings: RunSettings::defaults(&l),
            upload: None,
            events: tx,
            cancel: Arc::default(),
        };
        (j, rx)
    }

    fn last_position(rx: &mut UnboundedReceiver<RunEvent>) -> Option<u64> {
        let mut last = None;
        while let Ok(ev) = rx.try_recv() {
            last = ev.data["position"].as_u64();
        }
        last
    }

    #[test]
    fn the_queue_is_bounded_and_positions_move() {
        let q = Queue::new(2);
        let (a, _ra) = job("a");
        let (b, mut rb) = job("b");
        let (c, mut rc) = job("c");
        let (d, _rd) = job("d");
        assert_eq!(q.submit(a), Ok(1));
        assert_eq!(q.next().map(|j| j.id), Some("a".to_string()));
        assert_eq!(q.submit(b), Ok(1));
        let c_cancel = c.cancel.clone();
        assert_eq!(q.submit(c), Ok(2));
        assert_eq!(q.submit(d), Err(Busy { waiting: 2 }));
        assert_eq!(last_position(&mut rc), Some(2));
        // The worker takes b: c moves up.
        drop(rb.try_recv());
        let next = q.next();
        assert_eq!(next.as_ref().map(|j| j.id.as_str()), Some("b"));
        assert_eq!(last_position(&mut rc), Some(1));
        c_cancel.store(true, Ordering::SeqCst);
        q.cancelled();
        assert_eq!(q.waiting(), 0);
        q.shutdown();
        assert!(next.is_some_and(|j| j.cancelled()));
        assert!(q.next().is_none());
        let (e, _re) = job("e");
        assert!(q.submit(e).is_err());
        drop(rb);
    }
}
