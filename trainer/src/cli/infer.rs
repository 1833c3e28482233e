//! `omnirl infer --model DIR --video FILE --question TEXT [--options "A. x" --options "B. y"...]
//! [--question-type T] [--answer GT] [--max-steps N] [--out FILE] [--temperature T] [--top-k K]
//! [--top-p P] [--seed S] [--greedy] [--max-response-tokens N] [--recipe R [--stage NAME]]
//! [--dtype D] [--device D]`: one episode of the agent on one video, printed live.
//!
//! The checkpoint is loaded as `omnirl eval` loads it (f32 unless `--dtype`; tokenizer: the
//! directory's `tokenizer.json`, else the small byte tokenizer over the config's special ids,
//! `run::model::encoder_for`, where a `--recipe` stage's `model.tokenizer` takes precedence). The video is probed; the episode runs through the real rollout
//! driver with the thinker as its policy, and the driver's step observer prints every physical
//! step (observation, think, confidence, action, error, the environment's feedback) the moment the
//! environment has applied it.
//!
//! `--options` is repeatable, one option per flag with its label (`--options "A. red"`), so an
//! option may contain commas. `--question-type` defaults to `MCQ` with options, else `FF`. Without
//! `--answer` the episode is scored against a placeholder ground truth of the type, and the output
//! reports `answer`, `reward` and `correct` as `null` (`"scored": false`).
//!
//! Environment limits, preprocessing and the system prompt are the defaults of an eval stage
//! (docs/reference.md#limits: 32 steps with the dynamic budget, 60 frames, 300 s audio, 60 s
//! clips); with `--recipe` they are taken from the recipe's stage `--stage`, else its first eval
//! stage, else its first rl stage. Without `--recipe`, a checkpoint inside a run directory
//! (`RUN/STAGE/final` or `RUN/STAGE/checkpoints/step_N`) takes stage `STAGE` of `RUN/recipe.yaml`,
//! the settings it was trained with (said on stderr; a run recipe that does not load is reported
//! and the defaults used). Sampling defaults to the evaluation settings (temperature 1, top-k 20,
//! top-p 0.95, docs/reference.md#inference); `--greedy` is top-k 1.
//!
//! `--out` (default `trajectory.json`, written atomically) holds the keys of a `results.jsonl`
//! line of `omnirl eval` (with `steps` holding every physical step, not only the stored ones) and
//! per step additionally `stored`, `prompt_text` (the context the response was generated from, as
//! `[role]` blocks with media as `<image NAME>`), and `feedback` (what the environment answered);
//! plus `scored`, `max_steps`, `video_meta`, `sampling` and `model`. Exit status 0 after an
//! episode, 2 on a bad model directory, video or recipe (the message names the file).
//!
//! The episode itself is `run::single` (shared with `omnirl demo`). Left out: several episodes or
//! videos per call (use `omnirl eval`), and a chat mode.

use super::checkpoint_stage;
use crate::cli::generate::load_options;
use crate::model::policy::ThinkerPolicy;
use crate::model::thinker::Thinker;
use crate::run::model::encoder_for;
use crate::run::single::{EpisodeRun, Question, max_steps as single_max_steps, run_episode, spec_of};
use crate::run::trace::parse_response;
use crate::run::write_atomic;
use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use rollout::driver::StepEvent;
use rollout::policy::Sampling;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct InferArgs {
    /// Checkpoint directory (config.json + safetensors; tokenizer.json when it has one).
    #[arg(long)]
    pub model: PathBuf,
    /// The video file.
    #[arg(long)]
    pub video: PathBuf,
    /// The question.
    #[arg(long)]
    pub question: String,
    /// One MCQ option with its label, e.g. `--options "A. red"` (repeat per option).
    #[arg(long = "options", value_name = "OPTION")]
    pub options: Vec<String>,
    /// MCQ, TR, NUM, SIZE or FF (a suffix like `MCQ_Colour` is kept as the label). Default: MCQ
    /// with options, else FF.
    #[arg(long)]
    pub question_type: Option<String>,
    /// The ground truth (MCQ letter, TR spans as JSON, a number); without it nothing is scored.
    #[arg(long)]
    pub answer: Option<String>,
    /// Turn budget (default: the eval stage's, 32, with the dynamic budget).
    #[arg(long)]
    pub max_steps: Option<u32>,
    /// Where to write the trajectory JSON.
    #[arg(long, default_value = "trajectory.json")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 20)]
    pub top_k: u32,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Greedy decoding (top-k 1).
    #[arg(long)]
    pub greedy: bool,
    /// Most response tokens per turn.
    #[arg(long, default_value_t = 1024)]
    pub max_response_tokens: u32,
    /// Take the environment, preprocessing and system prompt from this recipe.
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// With --recipe: the stage to take them from (default: the first eval, else rl stage).
    #[arg(long, requires = "recipe")]
    pub stage: Option<String>,
    /// Compute dtype: f32 (default), bf16 or f16.
    #[arg(long)]
    pub dtype: Option<String>,
    /// cpu, cuda or cuda:N (default: cuda when available).
    #[arg(long)]
    pub device: Option<String>,
}

/// The question of the command line.
fn question_of(args: &InferArgs) -> Question {
    Question {
        video: args.video.clone(),
        question: args.question.clone(),
        options: args.options.clone(),
        question_type: args.question_type.clone(),
        answer: args.answer.clone(),
    }
}

fn clip_text(s: &str, max: usize) -> String {
    let one = s.trim();
    match one.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &one[..i]),
        None => one.to_string(),
    }
}

/// The live line block of one step.
fn describe_step(ev: &StepEvent<'_>, max_steps: u32, feedback: &str) -> String {
    let o = ev.outcome;
    let mut out = format!(
        "── step {}/{max_steps}: {} [{}] reward {}{}\n",
        o.step,
        o.action_name(),
        o.error_name(),
        o.reward,
        if o.stored { "" } else { " (retried, not stored)" }
    );
    let f = parse_response(ev.response);
    let mut field = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.push_str(&format!("  {k}: {}\n", clip_text(&v, 600).replace('\n', "\n    ")));
        }
    };
    let parsed = f.action.is_some() || f.observation.is_some() || f.think.is_some();
    field("observation", f.observation);
    field("think", f.think);
    field("confidence", f.confidence.map(|c| c.to_string()));
    field("action", f.action.map(|a| a.to_string()));
    if !parsed {
        field("response", Some(ev.response.to_string()));
    }
    field("error", o.error_message.clone());
    field("feedback", Some(feedback.to_string()).filter(|s| !s.is_empty()));
    out
}

pub fn run(args: &InferArgs) -> anyhow::Result<ExitCode> {
    if !args.model.join("config.json").is_file() {
        bail!("{}: not a checkpoint directory (no config.json)", args.model.display());
    }
    // `--recipe`'s stage, else the checkpoint's stage of its run's recipe, else a default eval stage.
    let mut settings =
        checkpoint_stage(args.recipe.as_deref(), args.stage.as_deref(), &args.model, args.seed, "omnirl infer")?;
    if let Some(n) = args.max_steps {
        settings.episodes.settings.limits.max_steps = n;
    }
    settings.episodes.max_response_length = args.max_response_tokens;
    let spec = Arc::new(spec_of(&question_of(args))?);
    let (encoder, vocab_limit) = encoder_for(&args.model, settings.tokenizer.as_deref())?;
    let opts = load_options(Some(args.dtype.as_deref().unwrap_or("f32")), args.device.as_deref())?;
    let mut thinker = Thinker::load(&args.model, opts).with_context(|| format!("loading {}", args.model.display()))?;
    let mut policy = ThinkerPolicy::new(&mut thinker, vocab_limit, settings.episodes.prefix_cache_bytes);
    let sampling = Sampling {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: Some(if args.greedy { 1 } else { args.top_k }),
        max_new_tokens: args.max_response_tokens,
        entropies: false,
        policy_scores: false,
        seed: args.seed,
    };
    let m = &spec.meta;
    let stdout = std::io::stdout();
    {
        let mut out = stdout.lock();
        writeln!(
            out,
            "video: {} ({:.2} s, {:.2} fps, audio {})",
            spec.video.display(),
            m.duration,
            m.fps.unwrap_or(0.0),
            if m.has_audio { "yes" } else { "no" }
        )?;
        writeln!(out, "question ({}): {}", spec.question_type, spec.question)?;
        for o in &spec.options {
            writeln!(out, "  {o}")?;
        }
        out.flush()?;
    }
    let mut print_error: Option<std::io::Error> = None;
    let max_steps = single_max_steps(&spec, &settings.episodes);
    let scored = args.answer.is_some();
    let run = EpisodeRun { settings: &settings, encoder, sampling, scored, model: args.model.display().to_string() };
    let result = {
        let mut observe = |ev: &StepEvent<'_>, rec: &Map<String, Value>| {
            let feedback = rec.get("feedback").and_then(Value::as_str).unwrap_or("");
            let mut out = stdout.lock();
            let r = out.write_all(describe_step(ev, max_steps, feedback).as_bytes()).and_then(|()| out.flush());
            if let Err(e) = r {
                print_error.get_or_insert(e);
            }
        };
        run_episode(&mut policy, spec.clone(), &run, &mut observe)?
    };
    if let Some(e) = print_error {
        return Err(anyhow!("writing the trace: {e}"));
    }
    let text = serde_json::to_string_pretty(&result.json)?;
    write_out(&args.out, text.as_bytes())?;
    let mut out = stdout.lock();
    let prediction = result.json.get("prediction").cloned().unwrap_or(Value::Null);
    match (&result.dropped, scored) {
        (Some(why), _) => writeln!(out, "episode dropped: {why}")?,
        (None, true) => writeln!(out, "answer: {prediction}  reward {}  correct {}", result.reward, result.won)?,
        (None, false) => writeln!(out, "answer: {prediction}  (no --answer: not scored)")?,
    }
    writeln!(out, "trajectory: {}", args.out.display())?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to `path` atomically, creating its directory.
fn write_out(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_atomic(path, bytes)?;
    Ok(())
}
