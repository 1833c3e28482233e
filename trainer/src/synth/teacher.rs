//! An OpenAI-compatible chat-completions endpoint as a rollout [`Policy`] (the teacher of
//! `omnirl synth`), and the small HTTP client it and the audit share.
//!
//! * [`ChatClient`]: posts request bodies to `{url}/chat/completions` (a URL that already ends
//!   in `/chat/completions` is used as it is) over the rewards judge's stack (reqwest with
//!   rustls on a private tokio runtime), up to `concurrency` at once, each with a timeout and
//!   three attempts with back-off on transport errors, HTTP 408/429/5xx and replies without
//!   `choices[0].message.content`. `Authorization: Bearer <key>` only when a key is given; the
//!   key is replaced by `***` in every error message. Loopback URLs bypass proxies.
//! * [`TeacherPolicy`]: renders each context's episode history as chat messages: text-only
//!   messages as a string, media messages as parts: text parts, frames as `image_url` parts with
//!   `data:image/png;base64,...` URIs, audio as an `input_audio` WAV part, a clip as up to
//!   [`CLIP_FRAMES`] of its frames plus its audio. Media is decoded again from the source video
//!   (the part's file-style name carries its time range) at the stage's pixel budgets. Sends
//!   `temperature`, `top_p`, `max_tokens`, a per-episode `seed`, and `top_k` only when set
//!   (OpenAI itself rejects it). The reply text is encoded with the episode's tokenizer, so
//!   trajectories stay token-exact; log-probs are 0 (unknown).
//!
//! Left out: streaming, tool calls, video parts (no portable encoding exists), and caching
//! decoded media between turns (a teacher is network-bound).

use super::SynthError;
use rewards::judge::{describe_transport, is_loopback, reply_content};
use rollout::data::{PartKind, Role};
use rollout::episode::{EpisodeSpec, MediaPart, Message, Part, PromptEncoder};
use rollout::media::{FrameRequest, ImageSizing, MediaSource, RgbImage, VideoSampling};
use rollout::policy::{Context, Generation, Policy, PolicyError, Sampling, text_generation};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Most frames of a clip sent to the teacher.
pub const CLIP_FRAMES: usize = 8;

/// A blocking client for an OpenAI-compatible chat-completions endpoint.
pub struct ChatClient {
    endpoint: String,
    model: String,
    key: Option<String>,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
    concurrency: usize,
}

impl ChatClient {
    pub fn new(
        url: &str,
        model: &str,
        key: Option<String>,
        timeout: Duration,
        concurrency: usize,
    ) -> Result<ChatClient, SynthError> {
        let base = url.trim().trim_end_matches('/');
        let endpoint =
            if base.ends_with("/chat/completions") { base.to_string() } else { format!("{base}/chat/completions") };
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if is_loopback(&endpoint) {
            builder = builder.no_proxy();
        }
        let http = |message: String| SynthError::Http { url: endpoint.clone(), message };
        let client = builder.build().map_err(|e| http(format!("cannot build the HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| http(format!("cannot start the HTTP runtime: {e}")))?;
        Ok(ChatClient { model: model.to_string(), key, client, rt, concurrency: concurrency.max(1), endpoint })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Posts every body (a JSON request) and returns the replies' texts in order.
    pub fn complete_all(&self, bodies: Vec<String>) -> Vec<Result<String, SynthError>> {
        let n = bodies.len();
        let limit = Arc::new(tokio::sync::Semaphore::new(self.concurrency));
        let replies = self.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (i, body) in bodies.into_iter().enumerate() {
                let (client, url, key, limit) =
                    (self.client.clone(), self.endpoint.clone(), self.key.clone(), limit.clone());
                set.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    (i, post(&client, &url, key.as_deref(), body).await)
                });
            }
            let mut out: Vec<Option<Result<String, String>>> = vec![None; n];
            while let Some(joined) = set.join_next().await {
                if let Ok((i, r)) = joined
                    && let Some(slot) = out.get_mut(i)
                {
                    *slot = Some(r);
                }
            }
            out
        });
        replies
            .into_iter()
            .map(|r| {
                let r = r.unwrap_or_else(|| Err("the request task did not finish".to_string()));
                r.map_err(|m| SynthError::Http { url: self.endpoint.clone(), message: self.redact(&m) })
            })
            .collect()
    }

    /// One request with `messages` (OpenAI chat messages) at temperature 0.
    pub fn ask(&self, messages: Value) -> Result<String, SynthError> {
        let body = json!({"model": self.model, "messages": messages, "temperature": 0.0}).to_string();
        self.complete_all(vec![body]).pop().unwrap_or_else(|| Err(SynthError::Config("no reply".into())))
    }

    fn redact(&self, msg: &str) -> String {
        match &self.key {
            Some(k) if !k.is_empty() => msg.replace(k.as_str(), "***"),
            _ => msg.to_string(),
        }
    }
}

async fn post(client: &reqwest::Client, url: &str, key: Option<&str>, body: String) -> Result<String, String> {
    const ATTEMPTS: u32 = 3;
    let mut backoff = Duration::from_millis(500);
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let mut req = client.post(url).header("Content-Type", "application/json").body(body.clone());
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        match req.send().await {
            Err(e) => last = describe_transport(&e),
            Ok(resp) => {
                let status = resp.status();
                match resp.text().await {
                    Err(e) => last = describe_transport(&e),
                    Ok(text) if status.is_success() => match reply_content(&text) {
                        Some(c) => return Ok(c),
                        None => last = format!("reply has no choices[0].message.content: {}", excerpt(&text)),
                    },
                    Ok(text) => {
                        let msg = format!("HTTP {}: {}", status.as_u16(), excerpt(&text));
                        if !(status.is_server_error() || matches!(status.as_u16(), 408 | 429)) {
                            return Err(msg);
                        }
                        last = msg;
                    }
                }
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    Err(format!("failed after {ATTEMPTS} attempts: {last}"))
}

fn excerpt(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    if t.len() < text.len() { format!("{t}...") } else { t }
}

pub use rollout::media::output::{base64, png_bytes, wav_bytes};

/// What a media part's file-style name says it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NamedMedia {
    Frame(f64),
    Audio(f64, f64),
    Clip(f64, f64),
}

/// `STEP_3_frame_10.500.jpg`, `STEP_2_audio_8.000_16.000.wav`, `STEP_4_clip_0.000_4.000.mp4`.
pub fn parse_name(kind: PartKind, name: &str) -> Option<NamedMedia> {
    let stem = name.rsplit_once('.')?.0;
    let mut fields = stem.rsplit('_');
    let last: f64 = fields.next()?.parse().ok()?;
    match kind {
        PartKind::Image => Some(NamedMedia::Frame(last)),
        PartKind::Audio => Some(NamedMedia::Audio(fields.next()?.parse().ok()?, last)),
        PartKind::Video => Some(NamedMedia::Clip(fields.next()?.parse().ok()?, last)),
        PartKind::Text => None,
    }
}

fn image_part(img: &RgbImage) -> Result<Value, SynthError> {
    let png = png_bytes(img, png::Compression::Balanced)
        .map_err(|e| SynthError::Media { path: "PNG".into(), message: e.to_string() })?;
    let url = format!("data:image/png;base64,{}", base64(&png));
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn audio_part(samples: &[f32], rate: u32) -> Result<Value, SynthError> {
    let wav = wav_bytes(samples, rate).map_err(|e| SynthError::Media { path: "WAV".into(), message: e.to_string() })?;
    Ok(json!({"type": "input_audio", "input_audio": {"data": base64(&wav), "format": "wav"}}))
}

/// Decodes the media parts of one message as OpenAI content parts.
fn media_parts(
    spec: &EpisodeSpec,
    parts: &[&MediaPart],
    sizing: &ImageSizing,
    clip: &VideoSampling,
) -> Result<Vec<Vec<Value>>, SynthError> {
    let path = spec.video.display().to_string();
    let fail = |e: rollout::media::MediaError| SynthError::Media { path: path.clone(), message: e.to_string() };
    let mut src = MediaSource::open(&spec.video).map_err(fail)?;
    src.set_duration(spec.meta.duration);
    let mut out = Vec::with_capacity(parts.len());
    for mp in parts {
        let named = parse_name(mp.kind, &mp.name).ok_or_else(|| SynthError::Media {
            path: path.clone(),
            message: format!("media part `{}` names no time range", mp.name),
        })?;
        let rendered = match named {
            NamedMedia::Frame(t) => {
                let frames = src.frames(&FrameRequest::new(t, t, 1), Some(sizing)).map_err(fail)?;
                frames.frames.iter().map(|f| image_part(&f.image)).collect::<Result<Vec<_>, _>>()?
            }
            NamedMedia::Audio(s, e) => {
                let a = src.audio(s, e).map_err(fail)?;
                vec![audio_part(&a.samples, a.sample_rate)?]
            }
            NamedMedia::Clip(s, e) => {
                let c = src.clip(s, e, clip).map_err(fail)?;
                let n = c.frame_count();
                let picks: Vec<usize> = if n <= CLIP_FRAMES {
                    (0..n).collect()
                } else {
                    (0..CLIP_FRAMES).map(|i| i * (n - 1) / (CLIP_FRAMES - 1)).collect()
                };
                let mut v = vec![json!({"type": "text", "text": format!("(the clip as {} frames)", picks.len())})];
                for i in picks {
                    let image = c.video.frame(i).ok_or_else(|| SynthError::Media {
                        path: path.clone(),
                        message: format!("clip frame {i} is missing"),
                    })?;
                    v.push(image_part(&image)?);
                }
                if let Some(a) = &c.audio {
                    v.push(audio_part(&a.samples, a.sample_rate)?);
                }
                v
            }
        };
        out.push(rendered);
    }
    Ok(out)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// The episode history as OpenAI chat messages.
pub fn render_messages(
    spec: &EpisodeSpec,
    history: &[Message],
    sizing: &ImageSizing,
    clip: &VideoSampling,
) -> Result<Vec<Value>, SynthError> {
    let mut out = Vec::with_capacity(history.len());
    for m in history {
        let role = role_name(m.role);
        if !m.has_media() {
            out.push(json!({"role": role, "content": m.joined_text()}));
            continue;
        }
        let media: Vec<&MediaPart> = m.media().collect();
        let mut decoded = media_parts(spec, &media, sizing, clip)?.into_iter();
        let mut content = Vec::new();
        for p in &m.parts {
            match p {
                Part::Text(t) => content.push(json!({"type": "text", "text": t})),
                Part::Media(_) => content.extend(decoded.next().unwrap_or_default()),
            }
        }
        out.push(json!({"role": role, "content": content}));
    }
    Ok(out)
}

/// The teacher: an OpenAI-compatible endpoint as a policy.
pub struct TeacherPolicy {
    pub client: ChatClient,
    pub encoder: Arc<dyn PromptEncoder>,
    pub sizing: ImageSizing,
    pub clip: VideoSampling,
    /// Requests sent so far.
    pub requests: usize,
}

impl TeacherPolicy {
    fn body(&self, c: &Context<'_>, sampling: &Sampling) -> Result<String, SynthError> {
        let info = &c.info;
        let messages = render_messages(info.spec, info.history, &self.sizing, &self.clip)?;
        let seed = sampling
            .seed
            .wrapping_add((info.episode as u64).wrapping_mul(1_000_003))
            .wrapping_add(u64::from(info.step))
            % (1 << 31);
        let mut body = json!({
            "model": self.client.model(),
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "seed": seed,
        });
        if let (Some(k), Some(obj)) = (sampling.top_k, body.as_object_mut()) {
            obj.insert("top_k".into(), k.into());
        }
        Ok(body.to_string())
    }
}

impl Policy for TeacherPolicy {
    fn generate(&mut self, batch: &[Context<'_>], sampling: &Sampling) -> Result<Vec<Generation>, PolicyError> {
        let fail = |e: SynthError| PolicyError::Failed(e.to_string());
        let bodies = batch.iter().map(|c| self.body(c, sampling)).collect::<Result<Vec<_>, _>>().map_err(fail)?;
        self.requests += bodies.len();
        self.client
            .complete_all(bodies)
            .into_iter()
            .map(|r| text_generation(Some(&self.encoder), r.map_err(fail)?.trim().to_string(), sampling))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_their_ranges() {
        assert_eq!(parse_name(PartKind::Image, "STEP_3_frame_10.500.jpg"), Some(NamedMedia::Frame(10.5)));
        assert_eq!(parse_name(PartKind::Audio, "STEP_2_audio_8.000_16.000.wav"), Some(NamedMedia::Audio(8.0, 16.0)));
        assert_eq!(parse_name(PartKind::Video, "STEP_4_clip_0.000_4.000.mp4"), Some(NamedMedia::Clip(0.0, 4.0)));
        assert_eq!(parse_name(PartKind::Image, "nothing"), None);
    }

    #[test]
    fn reply_shapes_and_loopback() {
        assert_eq!(reply_content(r#"{"choices":[{"message":{"content":"hi"}}]}"#).as_deref(), Some("hi"));
        assert_eq!(reply_content(r#"{"choices":[]}"#), None);
        assert!(is_loopback("http://127.0.0.1:8080/v1/chat/completions"));
        assert!(!is_loopback("https://api.openai.com/v1"));
    }

    #[test]
    fn wav_header_is_44_bytes() {
        let w = wav_bytes(&[0.0, 0.5], 16_000).unwrap();
        assert_eq!(w.len(), 48);
        assert_eq!(&w[..4], b"RIFF");
    }
}
