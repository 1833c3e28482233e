//! The demo's one worker thread: it loads the checkpoint once (libtorch tensors stay on the
//! thread that made them) and runs the queued runs one at a time through `run::single`, the
//! episode `omnirl infer` runs, sending each run's events: `started` (video metadata, turn
//! budget), one `turn` per physical step (the step record plus the media view), then `done`
//! (the trajectory JSON, as `omnirl infer` writes it), `cancelled` or `failed`.
//!
//! Cancellation is checked before every generation (between turns), by a policy wrapper that
//! fails the turn when the run's flag is set; the driver then drops the episode. Left out:
//! stopping inside a generation (a turn is at most `max_response_tokens` tokens).

use super::queue::{Job, Queue};
use super::view::{embedder, media_view};
use super::{DemoConfig, DemoError};
use crate::model::policy::ThinkerPolicy;
use crate::model::thinker::Thinker;
use crate::run::model::encoder_for;
use crate::run::single::{EpisodeRun, max_steps, run_episode, spec_of};
use rollout::driver::StepEvent;
use rollout::episode::PromptEncoder;
use rollout::policy::{Context, Generation, Policy, PolicyError, Sampling};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A policy that refuses to generate once its run is cancelled.
struct Cancellable<'a> {
    inner: &'a mut dyn Policy,
    cancel: &'a AtomicBool,
}

impl Policy for Cancellable<'_> {
    fn generate(&mut self, batch: &[Context<'_>], sampling: &Sampling) -> Result<Vec<Generation>, PolicyError> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(PolicyError::Failed("the run was cancelled".into()));
        }
        self.inner.generate(batch, sampling)
    }
}

/// The loaded model and what runs need besides it.
struct Loaded {
    thinker: Thinker,
    encoder: Arc<dyn PromptEncoder>,
    vocab_limit: Option<usize>,
}

fn load(cfg: &DemoConfig) -> Result<Loaded, DemoError> {
    let fail = |message: String| DemoError::Model { model: cfg.model.display().to_string(), message };
    let (encoder, vocab_limit) =
        encoder_for(&cfg.model, cfg.stage.tokenizer.as_deref()).map_err(|e| fail(e.to_string()))?;
    let thinker = Thinker::load(&cfg.model, cfg.load).map_err(|e| fail(e.to_string()))?;
    Ok(Loaded { thinker, encoder, vocab_limit })
}

/// Starts the worker; returns once the model is loaded (or failed to load).
pub fn spawn(cfg: DemoConfig, queue: Arc<Queue>) -> Result<std::thread::JoinHandle<()>, DemoError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), DemoError>>();
    let handle = std::thread::Builder::new()
        .name("omnirl-demo-worker".into())
        .spawn(move || {
            let mut loaded = match load(&cfg) {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            while let Some(job) = queue.next() {
                run_job(&cfg, &mut loaded, &job);
            }
        })
        .map_err(|e| DemoError::Serve(format!("cannot start the worker thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(DemoError::Serve("the worker thread stopped while loading the model".into())),
    }
}

/// The `turn` event of a step: its record (without the prompt text) plus the media view.
fn turn_event(rec: &Map<String, Value>, media: Value, budget: u32) -> Value {
    let mut ev = rec.clone();
    ev.remove("prompt_text");
    ev.insert("view".into(), media);
    ev.insert("max_steps".into(), budget.into());
    Value::Object(ev)
}

/// Runs one job to its end, sending its events.
fn run_job(cfg: &DemoConfig, loaded: &mut Loaded, job: &Job) {
    if job.cancelled() {
        return;
    }
    let settings = job.settings.apply(&cfg.stage);
    let spec = match spec_of(&job.question) {
        Ok(s) => Arc::new(s),
        Err(e) => return job.send("failed", json!({"message": e.to_string()})),
    };
    let budget = max_steps(&spec, &settings.episodes);
    let m = &spec.meta;
    job.send(
        "started",
        json!({"run_id": job.id, "max_steps": budget, "settings": job.settings,
               "video_meta": {"duration": m.duration, "fps": m.fps, "has_audio": m.has_audio}}),
    );
    let run = EpisodeRun {
        settings: &settings,
        encoder: loaded.encoder.clone(),
        sampling: job.settings.sampling(),
        scored: job.question.answer.is_some(),
        model: cfg.model.display().to_string(),
    };
    let mut embed = embedder();
    let video = job.question.video.clone();
    let mut turns = 0usize;
    let mut observe = |_: &StepEvent<'_>, rec: &Map<String, Value>| {
        turns += 1;
        let view = media_view(rec.get("media").unwrap_or(&Value::Null), &video, &mut embed);
        job.send("turn", turn_event(rec, view, budget));
    };
    let mut thinker_policy =
        ThinkerPolicy::new(&mut loaded.thinker, loaded.vocab_limit, settings.episodes.prefix_cache_bytes);
    let mut policy = Cancellable { inner: &mut thinker_policy, cancel: &job.cancel };
    let result = run_episode(&mut policy, spec, &run, &mut observe);
    let outcome = match result {
        _ if job.cancelled() => {
            job.send("cancelled", json!({"run_id": job.id}));
            "cancelled"
        }
        Ok(r) => {
            job.send(
                "done",
                json!({"run_id": job.id, "prediction": r.json.get("prediction"), "reward": r.json.get("reward"),
                       "correct": r.json.get("correct"), "dropped": r.dropped, "trajectory": r.json}),
            );
            "done"
        }
        Err(e) => {
            job.send("failed", json!({"message": e.to_string()}));
            "failed"
        }
    };
    eprintln!("omnirl demo: run {} {outcome} after {turns} turn(s)", job.id);
}
