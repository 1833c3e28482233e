//! The stage runner behind `omnirl train` and `omnirl eval`: runs a validated recipe's stages in
//! order in one run directory (resolved recipe, per-stage checkpoints, TensorBoard and JSONL
//! metrics, evaluation results and `summary.json` with per-type figures before SFT, after SFT
//! and after RL).
//!
//! * [`tokenizer`]: a small byte-level tokenizer over the model's special ids;
//! * [`bpe`]: a byte-level BPE trained for the run (the quickstart's tokenizer);
//! * [`consumption`]: turns, frames, seconds of media and runtime errors of an evaluation;
//! * [`episodes`]: data files as episode specs, the video opener, drivers, per-type figures;
//! * [`model`]: loading a stage's model as the stage trains it, saving its result;
//! * [`stage`]: what every stage shares: its place, report, metric sinks, step checkpoints;
//! * [`sft`] and [`sft_rows`]: the SFT stage, and its rows built ahead of the learner;
//! * [`rl`]: the RL stage (rollouts, judge, rows, learner step, validation, dumps);
//! * [`pass_rate`]: the rl stage's training prompts narrowed to those its policy still fails;
//! * [`eval`]: evaluation and its files (`results.jsonl`, `summary.json`, `summary.csv`);
//! * [`judge`]: the FF judge of rl and eval stages;
//! * [`train`]: the run directory, stage order, model hand-over between stages, summary;
//! * [`resume`]: which run and step checkpoint `--resume` continues, and loading it;
//! * [`interrupt`]: clean stops on SIGTERM/SIGINT at the next step boundary;
//! * [`single`]: one episode of a loaded policy on one video (`omnirl infer`, `omnirl demo`);
//! * [`trace`]: per-step records (`results.jsonl` `steps`, `omnirl infer`, `omnirl report`);
//! * [`world`]: the ranks of a data-parallel run (mpirun, srun or env variables): device,
//!   barriers, the learners' gradient sync, rank-0 files.
//!
//! Every stage reads its resolved settings (`recipe::resolved`), the same values `omnirl
//! validate` checked and planned.

pub mod bpe;
pub mod consumption;
pub mod episodes;
pub mod eval;
pub mod eval_plan;
pub mod interrupt;
pub mod judge;
pub mod model;
pub mod pass_rate;
pub mod resume;
pub mod rl;
pub mod sft;
pub mod sft_rows;
pub mod single;
pub mod stage;
pub mod tokenizer;
pub mod trace;
pub mod train;
pub mod world;

pub use train::{RunOptions, RunSummary, run_recipe};
pub use world::World;

/// The file in a run directory that holds the run's resolved recipe (written once, when the run
/// starts; `--resume`, `omnirl demo` and `omnirl infer` read it back).
pub const RUN_RECIPE_FILE: &str = "recipe.yaml";

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("recipe: {0}")]
    Config(String),
    #[error("data: {0}")]
    Data(String),
    #[error("model: {0}")]
    Model(String),
    #[error("learner: {0}")]
    Learner(#[from] crate::learner::LearnerError),
    #[error("rollout: {0}")]
    Rollout(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("distributed: {0}")]
    Dist(String),
    /// A stop signal: the stage published its step checkpoint `step` and stopped.
    #[error("stopped by signal {signal} after step {step} of stage `{stage}` (its step checkpoint is saved)")]
    Interrupted { stage: String, step: u64, signal: i32 },
}

impl From<tch::TchError> for RunError {
    fn from(e: tch::TchError) -> Self {
        RunError::Model(format!("libtorch: {e}"))
    }
}

impl RunError {
    /// The signal that stopped the run cleanly ([`RunError::Interrupted`]).
    pub fn stop_signal(&self) -> Option<i32> {
        match self {
            RunError::Interrupted { signal, .. } => Some(*signal),
            _ => None,
        }
    }

    pub(crate) fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> RunError + '_ {
        move |e| RunError::Io { path: path.display().to_string(), message: e.to_string() }
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename (never half-written).
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), RunError> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).map_err(RunError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(RunError::io(path))
}
