//! Token-exact contexts (docs/reference.md#token-exact): the prompt of every
//! turn is the concatenation of one token segment per history message plus the generation
//! prompt, and is built by appending, never by decoding and re-tokenising.
//!
//! * An assistant segment is `<|im_start|>assistant\n` + the sampled ids (trailing stop ids
//!   removed) + `<|im_end|>\n`, exactly what the model conditioned on and produced; it is
//!   never re-encoded from its text.
//! * User and system segments are rendered by a [`PromptEncoder`] (the chat template). Memory
//!   consolidation and notices rewrite earlier user messages, so only those ("dirty")
//!   messages are re-encoded, and each segment records the step at which it was encoded
//!   (its `version`).
//! * [`check_extends`] verifies that a later turn's prompt keeps every segment that was not
//!   re-encoded since the earlier turn byte for byte, and holds the earlier response verbatim
//!   in its assistant segment; a violation drops the trajectory (it would train on a context
//!   the sampler never saw).
//!
//! [`ByteTokenizer`] is a small deterministic tokenizer (one id per UTF-8 byte, the chat
//! markers by id) for tests and benchmarks that need token ids but no checkpoint.
//!
//! Left out: compacting placeholder runs for an inference engine (the reference's TITO mode,
//! whose compaction is wrong for audio-in-video, docs/reference.md#tito); our policy receives the
//! expanded ids and the media inputs.

use crate::chat::{self, ChatTokenizer};

/// Why a context could not be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("prompt encoding failed: {0}")]
pub struct EncodeError(pub String);

/// The chat template as the episode needs it.
pub trait PromptEncoder: Send + Sync {
    /// One whole message: `<|im_start|>{role}\n{parts}<|im_end|>\n`.
    fn encode_message(&self, message: &chat::Message) -> Result<Vec<u32>, EncodeError>;
    /// `<|im_start|>assistant\n`.
    fn generation_prompt(&self) -> Result<Vec<u32>, EncodeError>;
    /// `<|im_end|>\n`, closing an assistant segment.
    fn end_of_turn(&self) -> Result<Vec<u32>, EncodeError>;
    /// Ids that end a generation (removed from the end of a response before it is appended).
    fn stop_ids(&self) -> Vec<u32>;
    /// Plain text to ids (control-token strings stay text).
    fn encode_text(&self, text: &str) -> Result<Vec<u32>, EncodeError>;
    /// Ids to text, special tokens skipped (the reference decodes responses this way).
    fn decode(&self, ids: &[u32]) -> Result<String, EncodeError>;
}

impl PromptEncoder for ChatTokenizer {
    fn encode_message(&self, message: &chat::Message) -> Result<Vec<u32>, EncodeError> {
        self.render_message(message).map_err(|e| EncodeError(e.to_string()))
    }

    fn generation_prompt(&self) -> Result<Vec<u32>, EncodeError> {
        ChatTokenizer::generation_prompt(self).map_err(|e| EncodeError(e.to_string()))
    }

    fn end_of_turn(&self) -> Result<Vec<u32>, EncodeError> {
        let mut ids = vec![self.special_ids().im_end];
        ids.extend(self.encode_text("\n").map_err(|e| EncodeError(e.to_string()))?);
        Ok(ids)
    }

    fn stop_ids(&self) -> Vec<u32> {
        let mut ids = vec![self.special_ids().im_end];
        ids.extend(self.token_to_id("<|endoftext|>"));
        ids
    }

    fn encode_text(&self, text: &str) -> Result<Vec<u32>, EncodeError> {
        ChatTokenizer::encode_text(self, text).map_err(|e| EncodeError(e.to_string()))
    }

    fn decode(&self, ids: &[u32]) -> Result<String, EncodeError> {
        ChatTokenizer::decode(self, ids, true).map_err(|e| EncodeError(e.to_string()))
    }
}

/// One message's tokens and the physical step at which they were encoded.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    ids: Vec<u32>,
    version: u32,
}

/// Where a message's segment sits in a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SegmentSpan {
    pub start: usize,
    pub len: usize,
    /// Step at which the segment was last encoded (0: at reset).
    pub version: u32,
}

/// The token segments of an episode's history.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenContext {
    segments: Vec<Segment>,
    generation_prompt: Vec<u32>,
    end_of_turn: Vec<u32>,
    stop_ids: Vec<u32>,
}

impl TokenContext {
    /// Encodes every message of `history`.
    pub fn new(encoder: &dyn PromptEncoder, history: &[chat::Message]) -> Result<TokenContext, EncodeError> {
        let mut ctx = TokenContext {
            segments: Vec::with_capacity(history.len()),
            generation_prompt: encoder.generation_prompt()?,
            end_of_turn: encoder.end_of_turn()?,
            stop_ids: encoder.stop_ids(),
        };
        for m in history {
            ctx.segments.push(Segment { ids: encoder.encode_message(m)?, version: 0 });
        }
        Ok(ctx)
    }

    /// The response with trailing stop ids removed.
    pub fn trim_response<'a>(&self, ids: &'a [u32]) -> &'a [u32] {
        let mut end = ids.len();
        while end > 0 && self.stop_ids.contains(&ids[end - 1]) {
            end -= 1;
        }
        &ids[..end]
    }

    /// The segment of an assistant message with these sampled ids.
    pub fn assistant_segment(&self, response_ids: &[u32]) -> Vec<u32> {
        let trimmed = self.trim_response(response_ids);
        let mut ids = Vec::with_capacity(self.generation_prompt.len() + trimmed.len() + self.end_of_turn.len());
        ids.extend_from_slice(&self.generation_prompt);
        ids.extend_from_slice(trimmed);
        ids.extend_from_slice(&self.end_of_turn);
        ids
    }

    /// Appends the assistant message of a response (its message must be the next in history).
    pub fn push_assistant(&mut self, response_ids: &[u32], version: u32) {
        let ids = self.assistant_segment(response_ids);
        self.segments.push(Segment { ids, version });
    }

    /// Brings the segments in line with `history`: re-encodes the `dirty` messages and encodes
    /// messages not yet segmented.
    pub fn sync(
        &mut self,
        encoder: &dyn PromptEncoder,
        history: &[chat::Message],
        dirty: &[usize],
        version: u32,
    ) -> Result<(), EncodeError> {
        for &i in dirty {
            if let (Some(seg), Some(m)) = (self.segments.get_mut(i), history.get(i)) {
                *seg = Segment { ids: encoder.encode_message(m)?, version };
            }
        }
        for m in history.iter().skip(self.segments.len()) {
            self.segments.push(Segment { ids: encoder.encode_message(m)?, version });
        }
        Ok(())
    }

    /// Messages segmented so far.
    pub fn messages(&self) -> usize {
        self.segments.len()
    }

    /// Tokens of the next prompt (segments + generation prompt).
    pub fn prompt_len(&self) -> usize {
        self.segments.iter().map(|s| s.ids.len()).sum::<usize>() + self.generation_prompt.len()
    }

    /// The next prompt's ids and where each message sits in it.
    pub fn prompt(&self) -> (Vec<u32>, Vec<SegmentSpan>) {
        let mut ids = Vec::with_capacity(self.prompt_len());
        let mut spans = Vec::with_capacity(self.segments.len());
        for s in &self.segments {
            spans.push(SegmentSpan { start: ids.len(), len: s.ids.len(), version: s.version });
            ids.extend_from_slice(&s.ids);
        }
        ids.extend_from_slice(&self.generation_prompt);
        (ids, spans)
    }
}

/// A prompt that does not extend an earlier one as it should.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("segment spans of step {step} do not tile its prompt")]
    Layout { step: u32 },
    #[error("message {message} changed between steps {earlier} and {later} without being re-encoded")]
    Changed { message: usize, earlier: u32, later: u32 },
    #[error("the step {earlier} response is not verbatim in the step {later} prompt")]
    Response { earlier: u32, later: u32 },
    #[error("the step {later} prompt has fewer messages than the step {earlier} prompt")]
    Shrunk { earlier: u32, later: u32 },
}

/// One turn's prompt as the check needs it.
#[derive(Debug, Clone, Copy)]
pub struct PromptView<'a> {
    /// Physical step (1-based) whose prompt this is.
    pub step: u32,
    pub ids: &'a [u32],
    pub spans: &'a [SegmentSpan],
    /// The sampled response of this turn.
    pub response: &'a [u32],
}

/// Checks that `later` extends `earlier` (any earlier turn of the same episode): every segment
/// of `earlier` that was not re-encoded after `earlier.step - 1` is identical in `later`, and the
/// message right after `earlier`'s last one is the assistant segment of `earlier.response`.
/// `assistant` builds that segment (see [`TokenContext::assistant_segment`]).
pub fn check_extends(
    earlier: &PromptView<'_>,
    later: &PromptView<'_>,
    assistant: impl Fn(&[u32]) -> Vec<u32>,
) -> Result<(), PrefixError> {
    for view in [earlier, later] {
        let tiled = view.spans.iter().try_fold(0usize, |at, s| (s.start == at).then_some(at + s.len));
        if tiled.is_none_or(|end| end > view.ids.len()) {
            return Err(PrefixError::Layout { step: view.step });
        }
    }
    let (e, l) = (earlier.step, later.step);
    if later.spans.len() <= earlier.spans.len() {
        return Err(PrefixError::Shrunk { earlier: e, later: l });
    }
    let slice = |v: &PromptView<'_>, s: &SegmentSpan| v.ids.get(s.start..s.start + s.len).map(<[u32]>::to_vec);
    for (i, (a, b)) in earlier.spans.iter().zip(later.spans).enumerate() {
        // Encoded before the earlier prompt was built, and not since.
        if b.version < e && slice(earlier, a) != slice(later, b) {
            return Err(PrefixError::Changed { message: i, earlier: e, later: l });
        }
    }
    let reply = &later.spans[earlier.spans.len()];
    if slice(later, reply) != Some(assistant(earlier.response)) {
        return Err(PrefixError::Response { earlier: e, later: l });
    }
    Ok(())
}

/// A deterministic byte-level tokenizer with the Qwen2.5-Omni control ids: each UTF-8 byte
/// of text is one id (its value), control tokens and media placeholders are their real ids.
#[derive(Debug, Clone, Default)]
pub struct ByteTokenizer;

impl ByteTokenizer {
    pub const IM_START: u32 = 151644;
    pub const IM_END: u32 = 151645;
    pub const END_OF_TEXT: u32 = 151643;
    const AUDIO: u32 = 151646;
    const AUDIO_BOS: u32 = 151647;
    const AUDIO_EOS: u32 = 151648;
    const VISION_BOS: u32 = 151652;
    const VISION_EOS: u32 = 151653;
    const IMAGE: u32 = 151655;
    const VIDEO: u32 = 151656;

    fn bytes(text: &str) -> impl Iterator<Item = u32> + '_ {
        text.bytes().map(u32::from)
    }
}

impl PromptEncoder for ByteTokenizer {
    fn encode_message(&self, message: &chat::Message) -> Result<Vec<u32>, EncodeError> {
        let mut ids = vec![Self::IM_START];
        ids.extend(Self::bytes(message.role.as_str()));
        ids.push(u32::from(b'\n'));
        let grid = |g: &[usize; 3]| g.iter().product::<usize>() / 4;
        for part in &message.parts {
            match part {
                chat::Part::Text(t) => ids.extend(Self::bytes(t)),
                chat::Part::Image { grid_thw } => {
                    ids.push(Self::VISION_BOS);
                    ids.extend(std::iter::repeat_n(Self::IMAGE, grid(grid_thw)));
                    ids.push(Self::VISION_EOS);
                }
                chat::Part::Video { grid_thw } => {
                    ids.push(Self::VISION_BOS);
                    ids.extend(std::iter::repeat_n(Self::VIDEO, grid(grid_thw)));
                    ids.push(Self::VISION_EOS);
                }
                chat::Part::Audio { tokens } => {
                    ids.push(Self::AUDIO_BOS);
                    ids.extend(std::iter::repeat_n(Self::AUDIO, *tokens));
                    ids.push(Self::AUDIO_EOS);
                }
                chat::Part::VideoWithAudio { grid_thw, audio_tokens, .. } => {
                    ids.extend([Self::VISION_BOS, Self::AUDIO_BOS]);
                    ids.extend(std::iter::repeat_n(Self::VIDEO, grid(grid_thw)));
                    ids.extend(std::iter::repeat_n(Self::AUDIO, *audio_tokens));
                    ids.extend([Self::AUDIO_EOS, Self::VISION_EOS]);
                }
            }
        }
        ids.extend([Self::IM_END, u32::from(b'\n')]);
        Ok(ids)
    }

    fn generation_prompt(&self) -> Result<Vec<u32>, EncodeError> {
        let mut ids = vec![Self::IM_START];
        ids.extend(Self::bytes("assistant\n"));
        Ok(ids)
    }

    fn end_of_turn(&self) -> Result<Vec<u32>, EncodeError> {
        Ok(vec![Self::IM_END, u32::from(b'\n')])
    }

    fn stop_ids(&self) -> Vec<u32> {
        vec![Self::IM_END, Self::END_OF_TEXT]
    }

    fn encode_text(&self, text: &str) -> Result<Vec<u32>, EncodeError> {
        Ok(Self::bytes(text).collect())
    }

    fn decode(&self, ids: &[u32]) -> Result<String, EncodeError> {
        let bytes: Vec<u8> = ids.iter().filter_map(|&id| u8::try_from(id).ok()).collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
