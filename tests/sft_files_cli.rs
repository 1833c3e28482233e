#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `omnirl train` on a recipe with only an SFT stage that reads reference-format SFT files with
//! real media (`data/examples/sft.jsonl`: JPEG frames, a WAV file, an MP4 clip with audio): the
//! stage trains on those lines (its `sft/loss` falls), writes its step checkpoints (pruned to
//! `keep_last`) and its result, and `omnirl eval` loads the result. Rows longer than
//! `max_seq_length` are dropped and counted; a media file that cannot be decoded stops the stage
//! with the data line and the file named, and nothing half-written is left.

use omnirl_tests::{metric_series, omnirl, repo_root};
use std::path::Path;

/// A one-stage SFT recipe on `train_file` with a random tiny thinker.
fn recipe(dir: &Path, train_file: &str, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "name: sft_files
seed: 7
output_dir: {out}
distributed: {{device: cpu}}
stages:
  - name: sft
    kind: sft
    model:
      init: random
      config: data/quickstart/tiny_thinker.json
      dtype: f32
      gradient_checkpointing: false
    data:
      train_files: [{train_file}]
    preprocess: {{image_max_pixels: 3136, video_frame_max_pixels: 3136, video_min_pixels: 3136, video_total_pixels: 200704}}
    optimizer: {{lr: 1.0e-3, lr_schedule: constant, warmup_ratio: 0.0, weight_decay: 0.0}}
    schedule: {{epochs: 6, per_device_batch_size: 2, gradient_accumulation_steps: 1, max_seq_length: 4096}}
    checkpoint: {{save_every: 4, keep_last: 2}}
    logging: {{log_every: 1}}
{extra}",
        out = dir.join("runs").display()
    );
    let path = dir.join("sft_files.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn an_sft_stage_trains_on_sft_files_with_media_and_eval_loads_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    let r = recipe(tmp.path(), "data/examples/sft.jsonl", "");
    let out = omnirl().arg("train").arg(&r).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // 4 lines, 2 per step: 2 steps an epoch, 12 in all; none is longer than 4096 tokens.
    assert!(err.contains("stage `sft`: 12 steps") && err.contains("24 rows read, 0 dropped"), "{err}");
    let run = tmp.path().join("runs/sft_files");
    let loss = metric_series(&run.join("sft/metrics.jsonl"), "sft/loss");
    assert_eq!(loss.len(), 12);
    let (first, last) = (loss[..2].iter().sum::<f64>() / 2.0, loss[10..].iter().sum::<f64>() / 2.0);
    assert!(last < first - 0.5, "sft/loss does not fall: {loss:?}");
    for f in ["final/config.json", "final/model.safetensors", "final/tokenizer.json"] {
        assert!(run.join("sft").join(f).is_file(), "{f} missing");
    }
    // Saved at steps 4 and 8 (the last step's weights are the result), both kept.
    let steps: Vec<String> = std::fs::read_dir(run.join("sft/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut steps = steps;
    steps.sort();
    assert_eq!(steps, ["step-00000004", "step-00000008"]);
    assert!(run.join("sft/checkpoints/step-00000008/train_state.json").is_file());
    assert!(run.join("sft/checkpoints/step-00000008/optimizer.safetensors").is_file());

    let eval_out = tmp.path().join("eval");
    let out = omnirl()
        .args(["eval", "--model"])
        .arg(run.join("sft/final"))
        .args(["--data", "data/examples/eval.jsonl", "--max-response-tokens", "16", "--out"])
        .arg(&eval_out)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = std::fs::read_to_string(eval_out.join("results.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 5, "one result per line of data/examples/eval.jsonl");
}

#[test]
fn rows_over_max_seq_length_are_dropped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let r = recipe(tmp.path(), "data/examples/sft.jsonl", "");
    let out = omnirl().arg("train").arg(&r).args(["--set", "stages.sft.schedule.epochs=1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // From that checkpoint (its tokenizer is known before the run), validate samples the rows.
    // The other example lines carry frames, audio or a clip; at 350 tokens only the first line
    // (text only, about 280 tokens) fits.
    let ckpt = tmp.path().join("runs/sft_files/sft/final");
    let text = std::fs::read_to_string(&r).unwrap().replace(
        "      init: random\n      config: data/quickstart/tiny_thinker.json\n",
        &format!("      path: {}\n", ckpt.display()),
    );
    std::fs::write(&r, text).unwrap();
    let short = ["--set", "stages.sft.schedule.max_seq_length=350", "--set", "stages.sft.schedule.epochs=1"];
    let out = omnirl().arg("validate").arg(&r).args(short).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("row lengths: 3 of 4 sampled rows over max_seq_length 350"), "{text}");
    assert!(text.contains("3 of 4 sampled rows (of 4 lines) are longer than max_seq_length 350"), "{text}");
    let out = omnirl().arg("train").arg(&r).args(short).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("4 rows read, 3 dropped (longer than schedule.max_seq_length)"), "{err}");
}

#[test]
fn an_undecodable_media_file_stops_the_stage_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let examples = repo_root().join("data/examples/sft.jsonl");
    let text = std::fs::read_to_string(examples).unwrap();
    // Line 2 references frame images; one of them becomes bytes no decoder reads.
    let junk = tmp.path().join("junk.jpg");
    std::fs::write(&junk, b"not a jpeg at all").unwrap();
    let line2 =
        text.lines().nth(1).unwrap().replace("data/examples/media/STEP_1_frame_8.000.jpg", &junk.display().to_string());
    assert!(line2.contains("junk.jpg"));
    let data = tmp.path().join("bad.jsonl");
    std::fs::write(&data, format!("{}\n{line2}\n", text.lines().next().unwrap())).unwrap();
    let r = recipe(tmp.path(), &data.display().to_string(), "");
    let out = omnirl().arg("train").arg(&r).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.jsonl:2") && err.contains("junk.jpg") && err.contains("raw_input["), "{err}");
    let sft = tmp.path().join("runs/sft_files/sft");
    assert!(!sft.join("final").exists(), "no result is published by a failed stage");
    let left: Vec<String> = std::fs::read_dir(&sft)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(left.is_empty(), "half-written files left behind: {left:?}");

    // A missing media file is a data error before training starts, at its line and field.
    let gone = line2.replace(&junk.display().to_string(), "/nonexistent/frame.jpg");
    std::fs::write(&data, format!("{gone}\n")).unwrap();
    let out = omnirl().arg("train").arg(&r).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.jsonl:1") && err.contains("/nonexistent/frame.jpg") && err.contains("not starting"),
        "{err}"
    );
}
