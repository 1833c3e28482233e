//! The launch environment (which rank this process is, from the launcher's variables: [`env`])
//! and how work is split over ranks ([`shard`]), without libtorch; the runtime that uses them is
//! the `trainer` crate's `dist`.

pub mod env;
pub mod shard;

pub use env::{Launcher, RankInfo, RankProblem, discover};
