#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Token-exact contexts: each prompt extends the previous one (unchanged segments byte for
//! byte, the sampled response verbatim), only changed messages are re-encoded, and the prefix
//! check catches a context that was not built by appending. With the byte tokenizer the
//! appended context must equal a full re-render of the history; with the real Qwen tokenizer
//! (scripts/fetch_qwen_tokenizer.sh) the user and system segments must.

mod episode_common;

use episode_common::*;
use rollout::chat::{ChatConfig, ChatTokenizer};
use rollout::episode::tokens::{PrefixError, PromptView, check_extends};
use rollout::episode::{ByteTokenizer, EpisodeSettings, PromptEncoder, Response, SegmentSpan, SyntheticMedia, to_chat};
use std::sync::Arc;

fn script() -> Vec<String> {
    vec![frames(0.0, 12.0, 3), "not json".into(), audio(1.0, 3.0), clip(2.0, 4.0), answer("B")]
}

struct Snapshot {
    step: u32,
    ids: Vec<u32>,
    spans: Vec<SegmentSpan>,
    response: Vec<u32>,
}

/// Plays the script, returning each prompt with the response sampled from it.
fn play(enc: Arc<dyn PromptEncoder>) -> (Vec<Snapshot>, rollout::episode::Episode) {
    let env = SyntheticMedia::default();
    let mut ep = episode(mcq_tone(), EpisodeSettings::train(), Some(enc.clone()));
    let mut snaps = Vec::new();
    for r in script() {
        let (ids, spans) = ep.prompt().unwrap();
        let mut response = enc.encode_text(&r).unwrap();
        response.extend(enc.stop_ids().first()); // sampled up to and including <|im_end|>
        snaps.push(Snapshot { step: ep.steps_taken() + 1, ids, spans, response: response.clone() });
        ep.step(Response::sampled(r, response), &env);
    }
    (snaps, ep)
}

fn view(s: &Snapshot) -> PromptView<'_> {
    PromptView { step: s.step, ids: &s.ids, spans: &s.spans, response: &s.response }
}

#[test]
fn byte_tokenizer_contexts_equal_a_full_rerender() {
    let enc: Arc<dyn PromptEncoder> = Arc::new(ByteTokenizer);
    let (snaps, ep) = play(enc.clone());
    let ctx = ep.tokens().unwrap();
    for pair in snaps.windows(2) {
        check_extends(&view(&pair[0]), &view(&pair[1]), |r| ctx.assistant_segment(r)).unwrap();
    }
    // The final context equals rendering every message from scratch.
    let mut full: Vec<u32> = ep.chat_history().iter().flat_map(|m| enc.encode_message(m).unwrap()).collect();
    full.extend(enc.generation_prompt().unwrap());
    assert_eq!(ep.prompt().unwrap().0, full);
    // Segment versions say which step re-encoded them: the system prompt never changes.
    let (_, spans) = ep.prompt().unwrap();
    assert_eq!(spans[0].version, 0);
    assert_eq!(spans.last().unwrap().version, 5);
    assert!(ep.is_done());
}

#[test]
fn any_later_turn_extends_any_earlier_one() {
    // Between any two turns (a trajectory whose retries were dropped compares non-adjacent
    // steps), unchanged segments must match and the earlier response must be the message right
    // after the earlier prompt.
    let enc: Arc<dyn PromptEncoder> = Arc::new(ByteTokenizer);
    let (snaps, ep) = play(enc);
    let ctx = ep.tokens().unwrap();
    for i in 0..snaps.len() {
        for j in i + 1..snaps.len() {
            check_extends(&view(&snaps[i]), &view(&snaps[j]), |r| ctx.assistant_segment(r)).unwrap();
        }
    }
}

#[test]
fn the_prefix_check_catches_drift() {
    let enc: Arc<dyn PromptEncoder> = Arc::new(ByteTokenizer);
    let (snaps, ep) = play(enc);
    let ctx = ep.tokens().unwrap();
    let (a, b) = (&snaps[2], &snaps[3]);
    // A re-tokenised response (one token changed).
    let mut drifted = b.ids.clone();
    let reply = b.spans[a.spans.len()];
    drifted[reply.start + 20] += 1;
    let bad = PromptView { ids: &drifted, ..view(b) };
    assert_eq!(
        check_extends(&view(a), &bad, |r| ctx.assistant_segment(r)),
        Err(PrefixError::Response { earlier: a.step, later: b.step })
    );
    // A system prompt that changed without being re-encoded.
    let mut drifted = b.ids.clone();
    drifted[5] += 1;
    let bad = PromptView { ids: &drifted, ..view(b) };
    assert_eq!(
        check_extends(&view(a), &bad, |r| ctx.assistant_segment(r)),
        Err(PrefixError::Changed { message: 0, earlier: a.step, later: b.step })
    );
    // Spans that do not tile the prompt.
    let mut spans = b.spans.clone();
    spans[1].start += 1;
    let bad = PromptView { spans: &spans, ..view(b) };
    assert!(matches!(check_extends(&view(a), &bad, |r| ctx.assistant_segment(r)), Err(PrefixError::Layout { .. })));
}

#[test]
fn stop_ids_are_trimmed_from_the_appended_response() {
    let enc: Arc<dyn PromptEncoder> = Arc::new(ByteTokenizer);
    let mut ep = episode(mcq_tone(), EpisodeSettings::train(), Some(enc.clone()));
    let r = frames(0.0, 1.0, 2);
    let mut ids = enc.encode_text(&r).unwrap();
    ids.extend([ByteTokenizer::IM_END, ByteTokenizer::END_OF_TEXT]);
    ep.step(Response::sampled(r.clone(), ids), &SyntheticMedia::default());
    let (prompt, spans) = ep.prompt().unwrap();
    let asst = spans[2];
    let seg = &prompt[asst.start..asst.start + asst.len];
    let mut want = enc.generation_prompt().unwrap();
    want.extend(enc.encode_text(&r).unwrap());
    want.extend(enc.end_of_turn().unwrap());
    assert_eq!(seg, want.as_slice());
}

fn qwen() -> Option<ChatTokenizer> {
    let path = rollout::prerequisite::require_qwen_tokenizer()?;
    let bytes = std::fs::read(&path).unwrap();
    let cfg = ChatConfig::from_token_names(&bytes, "qwen tokenizer").unwrap();
    Some(ChatTokenizer::from_file(&path, cfg).unwrap())
}

#[test]
fn real_qwen_tokenizer_contexts_extend_and_match_the_template() {
    let Some(tok) = qwen() else { return };
    let enc: Arc<dyn PromptEncoder> = Arc::new(tok);
    let (snaps, ep) = play(enc.clone());
    let ctx = ep.tokens().unwrap();
    for pair in snaps.windows(2) {
        check_extends(&view(&pair[0]), &view(&pair[1]), |r| ctx.assistant_segment(r)).unwrap();
    }
    let (ids, spans) = ep.prompt().unwrap();
    for (m, span) in ep.history().iter().zip(&spans) {
        if m.role != rollout::data::Role::Assistant {
            assert_eq!(&ids[span.start..span.start + span.len], enc.encode_message(&to_chat(m)).unwrap().as_slice());
        }
    }
    // Decoding a sampled response gives back the text the parser saw.
    let text = frames(0.0, 12.0, 3);
    assert_eq!(enc.decode(&enc.encode_text(&text).unwrap()).unwrap(), text);
    assert_eq!(enc.generation_prompt().unwrap(), [151644, 77091, 198]);
    assert_eq!(enc.end_of_turn().unwrap(), [151645, 198]);
}

#[test]
fn media_ids_looked_up_by_name_match_the_released_table() {
    let Some(path) = rollout::prerequisite::require_qwen_tokenizer() else { return };
    let cfg = ChatConfig::from_token_names(&std::fs::read(&path).unwrap(), "qwen").unwrap();
    // docs/reference.md#token-ids: <|IMAGE|> 151655, <|VIDEO|> 151656, <|AUDIO|> 151646,
    // <|vision_bos|> 151652, <|vision_eos|> 151653, <|audio_bos|> 151647, <|audio_eos|> 151648.
    let got = (cfg.image, cfg.video, cfg.audio, cfg.vision_bos, cfg.vision_eos, cfg.audio_bos, cfg.audio_eos);
    assert_eq!(got, (151655, 151656, 151646, 151652, 151653, 151647, 151648));
    assert!(ChatConfig::from_token_names(b"{\"added_tokens\": []}", "empty").is_err());
}
