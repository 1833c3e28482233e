//! The driver's loop (see `driver/mod.rs` for the schedule): live episodes, their captured
//! prompts, generation batches, media jobs on the pool, and turn recording with the prefix
//! check.
//!
//! Left out: cancelling media jobs of dropped episodes (a job that finishes for an episode
//! that is no longer waiting is ignored).

use super::workers::MediaWorkers;
use super::{Driver, MediaOpener, RolloutBatch, RolloutStats, StepEvent, StepObserver};
use crate::episode::{
    Begin, Episode, EpisodeSpec, MediaEnv, MediaFailure, MediaItem, Message, Observation, PendingMedia, Response,
    SegmentSpan, StepOutcome, extract,
};
use crate::policy::{Context, ContextInfo, Generation, Policy};
use crate::trajectory::{DropReason, Trajectory, Turn};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    Awaiting,
    Finished,
}

/// What was sent to the policy for a step, kept until the step's outcome is known.
struct Captured {
    prompt_ids: Vec<u32>,
    spans: Vec<SegmentSpan>,
    media: Vec<Arc<MediaItem>>,
    messages: Option<Vec<Message>>,
    cur_step: u32,
}

struct Waiting {
    captured: Captured,
    generation: Generation,
    text: String,
    pending: PendingMedia,
}

type MediaSlot = Arc<Mutex<Option<Arc<dyn MediaEnv>>>>;

/// One episode in flight.
pub(super) struct Live {
    ep: Episode,
    traj: Trajectory,
    state: State,
    media: MediaSlot,
    waiting: Option<Waiting>,
    sample: usize,
    copy: usize,
}

impl Live {
    pub(super) fn new(
        driver: &Driver,
        spec: Arc<EpisodeSpec>,
        sample: usize,
        copy: usize,
        group: String,
        traj_uid: String,
    ) -> Live {
        let ep = Episode::new(spec.clone(), driver.settings.clone(), &driver.template, Some(driver.encoder.clone()));
        let mut traj = Trajectory::new(group, traj_uid, sample, copy, spec);
        traj.max_steps = ep.max_steps();
        let mut state = State::Ready;
        if let Some(why) = ep.broken() {
            traj.dropped = Some(DropReason::Encoding(why.to_string()));
            state = State::Finished;
        }
        Live { ep, traj, state, media: Arc::new(Mutex::new(None)), waiting: None, sample, copy }
    }

    /// Ends the episode and lets go of its media environment, so a video shared through a
    /// `media::MediaCache` is released (with what was decoded from it) as soon as its last
    /// episode ends, not when the whole rollout does.
    fn finish(&mut self) {
        self.state = State::Finished;
        if let Ok(mut slot) = self.media.lock() {
            slot.take();
        }
    }
}

type MediaResult = (usize, Result<Observation, MediaFailure>, f64);

pub(super) struct Runner<'d> {
    /// Called after every physical step (`Driver::run_observed`).
    pub(super) observer: Option<&'d mut StepObserver<'d>>,
    driver: &'d Driver,
    pool: MediaWorkers,
    opener: Arc<MediaOpener>,
    lives: Vec<Live>,
    tx: Sender<MediaResult>,
    rx: Receiver<MediaResult>,
    stats: RolloutStats,
    cursor: usize,
}

impl<'d> Runner<'d> {
    pub(super) fn new(driver: &'d Driver, pool: MediaWorkers, opener: Arc<MediaOpener>, lives: Vec<Live>) -> Self {
        let (tx, rx) = channel();
        let stats = RolloutStats { episodes: lives.len(), ..RolloutStats::default() };
        Runner { observer: None, driver, pool, opener, lives, tx, rx, stats, cursor: 0 }
    }

    pub(super) fn run(&mut self, policy: &mut dyn Policy) {
        let start = Instant::now();
        loop {
            self.drain(false);
            let count = |st: State| self.lives.iter().filter(|l| l.state == st).count();
            let (ready, awaiting) = (count(State::Ready), count(State::Awaiting) > 0);
            let unfinished = self.lives.iter().filter(|l| l.state != State::Finished).count();
            let cfg = &self.driver.config;
            let target = (cfg.min_fill.clamp(0.0, 1.0) * unfinished.min(cfg.max_batch) as f64).ceil() as usize;
            if awaiting && (!cfg.overlap || ready < target.max(1)) {
                let t = Instant::now();
                self.drain(true);
                self.stats.media_wait_s += t.elapsed().as_secs_f64();
                continue;
            }
            let ready = self.ready_batch();
            if !ready.is_empty() {
                self.generate(policy, &ready);
                continue;
            }
            if self.lives.iter().any(|l| l.state == State::Awaiting) {
                let t = Instant::now();
                self.drain(true);
                self.stats.media_wait_s += t.elapsed().as_secs_f64();
                continue;
            }
            break;
        }
        self.stats.wall_s = start.elapsed().as_secs_f64();
    }

    pub(super) fn finish(self) -> RolloutBatch {
        let mut stats = self.stats;
        let trajectories: Vec<Trajectory> = self.lives.into_iter().map(|l| l.traj).collect();
        stats.stored_turns = trajectories.iter().map(|t| t.turns.len()).sum();
        stats.dropped = trajectories.iter().filter(|t| t.dropped.is_some()).count();
        RolloutBatch { trajectories, stats }
    }

    /// Up to `max_batch` ready episodes, round-robin from the cursor.
    fn ready_batch(&mut self) -> Vec<usize> {
        let n = self.lives.len();
        let mut out = Vec::new();
        for k in 0..n {
            let i = (self.cursor + k) % n;
            if self.lives[i].state == State::Ready {
                out.push(i);
                if out.len() == self.driver.config.max_batch {
                    break;
                }
            }
        }
        if let Some(&last) = out.last() {
            self.cursor = (last + 1) % n.max(1);
        }
        out
    }

    fn capture(&self, i: usize) -> Captured {
        let live = &self.lives[i];
        let (prompt_ids, spans) = live.ep.prompt().unwrap_or_default();
        let messages = self.driver.config.record_messages.then(|| live.ep.history().to_vec());
        Captured { prompt_ids, spans, media: live.ep.raw_media(), messages, cur_step: live.ep.steps_taken() }
    }

    fn generate(&mut self, policy: &mut dyn Policy, batch: &[usize]) {
        let captured: Vec<Captured> = batch.iter().map(|&i| self.capture(i)).collect();
        let result = {
            let contexts: Vec<Context<'_>> = batch
                .iter()
                .zip(&captured)
                .map(|(&i, c)| {
                    let live = &self.lives[i];
                    Context {
                        prompt_ids: &c.prompt_ids,
                        media: &c.media,
                        info: ContextInfo {
                            episode: live.sample * self.driver.config.group_size + live.copy,
                            sample: live.sample,
                            copy: live.copy,
                            step: live.ep.steps_taken() + 1,
                            max_steps: live.ep.max_steps(),
                            spec: live.ep.spec(),
                            history: live.ep.history(),
                        },
                    }
                })
                .collect();
            let t = Instant::now();
            let result = policy.generate(&contexts, &self.driver.config.sampling);
            self.stats.generate_s += t.elapsed().as_secs_f64();
            self.stats.generate_calls += 1;
            self.stats.contexts += contexts.len();
            self.stats.prompt_tokens += contexts.iter().map(|c| c.prompt_ids.len()).sum::<usize>();
            result
        };
        match result {
            Ok(gens) if gens.len() == batch.len() => {
                for ((&i, c), g) in batch.iter().zip(captured).zip(gens) {
                    self.apply(i, c, g);
                }
            }
            Ok(gens) => {
                let why = format!("{} generations for {} contexts", gens.len(), batch.len());
                batch.iter().for_each(|&i| self.drop_episode(i, DropReason::Policy(why.clone())));
            }
            Err(e) => batch.iter().for_each(|&i| self.drop_episode(i, DropReason::Policy(e.to_string()))),
        }
    }

    fn drop_episode(&mut self, i: usize, why: DropReason) {
        let live = &mut self.lives[i];
        live.traj.dropped.get_or_insert(why);
        live.finish();
    }

    fn apply(&mut self, i: usize, captured: Captured, generation: Generation) {
        let text = match &generation.text {
            Some(t) => t.clone(),
            None => match self.driver.encoder.decode(&generation.ids) {
                Ok(t) => t,
                Err(e) => return self.drop_episode(i, DropReason::Encoding(e.to_string())),
            },
        };
        let response = Response::sampled(text.clone(), generation.ids.clone());
        match self.lives[i].ep.begin(response) {
            Begin::Done(outcome) => self.record(i, captured, generation, text, outcome),
            Begin::Media(pending) => {
                self.spawn(i, &pending);
                let live = &mut self.lives[i];
                live.waiting = Some(Waiting { captured, generation, text, pending });
                live.state = State::Awaiting;
            }
        }
    }

    fn spawn(&mut self, i: usize, pending: &PendingMedia) {
        self.stats.media_requests += 1;
        let request = pending.request.clone();
        let slot = self.lives[i].media.clone();
        let spec = self.lives[i].ep.spec().clone();
        let opener = self.opener.clone();
        let tx = self.tx.clone();
        self.pool.spawn(move || {
            let t = Instant::now();
            let run = || open_and_extract(&slot, opener.as_ref(), &spec, |env| extract(&request, env));
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
                .unwrap_or_else(|_| Err(MediaFailure::new("media extraction panicked")));
            // The receiver outlives every job (the runner holds it until all are drained).
            let _ = tx.send((i, result, t.elapsed().as_secs_f64()));
        });
    }

    /// Completes finished media jobs; with `block`, waits for at least one.
    fn drain(&mut self, block: bool) {
        let mut first = if block { self.rx.recv().ok() } else { None };
        while let Some((i, result, busy)) = first.take().or_else(|| self.rx.try_recv().ok()) {
            self.stats.media_busy_s += busy;
            let Some(w) = self.lives.get_mut(i).and_then(|l| l.waiting.take()) else { continue };
            if self.lives[i].state != State::Awaiting {
                continue;
            }
            let outcome = self.lives[i].ep.complete(w.pending, result);
            self.record(i, w.captured, w.generation, w.text, outcome);
        }
    }

    fn record(&mut self, i: usize, captured: Captured, generation: Generation, text: String, outcome: StepOutcome) {
        self.stats.steps += 1;
        if let Some(observe) = self.observer.as_mut() {
            let live = &self.lives[i];
            observe(&StepEvent {
                episode: i,
                sample: live.sample,
                copy: live.copy,
                spec: live.ep.spec(),
                cur_step: captured.cur_step,
                prompt_ids: &captured.prompt_ids,
                messages: captured.messages.as_deref(),
                media: &captured.media,
                response: &text,
                response_ids: &generation.ids,
                outcome: &outcome,
                history: live.ep.history(),
            });
        }
        let live = &mut self.lives[i];
        live.traj.physical_steps = live.ep.steps_taken();
        live.traj.retries = live.ep.retries();
        live.traj.done = outcome.done;
        let (done, stored, data_error) = (outcome.done, outcome.stored, outcome.data_error);
        if stored {
            let turn = Turn {
                prompt_ids: captured.prompt_ids,
                spans: captured.spans,
                response_ids: generation.ids,
                logprobs: generation.logprobs,
                entropies: generation.entropies,
                policy_scores: generation.policy_scores,
                media: captured.media,
                response: text,
                messages: captured.messages,
                cur_step: captured.cur_step,
                outcome,
            };
            let pushed = match live.ep.tokens() {
                Some(ctx) => live.traj.push(turn, |r| ctx.assistant_segment(r)),
                None => Ok(()),
            };
            if let Err(e) = pushed {
                live.traj.dropped.get_or_insert(DropReason::Prefix(e));
                live.finish();
                return;
            }
        }
        if data_error {
            live.traj.dropped.get_or_insert(DropReason::DataError);
        }
        if let Some(why) = live.ep.broken() {
            live.traj.dropped.get_or_insert(DropReason::Encoding(why.to_string()));
            live.finish();
            return;
        }
        if done {
            live.finish();
        } else {
            live.state = State::Ready;
        }
    }
}

/// Opens the episode's media environment on first use, then runs `f` on it.
fn open_and_extract(
    slot: &Mutex<Option<Arc<dyn MediaEnv>>>,
    opener: &MediaOpener,
    spec: &EpisodeSpec,
    f: impl FnOnce(&dyn MediaEnv) -> Result<Observation, MediaFailure>,
) -> Result<Observation, MediaFailure> {
    let env = {
        let mut guard = slot.lock().map_err(|_| MediaFailure::new("media slot lock poisoned"))?;
        match guard.as_ref() {
            Some(env) => env.clone(),
            None => {
                let env = opener(spec)?;
                *guard = Some(env.clone());
                env
            }
        }
    };
    f(env.as_ref())
}
