//! `omnirl replay --sample SAMPLE.json --responses RESPONSES.json [--settings train|eval]
//! [--media-root DIR] [--tokenizer PATH] [--system-prompt PATH] [--max-prompt-tokens N]`:
//! runs one episode on a real video with given model responses and prints what the
//! environment reports at every step.
//!
//! SAMPLE.json holds one sample object in the RL format (docs/reference.md#data-rl: it has
//! `fps`, `duration_seconds`, `has_audio`) or the eval format (docs/reference.md#data-eval: the
//! video is probed for them,
//! with the reference's fallback of 120 s, 30 fps, audio on when probing fails).
//! RESPONSES.json is a JSON array of strings, one per turn (an element that is not a string is
//! stepped as the reference steps a non-string action: `INVALID_JSON` "not a string"). Every
//! response is stepped, including those after the episode ended (they report
//! `ENV_ALREADY_DONE`).
//!
//! stdout: one JSON line per step with exactly these keys, in this order: `step` (1-based
//! index of the response), `action_type` (`get_frames`, `get_audio`, `get_clip`, `answer`, or
//! `"ERROR"` for a step with an error code, docs/reference.md#training-rows), `is_action_valid`,
//! `error_code` (`"OK"` when none), `done`, `reward` and `won` (as the environment reports them
//! at that step), `n_raw_media` (media messages not yet consolidated after the step), `n_frames`
//! (frames delivered), `audio_seconds` (audio delivered by `get_audio`), `clip_range` (`[start,
//! end]` of the delivered clip or frames, else `null`), `max_steps` (the effective budget). Then
//! a final line `{"episode_reward": ..., "stored_turns": ...}`: the sum of the rewards of the
//! stored turns and their number (retry semantics: invalid turns that do not end the episode
//! are not stored).
//!
//! `train` and `eval` are the reference's training and evaluation settings
//! (`EpisodeSettings::train`/`eval`: 22 vs 32 steps, strict confidence on vs off, duration
//! checks vs bypassed). The prompt-length guard needs token counts: with `--tokenizer` (a
//! Qwen2.5-Omni `tokenizer.json`) it runs against `--max-prompt-tokens` (65536); without it is
//! skipped, and a note on stderr says so (stdout keeps exactly the keys above). A video that
//! cannot be opened is not an error of the command: every media action then fails as the
//! reference's ffmpeg would (`FFMPEG_*_FAIL`), with a note on stderr.
//!
//! Exit status 0 after a replay; 2 when an input file is missing or malformed.
//!
//! Left out: printing the history (use the rollout crate's `Episode::history` in code) and
//! recipes (the two reference setting sets cover the contract).

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use rollout::chat::{ChatConfig, ChatTokenizer};
use rollout::data::{EvalSample, RlSample, resolve_media_path};
use rollout::episode::{
    Episode, EpisodeSettings, EpisodeSpec, MediaEnv, MediaFailure, Observation, PromptEncoder, Response, StepOutcome,
    VideoEnv, VideoMeta,
};
use rollout::prompt::PromptTemplate;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SettingsKind {
    /// The reference's RL training settings.
    Train,
    /// The reference's evaluation settings.
    Eval,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// One sample object (RL or eval format).
    #[arg(long)]
    pub sample: PathBuf,
    /// A JSON array of response strings, one per turn.
    #[arg(long)]
    pub responses: PathBuf,
    /// Episode settings: the reference's training (22-step cap, strict confidence) or
    /// evaluation (32-step cap, no strict confidence, duration checks bypassed) settings.
    #[arg(long, value_enum, default_value = "train")]
    pub settings: SettingsKind,
    /// Directory that relative video paths resolve against (default: the working directory).
    #[arg(long)]
    pub media_root: Option<PathBuf>,
    /// A Qwen2.5-Omni tokenizer.json; enables the prompt-length guard.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// A system-prompt template (default: recipes/prompts/omniagent.txt, compiled in).
    #[arg(long)]
    pub system_prompt: Option<PathBuf>,
    /// The prompt-length limit of the guard (the reference's max_prompt_length).
    #[arg(long, default_value_t = 65536)]
    pub max_prompt_tokens: u32,
}

/// A chat tokenizer for a bare `tokenizer.json` (no model config at hand): the media ids are
/// looked up by their Qwen2.5-Omni token names, never assumed.
pub fn named_chat_tokenizer(path: &Path) -> anyhow::Result<ChatTokenizer> {
    let label = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read tokenizer {label}: {e}"))?;
    let config = ChatConfig::from_token_names(&bytes, &label)?;
    Ok(ChatTokenizer::from_bytes(&bytes, config, &label)?)
}

/// Every media action fails (the video could not be opened).
struct Unopenable(String);

impl MediaEnv for Unopenable {
    fn frames(&self, _: f64, _: f64, timestamps: &[f64]) -> Result<Observation, MediaFailure> {
        Err(MediaFailure { reason: self.0.clone(), at: timestamps.first().copied() })
    }
    fn audio(&self, _: f64, _: f64) -> Result<Observation, MediaFailure> {
        Err(MediaFailure::new(self.0.clone()))
    }
    fn clip(&self, _: f64, _: f64) -> Result<Observation, MediaFailure> {
        Err(MediaFailure::new(self.0.clone()))
    }
}

/// Reads the sample (whole file, or its first non-blank line) as an RL or eval sample.
pub fn read_spec(path: &Path, media_root: Option<&Path>) -> anyhow::Result<EpisodeSpec> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read sample file {}", path.display()))?;
    let value: Value = match serde_json::from_str(text.trim()) {
        Ok(v) => v,
        Err(e) => match text.lines().find(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l.trim())) {
            Some(Ok(v)) => v,
            _ => bail!("{}: not a JSON sample object: {e}", path.display()),
        },
    };
    let Value::Object(obj) = value else { bail!("{}: expected one JSON object (a sample)", path.display()) };
    let id = path.file_stem().map_or_else(|| "sample".to_string(), |s| s.to_string_lossy().into_owned());
    let is_rl = ["fps", "duration_seconds", "has_audio"].iter().any(|k| obj.contains_key(*k));
    if is_rl {
        let mut sample: RlSample = serde_json::from_value(Value::Object(obj))
            .map_err(|e| anyhow::anyhow!("{}: not a valid RL sample: {e}", path.display()))?;
        sample.video_path = resolve_media_path(&sample.video, media_root);
        return Ok(EpisodeSpec::from_rl(&sample, id));
    }
    let mut sample: EvalSample = serde_json::from_value(Value::Object(obj))
        .map_err(|e| anyhow::anyhow!("{}: not a valid eval sample: {e}", path.display()))?;
    sample.video_path = resolve_media_path(&sample.video, media_root);
    let meta = match rollout::media::probe(&sample.video_path) {
        Ok(info) => VideoMeta { duration: info.duration_s, fps: Some(info.fps), has_audio: info.has_audio },
        Err(e) => {
            eprintln!(
                "omnirl replay: cannot probe {} ({e}); using 120 s, 30 fps, audio on",
                sample.video_path.display()
            );
            VideoMeta { duration: 120.0, fps: Some(30.0), has_audio: true }
        }
    };
    Ok(EpisodeSpec::from_eval(&sample, meta, id))
}

/// Reads RESPONSES.json: a JSON array, normally of strings. Any other element is replayed as
/// the reference replays a non-string action: `INVALID_JSON` "not a string".
pub fn read_responses(path: &Path) -> anyhow::Result<Vec<Response>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read responses file {}", path.display()))?;
    let value: Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let Value::Array(items) = value else { bail!("{}: expected a JSON array of response strings", path.display()) };
    Ok(items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Response::text(s),
            other => Response { text: other.to_string(), not_a_string: true, ..Response::default() },
        })
        .collect())
}

/// One stdout line, keys in the documented order.
pub fn step_line(index: usize, o: &StepOutcome, max_steps: u32) -> String {
    let clip = o.delivered.clip_or_frames_range().map(|(s, e)| serde_json::json!([s, e])).unwrap_or(Value::Null);
    let fields: [(&str, Value); 12] = [
        ("step", index.into()),
        ("action_type", o.action_name().into()),
        ("is_action_valid", o.is_action_valid.into()),
        ("error_code", o.error_name().into()),
        ("done", o.done.into()),
        ("reward", o.reward.into()),
        ("won", o.won.into()),
        ("n_raw_media", o.n_raw_media.into()),
        ("n_frames", o.delivered.n_frames.into()),
        ("audio_seconds", o.delivered.audio_seconds().into()),
        ("clip_range", clip),
        ("max_steps", max_steps.into()),
    ];
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}:{v}", Value::from(*k))).collect();
    format!("{{{}}}", body.join(","))
}

pub fn run(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let spec = read_spec(&args.sample, args.media_root.as_deref())?;
    let responses = read_responses(&args.responses)?;
    let mut settings = match args.settings {
        SettingsKind::Train => EpisodeSettings::train(),
        SettingsKind::Eval => EpisodeSettings::eval(),
    };
    settings.limits.max_prompt_tokens = args.max_prompt_tokens;
    let template = match &args.system_prompt {
        Some(path) => PromptTemplate::from_file(path)?,
        None => PromptTemplate::default_template()?,
    };
    let encoder: Option<Arc<dyn PromptEncoder>> = match &args.tokenizer {
        Some(path) => Some(Arc::new(named_chat_tokenizer(path)?)),
        None => {
            eprintln!("omnirl replay: no --tokenizer, so the prompt-length guard (TOKEN_LIMIT_EXCEEDED) is skipped");
            None
        }
    };
    let env: Box<dyn MediaEnv> = match VideoEnv::open(&spec.video, Some(spec.meta.duration), spec.meta.has_audio) {
        Ok(env) => Box::new(env),
        Err(e) => {
            eprintln!("omnirl replay: cannot open {}: {e}; every media action will fail", spec.video.display());
            Box::new(Unopenable(e.to_string()))
        }
    };
    let mut episode = Episode::new(Arc::new(spec), Arc::new(settings), &template, encoder);
    if let Some(why) = episode.broken() {
        bail!("cannot encode the prompt: {why}");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut episode_reward, mut stored) = (0.0, 0usize);
    for (i, response) in responses.into_iter().enumerate() {
        let outcome = episode.step(response, env.as_ref());
        if outcome.stored {
            episode_reward += outcome.reward;
            stored += 1;
        }
        writeln!(out, "{}", step_line(i + 1, &outcome, episode.max_steps()))?;
    }
    let last = format!("{{\"episode_reward\":{},\"stored_turns\":{stored}}}", Value::from(episode_reward));
    writeln!(out, "{last}")?;
    Ok(ExitCode::SUCCESS)
}
