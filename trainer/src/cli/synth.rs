//! `omnirl synth --data FILE --out FILE (--model DIR | --teacher-url URL --teacher-model NAME |
//! --expert) [--n N] [--keep K] [--min-reward R] [--audit-url URL --audit-model NAME]
//! [--recipe R [--set k=v]...] [sampling flags]`: best-of-N SFT data synthesis (`synth::run`).
//!
//! Prints progress and warnings to stderr and one JSON summary line to stdout (questions,
//! attempts, successful, kept, lines, dropped per reason, ...). Drop reasons: `runtime_error`
//! (the driver dropped the episode), `not_successful` (not won, or reward below
//! `--min-reward`), `duplicate` (same responses as a kept one), `over_keep` (past `--keep`),
//! `empty_reasoning` / `no_media` (rule-based check), `audit_unsupported` / `audit_failed` (LLM
//! audit), `no_sft_lines` (no turn survived the export filter), `media_export` (media files
//! could not be written). The environment, preprocessing
//! and rollout limits are the recipe's first rl stage (`--recipe`, with `--set` overrides and the
//! environment-variable overrides `omnirl validate` applies), else an rl stage's defaults.
//! Sampling: the stage's `rollout.sampling` (training sampling by default), each flag overriding.
//! API keys are read from the environment variables named by `--api-key-env` /
//! `--audit-api-key-env`, never from the command line. Exit status 0 on success, 2 on an error.
//!
//! Left out: the full dry run of the recipe (its model and data need not exist to borrow its
//! limits; only the recipe's own problems, syntax and semantics, are checked).

use super::load_resolved;
use crate::recipe::StageKind;
use crate::recipe::resolved::{ResolvedStage, RlStage, default_stage};
use crate::synth::{Endpoint, PolicySource, SynthOptions};
use clap::{ArgGroup, Args};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("policy").required(true).args(["model", "teacher_url", "expert"])))]
pub struct SynthArgs {
    /// RL-format JSONL file: the questions.
    #[arg(long)]
    pub data: PathBuf,
    /// Directory relative video paths resolve against (default: the recipe's, else the working
    /// directory).
    #[arg(long)]
    pub media_root: Option<PathBuf>,
    /// Output SFT JSONL; media files go to `<out stem>_media/` beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// Attempts per question.
    #[arg(long, default_value_t = 4)]
    pub n: usize,
    /// Successful trajectories kept per question.
    #[arg(long, default_value_t = 1)]
    pub keep: usize,
    /// A trajectory is successful when it was won with at least this episode reward.
    #[arg(long, default_value_t = 1.0)]
    pub min_reward: f64,
    /// Policy: a local thinker checkpoint.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Policy: an OpenAI-compatible endpoint (base URL or full `/chat/completions` URL).
    #[arg(long, requires = "teacher_model")]
    pub teacher_url: Option<String>,
    /// The teacher's model name.
    #[arg(long, requires = "teacher_url")]
    pub teacher_model: Option<String>,
    /// Environment variable holding the teacher's API key (no key is sent without it).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Policy: the rule-based expert (reads the ground truth).
    #[arg(long)]
    pub expert: bool,
    /// tokenizer.json for token accounting with the teacher or the expert (default: a byte
    /// tokenizer over Qwen2.5-Omni's special ids, which over-counts text).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// LLM audit of each kept trajectory's reasoning (else the rule-based check).
    #[arg(long, requires = "audit_model")]
    pub audit_url: Option<String>,
    /// The audit judge's model name.
    #[arg(long, requires = "audit_url")]
    pub audit_model: Option<String>,
    /// Environment variable holding the audit judge's key (default: `--api-key-env`'s).
    #[arg(long, value_name = "VAR")]
    pub audit_api_key_env: Option<String>,
    /// Sampling temperature (default: the stage's sampling, else 1.0).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass (default: the stage's sampling, else 1.0).
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Top-k filtering (default: the stage's sampling, else none; sent to a teacher only when set).
    #[arg(long)]
    pub top_k: Option<u32>,
    /// Seeds sampling and the trajectory ids.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Most response tokens per turn (default: the stage's `rollout.max_response_length`).
    #[arg(long)]
    pub max_response_tokens: Option<u32>,
    /// Take the environment, preprocess and rollout sections from this recipe's rl stage.
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Override a recipe key (with `--recipe`; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "recipe")]
    pub sets: Vec<String>,
    /// Use at most this many questions.
    #[arg(long)]
    pub max_samples: Option<usize>,
    /// Teacher requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Also write every attempt's rollout dump (JSONL, one line per stored turn) to this file.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Timeout of one teacher or audit request, seconds.
    #[arg(long, default_value_t = 300.0)]
    pub timeout_s: f64,
}

fn key_from(var: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(var) = var else { return Ok(None) };
    match std::env::var(var) {
        Ok(k) if !k.trim().is_empty() => Ok(Some(k.trim().to_string())),
        _ => anyhow::bail!("environment variable {var} (named by an --*api-key-env flag) is not set"),
    }
}

/// The rl stage of `--recipe`, or an rl stage's defaults.
fn env_stage(args: &SynthArgs) -> anyhow::Result<RlStage> {
    let found = match &args.recipe {
        None => default_stage(StageKind::Rl, Path::new("."), args.seed)?,
        Some(path) => {
            load_resolved(path, &args.sets)?.stages.into_iter().find(|s| s.kind() == StageKind::Rl).ok_or_else(
                || anyhow::anyhow!("{}: the recipe has no rl stage to take the environment from", path.display()),
            )?
        }
    };
    match found {
        ResolvedStage::Rl(rl) => Ok(rl),
        _ => anyhow::bail!("not an rl stage"),
    }
}

pub fn run(args: &SynthArgs) -> anyhow::Result<ExitCode> {
    let stage = env_stage(args)?;
    let source = match (&args.model, &args.teacher_url, &args.teacher_model) {
        (Some(dir), _, _) => PolicySource::Model(dir.clone()),
        (None, Some(url), Some(model)) => PolicySource::Teacher(Endpoint {
            url: url.clone(),
            model: model.clone(),
            api_key: key_from(args.api_key_env.as_deref())?,
        }),
        _ => PolicySource::Expert,
    };
    let audit = match (&args.audit_url, &args.audit_model) {
        (Some(url), Some(model)) => Some(Endpoint {
            url: url.clone(),
            model: model.clone(),
            api_key: key_from(args.audit_api_key_env.as_deref().or(args.api_key_env.as_deref()))?,
        }),
        _ => None,
    };
    let mut sampling = stage.rollout.sampling.clone();
    if let Some(t) = args.temperature {
        sampling.temperature = t;
    }
    if let Some(p) = args.top_p {
        sampling.top_p = p;
    }
    if let Some(k) = args.top_k {
        sampling.top_k = Some(k);
    }
    if !(args.timeout_s.is_finite() && args.timeout_s > 0.0) {
        anyhow::bail!("--timeout-s must be a positive number of seconds");
    }
    let opts = SynthOptions {
        data: args.data.clone(),
        media_root: args.media_root.clone().or_else(|| stage.data.media_root.clone()),
        out: args.out.clone(),
        n: args.n,
        keep: args.keep,
        min_reward: args.min_reward,
        source,
        tokenizer: args.tokenizer.clone(),
        audit,
        max_response_tokens: args.max_response_tokens.unwrap_or(stage.episodes.max_response_length),
        sampling,
        seed: args.seed,
        max_samples: args.max_samples,
        concurrency: args.concurrency.max(1),
        timeout: Duration::from_secs_f64(args.timeout_s),
        dump: args.dump.clone(),
        episodes: stage.episodes,
        preprocess: stage.preprocess,
    };
    let mut say = |line: &str| eprintln!("omnirl synth: {line}");
    let summary = crate::synth::run(&opts, &mut say)?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(ExitCode::SUCCESS)
}
