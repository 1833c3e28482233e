//! The episode's chat history and its memory rules (docs/reference.md#turn-format,
//! docs/reference.md#observations, docs/reference.md#memory, docs/reference.md#step-budget).
//!
//! Messages are `{role, parts}`; user messages built by the environment put the text first,
//! then media. Observations:
//! * frames: `Frames {s:.2f}s-{e:.2f}s (num={n}).` then, per timestamp, `Frame {t:.2f}s:` and
//!   the image (`Frame at {s:.2f}s (num=1).` for one frame);
//! * audio: `Audio {s:.2f}s-{e:.2f}s` and the audio; clip: `Clip {s:.2f}s-{e:.2f}s` and the
//!   video; answer: `CORRECT ANSWER` / `INCORRECT ANSWER`.
//!
//! Consolidation ([`consolidate`]) runs after every step: walking from the newest message, the
//! newest `keep` user messages holding media stay raw; every older one becomes one text part,
//! `"{header} Timestamps: [{t:.2f}s, ...] [MEDIA OMITTED - Refer to your Observation]"` for
//! images (timestamps are the `(\d+(?:\.\d+)?)s` matches in the text parts after the first)
//! and `"{header} [MEDIA OMITTED - Refer to your Observation]"` for audio or video, where the
//! header is the stripped first text part. Other text of the message (an old notice) is
//! dropped. `keep` is 1, or 0 after an invalid action with `delete_media_on_error`, so raw
//! media is visible for exactly one turn and a prompt holds at most one media message.
//!
//! [`refresh_notice`] removes every text part that starts (after leading whitespace) with
//! `[NOTICE]` from the user messages and appends the new notice to the last message if it is
//! a user message.
//!
//! Both return the indices of the messages they changed, so the token context re-encodes
//! only those. Left out: the reference's media file paths; a media part carries a file-style
//! name (`STEP_3_frame_10.500.jpg`, the reference's naming) and the decoded model inputs.

use super::format::fixed2;
use super::media::MediaItem;
use crate::chat;
use crate::data::{PartKind, Role};
use std::sync::Arc;

/// The suffix of every consolidated media message.
pub const MEDIA_OMITTED: &str = "[MEDIA OMITTED - Refer to your Observation]";

/// One media part of a user message.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPart {
    /// Image, Audio or Video.
    pub kind: PartKind,
    /// A file-style name, as the reference's temp files were named.
    pub name: String,
    /// The decoded media and its placeholder layout.
    pub item: Arc<MediaItem>,
}

/// One part of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Media(MediaPart),
}

impl Part {
    pub fn text(&self) -> Option<&str> {
        match self {
            Part::Text(t) => Some(t),
            Part::Media(_) => None,
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

impl Message {
    pub fn text(role: Role, text: impl Into<String>) -> Message {
        Message { role, parts: vec![Part::Text(text.into())] }
    }

    /// Whether the message holds an image, audio or video part.
    pub fn has_media(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Media(_)))
    }

    /// The media parts, in order.
    pub fn media(&self) -> impl Iterator<Item = &MediaPart> {
        self.parts.iter().filter_map(|p| match p {
            Part::Media(m) => Some(m),
            Part::Text(_) => None,
        })
    }

    /// All text parts concatenated (the chat template joins them without separator).
    pub fn joined_text(&self) -> String {
        self.parts.iter().filter_map(Part::text).collect()
    }
}

/// The user message of a `get_frames` observation.
pub fn frames_message(start: f64, timestamps: &[f64], end: f64, images: Vec<MediaPart>) -> Message {
    let n = timestamps.len();
    let header = if n > 1 {
        format!("Frames {}s-{}s (num={n}).", fixed2(start), fixed2(end))
    } else {
        format!("Frame at {}s (num={n}).", fixed2(start))
    };
    let mut parts = Vec::with_capacity(1 + 2 * n);
    parts.push(Part::Text(header));
    for (t, image) in timestamps.iter().zip(images) {
        parts.push(Part::Text(format!("Frame {}s:", fixed2(*t))));
        parts.push(Part::Media(image));
    }
    Message { role: Role::User, parts }
}

/// The user message of a `get_audio` observation.
pub fn audio_message(start: f64, end: f64, audio: MediaPart) -> Message {
    let header = format!("Audio {}s-{}s", fixed2(start), fixed2(end));
    Message { role: Role::User, parts: vec![Part::Text(header), Part::Media(audio)] }
}

/// The user message of a `get_clip` observation.
pub fn clip_message(start: f64, end: f64, clip: MediaPart) -> Message {
    let header = format!("Clip {}s-{}s", fixed2(start), fixed2(end));
    Message { role: Role::User, parts: vec![Part::Text(header), Part::Media(clip)] }
}

/// Collapses all but the newest `keep` media messages into text placeholders; returns the
/// indices of the changed messages.
pub fn consolidate(history: &mut [Message], keep: usize) -> Vec<usize> {
    let mut changed = Vec::new();
    let mut seen = 0usize;
    for (i, msg) in history.iter_mut().enumerate().rev() {
        if msg.role != Role::User || !msg.has_media() {
            continue;
        }
        seen += 1;
        if seen <= keep {
            continue;
        }
        msg.parts = vec![Part::Text(placeholder(msg))];
        changed.push(i);
    }
    changed.reverse();
    changed
}

/// The placeholder text of a media message.
pub fn placeholder(msg: &Message) -> String {
    let header = match msg.parts.first() {
        Some(Part::Text(t)) => t.trim().to_string(),
        _ => "Media content".to_string(),
    };
    let has_image = msg.media().any(|m| m.kind == PartKind::Image);
    if !has_image {
        return format!("{header} {MEDIA_OMITTED}");
    }
    let stamps: Vec<String> = msg
        .parts
        .iter()
        .skip(1)
        .filter_map(Part::text)
        .flat_map(seconds_labels)
        .map(|x| format!("{}s", fixed2(x.parse::<f64>().unwrap_or(f64::NAN))))
        .collect();
    format!("{header} Timestamps: [{}] {MEDIA_OMITTED}", stamps.join(", "))
}

/// Every match of the regex `(\d+(?:\.\d+)?)s` in `text` (the captured number), left to
/// right without overlap. ASCII digits only: the texts are our own labels.
pub fn seconds_labels(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let digits_end = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let j = digits_end(i);
        let mut end = None;
        if j + 1 < b.len() && b[j] == b'.' && b[j + 1].is_ascii_digit() {
            let k = digits_end(j + 1);
            if b.get(k) == Some(&b's') {
                end = Some(k);
            }
        } else if b.get(j) == Some(&b's') {
            end = Some(j);
        }
        match end {
            Some(e) => {
                out.push(&text[i..e]);
                i = e + 1;
            }
            None => i += 1,
        }
    }
    out
}

/// Whether a part is a step notice.
fn is_notice(part: &Part) -> bool {
    matches!(part, Part::Text(t) if t.trim_start().starts_with("[NOTICE]"))
}

/// Removes old notices and appends `notice` to the last message when it is a user message;
/// returns the indices of the changed messages.
pub fn refresh_notice(history: &mut [Message], notice: &str) -> Vec<usize> {
    let mut changed = Vec::new();
    for (i, msg) in history.iter_mut().enumerate() {
        if msg.role == Role::User && msg.parts.iter().any(is_notice) {
            msg.parts.retain(|p| !is_notice(p));
            changed.push(i);
        }
    }
    if let Some(last) = history.last_mut().filter(|m| m.role == Role::User) {
        last.parts.push(Part::Text(notice.to_string()));
        let idx = history.len() - 1;
        if changed.last() != Some(&idx) {
            changed.push(idx);
        }
    }
    changed
}

/// User messages still holding raw media.
pub fn raw_media_messages(history: &[Message]) -> usize {
    history.iter().filter(|m| m.role == Role::User && m.has_media()).count()
}

/// The media parts still raw in the history, oldest first.
pub fn raw_media(history: &[Message]) -> Vec<Arc<MediaItem>> {
    history.iter().filter(|m| m.role == Role::User).flat_map(|m| m.media().map(|p| p.item.clone())).collect()
}

/// The chat template's form of a message.
pub fn to_chat(m: &Message) -> chat::Message {
    let role = match m.role {
        Role::System => chat::Role::System,
        Role::User => chat::Role::User,
        Role::Assistant => chat::Role::Assistant,
    };
    let parts = m
        .parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => chat::Part::Text(t.clone()),
            Part::Media(media) => media.item.layout.clone(),
        })
        .collect();
    chat::Message::new(role, parts)
}
