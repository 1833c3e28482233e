//! The distributed runtime: which rank this process is and which GPU it uses, read from the
//! launcher's environment (`env`); the communicator abstraction (`comm`) with MPI (`mpi`, CPU
//! tensors) and NCCL (`nccl`, GPUs; unique id over MPI or a TCP `rendezvous`) backends; data
//! parallelism (`data_parallel`); and the collective `watchdog` that turns a dead or stalled
//! rank into an error naming it. See docs/distributed.md.

pub use trainer_config::dist::env;
pub use trainer_config::dist::env::{Launcher, RankInfo, RankProblem, discover};
pub mod comm;
pub mod data_parallel;
pub mod mpi;
pub mod nccl;
pub mod rendezvous;
pub mod runtime;
pub mod watchdog;
pub mod zero1;
