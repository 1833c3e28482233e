//! Data schemas, media access, the episode state machine and the rollout driver.
//! Knows no model: it talks to the policy through a trait.

pub mod chat;
pub mod data;
pub mod driver;
pub mod episode;
pub mod expert;
pub mod media;
pub mod policy;
pub mod prerequisite;
pub mod prompt;
pub mod sft;
pub mod trajectory;
