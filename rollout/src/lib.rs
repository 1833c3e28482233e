//! Data schemas, media access, the episode state machine and the rollout driver.
//! Knows no model: it talks to the policy through a trait.

pub mod data;
