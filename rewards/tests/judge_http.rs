//! The judge client against a tiny HTTP/1.1 server on 127.0.0.1 that plays canned replies.
#![cfg(feature = "judge")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rewards::judge::{ApiKey, Judge, JudgeConfig, JudgeError, JudgeItem};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const KEY: &str = "sk-test-SECRET-0123";

/// One canned reply: status, body, and a delay before answering.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: String,
    delay: Duration,
}

fn ok(content: &str) -> Reply {
    let body = serde_json::json!({"choices": [{"message": {"role": "assistant", "content": content}}]}).to_string();
    Reply { status: 200, body, delay: Duration::ZERO }
}

fn status(code: u16, body: &str) -> Reply {
    Reply { status: code, body: body.to_owned(), delay: Duration::ZERO }
}

#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(String, String)>>, // (head, body)
    active: AtomicUsize,
    max_active: AtomicUsize,
}

/// Serves `script` in order (the last reply repeats); returns the base URL and what it saw.
async fn serve(script: Vec<Reply>) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counter = Arc::new(AtomicUsize::new(0));
    let seen2 = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&seen2);
            let counter = Arc::clone(&counter);
            let script = script.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then Content-Length bytes of body.
                let (head, body) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            let n = sock.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        break (head, String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned());
                    }
                };
                let now = seen.active.fetch_add(1, Ordering::SeqCst) + 1;
                seen.max_active.fetch_max(now, Ordering::SeqCst);
                let even = body.contains("EVEN");
                seen.requests.lock().unwrap().push((head, body));
                let k = counter.fetch_add(1, Ordering::SeqCst);
                let mut reply = script[k.min(script.len() - 1)].clone();
                if reply.body == "ECHO" {
                    // Agree with answers marked EVEN, disagree with the rest.
                    reply = Reply { delay: reply.delay, ..ok(if even { "Judgement: 1" } else { "Judgement: 0" }) };
                }
                tokio::time::sleep(reply.delay).await;
                let response = format!(
                    "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    reply.status,
                    reply.body.len(),
                    reply.body
                );
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
                seen.active.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (format!("http://{addr}/compatible-mode/v1"), seen)
}

fn config(base_url: &str) -> JudgeConfig {
    JudgeConfig {
        base_url: base_url.to_owned(),
        api_key: ApiKey::new(KEY),
        timeout: Duration::from_secs(5),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        ..JudgeConfig::default()
    }
}

fn item(pred: &str) -> JudgeItem {
    JudgeItem {
        question: "What colour is the car?".into(),
        ground_truth: "The car is red.".into(),
        prediction: pred.into(),
    }
}

type Sink = Arc<dyn Fn(&str) + Send + Sync>;

fn collecting_sink() -> (Arc<Mutex<Vec<String>>>, Sink) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = Arc::clone(&log);
    (log, Arc::new(move |m: &str| log2.lock().unwrap().push(m.to_owned())))
}

#[tokio::test]
async fn canned_reply_is_parsed_and_request_is_reference_shaped() {
    let (url, seen) = serve(vec![ok("Judgement: 1")]).await;
    let judge = Judge::new(config(&url)).unwrap();
    let s = judge.judge(&item("  red  ")).await.unwrap();
    assert_eq!((s.reward, s.won), (1.0, true));

    let requests = seen.requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    let (head, body) = &requests[0];
    assert!(head.starts_with("POST /compatible-mode/v1/chat/completions HTTP/1.1"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains(&format!("authorization: {}", KEY.to_ascii_lowercase())), "bare key, no Bearer: {head}");
    assert!(lower.contains("x-dashscope-datainspection:"));
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["model"], "gpt-5-2025-08-07");
    assert_eq!(v["stream"], false);
    assert_eq!(v["messages"][0]["role"], "user");
    let prompt = v["messages"][0]["content"][0]["text"].as_str().unwrap();
    assert!(prompt.ends_with("[Standard Answer]: The car is red.\n[Model_answer] : red\nJudgement:"), "{prompt}");
}

#[tokio::test]
async fn replies_map_to_scores() {
    for (reply, want) in [("Judgement: 0", 0.0), ("1", 1.0), ("0", 0.0), ("I think Judgement: 1", 1.0), ("maybe", 0.0)]
    {
        let (url, _) = serve(vec![ok(reply)]).await;
        let judge = Judge::new(config(&url)).unwrap();
        assert_eq!(judge.judge(&item("red")).await.unwrap().reward, want, "{reply}");
    }
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let (url, seen) = serve(vec![status(500, "{\"error\":\"busy\"}"), ok("Judgement: 1")]).await;
    let judge = Judge::new(config(&url)).unwrap();
    let s = judge.judge(&item("red")).await.unwrap();
    assert_eq!(s.reward, 1.0);
    assert_eq!(seen.requests.lock().unwrap().len(), 2);
    assert_eq!(judge.requests_sent(), 2);
}

#[tokio::test]
async fn bad_reply_body_is_retried() {
    let (url, seen) = serve(vec![status(200, "{\"oops\": true}"), status(429, "slow down"), ok("Judgement: 0")]).await;
    let judge = Judge::new(config(&url)).unwrap();
    assert_eq!(judge.judge(&item("blue")).await.unwrap().reward, 0.0);
    assert_eq!(seen.requests.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let slow = Reply { delay: Duration::from_secs(3), ..ok("Judgement: 1") };
    let (url, seen) = serve(vec![slow]).await;
    let cfg = JudgeConfig { timeout: Duration::from_millis(150), max_attempts: 2, ..config(&url) };
    let judge = Judge::new(cfg).unwrap();
    let started = Instant::now();
    let err = judge.judge(&item("red")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    match &err {
        JudgeError::Exhausted { attempts, last } => {
            assert_eq!(*attempts, 2);
            assert!(last.contains("timed out"), "{last}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.code(), "JUDGE_FAILED");
    assert_eq!(seen.requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn timeout_then_success() {
    let slow = Reply { delay: Duration::from_secs(3), ..ok("Judgement: 0") };
    let (url, _) = serve(vec![slow, ok("Judgement: 1")]).await;
    let cfg = JudgeConfig { timeout: Duration::from_millis(150), ..config(&url) };
    let judge = Judge::new(cfg).unwrap();
    assert_eq!(judge.judge(&item("red")).await.unwrap().reward, 1.0);
}

#[tokio::test]
async fn auth_failure_is_not_retried_and_never_shows_the_key() {
    let echo = format!("{{\"error\": \"invalid key {KEY}\"}}");
    let (url, seen) = serve(vec![status(401, &echo)]).await;
    let judge = Judge::new(config(&url)).unwrap();
    let err = judge.judge(&item("red")).await.unwrap_err();
    assert!(matches!(err, JudgeError::Rejected(_)), "{err:?}");
    assert_eq!(seen.requests.lock().unwrap().len(), 1);
    for text in [err.to_string(), format!("{err:?}"), format!("{judge:?}"), format!("{:?}", judge.config())] {
        assert!(!text.contains(KEY), "key leaked: {text}");
    }
    assert!(err.to_string().contains("HTTP 401"));
}

#[tokio::test]
async fn unreachable_server_fails_without_the_key_in_the_error() {
    // A port nobody listens on (bound then dropped).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/v1?token={KEY}");
    let judge = Judge::new(JudgeConfig { max_attempts: 2, ..config(&url) }).unwrap();
    let err = judge.judge(&item("red")).await.unwrap_err();
    assert!(matches!(err, JudgeError::Exhausted { attempts: 2, .. }), "{err:?}");
    assert!(!err.to_string().contains(KEY), "{err}");
}

#[tokio::test]
async fn no_key_scores_zero_and_warns_once() {
    let (url, seen) = serve(vec![ok("Judgement: 1")]).await;
    let (log, sink) = collecting_sink();
    let cfg = JudgeConfig { api_key: None, ..config(&url) };
    let judge = Arc::new(Judge::with_warning_sink(cfg, sink).unwrap());
    assert!(!judge.has_key());
    let results = judge.judge_all(vec![item("red"), item("blue"), item("red")]).await;
    for r in results {
        assert_eq!(r.unwrap().reward, 0.0);
    }
    assert_eq!(judge.judge(&item("red")).await.unwrap().reward, 0.0);
    assert_eq!(log.lock().unwrap().len(), 1, "{:?}", log.lock().unwrap());
    assert!(seen.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn long_answers_score_zero_without_a_request() {
    let (url, seen) = serve(vec![ok("Judgement: 1")]).await;
    let judge = Judge::new(config(&url)).unwrap();
    let long = "é".repeat(1000); // 1000 characters (2000 bytes)
    assert_eq!(judge.judge(&item(&long)).await.unwrap().reward, 0.0);
    let short = "é".repeat(999);
    assert_eq!(judge.judge(&item(&short)).await.unwrap().reward, 1.0);
    assert_eq!(seen.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn concurrency_is_limited_and_order_kept() {
    let echo = Reply { status: 200, body: "ECHO".to_owned(), delay: Duration::from_millis(60) };
    let (url, seen) = serve(vec![echo]).await;
    let judge = Arc::new(Judge::new(JudgeConfig { concurrency: 2, ..config(&url) }).unwrap());
    let items: Vec<JudgeItem> =
        (0..9).map(|k| item(&format!("answer {k} {}", if k % 3 == 0 { "EVEN" } else { "ODD" }))).collect();
    let results = judge.judge_all(items).await;
    let rewards: Vec<f64> = results.into_iter().map(|r| r.unwrap().reward).collect();
    // Results come back in item order although requests finish in any order.
    assert_eq!(rewards, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    let max = seen.max_active.load(Ordering::SeqCst);
    assert!((1..=2).contains(&max), "max in flight {max}");
    assert_eq!(seen.requests.lock().unwrap().len(), 9);
}

#[test]
fn blocking_wrapper_runs_its_own_runtime() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (url, _) = rt.block_on(serve(vec![ok("Judgement: 1")]));
    let judge = Arc::new(Judge::new(config(&url)).unwrap());
    let out =
        std::thread::spawn(move || judge.judge_all_blocking(vec![item("red"), item("red")]).unwrap()).join().unwrap();
    assert_eq!(out.iter().map(|r| r.as_ref().unwrap().reward).collect::<Vec<_>>(), vec![1.0, 1.0]);
    drop(rt);
}
