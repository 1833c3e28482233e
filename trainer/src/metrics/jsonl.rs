//! JSONL metrics: one object per logged step, `{"step": N, "time": unix seconds, "<name>": value,
//! ...}`, names as in TensorBoard, in logging order. Non-finite values are written as `null`
//! (JSON has no NaN).
//!
//! On resume, [`JsonlWriter::resume`] first drops the lines of steps after the checkpoint (they
//! were logged by the killed run and will be logged again), rewriting the file through a
//! temporary file and a rename, so the log never holds two lines for one step. Lines that do not
//! parse (a torn last line) are dropped too. Left out: rotation and compression.

use serde_json::{Map, Value};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlWriter {
    /// Opens `path` for appending (creating it and its directory).
    pub fn create(path: &Path) -> io::Result<JsonlWriter> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonlWriter { path: path.to_path_buf(), out: BufWriter::new(file) })
    }

    /// Keeps only the lines with `step <= last_step`, then opens for appending.
    pub fn resume(path: &Path, last_step: u64) -> io::Result<JsonlWriter> {
        if path.is_file() {
            let tmp = path.with_extension("jsonl.tmp");
            {
                let reader = BufReader::new(File::open(path)?);
                let mut w = BufWriter::new(File::create(&tmp)?);
                for line in reader.lines() {
                    let line = line?;
                    let keep = serde_json::from_str::<Value>(&line)
                        .ok()
                        .and_then(|v| v.get("step").and_then(Value::as_u64))
                        .is_some_and(|s| s <= last_step);
                    if keep {
                        w.write_all(line.as_bytes())?;
                        w.write_all(b"\n")?;
                    }
                }
                w.flush()?;
                w.get_ref().sync_all()?;
            }
            std::fs::rename(&tmp, path)?;
        }
        Self::create(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line and flushes.
    pub fn write(&mut self, step: u64, scalars: &[(String, f64)]) -> io::Result<()> {
        let mut obj = Map::with_capacity(scalars.len() + 2);
        obj.insert("step".into(), Value::from(step));
        let time = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        obj.insert("time".into(), Value::from(time));
        for (name, v) in scalars {
            obj.insert(name.clone(), if v.is_finite() { Value::from(*v) } else { Value::Null });
        }
        let line = Value::Object(obj).to_string();
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/metrics.jsonl");
        let mut w = JsonlWriter::create(&path).unwrap();
        for step in 1..=4 {
            w.write(step, &[("loss".into(), step as f64 / 2.0), ("bad".into(), f64::NAN)]).unwrap();
        }
        drop(w);
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"step\": 5, \"lo").unwrap();
        let mut w = JsonlWriter::resume(&path, 2).unwrap();
        w.write(3, &[("loss".into(), 9.0)]).unwrap();
        let lines: Vec<Value> =
            std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let steps: Vec<u64> = lines.iter().map(|v| v["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, vec![1, 2, 3]);
        assert_eq!(lines[1]["loss"], 1.0);
        assert!(lines[0]["bad"].is_null());
        assert_eq!(lines[2]["loss"], 9.0);
    }
}
