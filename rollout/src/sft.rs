//! SFT lines as training examples: the chat context of a line's `raw_input` with every media
//! part decoded by the processors rollouts use ([`media_file_item`]: frame images, WAV audio,
//! clips with their audio track), rendered by the chat template into prompt ids, and the
//! line's `output` as the target.
//!
//! The layout is the rollout's: prompt = every message's segment + the generation prompt
//! (`<|im_start|>assistant\n`), target = the output's tokens + the end of turn (`<|im_end|>\n`),
//! so a model trained on these rows sees, token for token, the format it generates in. Earlier
//! assistant turns of the context are rendered from their text (the data holds no sampled ids).
//!
//! Left out: media given as URLs (the dry run reports them; here they fail as missing files).

use crate::chat;
use crate::data::{MessageContent, PartKind, SftTurn};
use crate::episode::{EncodeError, MediaItem, PromptEncoder, media_file_item};
use crate::media::{ImageSizing, MediaError, VideoSampling};
use std::path::PathBuf;
use std::sync::Arc;

/// One SFT row before it meets a model.
#[derive(Debug, Clone)]
pub struct SftExample {
    /// Every context message's segment, then the generation prompt.
    pub prompt_ids: Vec<u32>,
    /// The output's tokens, then the end-of-turn ids.
    pub target_ids: Vec<u32>,
    /// The context's media, in prompt order.
    pub media: Vec<Arc<MediaItem>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SftExampleError {
    #[error("field \"{field}\": {source}")]
    Media {
        field: String,
        #[source]
        source: MediaError,
    },
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// How an example's media are preprocessed (the stage's `preprocess` budgets).
#[derive(Debug, Clone, Copy, Default)]
pub struct MediaBudgets {
    pub image: ImageSizing,
    pub video: VideoSampling,
}

/// The chat messages of `turn`'s context, with media parts decoded, and the media in order.
pub fn context_messages(
    turn: &SftTurn,
    budgets: &MediaBudgets,
) -> Result<(Vec<chat::Message>, Vec<Arc<MediaItem>>), SftExampleError> {
    let mut messages = Vec::with_capacity(turn.raw_input.len());
    let mut media = Vec::new();
    for (i, message) in turn.raw_input.iter().enumerate() {
        let parts = match &message.content {
            MessageContent::Text(text) => vec![chat::Part::Text(text.clone())],
            MessageContent::Parts(parts) => {
                let mut out = Vec::with_capacity(parts.len());
                for (j, part) in parts.iter().enumerate() {
                    if part.kind == PartKind::Text {
                        out.push(chat::Part::Text(part.value.clone()));
                        continue;
                    }
                    let path = part.path.clone().unwrap_or_else(|| PathBuf::from(&part.value));
                    let item = media_file_item(part.kind, &path, &budgets.image, &budgets.video).map_err(|source| {
                        SftExampleError::Media {
                            field: format!("raw_input[{i}].content[{j}].{}", part.kind.as_str()),
                            source,
                        }
                    })?;
                    out.push(item.layout.clone());
                    media.push(Arc::new(item));
                }
                out
            }
        };
        messages.push(chat::Message::new(message.role, parts));
    }
    Ok((messages, media))
}

/// The training example of one SFT line (see the module doc).
pub fn sft_example(
    turn: &SftTurn,
    encoder: &dyn PromptEncoder,
    budgets: &MediaBudgets,
) -> Result<SftExample, SftExampleError> {
    let (messages, media) = context_messages(turn, budgets)?;
    let mut prompt_ids = Vec::new();
    for m in &messages {
        prompt_ids.extend(encoder.encode_message(m)?);
    }
    prompt_ids.extend(encoder.generation_prompt()?);
    let mut target_ids = encoder.encode_text(&turn.output)?;
    target_ids.extend(encoder.end_of_turn()?);
    Ok(SftExample { prompt_ids, target_ids, media })
}

/// The text of `turn` a tokenizer can be trained on: each context message as `role\n` + its
/// text parts, and the output as an assistant message.
pub fn sft_texts(turn: &SftTurn) -> Vec<String> {
    let mut out: Vec<String> = turn
        .raw_input
        .iter()
        .map(|m| {
            let text: String = match &m.content {
                MessageContent::Text(t) => t.clone(),
                MessageContent::Parts(parts) => {
                    parts.iter().filter(|p| p.kind == PartKind::Text).map(|p| p.value.as_str()).collect()
                }
            };
            format!("{}\n{text}", m.role.as_str())
        })
        .collect();
    out.push(format!("assistant\n{}", turn.output));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{MediaBase, parse_record};
    use crate::episode::ByteTokenizer;

    const LINE: &str = r#"{"question_id": "q", "traj_id": "t", "step": 1, "output": "{\"a\": 1}",
        "raw_input": [{"role": "system", "content": "sys"},
                      {"role": "user", "content": [{"type": "text", "text": "Q?"}]}]}"#;

    #[test]
    fn text_lines_render_as_the_chat_template() {
        let turn: SftTurn = parse_record(LINE, &MediaBase::default()).unwrap_or_else(|e| panic!("{e}"));
        let enc = ByteTokenizer;
        let ex = sft_example(&turn, &enc, &MediaBudgets::default()).unwrap_or_else(|e| panic!("{e}"));
        let messages = [chat::Message::text(chat::Role::System, "sys"), chat::Message::text(chat::Role::User, "Q?")];
        let mut want: Vec<u32> = Vec::new();
        for m in &messages {
            want.extend(enc.encode_message(m).unwrap_or_else(|e| panic!("{e}")));
        }
        want.extend(enc.generation_prompt().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(ex.prompt_ids, want);
        let mut target = enc.encode_text("{\"a\": 1}").unwrap_or_else(|e| panic!("{e}"));
        target.extend(enc.end_of_turn().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(ex.target_ids, target);
        assert!(ex.media.is_empty());
        assert_eq!(sft_texts(&turn), vec!["system\nsys", "user\nQ?", "assistant\n{\"a\": 1}"]);
    }

    #[test]
    fn a_missing_media_file_names_its_field() {
        let line = LINE.replace(
            r#"{"type": "text", "text": "Q?"}"#,
            r#"{"type": "text", "text": "Q?"}, {"type": "audio", "audio": "/nonexistent/a.wav"}"#,
        );
        let turn: SftTurn = parse_record(&line, &MediaBase::default()).unwrap_or_else(|e| panic!("{e}"));
        let err = sft_example(&turn, &ByteTokenizer, &MediaBudgets::default()).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("raw_input[1].content[1].audio") && err.contains("/nonexistent/a.wav"), "{err}");
    }
}
