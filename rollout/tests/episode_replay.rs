#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Scripted episodes on generated videos: a full Observe-Think-Act episode with the exact
//! history after each step (observations, placeholders, notices), the consolidation rules,
//! the step budget and its edges, retry semantics, and the reward.

mod episode_common;

use episode_common::*;
use rewards::QuestionType;
use rollout::chat;
use rollout::data::Role;
use rollout::episode::memory::MEDIA_OMITTED;
use rollout::episode::{EpisodeSettings, Message, Part, Response, SyntheticMedia};

/// The texts of a message's parts, with media shown as `<image>`, `<audio>`, `<video>`.
fn parts(m: &Message) -> Vec<String> {
    m.parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.clone(),
            Part::Media(media) => format!("<{}>", media.kind.as_str()),
        })
        .collect()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn a_full_episode_with_every_observation_kind() {
    let spec = mcq_tone();
    let env = env_for(&spec);
    let mut ep = episode(spec, EpisodeSettings::train(), None);
    assert_eq!(ep.max_steps(), 5, "12 s video: min(5 + floor(12 / 60), 22)");
    assert_eq!(ep.history().len(), 2);
    assert_eq!(ep.history()[0].role, Role::System);
    let first = parts(&ep.history()[1]);
    assert_eq!(first.len(), 2);
    assert!(
        first[0].starts_with("Video META:\n- duration_seconds: 12.00\n- fps: 25.00\n- has_audio: True\n\nQuestion: ")
    );
    assert_eq!(first[1], "\n[NOTICE] Step 0/5. 5 steps remaining.");

    let o = ep.step(Response::text(frames(0.0, 12.0, 4)), &env);
    assert_eq!((o.error_name(), o.action_name(), o.n_raw_media, o.delivered.n_frames), ("OK", "get_frames", 1, 4));
    assert_eq!(o.delivered.frames_range, Some((0.0, 12.0)));
    assert_eq!(parts(&ep.history()[1]).len(), 1, "the old notice is gone from the first message");
    assert_eq!(
        parts(ep.history().last().unwrap()),
        s(&[
            "Frames 0.00s-12.00s (num=4).",
            "Frame 0.00s:",
            "<image>",
            "Frame 4.00s:",
            "<image>",
            "Frame 8.00s:",
            "<image>",
            "Frame 12.00s:",
            "<image>",
            "\n[NOTICE] Step 1/5. 4 steps remaining.",
        ])
    );
    let names: Vec<String> = ep.history().last().unwrap().media().map(|m| m.name.clone()).collect();
    assert_eq!(
        names,
        s(&["STEP_1_frame_0.000.jpg", "STEP_1_frame_4.000.jpg", "STEP_1_frame_8.000.jpg", "STEP_1_frame_11.800.jpg"])
    );
    for m in ep.history().last().unwrap().media() {
        assert!(matches!(m.item.layout, chat::Part::Image { .. }) && m.item.inputs.is_some());
    }

    let o = ep.step(Response::text(audio(4.0, 8.25)), &env);
    assert_eq!((o.error_name(), o.action_name(), o.n_raw_media), ("OK", "get_audio", 1));
    assert_eq!(o.delivered.audio_seconds(), 4.25);
    let n = ep.history().len();
    assert_eq!(
        parts(&ep.history()[n - 3]),
        s(&[
            "Frames 0.00s-12.00s (num=4). Timestamps: [0.00s, 4.00s, 8.00s, 12.00s] [MEDIA OMITTED - Refer to your Observation]"
        ])
    );
    assert_eq!(
        parts(&ep.history()[n - 1]),
        s(&["Audio 4.00s-8.25s", "<audio>", "\n[NOTICE] Step 2/5. 3 steps remaining."])
    );

    let o = ep.step(Response::text(clip(2.5, 6.5)), &env);
    assert_eq!((o.error_name(), o.action_name(), o.delivered.clip_range), ("OK", "get_clip", Some((2.5, 6.5))));
    let n = ep.history().len();
    assert_eq!(parts(&ep.history()[n - 3]), s(&[&format!("Audio 4.00s-8.25s {MEDIA_OMITTED}")]));
    assert_eq!(
        parts(&ep.history()[n - 1]),
        s(&["Clip 2.50s-6.50s", "<video>", "\n[NOTICE] Step 3/5. 2 steps remaining."])
    );
    let clip_part = ep.history()[n - 1].media().next().unwrap().clone();
    assert_eq!(clip_part.name, "STEP_3_clip_2.500_6.500.mp4");
    assert!(matches!(clip_part.item.layout, chat::Part::VideoWithAudio { .. }), "the clip carries its audio");

    let o = ep.step(Response::text(answer(" b ")), &env);
    assert_eq!(
        (o.error_name(), o.action_name(), o.reward, o.won, o.done, o.stored),
        ("OK", "answer", 1.0, true, true, true)
    );
    assert_eq!(
        parts(ep.history().last().unwrap()),
        s(&["CORRECT ANSWER", "\n[NOTICE] Operation terminated. Steps used: 4/5."])
    );
    assert_eq!(ep.raw_media_messages(), 1, "the newest media message stays raw after a valid answer");
    // Alternation: system, user, then (assistant, user) per step.
    let roles: Vec<Role> = ep.history().iter().map(|m| m.role).collect();
    assert_eq!(roles.len(), 2 + 2 * 4);
    for (i, r) in roles.iter().enumerate().skip(2) {
        assert_eq!(*r, if i % 2 == 0 { Role::Assistant } else { Role::User });
    }
}

#[test]
fn consolidation_after_invalid_actions() {
    let spec = mcq_tone();
    let env = env_for(&spec);
    // delete_media_on_error (reference training and eval): an invalid action collapses all media.
    let mut ep = episode(spec.clone(), EpisodeSettings::train(), None);
    ep.step(Response::text(frames(3.0, 3.0, 1)), &env);
    assert_eq!(ep.raw_media_messages(), 1);
    let o = ep.step(Response::text("oops"), &env);
    assert_eq!((o.error_name(), o.n_raw_media), ("INVALID_JSON", 0));
    let n = ep.history().len();
    assert_eq!(
        parts(&ep.history()[n - 3]),
        s(&[&format!("Frame at 3.00s (num=1). Timestamps: [3.00s] {MEDIA_OMITTED}")])
    );
    // Without it, the newest media survives the error.
    let mut settings = EpisodeSettings::train();
    settings.delete_media_on_error = false;
    let mut ep = episode(spec.clone(), settings, None);
    ep.step(Response::text(frames(3.0, 3.0, 1)), &env);
    assert_eq!(ep.step(Response::text("oops"), &env).n_raw_media, 1);
    // CLIP_TOO_SHORT is a valid action: the media stays.
    let mut ep = episode(spec, EpisodeSettings::train(), None);
    ep.step(Response::text(audio(1.0, 2.0)), &env);
    let o = ep.step(Response::text(clip(1.0, 1.1)), &env);
    assert_eq!((o.error_name(), o.is_action_valid, o.n_raw_media, o.stored), ("CLIP_TOO_SHORT", true, 1, true));
}

#[test]
fn raw_media_is_visible_for_exactly_one_turn() {
    let spec = mcq_tone();
    let env = SyntheticMedia::default();
    let mut ep = episode(spec, EpisodeSettings::train(), None);
    for r in [frames(0.0, 12.0, 3), audio(0.0, 2.0), clip(0.0, 2.0), frames(1.0, 2.0, 2)] {
        let o = ep.step(Response::text(r), &env);
        assert_eq!(o.n_raw_media, 1);
        assert!(ep.history().last().unwrap().has_media(), "the newest message is the raw one");
    }
}

#[test]
fn budget_edges() {
    let v = videos();
    let env = SyntheticMedia::default();
    // Dynamic budget from the dataset's duration (stated 130 s: 5 + 2).
    let long = spec(&v.with_audio, QuestionType::Mcq, "B", 130.0, 25.0, true);
    let ep = episode(long.clone(), EpisodeSettings::train(), None);
    assert_eq!(ep.max_steps(), 7);
    let huge = spec(&v.with_audio, QuestionType::Mcq, "B", 5000.0, 25.0, true);
    assert_eq!(episode(huge.clone(), EpisodeSettings::train(), None).max_steps(), 22);
    assert_eq!(episode(huge, EpisodeSettings::eval(), None).max_steps(), 32);

    // The countdown, the final step and the step limit.
    let mut ep = episode(mcq_tone(), EpisodeSettings::train(), None);
    let mut notices = Vec::new();
    for _ in 0..4 {
        let o = ep.step(Response::text(frames(0.0, 1.0, 2)), &env);
        assert_eq!(o.error_name(), "OK");
        notices.push(parts(ep.history().last().unwrap()).last().unwrap().clone());
    }
    assert_eq!(notices[2], "\n[NOTICE] Step 3/5. 2 steps remaining.");
    assert_eq!(notices[3], "\n[NOTICE] FINAL STEP! You MUST provide your answer now.");
    let mut last = ep;
    let o = last.step(Response::text(frames(0.0, 1.0, 2)), &env);
    assert_eq!((o.error_name(), o.done, o.stored, o.delivered.n_frames), ("STEP_LIMIT_REACHED", true, true, 0));
    assert_eq!(
        parts(last.history().last().unwrap()),
        s(&["[ERROR] STEP_LIMIT_REACHED", "\n[NOTICE] STEP LIMIT REACHED. Operation terminated."])
    );
    let o = last.step(Response::text(answer("B")), &env);
    assert_eq!((o.error_name(), o.step), ("ENV_ALREADY_DONE", 5), "a finished episode does not count steps");

    // An answer at the last step is fine; an invalid response there ends the episode and is stored.
    let mut ep = episode(mcq_tone(), EpisodeSettings::train(), None);
    (0..4).for_each(|_| drop(ep.step(Response::text(frames(0.0, 1.0, 2)), &env)));
    let o = ep.step(Response::text(answer("C")), &env);
    assert_eq!((o.error_name(), o.won, o.reward, o.done), ("OK", false, 0.0, true));
    assert_eq!(
        parts(ep.history().last().unwrap()),
        s(&["INCORRECT ANSWER", "\n[NOTICE] STEP LIMIT REACHED. Operation terminated."])
    );
    let mut ep = episode(mcq_tone(), EpisodeSettings::train(), None);
    (0..4).for_each(|_| drop(ep.step(Response::text("bad"), &env)));
    let o = ep.step(Response::text("bad"), &env);
    assert_eq!((o.error_name(), o.done, o.stored), ("INVALID_JSON", true, true));

    // A one-step budget: the only step must answer, and answering at step 1 is too early.
    let mut one = EpisodeSettings::train();
    one.limits.dynamic_steps = false;
    one.limits.max_steps = 1;
    let mut ep = episode(mcq_tone(), one.clone(), None);
    assert_eq!(parts(&ep.history()[1])[1], "\n[NOTICE] FINAL STEP! You MUST provide your answer now.");
    let o = ep.step(Response::text(answer("B")), &env);
    assert_eq!((o.error_name(), o.done), ("EARLY_ANSWER", true));
    let mut ep = episode(mcq_tone(), one, None);
    assert_eq!(ep.step(Response::text(frames(0.0, 1.0, 2)), &env).error_name(), "STEP_LIMIT_REACHED");
}

#[test]
fn retries_are_not_stored_but_stay_in_the_history() {
    let env = SyntheticMedia::default();
    let mut ep = episode(mcq_tone(), EpisodeSettings::train(), None);
    let outcomes = run(&mut ep, &env, &[frames(0.0, 12.0, 2), "bad".into(), frames(20.0, 30.0, 2), answer("B")]);
    let stored: Vec<bool> = outcomes.iter().map(|o| o.stored).collect();
    assert_eq!(stored, [true, false, false, true]);
    assert_eq!(outcomes[3].step, 4, "dropped retries still use physical steps");
    assert_eq!(ep.retries(), 2);
    let texts: Vec<String> = ep.history().iter().map(Message::joined_text).collect();
    assert_eq!(texts[4], "bad", "the model sees its own invalid output");
    assert!(texts[5].starts_with(
        "[ERROR] INVALID_JSON: must start with '{' and end with '}'.\n[SYSTEM] The previous action was invalid."
    ));
    // With retry mode off every turn is stored.
    let mut settings = EpisodeSettings::train();
    settings.retry_on_format_error = false;
    let mut ep = episode(mcq_tone(), settings, None);
    assert!(ep.step(Response::text("bad"), &env).stored);
}

#[test]
fn rewards_per_question_type_and_shaping() {
    let v = videos();
    let env = SyntheticMedia::default();
    let play = |spec, settings, content: &str| {
        let mut ep = episode(spec, settings, None);
        ep.step(Response::text(frames(0.0, 1.0, 2)), &env);
        ep.step(Response::text(answer(content)), &env)
    };
    let tr = spec(&v.with_audio, QuestionType::Tr, "[[2, 6]]", 12.0, 25.0, true);
    let o = play(tr.clone(), EpisodeSettings::train(), "[[4, 8]]");
    assert_eq!((o.reward, o.won), (2.0 / 6.0, false)); // inter 2, union 6
    let o = play(tr.clone(), EpisodeSettings::train(), "[[6, 2]]");
    assert_eq!((o.error_name(), o.reward, o.done), ("OK", 0.0, true), "a reversed span is a rejected, valid answer");
    let size = spec(&v.with_audio, QuestionType::Size, "10", 12.0, 25.0, true);
    assert_eq!(play(size, EpisodeSettings::train(), "about 12 m").reward, 0.6);
    let ff = spec(&v.with_audio, QuestionType::Ff, "a dog", 12.0, 25.0, true);
    assert_eq!(play(ff, EpisodeSettings::train(), "a dog").reward, 0.0, "FF has no judge in the episode");
    // FORMAT_REWARD: 0.1 + 0.9 r, not for a rejected TR answer.
    let mut shaped = EpisodeSettings::train();
    shaped.shaping.format_reward = true;
    assert_eq!(play(mcq_tone(), shaped.clone(), "C").reward, 0.1);
    assert_eq!(play(tr, shaped, "[[6, 2]]").reward, 0.0);
    // Length bonus (training, won only): 0.5 exp(-0.25 max(avg + 1, 100)) with no token ids.
    let mut bonus = EpisodeSettings::train();
    bonus.shaping.length_bonus = Some(rollout::episode::LengthBonus::default());
    assert_eq!(play(mcq_tone(), bonus, "B").reward, 1.0 + 0.5 * (-25.0f64).exp());
}
