//! SFT training lines (docs/reference.md#data-sft): one line per trajectory turn, the full chat
//! context the teacher saw (`raw_input`) and the assistant JSON it produced (`output`).
//!
//! Required: `question_id`, `traj_id`, `step` (integer >= 1), `raw_input` (non-empty list of
//! `{role, content}` messages ending with a user message) and `output` (non-empty string).
//! `step_reward`, `done`, `extra_info` and `episode_reward` are optional (training only needs
//! the context and the target), but must have their type when present. `done` may be a bool
//! or one of the strings `"True"`, `"False"`, `"true"`, `"false"` (the reference example
//! stores a string). Every media part (`image`, `audio`, `video`) is a path that must exist.
//! Unknown fields, on the line, on a message or on a part, are kept and written back.
//!
//! Left out: checking that turn k+1's context equals turn k's context plus the environment's
//! reply (that is the episode replay test of a later issue), and step gaps inside a
//! trajectory (the reference export drops failed turns, so gaps are normal). A non-JSON
//! `output` is only a warning: it is still a valid (if bad) training target.

use super::DataFormat;
use super::fields::{LineCx, MediaKind, Need, ProblemCode, describe, quote};
use super::paths::MediaBase;
use super::schema::{Record, SchemaError, record_from_map};
use rewards::QuestionType;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// The kind of one content part; the JSON key holding its value has the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartKind {
    Text,
    Image,
    Audio,
    Video,
}

impl PartKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PartKind::Text => "text",
            PartKind::Image => "image",
            PartKind::Audio => "audio",
            PartKind::Video => "video",
        }
    }

    fn parse(s: &str) -> Option<PartKind> {
        match s {
            "text" => Some(PartKind::Text),
            "image" => Some(PartKind::Image),
            "audio" => Some(PartKind::Audio),
            "video" => Some(PartKind::Video),
            _ => None,
        }
    }

    fn media(self) -> Option<MediaKind> {
        match self {
            PartKind::Text => None,
            PartKind::Image => Some(MediaKind::Image),
            PartKind::Audio => Some(MediaKind::Audio),
            PartKind::Video => Some(MediaKind::Video),
        }
    }
}

/// One part of a message: `{"type": "image", "image": "frames/a.jpg"}` is
/// `ContentPart { kind: Image, value: "frames/a.jpg", .. }`.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentPart {
    pub kind: PartKind,
    /// The text, or the media path as written.
    pub value: String,
    /// For media parts, `value` resolved against the media root.
    pub path: Option<PathBuf>,
    /// Other keys of the part (e.g. `max_pixels`), unchanged.
    pub extra: Map<String, Value>,
}

impl Serialize for ContentPart {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2 + self.extra.len()))?;
        map.serialize_entry("type", self.kind.as_str())?;
        map.serialize_entry(self.kind.as_str(), &self.value)?;
        for (k, v) in &self.extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A message's content: a plain string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One chat message of `raw_input`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: MessageContent,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One SFT turn (docs/reference.md#data-sft).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
pub struct SftTurn {
    pub question_id: String,
    pub traj_id: String,
    /// 1-based turn index inside the trajectory.
    pub step: u64,
    pub raw_input: Vec<ChatMessage>,
    /// The target assistant JSON.
    pub output: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_reward: Option<f64>,
    /// Normalised to a bool (the string forms are accepted on input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_info: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub episode_reward: Option<f64>,
    /// `extra_info.question_type` normalised, when present and known.
    #[serde(skip)]
    pub qtype: Option<QuestionType>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SftTurn {
    /// Every media part of `raw_input`, in order.
    pub fn media_parts(&self) -> impl Iterator<Item = &ContentPart> {
        self.raw_input
            .iter()
            .flat_map(|m| match &m.content {
                MessageContent::Parts(parts) => parts.as_slice(),
                MessageContent::Text(_) => &[],
            })
            .filter(|p| p.kind != PartKind::Text)
    }

    fn raw_question_type(&self) -> Option<&str> {
        self.extra_info.as_ref()?.get("question_type")?.as_str()
    }
}

impl TryFrom<Map<String, Value>> for SftTurn {
    type Error = SchemaError;
    fn try_from(obj: Map<String, Value>) -> Result<Self, SchemaError> {
        record_from_map(obj)
    }
}

fn take_step(cx: &mut LineCx, obj: &mut Map<String, Value>) -> Option<u64> {
    let v = cx.take(obj, "step", Need::Required)?;
    match (v.as_u64(), v.as_i64()) {
        (Some(s), _) if s >= 1 => Some(s),
        (Some(_), _) | (None, Some(_)) => {
            cx.error(ProblemCode::BadValue, Some("step"), format!("must be 1 or more (steps are 1-based), found {v}"));
            None
        }
        _ => {
            cx.wrong_type("step", "an integer", &v);
            None
        }
    }
}

fn take_done(cx: &mut LineCx, obj: &mut Map<String, Value>) -> Option<bool> {
    match cx.take(obj, "done", Need::Optional)? {
        Value::Bool(b) => Some(b),
        Value::String(s) if s == "True" || s == "true" => Some(true),
        Value::String(s) if s == "False" || s == "false" => Some(false),
        other => {
            cx.wrong_type("done", "a boolean (or the string \"True\"/\"False\")", &other);
            None
        }
    }
}

fn parse_part(cx: &mut LineCx, v: Value, field: &str) -> Option<ContentPart> {
    let mut obj = match v {
        Value::Object(m) => m,
        other => {
            cx.wrong_type(field, "a part object such as {\"type\": \"text\", \"text\": \"...\"}", &other);
            return None;
        }
    };
    let kind_field = format!("{field}.type");
    let kind = match obj.remove("type") {
        Some(Value::String(s)) => match PartKind::parse(&s) {
            Some(k) => k,
            None => {
                let msg = format!("unknown part type {} (expected text, image, audio or video)", quote(&s));
                cx.error(ProblemCode::BadValue, Some(&kind_field), msg);
                return None;
            }
        },
        Some(other) => {
            cx.wrong_type(&kind_field, "a string", &other);
            return None;
        }
        None => {
            cx.error(ProblemCode::MissingField, Some(&kind_field), "required field is missing");
            return None;
        }
    };
    let value_field = format!("{field}.{}", kind.as_str());
    let value = match obj.remove(kind.as_str()) {
        Some(Value::String(s)) => s,
        Some(other) => {
            cx.wrong_type(&value_field, "a string", &other);
            return None;
        }
        None => {
            cx.error(ProblemCode::MissingField, Some(&value_field), "required field is missing");
            return None;
        }
    };
    if let Some(media) = kind.media() {
        if value.trim().is_empty() {
            cx.error(ProblemCode::BadValue, Some(&value_field), format!("{} path is empty", kind.as_str()));
        } else {
            cx.media(media, &value, value_field);
        }
    }
    Some(ContentPart { kind, value, path: None, extra: obj })
}

fn parse_message(cx: &mut LineCx, v: Value, field: &str) -> Option<ChatMessage> {
    let mut obj = match v {
        Value::Object(m) => m,
        other => {
            cx.wrong_type(field, "a message object {\"role\": ..., \"content\": ...}", &other);
            return None;
        }
    };
    let role_field = format!("{field}.role");
    let role = match obj.remove("role") {
        Some(Value::String(s)) => match s.as_str() {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => {
                let msg = format!("unknown role {} (expected system, user or assistant)", quote(&s));
                cx.error(ProblemCode::BadValue, Some(&role_field), msg);
                None
            }
        },
        Some(other) => {
            cx.wrong_type(&role_field, "a string", &other);
            None
        }
        None => {
            cx.error(ProblemCode::MissingField, Some(&role_field), "required field is missing");
            None
        }
    };
    let content_field = format!("{field}.content");
    let content = match obj.remove("content") {
        Some(Value::String(s)) => Some(MessageContent::Text(s)),
        Some(Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            let mut ok = true;
            for (j, item) in items.into_iter().enumerate() {
                match parse_part(cx, item, &format!("{content_field}[{j}]")) {
                    Some(p) => parts.push(p),
                    None => ok = false,
                }
            }
            ok.then_some(MessageContent::Parts(parts))
        }
        Some(other) => {
            cx.wrong_type(&content_field, "a string or a list of parts", &other);
            None
        }
        None => {
            cx.error(ProblemCode::MissingField, Some(&content_field), "required field is missing");
            None
        }
    };
    Some(ChatMessage { role: role?, content: content?, extra: obj })
}

fn take_raw_input(cx: &mut LineCx, obj: &mut Map<String, Value>) -> Option<Vec<ChatMessage>> {
    let items = match cx.take(obj, "raw_input", Need::Required)? {
        Value::Array(items) => items,
        other => {
            cx.wrong_type("raw_input", "a list of chat messages", &other);
            return None;
        }
    };
    if items.is_empty() {
        cx.error(ProblemCode::BadValue, Some("raw_input"), "the chat context is empty");
        return None;
    }
    let n = items.len();
    let mut messages = Vec::with_capacity(n);
    let mut ok = true;
    for (i, item) in items.into_iter().enumerate() {
        match parse_message(cx, item, &format!("raw_input[{i}]")) {
            Some(m) => messages.push(m),
            None => ok = false,
        }
    }
    if let Some(last) = messages.last().filter(|m| ok && m.role != Role::User) {
        let found = last.role.as_str();
        cx.error(
            ProblemCode::BadValue,
            Some(&format!("raw_input[{}].role", n - 1)),
            format!("the last message must be from the user (the target answers it), found {found}"),
        );
    }
    ok.then_some(messages)
}

fn check_output(cx: &mut LineCx, output: &str) {
    if output.trim().is_empty() {
        cx.error(ProblemCode::BadValue, Some("output"), "the target output is empty");
        return;
    }
    match serde_json::from_str::<Value>(output.trim()) {
        Ok(Value::Object(_)) => {}
        Ok(other) => cx.warn(
            ProblemCode::BadValue,
            Some("output"),
            format!("the target is not a JSON object (the agent must emit one), found {}", describe(&other)),
        ),
        Err(e) => cx.warn(
            ProblemCode::BadValue,
            Some("output"),
            format!("the target is not a JSON object (the agent must emit one): {e}"),
        ),
    }
    if output.trim().contains('\n') {
        cx.warn(ProblemCode::BadValue, Some("output"), "the target spans several lines; the prompt asks for one");
    }
}

impl Record for SftTurn {
    const FORMAT: DataFormat = DataFormat::Sft;

    fn from_object(mut obj: Map<String, Value>, cx: &mut LineCx) -> Option<Self> {
        let question_id = cx.take_str(&mut obj, "question_id", Need::Required);
        let traj_id = cx.take_str(&mut obj, "traj_id", Need::Required);
        if traj_id.as_deref().is_some_and(|t| t.trim().is_empty()) {
            cx.error(ProblemCode::BadValue, Some("traj_id"), "traj_id is empty");
        }
        let step = take_step(cx, &mut obj);
        let raw_input = take_raw_input(cx, &mut obj);
        let output = cx.take_str(&mut obj, "output", Need::Required);
        if let Some(out) = &output {
            check_output(cx, out);
        }
        let step_reward = cx.take_f64(&mut obj, "step_reward", Need::Optional);
        let done = take_done(cx, &mut obj);
        let extra_info = cx.take_object(&mut obj, "extra_info", Need::Optional);
        let episode_reward = cx.take_f64(&mut obj, "episode_reward", Need::Optional);
        let qtype = extra_info
            .as_ref()
            .and_then(|e| e.get("question_type"))
            .and_then(Value::as_str)
            .and_then(|raw| QuestionType::from_raw(raw).ok());
        Some(SftTurn {
            question_id: question_id?,
            traj_id: traj_id?,
            step: step?,
            raw_input: raw_input?,
            output: output?,
            step_reward,
            done,
            extra_info,
            episode_reward,
            qtype,
            extra: obj,
        })
    }

    fn question_type(&self) -> Option<(QuestionType, &str)> {
        Some((self.qtype?, self.raw_question_type()?))
    }

    const MEDIA_NEXT_TO_FILE: bool = true;

    fn resolve_media(&mut self, base: &MediaBase) {
        for message in &mut self.raw_input {
            if let MessageContent::Parts(parts) = &mut message.content {
                for part in parts.iter_mut().filter(|p| p.kind != PartKind::Text) {
                    part.path = Some(base.resolve(&part.value));
                }
            }
        }
    }

    /// The same (traj_id, step) twice is a warning on the later line.
    fn duplicate_key(&self) -> Option<String> {
        Some(format!("traj_id {} step {}", quote(&self.traj_id), self.step))
    }
}
