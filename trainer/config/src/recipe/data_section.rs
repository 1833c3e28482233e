//! The `data` section of a recipe stage: where its training and validation samples come from,
//! how they are ordered and capped, and (rl stages) which training prompts the stage keeps.
//! Split from `sections` only for length; `recipe` re-exports both.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where an sft stage's training rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// The SFT-format JSONL files in `train_files` (one line per turn).
    #[default]
    Files,
    /// The scripted expert played through the stage's own environment on the RL-format prompts
    /// in `train_files`; its successful trajectories' turns are the rows.
    Expert,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Training rows of an sft stage: SFT files or the scripted expert (docs/recipes.md).
    pub source: DataSource,
    /// Training files: SFT-format for sft stages (RL-format prompts with `source: expert`),
    /// RL-format for rl stages (TRAIN_FILE); the formats are the reference's (README "Data formats").
    pub train_files: Vec<PathBuf>,
    /// Validation files for rl stages (RL format), evaluation files for eval stages (eval or
    /// RL format) (VAL_FILE).
    pub val_files: Vec<PathBuf>,
    /// Relative video and media paths in the data resolve against this directory; when unset,
    /// against the working directory (the reference's behaviour).
    pub media_root: Option<PathBuf>,
    /// A new random order of the training data every epoch [shuffle: True].
    pub shuffle: bool,
    /// Seed of the data order (the reference SFT recipe's `data_seed`, 42); defaults to the
    /// recipe's `seed`.
    pub data_seed: Option<u64>,
    /// Use at most this many samples of each file (None: all).
    pub max_samples: Option<usize>,
    /// Check that every referenced video and media file exists.
    pub check_media: bool,
    /// Threads that decode media ahead of the model: SFT rows from files, and the media
    /// actions of rl and eval episodes (the reference SFT recipe's `dataloader_num_workers`, 2).
    pub num_workers: u32,
    /// MiB of decoded media (frames at the model's size, audio spans, clips) the episodes on one
    /// video share within a rollout, e.g. a GRPO group's identical overviews; 0 turns the cache
    /// off. Not for sft stages that train on files (they run no episodes).
    pub media_cache_mib: Option<u32>,
    /// rl stages: train only on the prompts the starting policy still gets wrong, measured
    /// before the first step (docs/recipes.md, "Picking RL prompts by pass rate"). Unset: every
    /// training prompt (the reference picks its RL files offline).
    pub pass_rate_filter: Option<PassRateFilter>,
}

/// `data.pass_rate_filter`: before its first step an rl stage's starting policy plays `samples`
/// episodes of every training prompt with the stage's training sampling, and a prompt stays when
/// its mean episode reward is below `keep_below`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PassRateFilter {
    /// Episodes per prompt.
    pub samples: u32,
    /// Keep a prompt whose mean episode reward is below this; 1.0 drops the prompts solved every
    /// time.
    pub keep_below: f64,
}

impl Default for PassRateFilter {
    fn default() -> Self {
        PassRateFilter { samples: 4, keep_below: 1.0 }
    }
}

/// `data.media_cache_mib` when the recipe leaves it unset.
pub const DEFAULT_MEDIA_CACHE_MIB: u32 = 2048;

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: DataSource::Files,
            train_files: Vec::new(),
            val_files: Vec::new(),
            media_root: None,
            shuffle: true,
            data_seed: None,
            max_samples: None,
            check_media: true,
            num_workers: 2,
            media_cache_mib: None,
            pass_rate_filter: None,
        }
    }
}
