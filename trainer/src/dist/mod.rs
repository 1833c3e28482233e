//! The distributed runtime. For now: which rank this process is and which GPU it uses,
//! read from the launcher's environment (`env`).

pub mod env;

pub use env::{Launcher, RankInfo, RankProblem, discover};
