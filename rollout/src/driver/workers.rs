//! The media threads of a rollout: a fixed number of plain OS threads taking jobs from one
//! queue, joined when the rollout ends.
//!
//! Why not a rayon pool: a rayon worker that waits (in `join` or `scope`, which clip decoding
//! uses) runs other queued jobs of its pool on its own stack meanwhile. A media job waits on
//! locks: the decoder of a video shared through `media::MediaCache`, or a frame another job is
//! decoding. A second job run on top of a job holding such a lock, and needing it, waits
//! forever. Plain threads never run one job inside another; the decoders' own rayon work goes
//! to rayon's global pool, which runs no media jobs.
//!
//! Left out: resizing the pool during a rollout, and job priorities (jobs run in the order
//! they were queued).

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

pub(super) struct MediaWorkers {
    queue: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl MediaWorkers {
    /// `n` threads named `omnirl-media-<i>`.
    pub(super) fn new(n: usize) -> std::io::Result<MediaWorkers> {
        let (queue, jobs) = channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        let mut threads = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let jobs = jobs.clone();
            threads.push(std::thread::Builder::new().name(format!("omnirl-media-{i}")).spawn(move || work(&jobs))?);
        }
        Ok(MediaWorkers { queue: Some(queue), threads })
    }

    /// Queues `job`. A job that panics takes no thread with it: the panic is caught and the
    /// job's own result is never sent, which the job must allow for (the driver's jobs catch
    /// their panics themselves and report a media failure).
    pub(super) fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        if let Some(q) = &self.queue {
            // The threads outlive the queue (they stop when it closes), so sending cannot fail
            // while `self` exists.
            let _ = q.send(Box::new(job));
        }
    }
}

fn work(jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return, // the queue closed: the rollout is over
        }
    }
}

impl Drop for MediaWorkers {
    fn drop(&mut self) {
        self.queue.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_the_named_threads_and_a_panic_does_not_stop_them() {
        let (tx, rx) = channel();
        let workers = MediaWorkers::new(2).unwrap();
        workers.spawn(|| panic!("a job panics"));
        for i in 0..6 {
            let tx = tx.clone();
            workers.spawn(move || {
                let name = std::thread::current().name().map(String::from);
                let _ = tx.send((i, name));
            });
        }
        drop(workers); // joins: every queued job ran
        let mut got: Vec<(i32, Option<String>)> = rx.try_iter().collect();
        got.sort();
        assert_eq!(got.len(), 6);
        assert!(got.iter().all(|(_, n)| n.as_deref().is_some_and(|n| n.starts_with("omnirl-media-"))));
    }
}
