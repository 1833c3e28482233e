//! `omnirl generate --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [--image F] [--video F]
//! [--audio F] --max-new-tokens N [--greedy] [--ignore-eos] [--json]`: loads the thinker and
//! generates for one prompt.
//!
//! `--prompt` renders a one-turn chat with the checkpoint's `tokenizer.json` (default system turn,
//! the user turn with the media parts first, then the text, then `<|im_start|>assistant\n`), or
//! with `--raw` just the media parts and the text;
//! `--prompt-ids` is used verbatim (placeholders already expanded, media given by the flags in
//! order of appearance). Media go through `rollout::media` like the environment's: an image file
//! as one frame (smart_resize), a video as a 2-fps clip of the whole file (with its audio track
//! interleaved when it has one), an audio file (a 16 kHz WAV, or a container's audio track) as
//! log-mel.
//!
//! Output: text mode prints the decoded response (or the ids without a tokenizer); `--json` prints
//! exactly `{"ids": [...], "logprobs": [...]}`: the generated tokens only (including a final stop
//! token) and each one's log-prob as defined in `model::generate` (sampled: under the distribution
//! actually sampled from, after temperature / top-k / top-p; `--greedy`: `log_softmax` of the raw
//! logits). Sampling defaults to temperature 1, no top-k / top-p. No vocabulary masking (the raw
//! head, as transformers and vLLM). Weights load in the stored dtype unless `--dtype` says
//! otherwise, on `--device` (default: CUDA when available, else CPU).

use crate::model::generate::{Prompt, SamplingParams, generate};
use crate::model::policy::push_media;
use crate::model::thinker::{MediaInput, Thinker};
use crate::model::weights::LoadOptions;
use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use rollout::chat::{ChatTokenizer, Message, Part, Role};
use rollout::media::files::read_wav;
use rollout::media::inputs::{audio_inputs, clip_inputs, frames_inputs};
use rollout::media::mel::log_mel;
use rollout::media::{FrameRequest, ImageSizing, MediaSource, ModelInputs, VideoSampling};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tch::Kind;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Checkpoint directory (config.json, safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// User text, rendered with the chat template.
    #[arg(long, conflicts_with = "prompt_ids", required_unless_present = "prompt_ids")]
    pub prompt: Option<String>,
    /// With --prompt: encode the media parts and the text as they are, without the chat template.
    #[arg(long, requires = "prompt")]
    pub raw: bool,
    /// Prompt token ids, comma separated, used verbatim.
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    /// Image files (repeatable).
    #[arg(long)]
    pub image: Vec<PathBuf>,
    /// Video files (repeatable); their audio track is used when they have one.
    #[arg(long)]
    pub video: Vec<PathBuf>,
    /// Audio files (repeatable).
    #[arg(long)]
    pub audio: Vec<PathBuf>,
    #[arg(long)]
    pub max_new_tokens: usize,
    /// Argmax decoding.
    #[arg(long)]
    pub greedy: bool,
    /// Do not stop on the end tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute dtype: f32, bf16 or f16 (default: as stored).
    #[arg(long)]
    pub dtype: Option<String>,
    /// cpu, cuda or cuda:N (default: cuda when available).
    #[arg(long)]
    pub device: Option<String>,
    /// Print `{"ids": [...], "logprobs": [...]}`.
    #[arg(long)]
    pub json: bool,
}

/// `--dtype` and `--device` → load options.
pub fn load_options(dtype: Option<&str>, device: Option<&str>) -> anyhow::Result<LoadOptions> {
    let dtype = match dtype {
        None => None,
        Some("f32" | "fp32" | "float32") => Some(Kind::Float),
        Some("bf16" | "bfloat16") => Some(Kind::BFloat16),
        Some("f16" | "fp16" | "float16") => Some(Kind::Half),
        Some(other) => bail!("--dtype {other}: expected f32, bf16 or f16"),
    };
    let device = crate::model::parse_device(device.unwrap_or("auto"))?;
    Ok(LoadOptions { dtype, device })
}

/// The chat tokenizer of a checkpoint, if it has `tokenizer.json`.
pub fn chat_tokenizer(dir: &Path, th: &Thinker) -> anyhow::Result<Option<ChatTokenizer>> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        return Ok(None);
    }
    let cfg = crate::model::chat_config(&th.cfg);
    Ok(Some(ChatTokenizer::from_file(&path, cfg)?))
}

/// Decodes the media files into (layout, inputs) pairs, images then videos then audios.
fn load_media(args: &GenerateArgs) -> anyhow::Result<Vec<(Part, ModelInputs)>> {
    let mut out = Vec::new();
    let open = |p: &Path| MediaSource::open(p).map_err(|e| anyhow!("{}: {e}", p.display()));
    for p in &args.image {
        let mut src = open(p)?;
        let d = src.duration().max(0.0);
        let frames = src.frames(&FrameRequest::new(0.0, d, 1), None).map_err(|e| anyhow!("{}: {e}", p.display()))?;
        let inputs = frames_inputs(&frames, &ImageSizing::default())?;
        let grid = inputs.images.as_ref().and_then(|i| i.grid_thw.first().copied()).unwrap_or([1, 0, 0]);
        out.push((Part::Image { grid_thw: grid }, inputs));
    }
    for p in &args.video {
        let mut src = open(p)?;
        let d = src.duration();
        let clip = src.clip(0.0, d, &VideoSampling::default()).map_err(|e| anyhow!("{}: {e}", p.display()))?;
        let inputs = clip_inputs(&clip);
        let grid = inputs.video.as_ref().and_then(|v| v.grid_thw.first().copied()).unwrap_or([0, 0, 0]);
        let spg = inputs.video_second_per_grid.unwrap_or(1.0);
        let part = match &inputs.audio {
            Some(a) => Part::VideoWithAudio { grid_thw: grid, second_per_grid: spg, audio_tokens: a.tokens() },
            None => Part::Video { grid_thw: grid },
        };
        out.push((part, inputs));
    }
    for p in &args.audio {
        // A container with a video stream goes through the media source; a bare audio file must
        // be a 16 kHz WAV (what the environment's `get_audio` writes).
        let inputs = match MediaSource::open(p) {
            Ok(mut src) => {
                let d = src.duration();
                audio_inputs(&src.audio(0.0, d).map_err(|e| anyhow!("{}: {e}", p.display()))?)
            }
            Err(_) => {
                let wav = read_wav(p).map_err(|e| anyhow!("{e} (or give a video with audio)"))?;
                ModelInputs { audio: Some(log_mel(&wav.samples)), ..ModelInputs::default() }
            }
        };
        let tokens = inputs.audio_tokens();
        out.push((Part::Audio { tokens }, inputs));
    }
    Ok(out)
}

pub fn run(args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let opts = load_options(args.dtype.as_deref(), args.device.as_deref())?;
    let th = Thinker::load(&args.model, opts).with_context(|| format!("loading {}", args.model.display()))?;
    let tok = chat_tokenizer(&args.model, &th)?;
    let media_files = load_media(args)?;
    let mut media = MediaInput::default();
    for (part, inputs) in &media_files {
        push_media(&mut media, part, inputs, th.vision.patch_dim as usize)?;
    }
    let ids = match (&args.prompt, &args.prompt_ids) {
        (_, Some(ids)) => ids.clone(),
        (Some(text), None) => {
            let tok = tok.as_ref().ok_or_else(|| anyhow!("--prompt needs {}/tokenizer.json", args.model.display()))?;
            let mut parts: Vec<Part> = media_files.iter().map(|(p, _)| p.clone()).collect();
            parts.push(Part::Text(text.clone()));
            if args.raw { tok.render_parts(&parts)? } else { tok.render(&[Message::new(Role::User, parts)], true)? }
        }
        (None, None) => bail!("give --prompt or --prompt-ids"),
    };
    if ids.is_empty() {
        bail!("the prompt is empty");
    }
    let p = SamplingParams {
        max_new_tokens: args.max_new_tokens,
        greedy: args.greedy,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        ignore_eos: args.ignore_eos,
        ..SamplingParams::default()
    };
    let g = generate(&th, &[Prompt { ids: &ids, media: &media, seed: None }], &p)?;
    let g = g.into_iter().next().ok_or_else(|| anyhow!("no generation"))?;
    if args.json {
        println!("{}", serde_json::json!({"ids": g.ids, "logprobs": g.logprobs}));
    } else {
        match &tok {
            Some(t) => println!("{}", t.decode(&g.ids, true)?),
            None => println!("{}", g.ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")),
        }
    }
    Ok(ExitCode::SUCCESS)
}
