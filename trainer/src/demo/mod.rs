//! `omnirl demo`: one process that loads a checkpoint once and serves a single page plus a small
//! JSON and server-sent-events API to run episodes of the agent on a chosen or uploaded video,
//! turn by turn (the episode: docs/reference.md#evaluation-and-inference-outputs; usage: README,
//! "Web demo").
//!
//! * [`settings`]: the runtime settings a person may change, within the recipe stage's limits;
//! * [`examples`]: the built-in examples, addressed by id only;
//! * [`uploads`]: the private upload directory, size limit and the video check;
//! * [`queue`]: the bounded run queue, queue positions and cancellation;
//! * [`worker`]: the one thread that owns the model and runs the queued episodes;
//! * [`view`]: what the page shows of a turn's media (thumbnails, audio, clip strips);
//! * [`routes`]: the HTTP routes (axum) and their answers;
//! * [`server`]: binding, serving, shutdown and clean-up.
//!
//! Left out: authentication and TLS (the server binds to loopback by default), several models or
//! workers per process (one model, runs queued), and keeping finished runs across restarts.

pub mod examples;
pub mod queue;
pub mod routes;
pub mod server;
pub mod settings;
pub mod uploads;
pub mod view;
pub mod worker;

use crate::model::weights::LoadOptions;
use crate::run::single::StageSettings;
use std::path::PathBuf;

pub use server::{DemoServer, bind};

/// Everything the server needs, resolved by the command line.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The checkpoint directory.
    pub model: PathBuf,
    /// How to load it (dtype, device).
    pub load: LoadOptions,
    /// The environment, preprocessing and tokenizer of the recipe stage (or a default eval stage).
    pub stage: StageSettings,
    /// Directories of built-in examples (each with an `eval.jsonl`).
    pub examples: Vec<PathBuf>,
    /// Largest upload, bytes.
    pub max_upload_bytes: u64,
    /// Runs that may wait behind the running one.
    pub queue_bound: usize,
    /// Seconds a created run waits for its event stream before it is cancelled.
    pub attach_timeout_s: f64,
}

/// Why the demo could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("port {port} on {host} is already in use (pick another with --port, or --port 0 for a free one)")]
    PortInUse { host: String, port: u16 },
    #[error("cannot listen on {host}:{port}: {message}")]
    Bind { host: String, port: u16, message: String },
    #[error("cannot create the private upload directory: {0}")]
    Uploads(String),
    #[error("examples: {0}")]
    Examples(String),
    #[error("loading the model {model}: {message}")]
    Model { model: String, message: String },
    #[error("serving: {0}")]
    Serve(String),
}
