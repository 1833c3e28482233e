//! The RL algorithms as functions, separate from the learners that run them
//! (docs/reference.md#grpo through docs/reference.md#update-rule):
//! [`advantage`] (GRPO, GRPO without std, TAURA; pure `f64`), [`advantage_file`] (the same over
//! a JSONL rollout dump, behind `omnirl advantage`), [`entropy`] (response masks and turn
//! entropies) and [`loss`] (clipped surrogate, truncated IS, KL, aggregation; libtorch).
//!
//! Everything here is deterministic and, but for `advantage_file`'s reading and writing,
//! side-effect free, tested against worked examples; the learners (`crate::learner`) decide what to feed it and when.

pub mod advantage;
pub mod advantage_file;
pub mod entropy;
pub mod loss;

pub use advantage::{AdvantageError, AdvantageEstimator, AdvantageRow, Advantages};
pub use entropy::{response_mask, turn_entropy};
pub use loss::{KlType, PolicyLossConfig};
