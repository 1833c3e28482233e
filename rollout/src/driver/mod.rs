//! The rollout driver: many episodes at once, token-exact turns, GRPO groups.
//!
//! `n` copies of each prompt form a group (interleaved as the reference does: prompt `r` is
//! episodes `r*n .. r*n+n-1`, one group uid per prompt, one trajectory uid per episode).
//! The loop is pool-async (the reference's `pool_async_multi_turn_loop`, improved):
//!
//! 1. every episode whose context is ready joins a generation batch (up to `max_batch`, the
//!    reference's `world * MICRO_RATIO` chunk), and the policy generates for the batch;
//! 2. each response is parsed and validated at once; episodes that asked for media hand their
//!    request to a thread pool and leave the batch;
//! 3. the next batch is generated while that media is being extracted; episodes rejoin as
//!    soon as their observation arrives (no wave barrier), so one slow decode stalls only its
//!    own episode;
//! 4. the driver blocks waiting for media only when too few episodes are ready to fill a batch
//!    (`min_fill` of `min(max_batch, unfinished)`, because a batched decode costs about the same
//!    for 1 or 64 contexts) or none is; that time is [`RolloutStats::media_wait_s`].
//!
//! Each step's prompt is captured before generation and stored with the sampled ids and
//! log-probs when the environment keeps the turn (retry semantics); a stored turn must extend
//! the previous stored one token for token, or the trajectory is dropped
//! ([`DropReason::Prefix`]). Media environments are opened lazily, on the pool, by the
//! caller's opener; an opener failure is the action's extraction failure (`FFMPEG_*_FAIL`),
//! as a video ffmpeg cannot read is in the reference. A policy error drops the episodes of
//! that batch and the run goes on.
//!
//! [`Driver::run_observed`] also hands every physical step (stored or not) to a caller's
//! observer as it is applied ([`StepEvent`]), for live traces (`omnirl infer`).
//!
//! Left out: padding batches to a multiple of the world size (the trainer's business) and
//! distributing episodes over ranks.

mod live;
mod workers;

use crate::episode::{
    EpisodeSettings, EpisodeSpec, MediaEnv, MediaFailure, MediaItem, Message, PromptEncoder, StepOutcome,
};
use crate::policy::{Policy, Sampling};
use crate::prompt::PromptTemplate;
use crate::trajectory::Trajectory;
use live::{Live, Runner};
use std::sync::Arc;

/// Opens the media environment of an episode (called on the media pool, once per episode).
pub type MediaOpener = dyn Fn(&EpisodeSpec) -> Result<Arc<dyn MediaEnv>, MediaFailure> + Send + Sync;

/// How to run a batch of episodes.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverConfig {
    /// Episodes per prompt (`n`); 1 for validation.
    pub group_size: usize,
    /// Most contexts per `Policy::generate` call.
    pub max_batch: usize,
    /// Threads extracting media.
    pub media_threads: usize,
    pub sampling: Sampling,
    /// Keep each turn's context as messages (for the SFT export).
    pub record_messages: bool,
    /// Generate only when at least this share of `min(max_batch, unfinished episodes)` is ready
    /// (or nothing is waiting for media): a batched decode costs about the same for 1 or 64
    /// contexts, so waiting briefly for stragglers fills the batch. 0 generates eagerly.
    pub min_fill: f64,
    /// Generate for some episodes while others wait for media (on by default). Off: each
    /// generation batch waits until every media request is done, like the reference's
    /// synchronous chunk loop (for comparison in the benchmark).
    pub overlap: bool,
    /// Seeds the group and trajectory ids.
    pub seed: u64,
    /// The index of each prompt in a larger batch split across processes (data parallelism):
    /// group and trajectory ids and the episode index a policy seeds its sampling with are
    /// then those of one process running the whole batch. Empty: the prompts' positions.
    pub global_samples: Vec<usize>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            group_size: 8,
            max_batch: 256,
            media_threads: 4,
            sampling: Sampling::train(),
            record_messages: false,
            min_fill: 0.5,
            overlap: true,
            seed: 42,
            global_samples: Vec::new(),
        }
    }
}

/// Where the time of a run went.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct RolloutStats {
    pub episodes: usize,
    /// Physical steps taken.
    pub steps: usize,
    pub stored_turns: usize,
    pub generate_calls: usize,
    /// Contexts sent to the policy, and their prompt tokens.
    pub contexts: usize,
    pub prompt_tokens: usize,
    /// Of those prompt tokens, how many the policy served from the contexts it kept between an
    /// episode's turns instead of prefilling them (set by the policy's owner; 0 when it keeps none).
    pub cached_prompt_tokens: usize,
    pub media_requests: usize,
    pub wall_s: f64,
    /// Time inside `Policy::generate`.
    pub generate_s: f64,
    /// Time blocked with nothing to generate, waiting for media.
    pub media_wait_s: f64,
    /// Extraction time summed over requests (pool threads).
    pub media_busy_s: f64,
    pub dropped: usize,
}

impl RolloutStats {
    pub fn episodes_per_s(&self) -> f64 {
        if self.wall_s > 0.0 { self.episodes as f64 / self.wall_s } else { 0.0 }
    }

    /// Share of the wall time spent waiting on media.
    pub fn media_wait_share(&self) -> f64 {
        if self.wall_s > 0.0 { self.media_wait_s / self.wall_s } else { 0.0 }
    }
}

/// The trajectories of a run, in episode order (`sample * group_size + copy`).
#[derive(Debug, Clone)]
pub struct RolloutBatch {
    pub trajectories: Vec<Trajectory>,
    pub stats: RolloutStats,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot start the media pool: {0}")]
    Pool(String),
    #[error("group_size and max_batch must be at least 1")]
    Config,
    #[error("{given} global sample indices for {prompts} prompts")]
    GlobalSamples { given: usize, prompts: usize },
}

/// One physical step as the driver applied it (stored for training or not).
#[derive(Debug, Clone, Copy)]
pub struct StepEvent<'a> {
    /// Index of the episode in the run, and its prompt (sample) and copy.
    pub episode: usize,
    pub sample: usize,
    pub copy: usize,
    pub spec: &'a EpisodeSpec,
    /// Physical steps taken before this one.
    pub cur_step: u32,
    /// The prompt the response was generated from.
    pub prompt_ids: &'a [u32],
    /// The same context as messages, when [`DriverConfig::record_messages`] is on.
    pub messages: Option<&'a [Message]>,
    /// The raw media of the prompt.
    pub media: &'a [Arc<MediaItem>],
    pub response: &'a str,
    pub response_ids: &'a [u32],
    pub outcome: &'a StepOutcome,
    /// The episode's history after the step: the environment's feedback is what follows the
    /// last assistant message.
    pub history: &'a [Message],
}

/// What [`Driver::run_observed`] calls after each step.
pub type StepObserver<'o> = dyn FnMut(&StepEvent<'_>) + 'o;

/// Runs episodes for a policy.
pub struct Driver {
    pub settings: Arc<EpisodeSettings>,
    pub template: Arc<PromptTemplate>,
    pub encoder: Arc<dyn PromptEncoder>,
    pub config: DriverConfig,
}

impl Driver {
    pub fn new(
        settings: EpisodeSettings,
        template: PromptTemplate,
        encoder: Arc<dyn PromptEncoder>,
        config: DriverConfig,
    ) -> Driver {
        Driver { settings: Arc::new(settings), template: Arc::new(template), encoder, config }
    }

    /// Rolls out `group_size` episodes of every prompt until all are done.
    pub fn run(
        &self,
        policy: &mut dyn Policy,
        prompts: &[Arc<EpisodeSpec>],
        opener: Arc<MediaOpener>,
    ) -> Result<RolloutBatch, DriverError> {
        self.run_with(policy, prompts, opener, None)
    }

    /// [`run`](Self::run), calling `observer` after every physical step, in the order the steps
    /// are applied (on the calling thread).
    pub fn run_observed<'o>(
        &'o self,
        policy: &mut dyn Policy,
        prompts: &[Arc<EpisodeSpec>],
        opener: Arc<MediaOpener>,
        observer: &'o mut StepObserver<'o>,
    ) -> Result<RolloutBatch, DriverError> {
        self.run_with(policy, prompts, opener, Some(observer))
    }

    fn run_with<'o>(
        &'o self,
        policy: &mut dyn Policy,
        prompts: &[Arc<EpisodeSpec>],
        opener: Arc<MediaOpener>,
        observer: Option<&'o mut StepObserver<'o>>,
    ) -> Result<RolloutBatch, DriverError> {
        let cfg = &self.config;
        if cfg.group_size == 0 || cfg.max_batch == 0 {
            return Err(DriverError::Config);
        }
        let pool =
            workers::MediaWorkers::new(cfg.media_threads.max(1)).map_err(|e| DriverError::Pool(e.to_string()))?;
        let mut lives = Vec::with_capacity(prompts.len() * cfg.group_size);
        if !cfg.global_samples.is_empty() && cfg.global_samples.len() != prompts.len() {
            return Err(DriverError::GlobalSamples { given: cfg.global_samples.len(), prompts: prompts.len() });
        }
        for (pos, spec) in prompts.iter().enumerate() {
            let sample = cfg.global_samples.get(pos).copied().unwrap_or(pos);
            let group = uuid_like(cfg.seed, 2 * sample as u64);
            for copy in 0..cfg.group_size {
                let index = sample * cfg.group_size + copy;
                let traj = uuid_like(cfg.seed ^ 0x9e37_79b9_7f4a_7c15, 2 * index as u64 + 1);
                lives.push(Live::new(self, spec.clone(), sample, copy, group.clone(), traj));
            }
        }
        let mut runner = Runner::new(self, pool, opener, lives);
        runner.observer = observer;
        runner.run(policy);
        Ok(runner.finish())
    }
}

/// A deterministic UUID-shaped id from a seed and an index (splitmix64).
pub fn uuid_like(seed: u64, index: u64) -> String {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let a = mix(seed ^ index.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let b = mix(a ^ index);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}
