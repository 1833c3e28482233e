#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The rollout driver with scripted and expert policies: GRPO groups, retry semantics in the
//! stored turns, the token-exact prefix check, media extraction overlapping generation, policy
//! failures, and the exports (rollout dump, SFT lines that the data layer reads back).

mod episode_common;

use episode_common::*;
use rewards::QuestionType;
use rollout::data::{CheckOptions, DataFormat, SftTurn, check_bytes};
use rollout::driver::{Driver, DriverConfig, MediaOpener};
use rollout::episode::{
    ByteTokenizer, EpisodeSettings, EpisodeSpec, MediaEnv, PromptEncoder, SyntheticMedia, VideoEnv,
};
use rollout::policy::{Context, ExpertPolicy, Generation, Policy, PolicyError, Sampling, ScriptedPolicy};
use rollout::prompt::PromptTemplate;
use rollout::trajectory::{DropReason, SftFilter, write_dump, write_sft};
use std::sync::Arc;
use std::time::Duration;

fn encoder() -> Arc<dyn PromptEncoder> {
    Arc::new(ByteTokenizer)
}

fn driver(group: usize, max_batch: usize) -> Driver {
    let config = DriverConfig {
        group_size: group,
        max_batch,
        media_threads: 4,
        record_messages: true,
        ..DriverConfig::default()
    };
    Driver::new(EpisodeSettings::train(), PromptTemplate::default_template().unwrap(), encoder(), config)
}

fn synthetic(delay_ms: u64) -> Arc<MediaOpener> {
    Arc::new(move |spec: &EpisodeSpec| -> Result<Arc<dyn MediaEnv>, rollout::episode::MediaFailure> {
        Ok(Arc::new(SyntheticMedia {
            has_audio: spec.meta.has_audio,
            delay: Duration::from_millis(delay_ms),
            ..SyntheticMedia::default()
        }))
    })
}

fn prompts() -> Vec<Arc<EpisodeSpec>> {
    let v = videos();
    vec![
        Arc::new(mcq_tone()),
        Arc::new(spec(&v.silent, QuestionType::Tr, "[[2.5, 9.0]]", 12.0, 30.0, false)),
        Arc::new(spec(&v.with_audio, QuestionType::Size, "75.5", 12.0, 25.0, true)),
    ]
}

#[test]
fn expert_groups_win_with_token_exact_turns() {
    let d = driver(4, 5);
    let mut policy = ExpertPolicy::new(d.settings.limits.clone(), Some(encoder()));
    let batch = d.run(&mut policy, &prompts(), synthetic(0)).unwrap();
    assert_eq!(batch.trajectories.len(), 12);
    let mut trajs = std::collections::BTreeSet::new();
    for (i, t) in batch.trajectories.iter().enumerate() {
        assert_eq!((t.sample_index, t.copy), (i / 4, i % 4));
        assert_eq!(t.group_uid, batch.trajectories[i - i % 4].group_uid, "one group uid per prompt");
        assert!(trajs.insert(t.traj_uid.clone()), "one trajectory uid per episode");
        assert!(t.dropped.is_none(), "{:?}", t.dropped);
        assert_eq!((t.turns.len(), t.episode_reward, t.won, t.done), (3, 1.0, true, true));
        t.verify_prefix(|r| ByteTokenizer.assistant_segment_for_test(r)).unwrap();
        let actions: Vec<&str> = t.turns.iter().map(|x| x.outcome.action_name()).collect();
        let second = if t.spec.meta.has_audio { "get_audio" } else { "get_clip" };
        assert_eq!(actions, ["get_frames", second, "answer"]);
        assert_eq!(t.turns[0].logprobs.len(), t.turns[0].response_ids.len());
        assert!(
            t.turns[1].media.len() == 3 || t.turns[1].media.len() == 8,
            "the frames of step 1 are in the step-2 prompt"
        );
    }
    assert_ne!(batch.trajectories[0].group_uid, batch.trajectories[4].group_uid);
    let s = batch.stats;
    assert_eq!((s.episodes, s.steps, s.stored_turns, s.media_requests, s.dropped), (12, 36, 36, 24, 0));
    assert!(s.generate_calls >= 36 / 5, "batches of at most 5 contexts");
    assert_eq!(s.contexts, 36);
}

/// `assistant_segment` without an episode: the byte tokenizer's generation prompt + trimmed
/// ids + end of turn.
trait AssistantSegment {
    fn assistant_segment_for_test(&self, r: &[u32]) -> Vec<u32>;
}

impl AssistantSegment for ByteTokenizer {
    fn assistant_segment_for_test(&self, r: &[u32]) -> Vec<u32> {
        let end = r.iter().rposition(|&id| !self.stop_ids().contains(&id)).map_or(0, |p| p + 1);
        let mut ids = self.generation_prompt().unwrap();
        ids.extend(&r[..end]);
        ids.extend(self.end_of_turn().unwrap());
        ids
    }
}

#[test]
fn retries_are_dropped_from_the_stored_turns_and_the_dump() {
    let d = driver(2, 8);
    let scripts = vec![
        vec![frames(0.0, 12.0, 2), "oops".into(), clip(1.0, 1.1), answer("B")],
        vec![frames(0.0, 12.0, 2), answer("[[2, 9]]")],
        vec![frames(0.0, 12.0, 2), frames(0.0, 99.0, 2), answer("80")],
    ];
    let mut policy = ScriptedPolicy::from_scripts(scripts, Some(encoder()));
    let batch = d.run(&mut policy, &prompts(), synthetic(1)).unwrap();
    let t = &batch.trajectories[0];
    // "oops" is an invalid non-terminal turn: not stored; CLIP_TOO_SHORT is valid: stored.
    let codes: Vec<&str> = t.turns.iter().map(|x| x.outcome.error_name()).collect();
    assert_eq!(codes, ["OK", "CLIP_TOO_SHORT", "OK"]);
    assert_eq!((t.physical_steps, t.retries, t.episode_reward), (4, 2, 1.0));
    let cur: Vec<u32> = t.turns.iter().map(|x| x.cur_step).collect();
    assert_eq!(cur, [0, 2, 3], "cur_step counts the dropped retry");
    let lines = t.dump_lines();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["action_type"], "ERROR");
    assert_eq!(lines[1]["error_code"], "CLIP_TOO_SHORT");
    assert_eq!(lines[2]["rewards"], 1.0);
    assert_eq!(lines[2]["episode_length"], 3);
    for key in [
        "uid",
        "traj_uid",
        "entropies",
        "entropy_mean",
        "logprob_mean",
        "n_frames",
        "clip_start",
        "audio_dur",
        "prompt_tokens",
    ] {
        assert!(lines[0].get(key).is_some(), "{key}");
    }
    assert_eq!(lines[0]["n_frames"], 2);
    assert_eq!(lines[0]["clip_end"], 12.0);
    // SIZE: an out-of-range frames request is a dropped retry; 80 vs 75.5 scores MRA 0.9.
    let t = &batch.trajectories[4];
    assert_eq!((t.turns.len(), t.physical_steps), (2, 3));
    assert!((t.episode_reward - 0.9).abs() < 1e-12);
}

#[test]
fn sft_export_reads_back_as_the_sft_format() {
    let d = driver(1, 8);
    let mut policy = ExpertPolicy::new(d.settings.limits.clone(), Some(encoder()));
    let batch = d.run(&mut policy, &prompts(), synthetic(0)).unwrap();
    let mut buf = Vec::new();
    let n = write_sft(&mut buf, &batch.trajectories, &SftFilter::default(), std::path::Path::new("media"), "train")
        .unwrap();
    assert_eq!(n, 9);
    let text = String::from_utf8(buf).unwrap();
    let mut dump = Vec::new();
    assert_eq!(write_dump(&mut dump, &batch.trajectories).unwrap(), 9);
    assert_eq!(String::from_utf8(dump).unwrap().lines().count(), 9);
    let opts = CheckOptions { check_media: false, ..CheckOptions::default() };
    let report = check_bytes(std::path::Path::new("synth.jsonl"), text.as_bytes(), DataFormat::Sft, &opts);
    assert_eq!(report.errors, 0, "{report:?}");
    let turns: Vec<SftTurn> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(turns.len(), 9);
    let t = &turns[1];
    assert_eq!((t.step, t.raw_input.len()), (2, 4));
    let image = t.media_parts().next().unwrap();
    assert_eq!(image.value, format!("media/{}/STEP_1_frame_0.000.jpg", t.traj_id));
    assert_eq!(image.extra["start"], 0.0);
    assert_eq!(turns[2].episode_reward, Some(1.0));
    assert_eq!(turns[2].done, Some(true));
}

struct Slow<P> {
    inner: P,
    per_call: Duration,
}

impl<P: Policy> Policy for Slow<P> {
    fn generate(&mut self, batch: &[Context<'_>], sampling: &Sampling) -> Result<Vec<Generation>, PolicyError> {
        std::thread::sleep(self.per_call);
        self.inner.generate(batch, sampling)
    }
}

#[test]
fn media_extraction_overlaps_generation() {
    // 8 prompts x 1, max_batch 2: four generation waves per step; each media request takes
    // 60 ms and each generation call 40 ms. Serially that is 16 x 60 + calls x 40 ms.
    let v = videos();
    let prompts: Vec<Arc<EpisodeSpec>> =
        (0..8).map(|i| Arc::new(spec(&v.with_audio, QuestionType::Mcq, ["A", "B"][i % 2], 12.0, 25.0, true))).collect();
    let d = driver(1, 2);
    let inner = ExpertPolicy::new(d.settings.limits.clone(), Some(encoder()));
    let mut policy = Slow { inner, per_call: Duration::from_millis(40) };
    let batch = d.run(&mut policy, &prompts, synthetic(60)).unwrap();
    let s = batch.stats;
    assert_eq!((s.media_requests, s.stored_turns), (16, 24));
    let serial = s.media_busy_s + s.generate_s;
    assert!(s.wall_s < 0.8 * serial, "no overlap: wall {:.3}s vs serial {:.3}s ({s:?})", s.wall_s, serial);
    assert!(s.media_wait_share() < 0.5, "{s:?}");
}

struct Failing;

impl Policy for Failing {
    fn generate(&mut self, _: &[Context<'_>], _: &Sampling) -> Result<Vec<Generation>, PolicyError> {
        Err(PolicyError::Failed("CUDA out of memory".into()))
    }
}

#[test]
fn a_failing_policy_drops_its_batch_and_the_run_ends() {
    let batch = driver(2, 3).run(&mut Failing, &prompts(), synthetic(0)).unwrap();
    assert!(
        batch
            .trajectories
            .iter()
            .all(|t| matches!(&t.dropped, Some(DropReason::Policy(m)) if m.contains("out of memory")))
    );
    assert_eq!(batch.stats.generate_calls, 2, "6 episodes in batches of 3");
}

#[test]
fn real_videos_through_the_driver() {
    let opener: Arc<MediaOpener> = Arc::new(|spec: &EpisodeSpec| {
        let env = VideoEnv::open(&spec.video, Some(spec.meta.duration), spec.meta.has_audio)
            .map_err(|e| rollout::episode::MediaFailure::new(e.to_string()))?;
        Ok(Arc::new(env) as Arc<dyn MediaEnv>)
    });
    let d = driver(2, 4);
    let mut policy = ExpertPolicy::new(d.settings.limits.clone(), Some(encoder()));
    let mut specs = prompts();
    specs.push(Arc::new(spec(
        std::path::Path::new("/nonexistent/video.mp4"),
        QuestionType::Mcq,
        "A",
        12.0,
        25.0,
        true,
    )));
    let batch = d.run(&mut policy, &specs, opener).unwrap();
    for t in &batch.trajectories[..6] {
        assert_eq!((t.won, t.turns.len(), t.dropped.as_ref()), (true, 3, None), "{}", t.spec.video.display());
        let media = &t.turns[2].media;
        assert!(media.iter().all(|m| m.inputs.is_some()), "decoded model inputs travel with the turn");
    }
    // A video that cannot be opened is an extraction failure of the first media action.
    let t = &batch.trajectories[6];
    assert_eq!(t.turns.last().unwrap().outcome.error_name(), "FFMPEG_FRAME_FAIL");
    assert!(t.done && !t.won);
}
