//! Speed of the checker on a generated RL file: 5,000 valid lines sharing 50 videos by
//! default (a quick test, run with the rest); `OMNIRL_DATA_PERF_LINES=100000` scales it for
//! the 100k-line measurement (run it with `--release -- --nocapture` to see the time).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rollout::data::{CheckOptions, DataFormat, RlSample, check_file, load_rl_samples, read_mapped};
use std::fmt::Write as _;
use std::time::Instant;

fn generated_line(i: usize) -> String {
    let video = format!("videos/v{:03}.mp4", i % 50);
    let (qt, options, answer) = match i % 4 {
        0 => ("MCQ_LongVR-Short", r#"["A. left","B. right","C. both","D. neither"]"#, "C".to_string()),
        1 => ("TR_LongVALE-Short", "null", format!("[[{}.5, {}.25], [101, 111]]", i % 40, 40 + i % 40)),
        2 => ("SIZE_VSI", "[]", format!("{}.5", i % 97)),
        _ => ("NUM", "[]", format!("{}", i % 13)),
    };
    format!(
        r#"{{"prompt":[{{"content":"","role":"user"}}],"question_type":"{qt}","question":"Question number {i}: what happens around the middle of the video, and who is speaking?","answer":"{}","options":{options},"video":"{video}","fps":29.97,"duration_seconds":{}.5,"has_audio":{},"data_source":"agent","ability":"agent","extra_info":{{"traj_id":"00000000-0000-4000-8000-{:012}","error_reason":"LOGIC_WRONG_ANSWER"}}}}"#,
        answer.replace('"', "\\\""),
        150 + i % 100,
        i.is_multiple_of(2),
        i
    )
}

#[test]
fn a_generated_rl_file_checks_fast() {
    let n: usize = std::env::var("OMNIRL_DATA_PERF_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("videos")).unwrap();
    for v in 0..50 {
        std::fs::write(dir.path().join(format!("videos/v{v:03}.mp4")), b"x").unwrap();
    }
    let mut body = String::with_capacity(n * 520);
    for i in 0..n {
        writeln!(body, "{}", generated_line(i)).unwrap();
    }
    let path = dir.path().join("rl.jsonl");
    std::fs::write(&path, &body).unwrap();

    let opts = CheckOptions::with_media_root(Some(dir.path()));
    let start = Instant::now();
    let report = check_file(&path, DataFormat::Rl, &opts);
    let elapsed = start.elapsed();
    println!(
        "checked {n} lines ({:.1} MB) in {:.3} s on {} threads",
        body.len() as f64 / 1e6,
        elapsed.as_secs_f64(),
        rayon::current_num_threads()
    );
    assert!(report.problems.is_empty(), "{:?}", &report.problems[..report.problems.len().min(3)]);
    assert_eq!(report.samples, n);
    assert_eq!(report.question_types.get("MCQ"), Some(&n.div_ceil(4)));
    assert_eq!(report.distinct_media, 50.min(n));
    assert_eq!(report.videos.len(), 50.min(n));
    // Generous bound: debug builds on a loaded 2-core machine; release is far faster.
    assert!(elapsed.as_secs_f64() < 5.0 * (n as f64 / 5000.0).max(1.0), "{elapsed:?}");

    let start = Instant::now();
    let (report, durations) = read_mapped(&path, &opts, |s: RlSample| s.duration_seconds);
    println!("checked and kept {} durations in {:.3} s", durations.len(), start.elapsed().as_secs_f64());
    assert!(report.is_ok());
    assert_eq!(durations.len(), n);
    assert_eq!((durations[0].0, durations[0].1), (1, 150.5));
    assert_eq!(durations[n - 1].0, n);

    let start = Instant::now();
    let samples = load_rl_samples(&path, Some(dir.path())).unwrap();
    println!("loaded {} samples in {:.3} s", samples.len(), start.elapsed().as_secs_f64());
    assert_eq!(samples.len(), n);
}
