#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Golden replay of the example SFT trajectory (data/examples/sft.jsonl, in the reference's
//! format): feeding each turn's `output` to an episode on the same video, the history after
//! step k must equal the `raw_input` of step k+1, message for message and text for text
//! (docs/reference.md#sft-replay), apart from the system prompt (ours is our own text) and media paths
//! (the reference's temp files; compared by kind).

use rollout::data::{MessageContent, PartKind, SftTurn, load_sft_turns};
use rollout::episode::{Episode, EpisodeSettings, EpisodeSpec, Part, Response, VideoEnv, VideoMeta};
use rollout::prompt::PromptTemplate;
use std::path::Path;
use std::sync::Arc;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// (role, parts) with media parts shown as `<kind>`.
fn shape_sft(turn: &SftTurn) -> Vec<(String, Vec<String>)> {
    turn.raw_input
        .iter()
        .skip(1)
        .map(|m| {
            let parts = match &m.content {
                MessageContent::Text(t) => vec![t.clone()],
                MessageContent::Parts(ps) => ps
                    .iter()
                    .map(|p| if p.kind == PartKind::Text { p.value.clone() } else { format!("<{}>", p.kind.as_str()) })
                    .collect(),
            };
            (m.role.as_str().to_string(), parts)
        })
        .collect()
}

fn shape_episode(ep: &Episode) -> Vec<(String, Vec<String>)> {
    ep.history()
        .iter()
        .skip(1)
        .map(|m| {
            let parts = m
                .parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => t.clone(),
                    Part::Media(media) => format!("<{}>", media.kind.as_str()),
                })
                .collect();
            (m.role.as_str().to_string(), parts)
        })
        .collect()
}

#[test]
fn the_example_sft_trajectory_replays_message_for_message() {
    let turns = load_sft_turns(&root().join("data/examples/sft.jsonl"), Some(root())).unwrap();
    let info = turns[0].extra_info.clone().unwrap();
    let s = |k: &str| info[k].as_str().unwrap().to_string();
    let spec = EpisodeSpec {
        question_id: turns[0].question_id.clone(),
        video: root().join(s("video")),
        question_type: s("question_type"),
        qtype: rewards::QuestionType::from_raw(&s("question_type")).unwrap(),
        question: s("question"),
        options: info["options"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_string()).collect(),
        answer: s("answer"),
        meta: VideoMeta {
            duration: info["duration_seconds"].as_f64().unwrap(),
            fps: info["fps"].as_f64(),
            has_audio: info["has_audio"].as_bool().unwrap(),
        },
        data_source: None,
        annotations: None,
    };
    let env = VideoEnv::open(&spec.video, Some(spec.meta.duration), spec.meta.has_audio).unwrap();
    let template = PromptTemplate::default_template().unwrap();
    let mut ep = Episode::new(Arc::new(spec), Arc::new(EpisodeSettings::train()), &template, None);
    assert_eq!(ep.max_steps(), info["max_steps"].as_u64().unwrap() as u32);
    assert_eq!(shape_episode(&ep), shape_sft(&turns[0]), "the first user message and its notice");
    for (k, turn) in turns.iter().enumerate() {
        let o = ep.step(Response::text(turn.output.clone()), &env);
        assert_eq!(o.reward, turn.step_reward.unwrap(), "step {}", k + 1);
        assert_eq!(o.done, turn.done.unwrap(), "step {}", k + 1);
        if let Some(next) = turns.get(k + 1) {
            assert_eq!(shape_episode(&ep), shape_sft(next), "history after step {}", k + 1);
        }
    }
    assert!(ep.is_done());
}
