#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property test: arbitrary response strings (raw bytes-as-text and near-miss JSON actions)
//! under arbitrary settings never panic the episode and always leave it in a valid state:
//! the step count within budget, at most one raw media message, the message alternation, one
//! notice at the very end, outcome fields consistent with each other, retry semantics, and a
//! token context equal to a full re-render of the history.

mod episode_common;

use episode_common::{mcq_silent, mcq_tone};
use proptest::prelude::*;
use rollout::data::Role;
use rollout::episode::{
    ActionType, ByteTokenizer, Episode, EpisodeSettings, ErrorCode, Part, PromptEncoder, Response, SyntheticMedia,
};
use rollout::prompt::PromptTemplate;
use std::sync::Arc;

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0i64..13).prop_map(|n| n.to_string()),
        3 => (0.0f64..12.0).prop_map(|x| format!("{x:?}")),
        1 => (-5i64..40).prop_map(|n| n.to_string()),
        2 => (58i64..70).prop_map(|n| n.to_string()),
        1 => (-5.0f64..40.0).prop_map(|x| format!("{x:?}")),
        1 => Just("NaN".to_string()),
        1 => Just("-Infinity".to_string()),
        1 => Just("1e400".to_string()),
        1 => Just("true".to_string()),
        1 => Just("\"3\"".to_string()),
        1 => Just("123456789012345678901234567890123456789012".to_string()),
    ]
}

fn action() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        Just("get_frames"),
        Just("get_audio"),
        Just("get_clip"),
        Just("answer"),
        Just("zoom"),
        Just("GET_FRAMES"),
    ];
    let content = prop_oneof![
        Just("\"B\"".to_string()),
        Just("\"A\"".to_string()),
        Just("3".to_string()),
        Just("null".to_string()),
        "[a-zA-Z ]{0,6}".prop_map(|s| format!("{s:?}")),
    ];
    let num = prop_oneof![3 => (-2i64..6).prop_map(|n| n.to_string()), 1 => (58i64..70).prop_map(|n| n.to_string()), 1 => number()];
    (kind, number(), number(), num, content, proptest::bool::ANY).prop_map(|(k, s, e, n, c, with_num)| {
        let num = if with_num { format!(", \"num\": {n}") } else { String::new() };
        format!(r#"{{"type": "{k}", "start": {s}, "end": {e}{num}, "content": {c}}}"#)
    })
}

fn response() -> impl Strategy<Value = String> {
    let structured = (action(), 0u8..10, "[ -~]{0,8}").prop_map(|(a, variant, junk)| {
        let base = format!(r#"{{"observation": "o", "think": "t", "confidence": 0.5, "action": {a}}}"#);
        match variant {
            0 => format!("```json\n{base}\n```"),
            1 => format!("{base}{junk}}}"),
            2 => base.replacen(r#""confidence": 0.5, "#, "", 1),
            3 => base.replacen(r#""think": "t""#, r#""think": "t", "extra": 1"#, 1),
            4 => base[..base.len() / 2].to_string(),
            5 => format!("\n  {base}\t"),
            6 => base.replace(", ", ",\n"),
            _ => base,
        }
    });
    prop_oneof![3 => structured, 1 => any::<String>(), 1 => "[{}\\[\\]\",:0-9a-z ]{0,40}"]
}

fn settings() -> impl Strategy<Value = EpisodeSettings> {
    (
        proptest::bool::ANY,
        proptest::bool::ANY,
        proptest::bool::ANY,
        proptest::bool::ANY,
        proptest::bool::ANY,
        0u32..7,
        300u32..2000,
    )
        .prop_map(|(strict, retry, delete, hide, terminate, steps, prompt)| {
            let mut s = EpisodeSettings::train();
            s.strict_confidence = strict;
            s.retry_on_format_error = retry;
            s.delete_media_on_error = delete;
            s.hide_unavailable_audio = hide;
            s.terminate_on_invalid = terminate;
            if steps > 0 {
                s.limits.dynamic_steps = false;
                s.limits.max_steps = steps;
            }
            // System prompt ~3.7k bytes: a small limit makes the token guard fire sometimes.
            s.limits.max_prompt_tokens = 3700 + prompt;
            s
        })
}

fn check_invariants(
    ep: &Episode,
    o: &rollout::episode::StepOutcome,
    calls: usize,
    was_done: bool,
    enc: &dyn PromptEncoder,
) {
    assert!(o.step <= ep.max_steps() && o.step == ep.steps_taken());
    assert_eq!(ep.is_done(), o.done || was_done);
    if was_done {
        assert_eq!((o.error_code, o.stored), (Some(ErrorCode::EnvAlreadyDone), false));
    }
    assert!(ep.raw_media_messages() <= 1);
    let h = ep.history();
    assert_eq!(h.len(), 2 + 2 * calls);
    assert_eq!(h[0].role, Role::System);
    for (i, m) in h.iter().enumerate().skip(1) {
        assert_eq!(m.role, if i % 2 == 1 { Role::User } else { Role::Assistant });
        assert!(!m.parts.is_empty());
    }
    let notices: Vec<(usize, usize)> = h
        .iter()
        .enumerate()
        .flat_map(|(i, m)| {
            m.parts
                .iter()
                .enumerate()
                .filter(|(_, p)| matches!(p, Part::Text(t) if t.trim_start().starts_with("[NOTICE]")))
                .map(move |(j, _)| (i, j))
        })
        .collect();
    assert_eq!(notices, vec![(h.len() - 1, h[h.len() - 1].parts.len() - 1)]);
    match o.error_code {
        None => assert!(o.action_type.is_some() && o.is_action_valid),
        Some(code) => assert_eq!(
            o.is_action_valid,
            code.is_valid_action() || code == ErrorCode::TokenLimitExceeded && o.is_action_valid
        ),
    }
    assert!((0.0..=1.0).contains(&o.reward));
    if o.reward > 0.0 {
        assert_eq!((o.action_type, o.error_code, o.done), (Some(ActionType::Answer), None, true));
    }
    let retry = ep.settings().retry_on_format_error;
    let dropped_retry = retry && !o.is_action_valid && !o.done;
    assert_eq!(o.stored, !was_done && !dropped_retry);
    if ep.broken().is_none() {
        let mut full: Vec<u32> = ep.chat_history().iter().flat_map(|m| enc.encode_message(m).unwrap()).collect();
        full.extend(enc.generation_prompt().unwrap());
        assert_eq!(ep.prompt().unwrap().0, full);
        assert_eq!(o.prompt_tokens, Some(full.len()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_responses_never_break_an_episode(
        responses in proptest::collection::vec(response(), 1..12),
        settings in settings(),
        silent in proptest::bool::ANY,
        fail in proptest::bool::ANY,
    ) {
        let spec = if silent { mcq_silent() } else { mcq_tone() };
        let enc = ByteTokenizer;
        let template = PromptTemplate::default_template().unwrap();
        let mut ep = Episode::new(Arc::new(spec), Arc::new(settings), &template, Some(Arc::new(enc.clone())));
        let media = SyntheticMedia { has_audio: !silent, fail: fail && responses.len() % 3 == 0, ..SyntheticMedia::default() };
        for (i, r) in responses.iter().enumerate() {
            let was_done = ep.is_done();
            let o = ep.step(Response::text(r.clone()), &media);
            check_invariants(&ep, &o, i + 1, was_done, &enc);
        }
    }
}

/// The generators reach deep into the state machine: most codes come up in a fixed sample.
#[test]
fn the_generators_cover_the_taxonomy() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (proptest::collection::vec(response(), 1..12), settings(), proptest::bool::ANY);
    let template = PromptTemplate::default_template().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..1500 {
        let (responses, settings, silent) = strategy.new_tree(&mut runner).unwrap().current();
        let spec = if silent { mcq_silent() } else { mcq_tone() };
        let mut ep = Episode::new(Arc::new(spec), Arc::new(settings), &template, Some(Arc::new(ByteTokenizer)));
        let media = SyntheticMedia { has_audio: !silent, ..SyntheticMedia::default() };
        for r in responses {
            seen.insert(ep.step(Response::text(r), &media).error_name());
        }
    }
    for code in [
        "OK",
        "INVALID_JSON",
        "TRAILING_GARBAGE",
        "UNKNOWN_ACTION_TYPE",
        "CLIP_ARG_TYPE",
        "AUDIO_ARG_TYPE",
        "ANSWER_NOT_STRING",
        "ENV_ALREADY_DONE",
        "STEP_LIMIT_REACHED",
        "EARLY_ANSWER",
        "FRAME_TS_OOB",
        "CLIP_NEG_LEN",
        "TOO_MANY_FRAMES",
        "INVALID_FRAME_NUM",
        "NO_AUDIO",
        "AUDIO_RANGE",
        "CLIP_RANGE",
        "TOKEN_LIMIT_EXCEEDED",
    ] {
        assert!(seen.contains(code), "{code} never came up: {seen:?}");
    }
}
