//! The Rust chat template + placeholder expansion against transformers' tokenizer on the real
//! Qwen2.5 BPE (tests/fixtures/model/chat_ids.json, written by scripts/make_model_fixtures.py):
//! text with spaces, tabs, newlines and CJK, images, audio, silent video and audio-in-video.
//! Needs the converted tokenizer (`scripts/fetch_qwen_tokenizer.sh`); skips with a message
//! when it is not cached. Media ids come from the 7B config, never from constants here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rollout::chat::{ChatTokenizer, Message, Part, Role, audio_tokens_for_frames};
use serde_json::Value;
use std::path::PathBuf;
use trainer::model::OmniThinkerConfig;

fn grids(v: &Value, key: &str) -> Vec<[usize; 3]> {
    v[key].as_array().map_or(Vec::new(), |a| {
        a.iter()
            .map(|g| {
                let g: Vec<usize> = g.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
                [g[0], g[1], g[2]]
            })
            .collect()
    })
}

/// HF-style messages + media sizes → our messages.
fn messages(conv: &Value) -> Vec<Message> {
    let media = &conv["media"];
    let mut images = grids(media, "image_grids").into_iter();
    let mut videos = grids(media, "video_grids").into_iter();
    let mut spg = media["spg"].as_array().cloned().unwrap_or_default().into_iter().map(|x| x.as_f64().unwrap());
    let mut audios =
        media["audio_frames"].as_array().cloned().unwrap_or_default().into_iter().map(|x| x.as_u64().unwrap());
    let in_video = media["audio_in_video"].as_bool().unwrap_or(false);
    let mut out = Vec::new();
    for m in conv["messages"].as_array().unwrap() {
        let role = match m["role"].as_str().unwrap() {
            "system" => Role::System,
            "user" => Role::User,
            _ => Role::Assistant,
        };
        let mut parts = Vec::new();
        for c in m["content"].as_array().unwrap() {
            parts.push(match c["type"].as_str().unwrap() {
                "text" => Part::Text(c["text"].as_str().unwrap().to_string()),
                "image" => Part::Image { grid_thw: images.next().unwrap() },
                "audio" => Part::Audio { tokens: audio_tokens_for_frames(audios.next().unwrap() as usize) },
                "video" if in_video => Part::VideoWithAudio {
                    grid_thw: videos.next().unwrap(),
                    second_per_grid: spg.next().unwrap(),
                    audio_tokens: audio_tokens_for_frames(audios.next().unwrap() as usize),
                },
                _ => {
                    spg.next();
                    Part::Video { grid_thw: videos.next().unwrap() }
                }
            });
        }
        out.push(Message::new(role, parts));
    }
    out
}

#[test]
fn chat_template_ids_equal_transformers_on_the_real_tokenizer() {
    let Some(path) = rollout::prerequisite::require_qwen_tokenizer() else { return };
    let cfg = OmniThinkerConfig::from_json_str(trainer::model::QWEN25_OMNI_7B_THINKER_JSON).unwrap();
    let tok = ChatTokenizer::from_file(&path, trainer::model::chat_config(&cfg)).unwrap();
    assert_eq!(tok.vocab_size(), 151_665);
    assert_eq!(tok.special_ids().im_start, cfg.thinker().bos_token_id.unwrap());
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model/chat_ids.json");
    let convs: Vec<Value> = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    assert!(convs.len() >= 4);
    for (i, conv) in convs.iter().enumerate() {
        let want: Vec<u32> = conv["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        let got = tok.render(&messages(conv), true).unwrap();
        assert_eq!(got.len(), want.len(), "conversation {i}: length");
        assert_eq!(got, want, "conversation {i}");
    }
    // Round trip and the reference's ids (docs/reference.md#token-ids): "assistant" 77091, "\n" 198.
    assert_eq!(tok.encode_text("assistant\n").unwrap(), [77091, 198]);
    let text = "Hello 世界\n\tok";
    assert_eq!(tok.decode(&tok.encode_text(text).unwrap(), false).unwrap(), text);
}
