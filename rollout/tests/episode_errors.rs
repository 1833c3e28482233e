#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every error code of docs/reference.md#error-codes from scripted responses on generated videos
//! (with and without an audio track): the code, `is_action_valid`, termination, whether the turn
//! is stored (retry semantics), and the exact `[ERROR]` message the model sees next (the texts
//! of docs/reference.md#error-codes and docs/reference.md#invalid-actions).

mod episode_common;

use episode_common::*;
use rewards::QuestionType;
use rollout::episode::budget::notice_text;
use rollout::episode::{ByteTokenizer, EpisodeSettings, EpisodeSpec, RETRY_HINT, SyntheticMedia};
use std::sync::Arc;

struct Case {
    name: &'static str,
    spec: EpisodeSpec,
    settings: EpisodeSettings,
    responses: Vec<String>,
    code: &'static str,
    valid: bool,
    done: bool,
    /// The `[ERROR]` text (without the retry hint and the notice).
    error: &'static str,
}

fn case(
    name: &'static str,
    spec: EpisodeSpec,
    responses: Vec<String>,
    code: &'static str,
    valid: bool,
    done: bool,
    error: &'static str,
) -> Case {
    Case { name, spec, settings: EpisodeSettings::train(), responses, code, valid, done, error }
}

fn cases() -> Vec<Case> {
    let v = videos();
    let tr = spec(&v.with_audio, QuestionType::Tr, "[[1, 2]]", 12.0, 25.0, true);
    let num = spec(&v.with_audio, QuestionType::Num, "3", 12.0, 25.0, true);
    let small = |spec: EpisodeSpec| {
        let mut s = EpisodeSettings::train();
        s.limits.max_audio_seconds = 5.0;
        s.limits.max_clip_seconds = 5.0;
        s.limits.dynamic_steps = false;
        s.limits.max_steps = 5;
        (spec, s)
    };
    let f = frames(0.0, 12.0, 4);
    let mut out = vec![
        case(
            "not json",
            mcq_tone(),
            vec!["I will look at the video.".into()],
            "INVALID_JSON",
            false,
            false,
            "[ERROR] INVALID_JSON: must start with '{' and end with '}'.",
        ),
        case(
            "code fence",
            mcq_tone(),
            vec![format!("```json\n{f}\n```")],
            "INVALID_JSON",
            false,
            false,
            "[ERROR] INVALID_JSON: must be raw JSON without code fence or outer quotes.",
        ),
        case(
            "decode error",
            mcq_tone(),
            vec![r#"{"observation": "x" "think": "y"}"#.into()],
            "INVALID_JSON",
            false,
            false,
            "[ERROR] INVALID_JSON: json decode error: Expecting ',' delimiter: line 1 column 21 (char 20).",
        ),
        case(
            "missing confidence (strict)",
            mcq_tone(),
            vec![
                r#"{"observation": "", "think": "", "action": {"type": "get_frames", "start": 0, "end": 1, "num": 2}}"#
                    .into(),
            ],
            "INVALID_JSON",
            false,
            false,
            "[ERROR] INVALID_JSON: missing keys: ['confidence'].",
        ),
        case(
            "trailing garbage",
            mcq_tone(),
            vec![format!("{f} {{}}")],
            "TRAILING_GARBAGE",
            false,
            false,
            "[ERROR] INVALID_JSON: extra characters after JSON.",
        ),
        case(
            "unknown action",
            mcq_tone(),
            vec![act(r#"{"type": "zoom"}"#)],
            "UNKNOWN_ACTION_TYPE",
            false,
            false,
            "[ERROR] INVALID_JSON: unknown action.type: zoom.",
        ),
        case(
            "clip arg",
            mcq_tone(),
            vec![act(r#"{"type": "get_clip", "start": "0", "end": 2}"#)],
            "CLIP_ARG_TYPE",
            false,
            false,
            "[ERROR] INVALID_JSON: 'start' missing or not number.",
        ),
        case(
            "audio arg",
            mcq_tone(),
            vec![act(r#"{"type": "get_audio", "start": 0}"#)],
            "AUDIO_ARG_TYPE",
            false,
            false,
            "[ERROR] INVALID_JSON: 'end' missing or not number.",
        ),
        case(
            "answer not string (parse)",
            mcq_tone(),
            vec![f.clone(), act(r#"{"type": "answer", "content": 2}"#)],
            "ANSWER_NOT_STRING",
            false,
            false,
            "[ERROR] INVALID_JSON: 'content' missing or not string.",
        ),
        case(
            "answer not a number",
            num,
            vec![f.clone(), answer("three")],
            "ANSWER_NOT_STRING",
            false,
            false,
            "[ERROR] ANSWER_NOT_STRING: Cannot parse number from answer.",
        ),
        case(
            "already done",
            mcq_tone(),
            vec![f.clone(), answer("B"), f.clone()],
            "ENV_ALREADY_DONE",
            false,
            true,
            "[ERROR] ENV_ALREADY_DONE",
        ),
        case(
            "step limit",
            mcq_tone(),
            vec![f.clone(); 5],
            "STEP_LIMIT_REACHED",
            false,
            true,
            "[ERROR] STEP_LIMIT_REACHED",
        ),
        case(
            "early answer",
            mcq_tone(),
            vec![answer("B")],
            "EARLY_ANSWER",
            false,
            false,
            "[ERROR] EARLY_ANSWER: Must gather evidence before answering",
        ),
        case(
            "frames out of bounds",
            mcq_tone(),
            vec![frames(0.0, 12.5, 4)],
            "FRAME_TS_OOB",
            false,
            false,
            "[ERROR] FRAME_TS_OOB: Range [0.0, 12.5] OOB for 12.0s",
        ),
        case(
            "frames reversed",
            mcq_tone(),
            vec![frames(5.0, 3.0, 2)],
            "CLIP_NEG_LEN",
            false,
            false,
            "[ERROR] CLIP_NEG_LEN: end 3.0 < start 5.0",
        ),
        case("audio empty", mcq_tone(), vec![audio(3.0, 3.0)], "CLIP_NEG_LEN", false, false, "[ERROR] CLIP_NEG_LEN"),
        case("clip reversed", mcq_tone(), vec![clip(4.0, 2.0)], "CLIP_NEG_LEN", false, false, "[ERROR] CLIP_NEG_LEN"),
        case(
            "too many frames",
            mcq_tone(),
            vec![frames(0.0, 12.0, 61)],
            "TOO_MANY_FRAMES",
            false,
            false,
            "[ERROR] TOO_MANY_FRAMES: num 61 > max 60",
        ),
        case(
            "zero frames",
            mcq_tone(),
            vec![frames(0.0, 12.0, 0)],
            "INVALID_FRAME_NUM",
            false,
            false,
            "[ERROR] INVALID_FRAME_NUM: num must be >= 1",
        ),
        case(
            "no audio (masked)",
            mcq_silent(),
            vec![audio(0.0, 5.0)],
            "NO_AUDIO",
            false,
            false,
            "[ERROR] NO_AUDIO: this video has no audio track, so get_audio is not available; use get_frames or get_clip",
        ),
        case(
            "audio before 0",
            mcq_tone(),
            vec![audio(-1.0, 5.0)],
            "AUDIO_RANGE",
            false,
            false,
            "[ERROR] AUDIO_RANGE: start -1.000s < 0",
        ),
        case(
            "audio past the end",
            mcq_tone(),
            vec![audio(0.0, 13.0)],
            "AUDIO_RANGE",
            false,
            false,
            "[ERROR] AUDIO_RANGE: end 13.000s > duration 12.000s",
        ),
        case(
            "audio too short",
            mcq_tone(),
            vec![audio(1.0, 1.05)],
            "AUDIO_TOO_SHORT",
            false,
            false,
            "[ERROR] AUDIO_TOO_SHORT: 0.050s < 0.1s",
        ),
        case(
            "clip before 0",
            mcq_tone(),
            vec![clip(-1.0, 2.0)],
            "CLIP_RANGE",
            false,
            false,
            "[ERROR] CLIP_RANGE: start -1.000s < 0",
        ),
        case(
            "clip past the end",
            mcq_tone(),
            vec![clip(0.0, 13.0)],
            "CLIP_RANGE",
            false,
            false,
            "[ERROR] CLIP_RANGE: end 13.000s > video duration 12.000s",
        ),
        case(
            "clip too short",
            mcq_tone(),
            vec![clip(1.0, 1.1)],
            "CLIP_TOO_SHORT",
            true,
            false,
            "[ERROR] CLIP_TOO_SHORT: 0.100s < 0.160s (need ≥ 4 frames)",
        ),
        case(
            "clip too short (30 fps)",
            mcq_silent(),
            vec![clip(2.0, 2.1)],
            "CLIP_TOO_SHORT",
            true,
            false,
            "[ERROR] CLIP_TOO_SHORT: 0.100s < 0.133s (need ≥ 4 frames)",
        ),
        case(
            "audio track missing",
            spec(&v.silent, QuestionType::Mcq, "B", 12.0, 30.0, true),
            vec![audio(0.0, 4.0)],
            "FFMPEG_AUDIO_FAIL",
            true,
            true,
            "[ERROR] FFMPEG_AUDIO_FAIL",
        ),
        case(
            "clip audio missing",
            spec(&v.silent, QuestionType::Mcq, "B", 12.0, 30.0, true),
            vec![clip(0.0, 4.0)],
            "FFMPEG_CLIP_FAIL",
            true,
            true,
            "[ERROR] FFMPEG_CLIP_FAIL: Bad clip duration v=4.0, a=None, expect 4.0",
        ),
        case(
            "frames past the real end",
            spec(&v.with_audio, QuestionType::Mcq, "B", 60.0, 25.0, true),
            vec![frames(50.0, 55.0, 2)],
            "FFMPEG_FRAME_FAIL",
            true,
            true,
            "[ERROR] FFMPEG_FRAME_FAIL: Bad frame 50.00s",
        ),
        case(
            "answer not json",
            tr.clone(),
            vec![f.clone(), answer("from 1 to 2")],
            "ANSWER_JSON_PARSE",
            false,
            false,
            "[ERROR] ANSWER_JSON_PARSE: ",
        ),
        case(
            "span format",
            tr,
            vec![f.clone(), answer("[[1, 2, 3]]")],
            "SPAN_FORMAT",
            false,
            false,
            "[ERROR] SPAN_FORMAT: ",
        ),
        case(
            "ground truth unusable",
            spec(&v.with_audio, QuestionType::Tr, "soon", 12.0, 25.0, true),
            vec![f.clone(), answer("[[1, 2]]")],
            "GT_JSON_PARSE",
            true,
            true,
            "[ERROR] GT_JSON_PARSE: ",
        ),
    ];
    let (s, settings) = small(mcq_tone());
    out.push(Case {
        settings: settings.clone(),
        ..case(
            "audio too long",
            s.clone(),
            vec![audio(0.0, 6.0)],
            "AUDIO_TOO_LONG",
            false,
            false,
            "[ERROR] AUDIO_TOO_LONG: 6.000s > 5s",
        )
    });
    out.push(Case {
        settings,
        ..case(
            "clip too long",
            s,
            vec![clip(0.0, 6.0)],
            "CLIP_TOO_LONG",
            false,
            false,
            "[ERROR] CLIP_TOO_LONG: 6.000s > 5s",
        )
    });
    let mut unmasked = EpisodeSettings::train();
    unmasked.hide_unavailable_audio = false;
    out.push(Case {
        settings: unmasked,
        ..case(
            "no audio (reference)",
            mcq_silent(),
            vec![audio(0.0, 5.0)],
            "NO_AUDIO",
            false,
            false,
            "[ERROR] NO_AUDIO",
        )
    });
    out
}

#[test]
fn every_error_code_with_its_reference_message() {
    let mut seen = std::collections::BTreeSet::new();
    for c in cases() {
        let env = env_for(&c.spec);
        let mut ep = episode(c.spec.clone(), c.settings.clone(), None);
        let outcomes = run(&mut ep, &env, &c.responses);
        let o = outcomes.last().unwrap();
        assert_eq!(o.error_name(), c.code, "{}: {o:?}", c.name);
        assert_eq!(o.action_name(), "ERROR", "{}", c.name);
        assert_eq!((o.is_action_valid, o.done, o.reward, o.won), (c.valid, c.done, 0.0, false), "{}", c.name);
        // Retry semantics: an invalid turn that does not end the episode is not trained on;
        // stepping a finished episode is never a turn.
        let stored = !(c.code == "ENV_ALREADY_DONE" || (!c.valid && !c.done));
        assert_eq!(o.stored, stored, "{}", c.name);
        let text = last_text(&ep);
        assert!(text.starts_with(c.error), "{}: {text:?}", c.name);
        let hint = if c.done { "" } else { RETRY_HINT };
        let notice = notice_text(o.step, ep.max_steps(), c.done);
        assert!(text.ends_with(&format!("{hint}{notice}")), "{}: {text:?}", c.name);
        if c.error.ends_with(": ") {
            assert!(text.len() > c.error.len() + hint.len() + notice.len(), "{}: a detail follows", c.name);
        } else {
            assert_eq!(text, format!("{}{hint}{notice}", c.error), "{}", c.name);
        }
        assert_eq!(o.data_error, c.code == "GT_JSON_PARSE", "{}", c.name);
        seen.insert(c.code);
    }
    // TOKEN_LIMIT_EXCEEDED has its own test below; UNKNOWN_QTYPE cannot happen (question types
    // are an enum checked when the sample is read).
    let all: Vec<&str> = rollout::episode::ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let missing: Vec<&&str> =
        all.iter().filter(|c| !seen.contains(**c) && !["TOKEN_LIMIT_EXCEEDED", "UNKNOWN_QTYPE"].contains(c)).collect();
    assert!(missing.is_empty(), "codes without a case: {missing:?}");
}

#[test]
fn error_messages_are_the_reference_info_fields() {
    let spec = mcq_tone();
    let env = env_for(&spec);
    let mut ep = episode(spec, EpisodeSettings::train(), None);
    let o = ep.step(rollout::episode::Response::text("nope"), &env);
    // Parse errors: the message carries the final period; the code is the specific one.
    assert_eq!(o.error_message.as_deref(), Some("must start with '{' and end with '}'."));
    let o = ep.step(rollout::episode::Response::text(audio(3.0, 3.0)), &env);
    assert_eq!(o.error_message.as_deref(), Some("CLIP_NEG_LEN"));
    assert_eq!(ep.retries(), 2);
    // A logged action that is not a string (replays): the reference's first parse check.
    let not_text = rollout::episode::Response { text: "42".into(), not_a_string: true, ..Default::default() };
    let o = ep.step(not_text, &env);
    assert_eq!((o.error_name(), o.error_message.as_deref()), ("INVALID_JSON", Some("not a string.")));
    assert!(last_text(&ep).starts_with("[ERROR] INVALID_JSON: not a string.\n[SYSTEM]"));
}

#[test]
fn token_limit_terminates_with_the_reference_text() {
    let spec = mcq_tone();
    let enc: Arc<dyn rollout::episode::PromptEncoder> = Arc::new(ByteTokenizer);
    let probe = episode(spec.clone(), EpisodeSettings::train(), Some(enc.clone()));
    let start = probe.prompt_len().unwrap();
    let mut settings = EpisodeSettings::train();
    settings.limits.max_prompt_tokens = (start + 32 + 200) as u32;
    let env = SyntheticMedia { image_tokens: 100, ..SyntheticMedia::default() };
    let mut ep = episode(spec.clone(), settings.clone(), Some(enc.clone()));
    let o = ep.step(rollout::episode::Response::text(frames(0.0, 12.0, 8)), &env);
    assert_eq!(
        (o.error_name(), o.done, o.is_action_valid, o.reward, o.stored),
        ("TOKEN_LIMIT_EXCEEDED", true, true, 0.0, true)
    );
    let text = last_text(&ep);
    let marker = "[ERROR] TOKEN_LIMIT_EXCEEDED: Prompt length ";
    let at = text.find(marker).expect("error part");
    assert!(
        text[at..].ends_with(&format!(
            "> {}\n[NOTICE] Operation terminated. Steps used: 1/5.",
            settings.limits.max_prompt_tokens
        )),
        "{text}"
    );
    assert_eq!(o.error_message.as_deref().map(|m| m.starts_with("Prompt length ")), Some(true));
    assert_eq!(ep.raw_media_messages(), 1, "valid media stays raw");

    // docs/reference.md#token-limit-after-answer: an answer that closes the episode keeps its
    // reward even when the closing history would be over the limit (no prompt is generated from
    // it). Measure the two prompts first, then put the limit between them.
    let small = SyntheticMedia { image_tokens: 1, ..SyntheticMedia::default() };
    let script = [frames(0.0, 12.0, 1), answer("B")];
    let mut probe = episode(spec.clone(), EpisodeSettings::train(), Some(enc.clone()));
    let lens: Vec<usize> = script
        .iter()
        .map(|r| probe.step(rollout::episode::Response::text(r.clone()), &small).prompt_tokens.unwrap())
        .collect();
    let mut settings = EpisodeSettings::train();
    settings.limits.max_prompt_tokens = ((lens[0] + lens[1]) / 2 + 32) as u32;
    let mut ep = episode(spec, settings, Some(enc));
    let o1 = ep.step(rollout::episode::Response::text(script[0].clone()), &small);
    assert_eq!(o1.error_name(), "OK");
    let o2 = ep.step(rollout::episode::Response::text(script[1].clone()), &small);
    assert_eq!(o2.prompt_tokens, Some(lens[1]), "the closing history is over the limit");
    assert_eq!((o2.error_name(), o2.reward, o2.won, o2.done), ("OK", 1.0, true, true));
}

#[test]
fn terminate_on_invalid_ends_at_the_first_invalid_action() {
    let spec = mcq_tone();
    let env = env_for(&spec);
    let mut settings = EpisodeSettings::train();
    settings.terminate_on_invalid = true;
    let mut ep = episode(spec, settings, None);
    let o = ep.step(rollout::episode::Response::text("{}"), &env);
    assert_eq!((o.error_name(), o.done, o.stored), ("INVALID_JSON", true, true));
    assert_eq!(
        last_text(&ep),
        "[ERROR] INVALID_JSON: missing keys: ['action', 'confidence', 'observation', 'think'].\n[NOTICE] Operation terminated. Steps used: 1/5."
    );
}

#[test]
fn extraction_past_the_real_end_of_a_video() {
    // The dataset says 60 s, the file holds 12 s: range checks pass, extraction finds nothing,
    // as ffmpeg would in the reference. Terminal, counted valid, media of earlier steps kept.
    let v = videos();
    let long = spec(&v.with_audio, QuestionType::Mcq, "B", 60.0, 25.0, true);
    for (response, code) in [(clip(50.0, 55.0), "FFMPEG_CLIP_FAIL"), (audio(50.0, 55.0), "FFMPEG_AUDIO_FAIL")] {
        let env = env_for(&long);
        let mut ep = episode(long.clone(), EpisodeSettings::train(), None);
        let first = ep.step(rollout::episode::Response::text(frames(0.0, 10.0, 2)), &env);
        assert_eq!(first.error_name(), "OK");
        let o = ep.step(rollout::episode::Response::text(response), &env);
        assert_eq!((o.error_name(), o.is_action_valid, o.done, o.stored, o.n_raw_media), (code, true, true, true, 1));
        assert!(last_text(&ep).starts_with(&format!("[ERROR] {code}")), "{}", last_text(&ep));
    }
}
