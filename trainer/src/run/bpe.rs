//! A byte-level BPE tokenizer trained for a run (the `tokenizers` crate's trainer), for a
//! random-initialised model whose `config.json` puts the chat and media markers at ids 0-10 in
//! [`BPE_SPECIALS`] order. The quickstart uses it: the real 152k-token Qwen vocabulary would
//! make a CPU run crawl, and a byte vocabulary makes every turn several times longer.
//!
//! The corpus is the text the model will read and write: the expert's trajectories on the run's
//! RL prompts (system prompt, questions, environment feedback, responses). Pre-tokenisation and
//! decoding are GPT-2 byte-level, so the 256 byte symbols are always in the vocabulary and no
//! text is ever out of vocabulary.
//!
//! Left out: normalisation and a post-processor (the chat renderer places every control token).

use super::RunError;
use crate::model::OmniThinkerConfig;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

/// Control and media tokens of a trained tokenizer, in id order (ids 0-10).
pub const BPE_SPECIALS: [&str; 11] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<|vision_pad|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
];

/// Whether `cfg` puts its special ids where a trained tokenizer has them (pad, bos, eos, audio,
/// audio start/end, vision start/end, vision pad, image, video = 0..=10).
pub fn config_wants_trained_bpe(cfg: &OmniThinkerConfig) -> bool {
    let s = cfg.special_tokens();
    let ids = [
        s.pad,
        s.bos,
        s.eos.first().copied(),
        Some(s.audio),
        Some(s.audio_start),
        Some(s.audio_end),
        Some(s.vision_start),
        Some(s.vision_end),
        s.vision_pad,
        Some(s.image),
        Some(s.video),
    ];
    ids.iter().enumerate().all(|(i, id)| *id == Some(i as u32))
}

/// Trains a byte-level BPE with `vocab_size` entries (specials and the byte alphabet included)
/// on `corpus`; returns the `tokenizer.json` text.
pub fn train_bpe(corpus: &[String], vocab_size: usize) -> Result<String, RunError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| RunError::Model(format!("training the tokenizer: {what}: {e}"));
    let specials: Vec<AddedToken> = BPE_SPECIALS.iter().map(|s| AddedToken::from(*s, true)).collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tok = TokenizerBuilder::<BPE, NormalizerWrapper, ByteLevel, PostProcessorWrapper, ByteLevel>::new()
        .with_model(BPE::default())
        .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
        .with_decoder(Some(ByteLevel::default()))
        .build()
        .map_err(|e| fail("building", &e))?;
    tok.train(&mut trainer, corpus.iter()).map_err(|e| fail("training", &e))?;
    let tok = Tokenizer::from(tok);
    for (id, name) in BPE_SPECIALS.iter().enumerate() {
        if tok.token_to_id(name) != Some(id as u32) {
            return Err(RunError::Model(format!("training the tokenizer: `{name}` did not get id {id}")));
        }
    }
    tok.to_string(false).map_err(|e| fail("serialising", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_tokenizer_has_specials_first_and_round_trips_any_text() {
        let corpus: Vec<String> = (0..50)
            .map(|i| format!("{{\"observation\": \"{i}.5s green.\", \"action\": {{\"type\": \"answer\"}}}}"))
            .collect();
        let json = train_bpe(&corpus, 400).unwrap();
        let tok = Tokenizer::from_bytes(json.as_bytes()).unwrap();
        for (id, name) in BPE_SPECIALS.iter().enumerate() {
            assert_eq!(tok.token_to_id(name), Some(id as u32));
        }
        assert!(tok.get_vocab_size(true) > 256 + BPE_SPECIALS.len(), "merges were learnt");
        let text = "{\"observation\": \"3.5s green.\"} ünïcode never seen ✓";
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        let seen = tok.encode("{\"observation\": \"3.5s green.\"}", false).unwrap();
        assert!(seen.get_ids().len() < 16, "templated text is a few tokens: {:?}", seen.get_tokens());
    }
}
