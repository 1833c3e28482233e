//! FF scoring with an LLM judge over an OpenAI-compatible chat-completions endpoint
//! (DashScope's compatible mode by default), as the reference's `compute_score_free_form`
//! (docs/reference.md#reward-judge). This is the crate's only async, networked part (feature
//! `judge`).
//!
//! * Settings: [`JudgeConfig`], from code or from the environment / a `.env` file
//!   ([`JudgeConfig::from_env`]).
//! * Without an API key every FF answer scores 0.0 and one warning is emitted per [`Judge`].
//! * Requests run concurrently up to a limit, each with a timeout, retried with exponential
//!   back-off on transport errors, timeouts, HTTP 408/429/5xx and unreadable replies.
//! * The key is never logged: [`ApiKey`]'s `Debug` is redacted, and every error message built
//!   from a server reply or transport error has the key replaced by `***`.
//!
//! Left out, on purpose: the reference's 100 retries with a fixed 1 s sleep and its final
//! exception (we do a bounded number of back-off retries and return a [`JudgeError`] for that
//! item); retries on 4xx other than 408/429 (an invalid key does not heal); streaming replies;
//! and the reasoning-quality judge of docs/reference.md#reward-shaping (off in every shipped
//! script).

mod dotenv;
mod prompt;

pub use prompt::{build_prompt, parse_judgement};

use crate::Score;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Reference default: DashScope's OpenAI-compatible mode.
pub const DEFAULT_BASE_URL: &str = "https://dashscope.aliyuncs.com/compatible-mode/v1";
/// Reference default judge model.
pub const DEFAULT_MODEL: &str = "gpt-5-2025-08-07";
/// Predictions of this many characters or more score 0 (the reference's anti-hacking rule).
pub const MAX_ANSWER_CHARS: usize = 1000;

/// An API key. `Debug` prints `ApiKey(***)`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// `None` for an empty or all-blank key (the reference treats `""` as no key).
    pub fn new(key: impl Into<String>) -> Option<ApiKey> {
        let key = key.into();
        (!key.trim().is_empty()).then(|| ApiKey(key.trim().to_owned()))
    }

    /// The secret itself, for the request header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Judge settings. `Debug` is safe to log (the key is redacted).
#[derive(Debug, Clone)]
pub struct JudgeConfig {
    /// Base URL; requests go to `{base_url}/chat/completions`. A URL that already ends in
    /// `/chat/completions` (the reference's `DASHSCOPE_BASE_URL` form) is used as it is.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<ApiKey>,
    /// Send `Authorization: Bearer <key>` instead of the reference's bare `Authorization: <key>`.
    pub bearer: bool,
    /// Per-request timeout (reference: 15 s).
    pub timeout: Duration,
    /// Attempts per item, first try included (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled after each failed attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Requests in flight at once (at least 1).
    pub concurrency: usize,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            model: DEFAULT_MODEL.to_owned(),
            api_key: None,
            bearer: false,
            timeout: Duration::from_secs(15),
            max_attempts: 6,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            concurrency: 8,
        }
    }
}

impl JudgeConfig {
    /// Settings from the process environment, falling back to a `.env` file found from the
    /// current directory upwards (the environment wins, as with python-dotenv):
    /// key `DASHSCOPE_API_KEY`, else `OSS_ACCESS_KEY`; `DASHSCOPE_BASE_URL`;
    /// `OMNIRL_JUDGE_MODEL`, `OMNIRL_JUDGE_TIMEOUT_S`, `OMNIRL_JUDGE_ATTEMPTS`,
    /// `OMNIRL_JUDGE_CONCURRENCY`, `OMNIRL_JUDGE_BEARER` (1/true). Unparsable numbers keep
    /// the defaults.
    pub fn from_env() -> JudgeConfig {
        let file = dotenv::load_from_cwd();
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()).or_else(|| file.get(name).cloned()))
    }

    /// The value of variable `name` in the process environment, else in a `.env` file found from
    /// the current directory upwards (the environment wins, as with python-dotenv).
    pub fn lookup(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty()).or_else(|| dotenv::load_from_cwd().get(name).cloned())
    }

    /// Whether `OMNIRL_JUDGE_BEARER` asks for `Authorization: Bearer <key>` (1/true/yes).
    pub fn bearer_from(value: Option<&str>) -> bool {
        value.is_some_and(|b| matches!(b.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
    }

    /// [`JudgeConfig::from_env`] over explicit variables (for tests and embedding).
    pub fn from_vars(vars: &HashMap<String, String>) -> JudgeConfig {
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> JudgeConfig {
        let mut c = JudgeConfig {
            api_key: get("DASHSCOPE_API_KEY")
                .and_then(ApiKey::new)
                .or_else(|| get("OSS_ACCESS_KEY").and_then(ApiKey::new)),
            ..JudgeConfig::default()
        };
        if let Some(url) = get("DASHSCOPE_BASE_URL").filter(|u| !u.trim().is_empty()) {
            c.base_url = url.trim().to_owned();
        }
        if let Some(model) = get("OMNIRL_JUDGE_MODEL").filter(|m| !m.trim().is_empty()) {
            c.model = model.trim().to_owned();
        }
        if let Some(t) = get("OMNIRL_JUDGE_TIMEOUT_S")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|t| t.is_finite() && *t > 0.0 && *t < 1e9)
        {
            c.timeout = Duration::from_secs_f64(t);
        }
        if let Some(n) = get("OMNIRL_JUDGE_ATTEMPTS").and_then(|v| v.trim().parse::<u32>().ok()) {
            c.max_attempts = n.max(1);
        }
        if let Some(n) = get("OMNIRL_JUDGE_CONCURRENCY").and_then(|v| v.trim().parse::<usize>().ok()) {
            c.concurrency = n.max(1);
        }
        if let Some(b) = get("OMNIRL_JUDGE_BEARER") {
            c.bearer = Self::bearer_from(Some(&b));
        }
        c
    }

    /// The chat-completions URL requests are sent to.
    pub fn endpoint(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        if base.ends_with("/chat/completions") { base.to_owned() } else { format!("{base}/chat/completions") }
    }
}

/// Why one FF item could not be judged. Messages never contain the API key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JudgeError {
    /// The HTTP client could not be built (bad TLS setup, ...).
    #[error("judge client setup failed: {0}")]
    Setup(String),
    /// Every attempt failed; the last failure is kept.
    #[error("judge failed after {attempts} attempt(s): {last}")]
    Exhausted { attempts: u32, last: String },
    /// A reply that retrying cannot fix (HTTP 4xx other than 408/429).
    #[error("judge request rejected: {0}")]
    Rejected(String),
}

impl JudgeError {
    /// Error code used by `omnirl score` for lines the judge could not score.
    pub fn code(&self) -> &'static str {
        "JUDGE_FAILED"
    }
}

/// One FF item to judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeItem {
    pub question: String,
    pub ground_truth: String,
    /// The answer action's content (stripped before judging, as the reference does).
    pub prediction: String,
}

type WarnSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The judge client. Cheap to share behind an `Arc`.
pub struct Judge {
    config: JudgeConfig,
    endpoint: String,
    client: Option<reqwest::Client>,
    limit: Arc<Semaphore>,
    warned: AtomicUsize,
    requests: AtomicUsize,
    warn: WarnSink,
}

impl fmt::Debug for Judge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Judge").field("config", &self.config).finish_non_exhaustive()
    }
}

enum Attempt {
    Retry(String),
    Fatal(String),
}

impl Judge {
    /// A judge that reports its warnings on stderr (`warning: ...`).
    pub fn new(config: JudgeConfig) -> Result<Judge, JudgeError> {
        Self::with_warning_sink(config, Arc::new(|msg: &str| eprintln!("warning: {msg}")))
    }

    /// A judge that hands its warnings to `warn` (used by tests and by callers with a logger).
    pub fn with_warning_sink(config: JudgeConfig, warn: WarnSink) -> Result<Judge, JudgeError> {
        let client = match &config.api_key {
            None => None,
            Some(key) => {
                let mut builder = reqwest::Client::builder().timeout(config.timeout);
                if is_loopback(&config.endpoint()) {
                    // A proxy from the environment must not capture a local judge.
                    builder = builder.no_proxy();
                }
                Some(builder.build().map_err(|e| JudgeError::Setup(redact(&e.to_string(), Some(key))))?)
            }
        };
        Ok(Judge {
            endpoint: config.endpoint(),
            limit: Arc::new(Semaphore::new(config.concurrency.max(1))),
            config,
            client,
            warned: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            warn,
        })
    }

    /// Whether a key is configured (otherwise every item scores 0.0).
    pub fn has_key(&self) -> bool {
        self.client.is_some()
    }

    pub fn config(&self) -> &JudgeConfig {
        &self.config
    }

    /// HTTP requests sent so far (attempts, retries included).
    pub fn requests_sent(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// Judges one item: 1.0 when the judge says the answers agree, else 0.0. Without a key,
    /// 0.0 (warning once); a stripped prediction of 1000 characters or more scores 0.0
    /// without asking (the reference asks, then zeroes the score).
    pub async fn judge(&self, item: &JudgeItem) -> Result<Score, JudgeError> {
        let prediction = crate::mcq::py_strip(&item.prediction);
        let (Some(client), Some(key)) = (&self.client, &self.config.api_key) else {
            if self.warned.fetch_add(1, Ordering::Relaxed) == 0 {
                (self.warn)(
                    "no judge API key (DASHSCOPE_API_KEY or OSS_ACCESS_KEY, environment or .env): FF answers score 0.0",
                );
            }
            return Ok(Score::from_reward(0.0));
        };
        if prediction.chars().count() >= MAX_ANSWER_CHARS {
            return Ok(Score::from_reward(0.0));
        }
        let body = serde_json::json!({
            "model": self.config.model,
            "stream": false,
            "messages": [{
                "role": "user",
                "content": [{"type": "text", "text": build_prompt(&item.question, &item.ground_truth, prediction)}],
            }],
        })
        .to_string();
        let auth = if self.config.bearer { format!("Bearer {}", key.expose()) } else { key.expose().to_owned() };
        let attempts = self.config.max_attempts.max(1);
        let mut backoff = self.config.initial_backoff;
        let mut last = String::new();
        for attempt in 1..=attempts {
            let outcome = {
                let _permit = self.limit.acquire().await.map_err(|e| JudgeError::Setup(e.to_string()))?;
                self.requests.fetch_add(1, Ordering::Relaxed);
                self.attempt(client, &auth, &body).await
            };
            match outcome {
                Ok(reply) => return Ok(Score::from_reward(parse_judgement(&reply))),
                Err(Attempt::Fatal(msg)) => {
                    return Err(JudgeError::Rejected(redact(&msg, Some(key))));
                }
                Err(Attempt::Retry(msg)) => last = redact(&msg, Some(key)),
            }
            if attempt < attempts {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.config.max_backoff);
            }
        }
        Err(JudgeError::Exhausted { attempts, last })
    }

    async fn attempt(&self, client: &reqwest::Client, auth: &str, body: &str) -> Result<String, Attempt> {
        let response = client
            .post(&self.endpoint)
            .header("Content-Type", "application/json")
            .header("Authorization", auth)
            .header("X-DashScope-DataInspection", r#"{"input":"disable","output":"disable"}"#)
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| Attempt::Retry(describe_transport(&e)))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| Attempt::Retry(describe_transport(&e)))?;
        if !status.is_success() {
            let msg = format!("HTTP {}: {}", status.as_u16(), crate::error::excerpt(&text, 200));
            let transient = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
            return Err(if transient { Attempt::Retry(msg) } else { Attempt::Fatal(msg) });
        }
        reply_content(&text).ok_or_else(|| {
            Attempt::Retry(format!("reply has no choices[0].message.content: {}", crate::error::excerpt(&text, 200)))
        })
    }

    /// Judges many items with at most `concurrency` requests in flight; results come back in
    /// the order of `items`.
    pub async fn judge_all(self: &Arc<Self>, items: Vec<JudgeItem>) -> Vec<Result<Score, JudgeError>> {
        let n = items.len();
        let mut set = JoinSet::new();
        for (i, item) in items.into_iter().enumerate() {
            let judge = Arc::clone(self);
            set.spawn(async move { (i, judge.judge(&item).await) });
        }
        let mut out: Vec<Option<Result<Score, JudgeError>>> = vec![None; n];
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, r)) => {
                    if let Some(slot) = out.get_mut(i) {
                        *slot = Some(r);
                    }
                }
                Err(e) => (self.warn)(&format!("judge task failed: {e}")),
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(JudgeError::Setup("judge task did not finish".to_owned()))))
            .collect()
    }

    /// [`Judge::judge_all`] on a private tokio runtime, for synchronous callers.
    pub fn judge_all_blocking(
        self: &Arc<Self>,
        items: Vec<JudgeItem>,
    ) -> Result<Vec<Result<Score, JudgeError>>, JudgeError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| JudgeError::Setup(e.to_string()))?;
        Ok(rt.block_on(self.judge_all(items)))
    }
}

/// `choices[0].message.content` of a chat-completions reply (a string, or a list of text
/// parts, which some compatible servers return). Also used by `omnirl synth`'s teacher.
pub fn reply_content(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let content = v.get("choices")?.get(0)?.get("message")?.get("content")?;
    match content {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(parts) => {
            Some(parts.iter().filter_map(|p| p.get("text").and_then(|t| t.as_str())).collect())
        }
        _ => None,
    }
}

/// What went wrong with a request, with its source chain (never the URL).
pub fn describe_transport(e: &reqwest::Error) -> String {
    // Without the URL: it is ours and adds nothing; the source chain says what happened.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut msg = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// `http(s)://127.0.0.1...`, `localhost` or `[::1]`.
pub fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let name = if host.starts_with('[') {
        host.split(']').next().map_or(host, |h| h.trim_start_matches('['))
    } else {
        host.split(':').next().unwrap_or(host)
    };
    name == "localhost" || name == "::1" || name.starts_with("127.")
}

/// Replaces every occurrence of the key in `msg` with `***`.
fn redact(msg: &str, key: Option<&ApiKey>) -> String {
    match key {
        Some(k) if !k.0.is_empty() => msg.replace(k.expose(), "***"),
        _ => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_vars() {
        let vars: HashMap<String, String> = [
            ("OSS_ACCESS_KEY", "oss-secret"),
            ("DASHSCOPE_BASE_URL", "http://127.0.0.1:9/v1/chat/completions"),
            ("OMNIRL_JUDGE_TIMEOUT_S", "0.5"),
            ("OMNIRL_JUDGE_ATTEMPTS", "0"),
            ("OMNIRL_JUDGE_CONCURRENCY", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let c = JudgeConfig::from_vars(&vars);
        assert_eq!(c.api_key.as_ref().map(ApiKey::expose), Some("oss-secret"));
        assert_eq!(c.endpoint(), "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!(c.max_attempts, 1);
        assert_eq!(c.concurrency, 3);
        assert!(!format!("{c:?}").contains("oss-secret"));

        let mut vars = vars;
        vars.insert("DASHSCOPE_API_KEY".to_owned(), "ds-secret".to_owned());
        assert_eq!(JudgeConfig::from_vars(&vars).api_key.map(|k| k.0), Some("ds-secret".to_owned()));
        vars.insert("DASHSCOPE_API_KEY".to_owned(), String::new()); // empty: falls back
        assert_eq!(JudgeConfig::from_vars(&vars).api_key.map(|k| k.0), Some("oss-secret".to_owned()));
    }

    #[test]
    fn default_endpoint_is_dashscope_compatible_mode() {
        let c = JudgeConfig::default();
        assert_eq!(c.endpoint(), "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions");
        assert_eq!(c.model, "gpt-5-2025-08-07");
        assert!(c.api_key.is_none());
    }

    #[test]
    fn loopback_detection() {
        for url in ["http://127.0.0.1:8080/v1", "http://localhost/v1", "https://[::1]:9/x", "http://u@127.0.0.2"] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [DEFAULT_BASE_URL, "http://10.0.0.1/v1", "http://example.com/127.0.0.1"] {
            assert!(!is_loopback(url), "{url}");
        }
    }

    #[test]
    fn key_is_redacted() {
        let key = ApiKey::new(" sk-123 ").unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert_eq!(redact("bad key sk-123 given", Some(&key)), "bad key *** given");
        assert!(ApiKey::new("  ").is_none());
    }

    #[test]
    fn reply_content_shapes() {
        assert_eq!(
            reply_content(r#"{"choices":[{"message":{"content":"Judgement: 1"}}]}"#).as_deref(),
            Some("Judgement: 1")
        );
        assert_eq!(
            reply_content(r#"{"choices":[{"message":{"content":[{"type":"text","text":"1"}]}}]}"#).as_deref(),
            Some("1")
        );
        assert_eq!(reply_content(r#"{"choices":[]}"#), None);
        assert_eq!(reply_content("not json"), None);
    }
}
