#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `Driver::run_observed`: the observer sees every physical step (retried invalid ones too), in
//! step order per episode, as the environment applied it (the history already holds the
//! feedback), and the run's trajectories are those of a plain `Driver::run`.

use rollout::data::{EvalSample, Role};
use rollout::driver::{Driver, DriverConfig, MediaOpener, StepEvent};
use rollout::episode::{ByteTokenizer, EpisodeSettings, EpisodeSpec, MediaEnv, Part, SyntheticMedia, VideoMeta};
use rollout::policy::ScriptedPolicy;
use rollout::prompt::PromptTemplate;
use serde_json::json;
use std::sync::Arc;

fn spec(i: usize) -> Arc<EpisodeSpec> {
    let sample: EvalSample = serde_json::from_value(json!({
        "video": format!("v{i}.mp4"), "question_type": "MCQ", "question": "Which colour?",
        "options": ["A. red", "B. blue"], "answer": "A"
    }))
    .unwrap();
    let meta = VideoMeta { duration: 12.0, fps: Some(25.0), has_audio: true };
    Arc::new(EpisodeSpec::from_eval(&sample, meta, format!("s{i}")))
}

fn script() -> Vec<String> {
    let turn = |action: serde_json::Value| {
        json!({"observation": "o", "think": "t", "confidence": 0.5, "action": action}).to_string()
    };
    vec![
        "not json".to_string(),
        turn(json!({"type": "get_frames", "start": 0, "end": 4, "num": 2})),
        turn(json!({"type": "answer", "content": "A"})),
    ]
}

/// What the test keeps of an event: episode, step, action, stored, feedback text, feedback has media.
type Seen = (usize, u32, String, bool, String, bool);

fn run(observe: bool) -> (rollout::driver::RolloutBatch, Vec<Seen>) {
    let config = DriverConfig {
        group_size: 2,
        max_batch: 3,
        media_threads: 2,
        record_messages: true,
        ..DriverConfig::default()
    };
    let d = Driver::new(
        EpisodeSettings::eval(),
        PromptTemplate::default_template().unwrap(),
        Arc::new(ByteTokenizer),
        config,
    );
    let mut policy = ScriptedPolicy::from_scripts(vec![script(), script()], Some(Arc::new(ByteTokenizer)));
    let opener: Arc<MediaOpener> =
        Arc::new(|_: &EpisodeSpec| Ok(Arc::new(SyntheticMedia::default()) as Arc<dyn MediaEnv>));
    let mut seen = Vec::new();
    let batch = if observe {
        let mut record = |ev: &StepEvent<'_>| {
            let after = ev.history.iter().rposition(|m| m.role == Role::Assistant).unwrap();
            let feedback: String = ev.history[after + 1..]
                .iter()
                .flat_map(|m| m.parts.iter())
                .filter_map(|p| match p {
                    Part::Text(t) => Some(t.as_str()),
                    Part::Media(_) => None,
                })
                .collect();
            let has_media = ev.history[after + 1..].iter().any(|m| m.has_media());
            assert_eq!(ev.cur_step + 1, ev.outcome.step);
            assert!(ev.messages.is_some_and(|m| m.len() >= 2) && !ev.prompt_ids.is_empty());
            seen.push((
                ev.episode,
                ev.outcome.step,
                ev.outcome.action_name().to_string(),
                ev.outcome.stored,
                feedback,
                has_media,
            ));
        };
        d.run_observed(&mut policy, &[spec(0), spec(1)], opener, &mut record).unwrap()
    } else {
        d.run(&mut policy, &[spec(0), spec(1)], opener).unwrap()
    };
    (batch, seen)
}

#[test]
fn every_physical_step_is_observed_in_order() {
    let (batch, seen) = run(true);
    assert_eq!(seen.len(), batch.stats.steps);
    assert_eq!(seen.len(), 4 * 3);
    for e in 0..4 {
        let mine: Vec<_> = seen.iter().filter(|s| s.0 == e).collect();
        let steps: Vec<u32> = mine.iter().map(|s| s.1).collect();
        assert_eq!(steps, [1, 2, 3], "episode {e}");
        let actions: Vec<&str> = mine.iter().map(|s| s.2.as_str()).collect();
        assert_eq!(actions, ["ERROR", "get_frames", "answer"]);
        assert_eq!(mine.iter().map(|s| s.3).collect::<Vec<_>>(), [false, true, true], "the retried step is not stored");
        assert!(mine[0].4.contains("[ERROR] INVALID_JSON"), "{}", mine[0].4);
        assert!(mine[1].5 && mine[1].4.contains("Frames 0.00s-4.00s"), "{}", mine[1].4);
        assert!(mine[2].4.contains("CORRECT ANSWER"));
        assert_eq!(batch.trajectories[e].turns.len(), 2);
    }
    let (plain, _) = run(false);
    let shape = |b: &rollout::driver::RolloutBatch| {
        b.trajectories.iter().map(|t| (t.turns.len(), t.episode_reward, t.won)).collect::<Vec<_>>()
    };
    assert_eq!(shape(&plain), shape(&batch));
}

/// A media environment that records when it is dropped.
struct Tracked {
    inner: SyntheticMedia,
    sample: usize,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl MediaEnv for Tracked {
    fn frames(
        &self,
        s: f64,
        e: f64,
        t: &[f64],
    ) -> Result<rollout::episode::Observation, rollout::episode::MediaFailure> {
        self.inner.frames(s, e, t)
    }
    fn audio(&self, s: f64, e: f64) -> Result<rollout::episode::Observation, rollout::episode::MediaFailure> {
        self.inner.audio(s, e)
    }
    fn clip(&self, s: f64, e: f64) -> Result<rollout::episode::Observation, rollout::episode::MediaFailure> {
        self.inner.clip(s, e)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.log.lock().unwrap().push(format!("drop {}", self.sample));
    }
}

#[test]
fn an_episode_lets_go_of_its_media_when_it_ends() {
    let turn = |action: serde_json::Value| {
        json!({"observation": "o", "think": "t", "confidence": 0.5, "action": action}).to_string()
    };
    let look = turn(json!({"type": "get_frames", "start": 0, "end": 4, "num": 2}));
    let answer = turn(json!({"type": "answer", "content": "A"}));
    // Sample 0 answers after one look, sample 1 looks three times.
    let scripts = vec![vec![look.clone(), answer.clone()], vec![look.clone(), look.clone(), look, answer]];
    let config = DriverConfig { group_size: 1, max_batch: 2, media_threads: 1, ..DriverConfig::default() };
    let d = Driver::new(
        EpisodeSettings::eval(),
        PromptTemplate::default_template().unwrap(),
        Arc::new(ByteTokenizer),
        config,
    );
    let mut policy = ScriptedPolicy::from_scripts(scripts, Some(Arc::new(ByteTokenizer)));
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let specs = [spec(0), spec(1)];
    let opener_log = log.clone();
    let opener: Arc<MediaOpener> = Arc::new(move |s: &EpisodeSpec| {
        let sample = if s.video.ends_with("v0.mp4") { 0 } else { 1 };
        let env = Tracked { inner: SyntheticMedia::default(), sample, log: opener_log.clone() };
        Ok(Arc::new(env) as Arc<dyn MediaEnv>)
    });
    let step_log = log.clone();
    let mut record =
        |ev: &StepEvent<'_>| step_log.lock().unwrap().push(format!("step {} {}", ev.episode, ev.outcome.step));
    d.run_observed(&mut policy, &specs, opener, &mut record).unwrap();
    let log = log.lock().unwrap().clone();
    let at = |what: &str| log.iter().position(|l| l == what).unwrap_or_else(|| panic!("no `{what}` in {log:?}"));
    assert!(at("drop 0") < at("step 1 4"), "episode 0's media outlived it: {log:?}");
    assert!(at("drop 1") > at("step 1 4"), "{log:?}");
}
