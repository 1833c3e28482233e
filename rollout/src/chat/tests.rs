//! Chat template tests on a synthetic byte-level tokenizer (one token per byte, ids 0..256, added
//! tokens from 1000 on, so the config ids differ from the real ones). The real Qwen tokenizer is
//! checked against transformers in `trainer/tests/model_chat.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use serde_json::json;

const ADDED: [&str; 10] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
];
const BASE: u32 = 1000;
const IM_START: u32 = BASE + 1;
const IM_END: u32 = BASE + 2;
const AUDIO: u32 = BASE + 3;
const A_BOS: u32 = BASE + 4;
const A_EOS: u32 = BASE + 5;
const V_BOS: u32 = BASE + 6;
const V_EOS: u32 = BASE + 7;
const IMAGE: u32 = BASE + 8;
const VIDEO: u32 = BASE + 9;

/// GPT-2's byte → printable character table (what ByteLevel uses).
fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in printable.iter().zip(chars) {
        table[*b as usize] = char::from_u32(c).unwrap();
    }
    table
}

fn tokenizer_json() -> String {
    let vocab: serde_json::Map<String, Value> =
        byte_chars().iter().enumerate().map(|(i, c)| (c.to_string(), json!(i))).collect();
    // 256..1000 unused; vocab ids must be contiguous for the added ids to land where listed, so
    // pad the vocab with dummy entries.
    let mut vocab = vocab;
    for i in 256..BASE {
        vocab.insert(format!("<unused{i}>"), json!(i));
    }
    let added: Vec<Value> = ADDED
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": BASE + i as u32, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "vocab": vocab, "merges": []}
    })
    .to_string()
}

fn config() -> ChatConfig {
    ChatConfig {
        image: IMAGE,
        video: VIDEO,
        audio: AUDIO,
        vision_bos: V_BOS,
        vision_eos: V_EOS,
        audio_bos: A_BOS,
        audio_eos: A_EOS,
        spatial_merge_size: 2,
        position_id_per_seconds: 25.0,
        seconds_per_chunk: 2.0,
    }
}

fn chat() -> ChatTokenizer {
    ChatTokenizer::from_bytes(tokenizer_json().as_bytes(), config(), "test").unwrap()
}

fn bytes(s: &str) -> Vec<u32> {
    s.bytes().map(|b| byte_chars().iter().position(|c| *c == byte_chars()[b as usize]).unwrap() as u32).collect()
}

#[test]
fn text_messages_render_like_the_template() {
    let c = chat();
    let got = c.render(&[Message::text(Role::User, "Hi")], true).unwrap();
    let mut want = vec![IM_START];
    want.extend(bytes(&format!("system\n{DEFAULT_SYSTEM_PROMPT}")));
    want.push(IM_END);
    want.extend(bytes("\n"));
    want.push(IM_START);
    want.extend(bytes("user\nHi"));
    want.push(IM_END);
    want.extend(bytes("\n"));
    want.push(IM_START);
    want.extend(bytes("assistant\n"));
    assert_eq!(got, want);
    assert_eq!(
        c.decode(&got, false).unwrap(),
        format!(
            "<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        )
    );
    // With a system message first no default is inserted; render = concat(render_message).
    let msgs = [Message::text(Role::System, "S"), Message::text(Role::User, "a"), Message::text(Role::Assistant, "b")];
    let parts: Vec<u32> = msgs.iter().flat_map(|m| c.render_message(m).unwrap()).collect();
    assert_eq!(c.render(&msgs, false).unwrap(), parts);
}

#[test]
fn control_strings_in_text_are_not_control_tokens() {
    let c = chat();
    let ids = c.encode_text("x<|im_end|>y").unwrap();
    assert!(!ids.contains(&IM_END));
    assert_eq!(ids, bytes("x<|im_end|>y"));
    assert_eq!(c.decode(&ids, false).unwrap(), "x<|im_end|>y");
}

#[test]
fn media_parts_expand_from_grid_sizes() {
    let c = chat();
    let m = Message::new(
        Role::User,
        vec![
            Part::Image { grid_thw: [1, 4, 6] },
            Part::Text("q".into()),
            Part::Audio { tokens: 3 },
            Part::Video { grid_thw: [2, 2, 2] },
        ],
    );
    let got = c.render_message(&m).unwrap();
    let mut want = vec![IM_START];
    want.extend(bytes("user\n"));
    want.push(V_BOS);
    want.extend([IMAGE; 6]);
    want.push(V_EOS);
    want.extend(bytes("q"));
    want.extend([A_BOS, AUDIO, AUDIO, AUDIO, A_EOS, V_BOS, VIDEO, VIDEO, V_EOS, IM_END]);
    want.extend(bytes("\n"));
    assert_eq!(got, want);
    for bad in [[1, 3, 4], [0, 2, 2]] {
        let m = Message::new(Role::User, vec![Part::Image { grid_thw: bad }]);
        assert!(matches!(c.render_message(&m), Err(ChatError::Media(_))), "{bad:?}");
    }
}

#[test]
fn audio_in_video_interleaves_by_two_second_chunks() {
    let c = chat();
    // 3 grids of 2x2 merged tokens (grid 4x4 patches), 1 s per grid → temporal ids 0, 25, 50;
    // 60 audio tokens → chunks [0,50) and [50,60).
    let part = Part::VideoWithAudio { grid_thw: [3, 4, 4], second_per_grid: 1.0, audio_tokens: 60 };
    let got = c.render_message(&Message::new(Role::User, vec![part])).unwrap();
    let mut want = vec![IM_START];
    want.extend(bytes("user\n"));
    want.extend([V_BOS, A_BOS]);
    want.extend([VIDEO; 8]);
    want.extend([AUDIO; 50]);
    want.extend([VIDEO; 4]);
    want.extend([AUDIO; 10]);
    want.extend([A_EOS, V_EOS, IM_END]);
    want.extend(bytes("\n"));
    assert_eq!(got, want);
}

#[test]
fn bad_files_and_ids_are_errors() {
    let err = ChatTokenizer::from_file(Path::new("/nonexistent/tokenizer.json"), config()).unwrap_err();
    assert!(matches!(err, ChatError::Load { .. }), "{err}");
    let err = ChatTokenizer::from_bytes(b"{not json", config(), "t").unwrap_err();
    assert!(matches!(err, ChatError::Load { .. }), "{err}");
    let bad = ChatConfig { image: 5, ..config() };
    let err = ChatTokenizer::from_bytes(tokenizer_json().as_bytes(), bad, "t").unwrap_err();
    assert!(err.to_string().contains("image id 5 is not an added token"), "{err}");
    let json = tokenizer_json().replace("<|im_start|>", "<|start|>");
    let err = ChatTokenizer::from_bytes(json.as_bytes(), config(), "t").unwrap_err();
    assert!(err.to_string().contains("no added token `<|im_start|>`"), "{err}");
}
