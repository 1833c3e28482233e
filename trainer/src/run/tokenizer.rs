//! The quickstart's small tokenizer: one id per UTF-8 byte (ids 0-255) plus the chat markers and
//! media placeholders at the ids the model's `config.json` names (`bos` = `<|im_start|>`, the
//! first `eos` = `<|im_end|>`, `pad` = `<|endoftext|>`, the vision/audio markers as configured).
//! It implements the episode's [`PromptEncoder`], so rollouts stay token-exact, and its
//! vocabulary ends at the largest special id, which bounds sampling (`vocab_limit`).
//!
//! Left out: a BPE trained for the task (the `tokenizers` crate can train one). A byte vocabulary
//! needs no training step, cannot fail on unseen text and keeps the embedding tiny; the price is
//! longer sequences, which the quickstart offsets with a short system prompt.

use crate::model::OmniThinkerConfig;
use rollout::chat::{Message, Part, Run, interleave_runs};
use rollout::episode::{EncodeError, PromptEncoder};

/// Byte-level chat tokenizer over a model's special ids.
#[derive(Debug, Clone, PartialEq)]
pub struct SmallTokenizer {
    pub im_start: u32,
    pub im_end: u32,
    pub end_of_text: u32,
    pub audio: u32,
    pub audio_bos: u32,
    pub audio_eos: u32,
    pub vision_bos: u32,
    pub vision_eos: u32,
    pub image: u32,
    pub video: u32,
    pub merge: usize,
    pub position_id_per_seconds: f64,
    pub seconds_per_chunk: f64,
}

impl SmallTokenizer {
    /// From the model config; `None` when it lacks `bos`, `eos` or `pad`, or when a special id
    /// collides with the byte range.
    pub fn from_config(cfg: &OmniThinkerConfig) -> Option<SmallTokenizer> {
        let s = cfg.special_tokens();
        let t = SmallTokenizer {
            im_start: s.bos?,
            im_end: *s.eos.first()?,
            end_of_text: s.pad?,
            audio: s.audio,
            audio_bos: s.audio_start,
            audio_eos: s.audio_end,
            vision_bos: s.vision_start,
            vision_eos: s.vision_end,
            image: s.image,
            video: s.video,
            merge: cfg.vision().spatial_merge_size.max(1),
            position_id_per_seconds: f64::from(cfg.thinker().position_id_per_seconds),
            seconds_per_chunk: f64::from(cfg.thinker().seconds_per_chunk),
        };
        (t.specials().iter().all(|&id| id > 255)).then_some(t)
    }

    fn specials(&self) -> [u32; 10] {
        [
            self.im_start,
            self.im_end,
            self.end_of_text,
            self.audio,
            self.audio_bos,
            self.audio_eos,
            self.vision_bos,
            self.vision_eos,
            self.image,
            self.video,
        ]
    }

    /// One past the largest id this tokenizer produces (sampling is limited to it).
    pub fn vocab_limit(&self) -> usize {
        self.specials().iter().max().map_or(256, |&m| m as usize + 1)
    }

    fn bytes(text: &str) -> impl Iterator<Item = u32> + '_ {
        text.bytes().map(u32::from)
    }

    fn grid(&self, g: &[usize; 3]) -> usize {
        g.iter().product::<usize>() / (self.merge * self.merge)
    }
}

impl PromptEncoder for SmallTokenizer {
    fn encode_message(&self, message: &Message) -> Result<Vec<u32>, EncodeError> {
        let mut ids = vec![self.im_start];
        ids.extend(Self::bytes(message.role.as_str()));
        ids.push(u32::from(b'\n'));
        for part in &message.parts {
            match part {
                Part::Text(t) => ids.extend(Self::bytes(t)),
                Part::Image { grid_thw } => {
                    ids.push(self.vision_bos);
                    ids.extend(std::iter::repeat_n(self.image, self.grid(grid_thw)));
                    ids.push(self.vision_eos);
                }
                Part::Video { grid_thw } => {
                    ids.push(self.vision_bos);
                    ids.extend(std::iter::repeat_n(self.video, self.grid(grid_thw)));
                    ids.push(self.vision_eos);
                }
                Part::Audio { tokens } => {
                    ids.push(self.audio_bos);
                    ids.extend(std::iter::repeat_n(self.audio, *tokens));
                    ids.push(self.audio_eos);
                }
                Part::VideoWithAudio { grid_thw, second_per_grid, audio_tokens } => {
                    // Interleaved by time chunk, as the Qwen2.5-Omni processor lays it out.
                    ids.extend([self.vision_bos, self.audio_bos]);
                    let per_grid = self.grid(grid_thw) / grid_thw[0].max(1);
                    let runs = interleave_runs(
                        grid_thw[0],
                        per_grid,
                        *second_per_grid,
                        *audio_tokens,
                        self.position_id_per_seconds,
                        self.seconds_per_chunk,
                    );
                    for run in runs {
                        match run {
                            Run::Video(n) => ids.extend(std::iter::repeat_n(self.video, n)),
                            Run::Audio(n) => ids.extend(std::iter::repeat_n(self.audio, n)),
                        }
                    }
                    ids.extend([self.audio_eos, self.vision_eos]);
                }
            }
        }
        ids.extend([self.im_end, u32::from(b'\n')]);
        Ok(ids)
    }

    fn generation_prompt(&self) -> Result<Vec<u32>, EncodeError> {
        let mut ids = vec![self.im_start];
        ids.extend(Self::bytes("assistant\n"));
        Ok(ids)
    }

    fn end_of_turn(&self) -> Result<Vec<u32>, EncodeError> {
        Ok(vec![self.im_end, u32::from(b'\n')])
    }

    fn stop_ids(&self) -> Vec<u32> {
        vec![self.im_end, self.end_of_text]
    }

    fn encode_text(&self, text: &str) -> Result<Vec<u32>, EncodeError> {
        Ok(Self::bytes(text).collect())
    }

    fn decode(&self, ids: &[u32]) -> Result<String, EncodeError> {
        let bytes: Vec<u8> = ids.iter().filter_map(|&id| u8::try_from(id).ok()).collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
