//! The Qwen2.5-Omni chat template rendered in Rust, token-exact, over the `tokenizers` crate on a
//! checkpoint's `tokenizer.json` (docs/reference.md#chat-template, docs/reference.md#token-ids).
//!
//! A message renders as `<|im_start|>{role}\n` + its parts in order + `<|im_end|>\n`: text verbatim
//! with no separators, an image as `<|vision_bos|>` + `<|IMAGE|>` x N + `<|vision_eos|>`, audio as
//! `<|audio_bos|>` + `<|AUDIO|>` x N + `<|audio_eos|>`, a video as `<|vision_bos|>` + `<|VIDEO|>` x N +
//! `<|vision_eos|>`, and a video with its audio track as the interleaved block of [`expand`]. N
//! comes from the processor's grid sizes (`t*h*w / merge^2`) or the audio token count. When the
//! first message is not a system message, [`ChatTokenizer::render`] inserts the template's default
//! system turn (`You are a helpful assistant.`); the generation prompt is `<|im_start|>assistant\n`.
//!
//! Control tokens are inserted **by id**, never parsed out of text: text is encoded with a copy of
//! the tokenizer that has no added tokens, so a user writing `<|im_end|>` gets the bytes of that
//! string, not the control token. (transformers would parse it as the control token; for any text
//! without such strings the ids are identical.) The text between two control tokens is encoded as
//! one string, exactly as transformers splits on special tokens before BPE, so
//! `render` equals `tokenizer(apply_chat_template(...))` token for token.
//!
//! Ids: the media ids come from the model config ([`ChatConfig`]); `<|im_start|>` and `<|im_end|>`
//! are looked up by name in the tokenizer file, the authority on its own markers. Nothing is
//! hard-coded. Left out: tool calls, `add_vision_id` prefixes, string-vs-list content distinctions
//! (a message is always a list of parts here), Jinja (the template is fixed and small).

pub mod expand;

pub use expand::{Run, audio_tokens_for_frames, interleave_runs};

use serde_json::Value;
use std::path::Path;
use tokenizers::Tokenizer;

/// The default system prompt the stock template inserts when the first message is not a system one.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant.";

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("cannot read tokenizer {path}: {message}")]
    Load { path: String, message: String },
    #[error("tokenizer {path}: {message}")]
    Ids { path: String, message: String },
    #[error("tokenizer: {0}")]
    Tokenize(String),
    #[error("invalid media part: {0}")]
    Media(String),
}

/// Media ids and expansion constants, from the thinker's `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatConfig {
    pub image: u32,
    pub video: u32,
    pub audio: u32,
    pub vision_bos: u32,
    pub vision_eos: u32,
    pub audio_bos: u32,
    pub audio_eos: u32,
    /// `vision_config.spatial_merge_size` (2).
    pub spatial_merge_size: usize,
    /// `position_id_per_seconds` (25).
    pub position_id_per_seconds: f64,
    /// `seconds_per_chunk` (2).
    pub seconds_per_chunk: f64,
}

impl ChatConfig {
    /// The media ids looked up by their Qwen2.5-Omni names (`<|IMAGE|>`, `<|VIDEO|>`, `<|AUDIO|>`,
    /// `<|vision_bos|>`, ...) among the added tokens of a `tokenizer.json`, with the processor's
    /// default expansion constants (merge 2, 25 position ids per second, 2-second chunks). For
    /// tools that have a tokenizer but no model `config.json`; with a config, use its ids.
    pub fn from_token_names(tokenizer_json: &[u8], label: &str) -> Result<ChatConfig, ChatError> {
        let json: Value = serde_json::from_slice(tokenizer_json)
            .map_err(|e| ChatError::Load { path: label.to_string(), message: e.to_string() })?;
        let added = json.get("added_tokens").and_then(Value::as_array);
        let id = |name: &str| -> Result<u32, ChatError> {
            added
                .into_iter()
                .flatten()
                .find(|t| t.get("content").and_then(Value::as_str) == Some(name))
                .and_then(|t| t.get("id").and_then(Value::as_u64))
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| ChatError::Ids { path: label.to_string(), message: format!("no added token `{name}`") })
        };
        Ok(ChatConfig {
            image: id("<|IMAGE|>")?,
            video: id("<|VIDEO|>")?,
            audio: id("<|AUDIO|>")?,
            vision_bos: id("<|vision_bos|>")?,
            vision_eos: id("<|vision_eos|>")?,
            audio_bos: id("<|audio_bos|>")?,
            audio_eos: id("<|audio_eos|>")?,
            spatial_merge_size: 2,
            position_id_per_seconds: 25.0,
            seconds_per_chunk: 2.0,
        })
    }
}

/// Every control id the renderer emits.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecialIds {
    pub im_start: u32,
    pub im_end: u32,
    pub media: ChatConfig,
}

/// Who wrote a message: the same type the SFT data schema uses.
pub use crate::data::Role;

/// One content part, with the sizes the processor computed for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    /// `grid_thw` in patches (t = 1 for an image).
    Image {
        grid_thw: [usize; 3],
    },
    /// Audio tokens (see [`audio_tokens_for_frames`]).
    Audio {
        tokens: usize,
    },
    /// A silent video (or one whose audio is not used).
    Video {
        grid_thw: [usize; 3],
    },
    /// A video with its own audio track interleaved (`use_audio_in_video`); `second_per_grid` is
    /// `temporal_patch_size / fps` (1.0 at the default 2 fps).
    VideoWithAudio {
        grid_thw: [usize; 3],
        second_per_grid: f64,
        audio_tokens: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

impl Message {
    pub fn new(role: Role, parts: Vec<Part>) -> Self {
        Message { role, parts }
    }

    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message { role, parts: vec![Part::Text(text.into())] }
    }
}

/// A piece of the rendered stream: a control token by id, or text to BPE-encode.
enum Piece {
    Id(u32, usize),
    Text(String),
}

/// The tokenizer plus the chat template.
pub struct ChatTokenizer {
    /// The checkpoint's tokenizer, for decoding (it knows the added tokens).
    full: Tokenizer,
    /// The same tokenizer without added tokens: text never turns into control tokens.
    plain: Tokenizer,
    ids: SpecialIds,
}

impl std::fmt::Debug for ChatTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTokenizer").field("ids", &self.ids).finish_non_exhaustive()
    }
}

impl ChatTokenizer {
    /// Loads `tokenizer.json`; checks that every id of `media` and the chat markers exist as added
    /// (control) tokens of the file.
    pub fn from_file(path: &Path, media: ChatConfig) -> Result<Self, ChatError> {
        let label = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ChatError::Load { path: label.clone(), message: e.to_string() })?;
        Self::from_bytes(&bytes, media, &label)
    }

    /// [`from_file`](Self::from_file) on the file's bytes; `label` names it in errors.
    pub fn from_bytes(bytes: &[u8], media: ChatConfig, label: &str) -> Result<Self, ChatError> {
        let load = |message: String| ChatError::Load { path: label.to_string(), message };
        let full = Tokenizer::from_bytes(bytes).map_err(|e| load(e.to_string()))?;
        let mut json: Value = serde_json::from_slice(bytes).map_err(|e| load(e.to_string()))?;
        match json.get_mut("added_tokens") {
            Some(added) => *added = Value::Array(Vec::new()),
            None => return Err(load("no `added_tokens` list".into())),
        }
        let plain = Tokenizer::from_bytes(json.to_string()).map_err(|e| load(e.to_string()))?;
        let added = full.get_added_tokens_decoder();
        let ids_err = |message: String| ChatError::Ids { path: label.to_string(), message };
        let marker = |name: &str| {
            full.token_to_id(name)
                .filter(|id| added.contains_key(id))
                .ok_or_else(|| ids_err(format!("no added token `{name}`")))
        };
        let ids = SpecialIds { im_start: marker("<|im_start|>")?, im_end: marker("<|im_end|>")?, media };
        let m = &ids.media;
        for (name, id) in [
            ("image", m.image),
            ("video", m.video),
            ("audio", m.audio),
            ("vision_bos", m.vision_bos),
            ("vision_eos", m.vision_eos),
            ("audio_bos", m.audio_bos),
            ("audio_eos", m.audio_eos),
        ] {
            if !added.contains_key(&id) {
                return Err(ids_err(format!("the config's {name} id {id} is not an added token of this tokenizer")));
            }
        }
        if m.spatial_merge_size == 0 || m.position_id_per_seconds <= 0.0 || m.seconds_per_chunk <= 0.0 {
            return Err(ids_err(
                "spatial_merge_size, position_id_per_seconds and seconds_per_chunk must be positive".into(),
            ));
        }
        Ok(ChatTokenizer { full, plain, ids })
    }

    pub fn special_ids(&self) -> &SpecialIds {
        &self.ids
    }

    /// The id of a token by its text (`"<|endoftext|>"`), added tokens included.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.full.token_to_id(token)
    }

    /// Vocabulary size including added tokens (ids at or above it are padding rows of the model).
    pub fn vocab_size(&self) -> usize {
        self.full.get_vocab_size(true)
    }

    /// Plain text → ids; control-token strings in `text` stay text.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, ChatError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self.plain.encode(text, false).map_err(|e| ChatError::Tokenize(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids → text; `skip_special` drops special added tokens (`<|im_end|>`, media markers).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, ChatError> {
        self.full.decode(ids, skip_special).map_err(|e| ChatError::Tokenize(e.to_string()))
    }

    /// One message: `<|im_start|>{role}\n{parts}<|im_end|>\n`.
    pub fn render_message(&self, message: &Message) -> Result<Vec<u32>, ChatError> {
        let mut pieces = vec![Piece::Id(self.ids.im_start, 1), Piece::Text(format!("{}\n", message.role.as_str()))];
        for part in &message.parts {
            self.part_pieces(part, &mut pieces)?;
        }
        pieces.push(Piece::Id(self.ids.im_end, 1));
        pieces.push(Piece::Text("\n".into()));
        self.encode_pieces(pieces)
    }

    /// Content parts alone, without the role header and `<|im_end|>` (raw prompts).
    pub fn render_parts(&self, parts: &[Part]) -> Result<Vec<u32>, ChatError> {
        let mut pieces = Vec::new();
        for part in parts {
            self.part_pieces(part, &mut pieces)?;
        }
        self.encode_pieces(pieces)
    }

    /// `<|im_start|>assistant\n`.
    pub fn generation_prompt(&self) -> Result<Vec<u32>, ChatError> {
        self.encode_pieces(vec![Piece::Id(self.ids.im_start, 1), Piece::Text("assistant\n".into())])
    }

    /// A whole conversation: the default system turn if the first message is not a system one,
    /// every message, and the generation prompt if asked.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<Vec<u32>, ChatError> {
        let mut out = Vec::new();
        if messages.first().is_none_or(|m| m.role != Role::System) {
            out.extend(self.render_message(&Message::text(Role::System, DEFAULT_SYSTEM_PROMPT))?);
        }
        for m in messages {
            out.extend(self.render_message(m)?);
        }
        if add_generation_prompt {
            out.extend(self.generation_prompt()?);
        }
        Ok(out)
    }

    /// The number of placeholder tokens a visual grid becomes (`t*h*w / merge^2`).
    pub fn grid_tokens(&self, grid_thw: [usize; 3]) -> Result<usize, ChatError> {
        let merge2 = self.ids.media.spatial_merge_size.pow(2);
        let n = grid_thw.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        match n {
            Some(n)
                if n > 0
                    && n.is_multiple_of(merge2)
                    && grid_thw[1..].iter().all(|d| d.is_multiple_of(self.ids.media.spatial_merge_size)) =>
            {
                Ok(n / merge2)
            }
            _ => Err(ChatError::Media(format!(
                "grid {grid_thw:?} is empty or not divisible by the merge size {}",
                self.ids.media.spatial_merge_size
            ))),
        }
    }

    fn part_pieces(&self, part: &Part, out: &mut Vec<Piece>) -> Result<(), ChatError> {
        let m = &self.ids.media;
        match part {
            Part::Text(t) => out.push(Piece::Text(t.clone())),
            Part::Image { grid_thw } => {
                out.extend([Piece::Id(m.vision_bos, 1), Piece::Id(m.image, self.grid_tokens(*grid_thw)?)]);
                out.push(Piece::Id(m.vision_eos, 1));
            }
            Part::Video { grid_thw } => {
                out.extend([Piece::Id(m.vision_bos, 1), Piece::Id(m.video, self.grid_tokens(*grid_thw)?)]);
                out.push(Piece::Id(m.vision_eos, 1));
            }
            Part::Audio { tokens } => {
                out.extend([Piece::Id(m.audio_bos, 1), Piece::Id(m.audio, *tokens), Piece::Id(m.audio_eos, 1)]);
            }
            Part::VideoWithAudio { grid_thw, second_per_grid, audio_tokens } => {
                let total = self.grid_tokens(*grid_thw)?;
                if !(second_per_grid.is_finite() && *second_per_grid > 0.0) {
                    return Err(ChatError::Media(format!("second_per_grid {second_per_grid} must be positive")));
                }
                let per_grid = total / grid_thw[0];
                out.extend([Piece::Id(m.vision_bos, 1), Piece::Id(m.audio_bos, 1)]);
                let runs = interleave_runs(
                    grid_thw[0],
                    per_grid,
                    *second_per_grid,
                    *audio_tokens,
                    m.position_id_per_seconds,
                    m.seconds_per_chunk,
                );
                for run in runs {
                    out.push(match run {
                        Run::Video(n) => Piece::Id(m.video, n),
                        Run::Audio(n) => Piece::Id(m.audio, n),
                    });
                }
                out.extend([Piece::Id(m.audio_eos, 1), Piece::Id(m.vision_eos, 1)]);
            }
        }
        Ok(())
    }

    /// Encodes maximal text runs as one string each; control ids verbatim.
    fn encode_pieces(&self, pieces: Vec<Piece>) -> Result<Vec<u32>, ChatError> {
        let mut out = Vec::new();
        let mut text = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(t) => text.push_str(&t),
                Piece::Id(id, n) => {
                    out.extend(self.encode_text(&std::mem::take(&mut text))?);
                    out.extend(std::iter::repeat_n(id, n));
                }
            }
        }
        out.extend(self.encode_text(&text)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
