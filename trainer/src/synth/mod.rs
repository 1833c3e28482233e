//! `omnirl synth`: best-of-N trajectory synthesis for SFT data (docs/reference.md#data-collection:
//! teacher exploration, outcome verification, rationality audit, export).
//!
//! For every RL-format question, `n` episodes run through the real rollout driver (one GRPO-style
//! group per question, each turn's context recorded as messages) with one of three policies: a
//! local thinker checkpoint ([`PolicySource::Model`]), an OpenAI-compatible teacher
//! ([`teacher::TeacherPolicy`]) or the rule-based [`ExpertPolicy`]. Then, per question:
//!
//! 1. outcome verification: a trajectory is successful when it was not dropped, was won and its
//!    episode reward is at least `min_reward`;
//! 2. successful ones are ranked by reward (highest first), then turns (fewest first), then
//!    attempt; one whose responses repeat an already kept trajectory is a `duplicate`, and past
//!    `keep` kept ones the rest are `over_keep`;
//! 3. the audit ([`audit::Auditor`]) when a judge is configured, else [`audit::rule_check`];
//! 4. export ([`export`]): SFT lines and their media files; a trajectory whose media cannot be
//!    written is dropped (`media_export`) and the next candidate gets its place.
//!
//! The lines are checked with the SFT schema checker (`omnirl validate`'s) before anything is
//! written. Media files go to a temporary sibling directory renamed into place
//! (`<out stem>_media/`, next to the output, replacing an older one), then the JSONL is written
//! through a temporary file and a rename, so no half-written file is ever left. Media paths in
//! the lines are relative to the output file's directory: train with `data.media_root` set to it.
//!
//! Left out: the reference's random per-episode resources and stop-at-first-win (all `n`
//! attempts always run, in parallel batches), and resuming an interrupted synthesis.

pub mod audit;
pub mod export;
pub mod teacher;

use crate::model::{OmniThinkerConfig, QWEN25_OMNI_7B_THINKER_JSON, chat_tokenizer_for_model};
use crate::recipe::resolved::Episodes;
use crate::recipe::{Dtype, PreprocessConfig, SamplingConfig};
use crate::run::episodes::{driver, media_cache, rl_specs, sampling, video_opener};
use crate::run::model::{Loading, Model, encoder_for};
use crate::run::tokenizer::SmallTokenizer;
use crate::run::{RunError, write_atomic};
use rollout::data::{CheckOptions, DataFormat, check_bytes};
use rollout::episode::PromptEncoder;
use rollout::policy::{ExpertPolicy, Policy};
use rollout::trajectory::Trajectory;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why a synthesis stopped.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{path}: {message}")]
    Media { path: String, message: String },
    #[error("{0}")]
    Config(String),
    #[error("the synthesised lines fail the SFT check: {0}")]
    Check(String),
}

/// An OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
}

/// Where the responses come from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// A local thinker checkpoint (tokenizer from `DIR/tokenizer.json`, else the byte tokenizer).
    Model(PathBuf),
    Teacher(Endpoint),
    Expert,
}

impl PolicySource {
    fn label(&self) -> String {
        match self {
            PolicySource::Model(d) => format!("model:{}", d.display()),
            PolicySource::Teacher(e) => format!("teacher:{}", e.model),
            PolicySource::Expert => "expert".into(),
        }
    }
}

/// Everything a synthesis needs.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub data: PathBuf,
    pub media_root: Option<PathBuf>,
    pub out: PathBuf,
    pub n: usize,
    pub keep: usize,
    pub min_reward: f64,
    pub source: PolicySource,
    /// tokenizer.json for the teacher and the expert (else the byte tokenizer over
    /// Qwen2.5-Omni's special ids, which counts prompt tokens conservatively).
    pub tokenizer: Option<PathBuf>,
    pub audit: Option<Endpoint>,
    /// The episodes and media budgets (an rl stage's).
    pub episodes: Episodes,
    pub preprocess: PreprocessConfig,
    pub sampling: SamplingConfig,
    pub max_response_tokens: u32,
    pub seed: u64,
    pub max_samples: Option<usize>,
    /// Requests in flight at once, and each one's timeout.
    pub concurrency: usize,
    pub timeout: Duration,
    /// Also write every attempt's rollout dump (one JSON line per stored turn) here.
    pub dump: Option<PathBuf>,
}

/// What a synthesis did (printed as one JSON line).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SynthSummary {
    pub questions: usize,
    pub attempts: usize,
    pub successful: usize,
    pub kept: usize,
    pub lines: usize,
    pub questions_without_kept: usize,
    pub dropped: BTreeMap<String, usize>,
    pub policy: String,
    pub requests: usize,
    pub audit_requests: usize,
    pub out: String,
    pub media_dir: String,
    /// The directory the lines' media paths are relative to.
    pub media_root: String,
    pub wall_s: f64,
}

fn default_encoder() -> Result<Arc<dyn PromptEncoder>, SynthError> {
    let cfg = OmniThinkerConfig::from_json_str(QWEN25_OMNI_7B_THINKER_JSON)
        .map_err(|e| SynthError::Config(format!("the built-in Qwen2.5-Omni config: {e}")))?;
    let t = SmallTokenizer::from_config(&cfg)
        .ok_or_else(|| SynthError::Config("the built-in Qwen2.5-Omni config has no chat ids".into()))?;
    Ok(Arc::new(t))
}

fn tokenizer_encoder(tok: Option<&Path>) -> Result<Arc<dyn PromptEncoder>, SynthError> {
    match tok {
        Some(t) => {
            let dir = t.parent().unwrap_or(Path::new("."));
            let enc = chat_tokenizer_for_model(dir, t).map_err(|e| SynthError::Config(format!("--tokenizer: {e}")))?;
            Ok(Arc::new(enc))
        }
        None => default_encoder(),
    }
}

/// Removes the temporary media directory however the synthesis ends (after the rename into
/// place there is nothing left to remove).
struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SynthError + '_ {
    move |e| SynthError::Run(RunError::Io { path: path.display().to_string(), message: e.to_string() })
}

/// The trajectories of every attempt.
fn roll_out(
    opts: &SynthOptions,
    specs: &[Arc<rollout::episode::EpisodeSpec>],
    say: &mut dyn FnMut(&str),
) -> Result<(Vec<Trajectory>, usize), SynthError> {
    let episodes = &opts.episodes;
    let s = sampling(&opts.sampling, opts.max_response_tokens, false, opts.seed);
    let opener = video_opener(&opts.preprocess, media_cache(episodes));
    let rollout_err = |e: rollout::driver::DriverError| SynthError::Run(RunError::Rollout(e.to_string()));
    match &opts.source {
        PolicySource::Model(dir) => {
            let (encoder, limit) = encoder_for(dir, None)?;
            let device = if tch::Cuda::is_available() { tch::Device::Cuda(0) } else { tch::Device::Cpu };
            let mut model = Model::load(dir, &Loading::eval(device, Dtype::F32), encoder.clone(), limit)?;
            let mut drv = driver(episodes, encoder, opts.n, s, opts.seed)?;
            drv.config.record_messages = true;
            say(&format!("rolling out {} questions x {} with {}", specs.len(), opts.n, dir.display()));
            Ok((model.rollout(&drv, specs, opener, episodes.prefix_cache_bytes)?.trajectories, 0))
        }
        PolicySource::Teacher(ep) => {
            let encoder = tokenizer_encoder(opts.tokenizer.as_deref())?;
            let mut drv = driver(episodes, encoder.clone(), opts.n, s, opts.seed)?;
            drv.config.record_messages = true;
            drv.config.max_batch = drv.config.max_batch.max(opts.concurrency);
            let client =
                teacher::ChatClient::new(&ep.url, &ep.model, ep.api_key.clone(), opts.timeout, opts.concurrency)?;
            let pre = &opts.preprocess;
            let mut policy = teacher::TeacherPolicy {
                client,
                encoder,
                sizing: pre.image_sizing(),
                clip: pre.video_sampling(),
                requests: 0,
            };
            say(&format!("rolling out {} questions x {} with teacher {}", specs.len(), opts.n, ep.model));
            let batch = drv.run(&mut policy as &mut dyn Policy, specs, opener).map_err(rollout_err)?;
            Ok((batch.trajectories, policy.requests))
        }
        PolicySource::Expert => {
            let encoder = tokenizer_encoder(opts.tokenizer.as_deref())?;
            let mut drv = driver(episodes, encoder.clone(), opts.n, s, opts.seed)?;
            drv.config.record_messages = true;
            let mut expert = ExpertPolicy::new(drv.settings.limits.clone(), Some(encoder));
            say(&format!("rolling out {} questions x {} with the expert", specs.len(), opts.n));
            let batch = drv.run(&mut expert as &mut dyn Policy, specs, opener).map_err(rollout_err)?;
            Ok((batch.trajectories, 0))
        }
    }
}

/// Picks the SFT lines of one question's attempts: successful ones, best reward first (then
/// fewer turns), distinct, at most `--keep`, each passing the audit (or the rule check without
/// an auditor) and with its media exported; counts every drop by reason.
struct Selector<'a> {
    opts: &'a SynthOptions,
    auditor: Option<audit::Auditor>,
    policy: String,
    media_rel: &'a str,
    tmp_media: &'a Path,
    dropped: BTreeMap<String, usize>,
}

impl Selector<'_> {
    /// Appends the kept attempts' lines to `out`; returns (successful attempts, kept attempts).
    fn select(
        &mut self,
        candidates: Vec<&Trajectory>,
        out: &mut Vec<Value>,
        say: &mut dyn FnMut(&str),
    ) -> (usize, usize) {
        let mut ok: Vec<&Trajectory> = Vec::new();
        for t in candidates {
            if t.dropped.is_some() {
                self.drop_one("runtime_error");
            } else if !t.won || t.episode_reward < self.opts.min_reward {
                self.drop_one("not_successful");
            } else {
                ok.push(t);
            }
        }
        let successful = ok.len();
        ok.sort_by(|a, b| {
            b.episode_reward
                .total_cmp(&a.episode_reward)
                .then(a.turns.len().cmp(&b.turns.len()))
                .then(a.copy.cmp(&b.copy))
        });
        let mut kept: Vec<Vec<&str>> = Vec::new();
        for t in ok {
            let responses: Vec<&str> = t.turns.iter().map(|x| x.response.as_str()).collect();
            let reason = if kept.contains(&responses) {
                Some("duplicate")
            } else if kept.len() >= self.opts.keep {
                Some("over_keep")
            } else {
                self.audit(t, say)
            };
            if let Some(reason) = reason {
                self.drop_one(reason);
                continue;
            }
            let info = json!({"policy": self.policy, "attempt": t.copy + 1, "attempts": self.opts.n});
            let (lines, jobs) = export::lines_and_jobs(t, self.media_rel, &info);
            if lines.is_empty() {
                self.drop_one("no_sft_lines");
                continue;
            }
            if let Err(e) = export::write_media(t, &jobs, self.tmp_media) {
                say(&format!("warning: media of {} ({}): {e}", t.traj_uid, t.spec.question_id));
                self.drop_one("media_export");
                continue;
            }
            kept.push(responses);
            out.extend(lines);
        }
        (successful, kept.len())
    }

    /// Why the audit (or, without an auditor, the rule check) rejects `t`, if it does.
    fn audit(&mut self, t: &Trajectory, say: &mut dyn FnMut(&str)) -> Option<&'static str> {
        let Some(a) = self.auditor.as_mut() else { return audit::rule_check(t) };
        match a.audit(t) {
            Ok(true) => None,
            Ok(false) => Some("audit_unsupported"),
            Err(e) => {
                say(&format!("warning: audit of {} ({}): {e}", t.traj_uid, t.spec.question_id));
                Some("audit_failed")
            }
        }
    }

    fn drop_one(&mut self, reason: &str) {
        *self.dropped.entry(reason.to_string()).or_default() += 1;
    }
}

/// Checks the kept lines as an SFT file, then moves the media into place and writes the file
/// atomically (nothing is replaced when the check fails).
fn write_output(
    opts: &SynthOptions,
    parent: &Path,
    tmp_media: &Path,
    media_dir: &Path,
    out_lines: &[Value],
) -> Result<(), SynthError> {
    let mut text = String::new();
    for line in out_lines {
        text.push_str(&line.to_string());
        text.push('\n');
    }
    if !out_lines.is_empty() {
        let opts_check = CheckOptions { media_root: Some(parent.to_path_buf()), check_media: false, max_problems: 5 };
        let report = check_bytes(&opts.out, text.as_bytes(), DataFormat::Sft, &opts_check);
        if let Some(p) = report.problems.iter().find(|p| p.severity == rollout::data::Severity::Error) {
            return Err(SynthError::Check(p.to_string()));
        }
    }
    if media_dir.exists() {
        std::fs::remove_dir_all(media_dir).map_err(io(media_dir))?;
    }
    std::fs::rename(tmp_media, media_dir).map_err(io(media_dir))?;
    Ok(write_atomic(&opts.out, text.as_bytes())?)
}

/// Runs a synthesis; `say` receives progress and warning lines.
pub fn run(opts: &SynthOptions, say: &mut dyn FnMut(&str)) -> Result<SynthSummary, SynthError> {
    let t0 = std::time::Instant::now();
    if opts.n == 0 || opts.keep == 0 {
        return Err(SynthError::Config("--n and --keep must be at least 1".into()));
    }
    let specs = rl_specs(std::slice::from_ref(&opts.data), opts.media_root.as_deref(), opts.max_samples)?;
    let parent = match opts.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = opts.out.file_stem().map_or_else(|| "synth".to_string(), |s| s.to_string_lossy().into_owned());
    let media_rel = format!("{stem}_media");
    let media_dir = parent.join(&media_rel);
    let tmp_media = parent.join(format!("{media_rel}.tmp-synth"));
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;

    let (trajectories, requests) = roll_out(opts, &specs, say)?;
    if let Some(path) = &opts.dump {
        let mut buf = Vec::new();
        rollout::trajectory::write_dump(&mut buf, &trajectories).map_err(io(path))?;
        write_atomic(path, &buf)?;
    }
    if tmp_media.exists() {
        std::fs::remove_dir_all(&tmp_media).map_err(io(&tmp_media))?;
    }
    std::fs::create_dir_all(&tmp_media).map_err(io(&tmp_media))?;
    let _cleanup = TmpDir(tmp_media.clone());
    let auditor = match &opts.audit {
        Some(ep) => Some(audit::Auditor {
            client: teacher::ChatClient::new(&ep.url, &ep.model, ep.api_key.clone(), opts.timeout, 1)?,
            requests: 0,
        }),
        None => None,
    };
    let policy = opts.source.label();
    let mut summary = SynthSummary {
        questions: specs.len(),
        attempts: trajectories.len(),
        policy: policy.clone(),
        requests,
        ..SynthSummary::default()
    };
    let mut by_question: Vec<Vec<&Trajectory>> = vec![Vec::new(); specs.len()];
    for t in &trajectories {
        if let Some(v) = by_question.get_mut(t.sample_index) {
            v.push(t);
        }
    }
    let mut selector =
        Selector { opts, auditor, policy, media_rel: &media_rel, tmp_media: &tmp_media, dropped: BTreeMap::new() };
    let mut out_lines: Vec<Value> = Vec::new();
    for candidates in by_question {
        let (successful, kept) = selector.select(candidates, &mut out_lines, say);
        summary.successful += successful;
        summary.kept += kept;
        summary.questions_without_kept += usize::from(kept == 0);
    }
    summary.audit_requests = selector.auditor.as_ref().map_or(0, |a| a.requests);
    summary.dropped = selector.dropped;
    summary.lines = out_lines.len();
    write_output(opts, &parent, &tmp_media, &media_dir, &out_lines)?;
    summary.out = opts.out.display().to_string();
    summary.media_dir = media_dir.display().to_string();
    summary.media_root = parent.display().to_string();
    summary.wall_s = t0.elapsed().as_secs_f64();
    Ok(summary)
}
