//! Helpers for the `omnirl demo` tests: a generated video, a tiny random thinker, a demo server
//! process on a loopback port (stopped when dropped), and a reader of its server-sent events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Writes a video with `ffmpeg` (lavfi `source`, with a 440 Hz tone when `audio`); false (after
/// reporting the missing prerequisite) when the `ffmpeg` CLI is missing.
pub fn make_video(path: &Path, source: &str, audio: bool) -> bool {
    if !Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success()) {
        crate::missing_prerequisite("the `ffmpeg` CLI", "scripts/setup.sh (apt-get install ffmpeg)");
        return false;
    }
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source]);
    if audio {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=6", "-c:a", "aac", "-shortest"]);
    }
    let out = cmd.args(["-c:v", "libx264", "-pix_fmt", "yuv420p"]).arg(path).output().expect("ffmpeg");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    true
}

/// A tiny thinker whose special ids sit above the bytes (so the byte tokenizer serves it).
pub const TINY_CONFIG: &str = r#"{
  "architectures": ["Qwen2_5OmniModel"], "model_type": "qwen2_5_omni", "torch_dtype": "float32",
  "enable_audio_output": false,
  "thinker_config": {
    "model_type": "qwen2_5_omni_thinker",
    "audio_token_index": 4003, "image_token_index": 4009, "video_token_index": 4010,
    "audio_start_token_id": 4004, "audio_end_token_id": 4005,
    "vision_start_token_id": 4006, "vision_end_token_id": 4007, "vision_token_id": 4008,
    "bos_token_id": 4001, "eos_token_id": 4002, "pad_token_id": 4000,
    "position_id_per_seconds": 25, "seconds_per_chunk": 2, "tie_word_embeddings": false,
    "text_config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
      "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 4096,
      "max_position_embeddings": 8192, "rope_theta": 10000.0,
      "rope_scaling": {"mrope_section": [2, 3, 3], "type": "default"}, "rms_norm_eps": 1e-6,
      "tie_word_embeddings": false, "hidden_act": "silu"},
    "vision_config": {"depth": 2, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64,
      "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
      "fullatt_block_indexes": [1], "out_hidden_size": 64, "hidden_act": "silu", "in_channels": 3},
    "audio_config": {"d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 2,
      "encoder_ffn_dim": 64, "num_mel_bins": 128, "max_source_positions": 1500, "n_window": 100,
      "output_dim": 64, "activation_function": "gelu"}
  }
}"#;

/// A random tiny thinker in `dir/model` (random weights write no valid action).
pub fn tiny_model(dir: &Path) -> PathBuf {
    use trainer::checkpoint::{RandomCheckpointOptions, write_random_checkpoint_with};
    use trainer::model::{FloatDtype, KeyLayout, OmniThinkerConfig};
    let cfg_file = dir.join("tiny_config.json");
    std::fs::write(&cfg_file, TINY_CONFIG).unwrap();
    let cfg = OmniThinkerConfig::from_file(&cfg_file).unwrap();
    let opts = RandomCheckpointOptions {
        layout: KeyLayout::ThinkerPrefixed,
        dtype: FloatDtype::F32,
        seed: Some(7),
        write_config: true,
    };
    let model = dir.join("model");
    write_random_checkpoint_with(&cfg, &model, 1, &opts).unwrap();
    model
}

/// A run directory `dir/run` as `omnirl train recipes/quickstart.yaml` leaves one, holding only
/// the quickstart's resolved `recipe.yaml` and [`tiny_model`] as its rl stage's result: returns
/// the checkpoint `dir/run/rl/final`.
pub fn quickstart_run_checkpoint(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    std::fs::create_dir_all(run.join("rl")).unwrap();
    std::fs::rename(tiny_model(dir), run.join("rl/final")).unwrap();
    let v = crate::omnirl().args(["validate", "recipes/quickstart.yaml", "--json"]).output().unwrap();
    let resolved: Value = serde_json::from_slice(&v.stdout).unwrap_or_else(|_| panic!("{}", crate::stderr(&v)));
    std::fs::write(run.join("recipe.yaml"), serde_json::to_string_pretty(&resolved["recipe"]).unwrap()).unwrap();
    run.join("rl/final")
}

/// A running `omnirl demo` (killed when dropped) and what it printed on stderr so far.
pub struct DemoProcess {
    pub child: Child,
    pub url: String,
    stderr: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl DemoProcess {
    /// Starts `omnirl demo --port 0 ARGS` with `TMPDIR=tmpdir` and waits (at most `wait`) for
    /// its `listening on` line.
    pub fn start(args: &[&str], tmpdir: &Path, wait: Duration) -> DemoProcess {
        let mut child = crate::omnirl()
            .args(["demo", "--port", "0"])
            .args(args)
            .env("TMPDIR", tmpdir)
            .env("OMP_NUM_THREADS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start omnirl demo");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let out_tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = out_tx.send(format!("stdout: {line}"));
            }
        });
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut p = DemoProcess { child, url: String::new(), stderr: rx, log: Vec::new() };
        let deadline = Instant::now() + wait;
        while p.url.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match p.stderr.recv_timeout(left) {
                Ok(line) => {
                    if let Some(u) = line.strip_prefix("stdout: listening on ") {
                        p.url = u.trim().to_string();
                    }
                    p.log.push(line);
                }
                Err(_) => panic!("omnirl demo did not start within {wait:?}:\n{}", p.log.join("\n")),
            }
        }
        p
    }

    /// Everything logged so far.
    pub fn drain_log(&mut self) -> String {
        while let Ok(line) = self.stderr.try_recv() {
            self.log.push(line);
        }
        self.log.join("\n")
    }

    /// Sends SIGTERM and waits (at most `wait`) for the exit status.
    pub fn stop(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads server-sent events from a streaming response.
pub struct EventReader {
    resp: reqwest::Response,
    buf: String,
}

impl EventReader {
    pub fn new(resp: reqwest::Response) -> EventReader {
        EventReader { resp, buf: String::new() }
    }

    /// The next event (name, JSON data), skipping keep-alive comments; `None` when the stream
    /// ends or `wait` passes.
    pub async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = n.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if !data.is_empty() {
                    return Some((name, serde_json::from_str(&data).unwrap()));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await.ok()?.ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until one named `name` (returned with all before it), within `wait`.
    pub async fn until(&mut self, name: &str, wait: Duration) -> Vec<(String, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut seen = Vec::new();
        while let Some(ev) = self.next(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
            let last = ev.0 == name;
            seen.push(ev);
            if last {
                break;
            }
        }
        seen
    }
}
