//! The FF judge as rl and eval stages use it (`run::judge::FfJudge`): FF episodes are played by
//! the scripted expert through the real episode machinery and media (the episode scores FF
//! answers 0), then each answered FF episode is sent to an OpenAI-compatible judge, here a
//! loopback HTTP server with canned replies, and its reward and `won` become the judge's (with
//! the stage's format shaping). Without a key nothing is sent and FF answers stay at 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rollout::episode::{ByteTokenizer, PromptEncoder};
use rollout::policy::{ExpertPolicy, Policy};
use rollout::trajectory::Trajectory;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use trainer::recipe::JudgeConfig;
use trainer::recipe::StageKind;
use trainer::recipe::resolved::default_stage;
use trainer::run::episodes::{driver, eval_specs, sampling, video_opener};
use trainer::run::judge::FfJudge;

/// A chat-completions server on 127.0.0.1 answering each request with the next of `replies`
/// (the last repeats); returns its base URL and the request bodies it received.
fn serve(replies: Vec<&'static str>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut sock) = conn else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let body = loop {
                let n = sock.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break Some(String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned());
                }
            };
            let Some(body) = body else { continue };
            log.lock().unwrap().push(body);
            let reply = replies[i.min(replies.len() - 1)];
            let json =
                serde_json::json!({"choices": [{"message": {"role": "assistant", "content": reply}}]}).to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                json.len()
            );
            let _ = sock.write_all(response.as_bytes());
        }
    });
    (url, seen)
}

/// Two FF episodes of the scripted expert on a real video (it answers with the ground truth).
fn ff_episodes(dir: &Path) -> Vec<Trajectory> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let video = root.join("data/examples/videos/kitchen_timer.mp4");
    let lines: Vec<String> = ["Turns off the stove", "Answers the phone"]
        .iter()
        .map(|a| {
            serde_json::json!({"video": video, "question_type": "FF_Demo",
                "question": "What does the cook do after the timer rings?", "answer": a})
            .to_string()
        })
        .collect();
    let file = dir.join("ff.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let specs = eval_specs(&[file], None, None).unwrap();
    let stage = default_stage(StageKind::Eval, dir, 1).unwrap();
    let episodes = stage.episodes().unwrap();
    let encoder: Arc<dyn PromptEncoder> = Arc::new(ByteTokenizer);
    let s = sampling(&trainer::recipe::SamplingConfig::eval(), 512, false, 1);
    let drv = driver(episodes, encoder.clone(), 1, s, 1).unwrap();
    let mut expert = ExpertPolicy::new(drv.settings.limits.clone(), Some(encoder));
    let batch = drv.run(&mut expert as &mut dyn Policy, &specs, video_opener(stage.preprocess(), None)).unwrap();
    batch.trajectories
}

fn judge(url: &str, api_key_env: &str) -> FfJudge {
    FfJudge::new(&JudgeConfig {
        enabled: true,
        base_url: url.into(),
        model: "judge-model".into(),
        api_key_env: api_key_env.into(),
        timeout_s: 10.0,
        max_retries: 1,
        concurrency: 2,
    })
    .unwrap()
}

#[test]
fn ff_answers_are_scored_by_the_judge() {
    let dir = tempfile::tempdir().unwrap();
    let episodes = ff_episodes(dir.path());
    assert_eq!(episodes.len(), 2);
    for t in &episodes {
        assert_eq!(t.turns.last().unwrap().outcome.action_name(), "answer", "the expert answers");
        assert_eq!((t.episode_reward, t.won), (0.0, false), "the episode itself scores FF 0");
    }
    let (url, seen) = serve(vec!["Judgement: 1", "Judgement: 0"]);
    // Any variable that is set serves as the key (the server does not check it).
    let j = judge(&url, "PATH");
    let mut scored = episodes.clone();
    let r = j.rescore(&mut scored, false).unwrap();
    assert_eq!((r.judged, r.failed), (2, 0));
    let rewards: Vec<f64> = scored.iter().map(|t| t.episode_reward).collect();
    assert_eq!(
        {
            let mut r = rewards.clone();
            r.sort_by(f64::total_cmp);
            r
        },
        [0.0, 1.0]
    );
    assert_eq!(r.won, 1);
    for t in &scored {
        assert_eq!(t.won, t.episode_reward == 1.0);
        assert_eq!(t.turns.last().unwrap().outcome.reward, t.episode_reward);
    }
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2);
    assert!(bodies.iter().all(|b| b.contains("judge-model") && b.contains("What does the cook do")));
    assert!(bodies.iter().any(|b| b.contains("Turns off the stove")));
    // With the format reward the episode's shaping applies to the judge's score: 0.1 + 0.9·r,
    // so a wrong but well-formed answer scores 0.1 and a right one 1.0.
    let (url, _) = serve(vec!["Judgement: 0"]);
    let mut shaped = episodes.clone();
    judge(&url, "PATH").rescore(&mut shaped, true).unwrap();
    assert!(
        shaped.iter().all(|t| (t.episode_reward - 0.1).abs() < 1e-12),
        "{:?}",
        shaped.iter().map(|t| t.episode_reward).collect::<Vec<_>>()
    );
    let (url, _) = serve(vec!["Judgement: 1"]);
    let mut shaped = episodes.clone();
    judge(&url, "PATH").rescore(&mut shaped, true).unwrap();
    assert!(shaped.iter().all(|t| (t.episode_reward - 1.0).abs() < 1e-12));
}

#[test]
fn without_a_key_ff_answers_score_zero_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut episodes = ff_episodes(dir.path());
    let (url, seen) = serve(vec!["Judgement: 1"]);
    let j = judge(&url, "OMNIRL_TEST_UNSET_JUDGE_KEY");
    let r = j.rescore(&mut episodes, false).unwrap();
    assert_eq!(r.judged, 2);
    assert!(episodes.iter().all(|t| t.episode_reward == 0.0 && !t.won));
    assert_eq!(j.requests_sent(), 0);
    assert!(seen.lock().unwrap().is_empty());
}
