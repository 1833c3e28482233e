//! `omnirl score --input FILE.jsonl`: scores predictions line by line.
//!
//! Each input line `{"question_type", "prediction", "answer", ...}` yields one output line on
//! stdout, in input order: every input field (order and text kept) plus `"reward"` (number, or
//! null when the line could not be scored) and `"error"` (a code, or null). Scoring is
//! `rewards::record`; this file streams the file in chunks, scores each chunk in parallel
//! (rayon), sends a chunk's FF lines to the LLM judge in one concurrent batch when a key is
//! configured, and prints a summary on stderr.
//!
//! Malformed lines (not UTF-8, not a JSON object, or missing `question_type`, `prediction` or
//! `answer`) are reported on stderr as `line N: <reason>` (the first 100 of them) and still
//! produce an output line, so output and input stay 1:1: the input's fields, if any, plus
//! `"reward": null, "error": "INVALID_INPUT_LINE"`; a line that is not a JSON object becomes
//! `{"line": N, "reward": null, "error": "INVALID_INPUT_LINE"}`. FF lines the judge could not
//! score get `"error": "JUDGE_FAILED"`. Exit status 0 whatever the lines hold; 2 when the input
//! file cannot be read (the message names the file).
//!
//! The judge reads its key from `DASHSCOPE_API_KEY` (else `OSS_ACCESS_KEY`) in the environment
//! or a `.env` file in the working directory or above, plus `DASHSCOPE_BASE_URL` and the
//! `OMNIRL_JUDGE_*` settings (see `rewards::judge`).
//!
//! Left out: reading stdin (`--input -`) and an output-file option; redirect stdout instead.

use anyhow::Context as _;
use clap::Args;
use rayon::prelude::*;
use rewards::QuestionType;
use rewards::judge::{Judge, JudgeConfig, JudgeItem};
use rewards::record::{INVALID_INPUT_LINE, JudgeInput, Record, invalid_line_output};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, mpsc};

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// JSONL file with `question_type`, `prediction` and `answer` on each line.
    #[arg(long)]
    pub input: PathBuf,
}

/// Lines per pipeline chunk (also the judge's batch), and per parallel task within it.
const CHUNK_LINES: usize = 16_384;
const TASK_LINES: usize = 512;
/// A chunk also ends once it holds this many bytes.
const CHUNK_BYTES: usize = 8 << 20;
/// Malformed lines reported individually on stderr; the rest are only counted.
const MAX_LINE_REPORTS: u64 = 100;

/// A run of input lines: one buffer and the (start, end) of each line in it, terminators
/// excluded.
struct Chunk {
    first_line: u64,
    data: Vec<u8>,
    lines: Vec<(usize, usize)>,
}

impl Chunk {
    fn line(&self, i: usize) -> &[u8] {
        let (a, b) = self.lines[i];
        &self.data[a..b]
    }
}

pub fn run(args: &ScoreArgs) -> anyhow::Result<ExitCode> {
    let path = args.input.clone();
    let file = File::open(&path).with_context(|| format!("cannot read input file {}", path.display()))?;
    let mut ff = FreeForm::new();
    let mut summary = Summary::default();

    // Three stages overlap: a reader thread, parallel scoring here, a writer thread.
    let (chunk_tx, chunk_rx) = mpsc::sync_channel::<anyhow::Result<Chunk>>(2);
    let reader_path = path.clone();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut first_line = 1u64;
        loop {
            match read_chunk(&mut reader, &reader_path, first_line) {
                Ok(c) if c.lines.is_empty() => return,
                Ok(c) => {
                    first_line += c.lines.len() as u64;
                    if chunk_tx.send(Ok(c)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = chunk_tx.send(Err(e));
                    return;
                }
            }
        }
    });
    let (out_tx, out_rx) = mpsc::sync_channel::<Vec<String>>(2);
    let writer = std::thread::spawn(move || -> io::Result<()> {
        let mut out = io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
        for parts in out_rx {
            for part in parts {
                out.write_all(part.as_bytes())?;
            }
        }
        out.flush()
    });

    let mut failure = None;
    for chunk in chunk_rx {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let mut parts: Vec<Part> = chunk
            .lines
            .par_chunks(TASK_LINES)
            .enumerate()
            .map(|(t, lines)| score_part(&chunk, t * TASK_LINES, lines.len()))
            .collect();
        ff.resolve(&chunk, &mut parts);
        let mut texts = Vec::with_capacity(parts.len());
        for part in parts {
            for msg in &part.messages {
                summary.report(msg);
            }
            summary.merge(&part.stats);
            texts.push(part.text);
        }
        if out_tx.send(texts).is_err() {
            break; // the writer stopped: its error is reported below
        }
    }
    drop(out_tx);
    let written = writer.join().unwrap_or_else(|_| Err(io::Error::other("writer thread panicked")));
    let _ = reader.join();
    if let Some(e) = failure {
        return Err(e);
    }
    if let Err(e) = written {
        // A closed pipe (`omnirl score ... | head`) ends the run quietly.
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Ok(ExitCode::SUCCESS);
        }
        anyhow::bail!("cannot write to stdout: {e}");
    }
    summary.print(&path);
    Ok(ExitCode::SUCCESS)
}

/// Up to `CHUNK_LINES` lines or about `CHUNK_BYTES` bytes; no lines at end of file.
fn read_chunk(reader: &mut impl BufRead, path: &Path, first_line: u64) -> anyhow::Result<Chunk> {
    let mut chunk = Chunk { first_line, data: Vec::with_capacity(CHUNK_BYTES + (64 << 10)), lines: Vec::new() };
    while chunk.lines.len() < CHUNK_LINES && chunk.data.len() < CHUNK_BYTES {
        let start = chunk.data.len();
        let n = reader
            .read_until(b'\n', &mut chunk.data)
            .with_context(|| format!("cannot read input file {}", path.display()))?;
        if n == 0 {
            break;
        }
        let mut end = chunk.data.len();
        if chunk.data[end - 1] == b'\n' {
            end -= 1;
            if end > start && chunk.data[end - 1] == b'\r' {
                end -= 1;
            }
        }
        chunk.lines.push((start, end));
    }
    Ok(chunk)
}

/// The output of a run of lines: their text (one line each, newline-terminated), the stderr
/// messages and summary counts, and FF lines waiting for the judge.
struct Part {
    text: String,
    messages: Vec<String>,
    stats: Stats,
    /// (index in chunk, byte range of its provisional output line in `text`, question type,
    /// judge input)
    pending_ff: Vec<(usize, std::ops::Range<usize>, QuestionType, JudgeInput)>,
}

fn score_part(chunk: &Chunk, first: usize, count: usize) -> Part {
    let mut part = Part {
        text: String::with_capacity(count * 320),
        messages: Vec::new(),
        stats: Stats::default(),
        pending_ff: Vec::new(),
    };
    for i in first..first + count {
        let line_no = chunk.first_line + i as u64;
        let start = part.text.len();
        match score_line(line_no, chunk.line(i)) {
            Line::Malformed { output, question_type, message } => {
                part.text.push_str(&output);
                part.messages.push(message);
                part.stats.add(question_type, None, Some(INVALID_INPUT_LINE));
            }
            Line::Scored { output, question_type, reward, error } => {
                part.text.push_str(&output);
                part.stats.add(question_type, reward, error);
            }
            Line::FreeForm { output, input } => {
                part.text.push_str(&output);
                part.pending_ff.push((i, start..start + output.len(), QuestionType::Ff, input));
            }
        }
        part.text.push('\n');
    }
    part
}

enum Line {
    Malformed {
        output: String,
        question_type: Option<QuestionType>,
        message: String,
    },
    Scored {
        output: String,
        question_type: Option<QuestionType>,
        reward: Option<f64>,
        error: Option<&'static str>,
    },
    /// A valid FF line: scored 0.0 unless the judge says otherwise.
    FreeForm {
        output: String,
        input: JudgeInput,
    },
}

fn score_line(line_no: u64, bytes: &[u8]) -> Line {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Line::Malformed {
            output: invalid_line_output(line_no),
            question_type: None,
            message: format!("line {line_no}: not valid UTF-8"),
        };
    };
    let record = match Record::parse(text) {
        Ok(r) => r,
        Err(reason) => {
            return Line::Malformed {
                output: invalid_line_output(line_no),
                question_type: None,
                message: format!("line {line_no}: {reason}"),
            };
        }
    };
    let question_type = record.question_type().ok();
    if let Some(field) = record.missing_field() {
        return Line::Malformed {
            output: record.output_line(None, Some(INVALID_INPUT_LINE)),
            question_type,
            message: format!("line {line_no}: missing field \"{field}\""),
        };
    }
    match record.score() {
        Ok(s) => {
            if question_type == Some(QuestionType::Ff)
                && let Ok(input) = record.judge_input()
            {
                return Line::FreeForm { output: record.output_line(Some(s.reward), None), input };
            }
            Line::Scored {
                output: record.output_line(Some(s.reward), None),
                question_type,
                reward: Some(s.reward),
                error: None,
            }
        }
        Err(e) => Line::Scored {
            output: record.output_line(None, Some(e.code())),
            question_type,
            reward: None,
            error: Some(e.code()),
        },
    }
}

/// FF handling: the judge when a key is configured, else 0.0 with one warning.
struct FreeForm {
    judge: Option<Arc<Judge>>,
    warned: bool,
}

impl FreeForm {
    fn new() -> FreeForm {
        let config = JudgeConfig::from_env();
        let judge = if config.api_key.is_some() {
            match Judge::new(config) {
                Ok(j) => Some(Arc::new(j)),
                Err(e) => {
                    eprintln!("warning: FF judge unavailable ({e}); FF answers score 0.0");
                    None
                }
            }
        } else {
            None
        };
        FreeForm { judge, warned: false }
    }

    /// Settles the chunk's FF lines: the judge's verdicts replace their provisional output
    /// when a key is configured; otherwise they keep 0.0 (with one warning per run).
    fn resolve(&mut self, chunk: &Chunk, parts: &mut [Part]) {
        if parts.iter().all(|p| p.pending_ff.is_empty()) {
            return;
        }
        let Some(judge) = &self.judge else {
            if !self.warned {
                self.warned = true;
                eprintln!(
                    "warning: no judge API key (DASHSCOPE_API_KEY or OSS_ACCESS_KEY, in the environment or .env): FF answers score 0.0"
                );
            }
            for part in parts.iter_mut() {
                for (_, _, qt, _) in std::mem::take(&mut part.pending_ff) {
                    part.stats.add(Some(qt), Some(0.0), None);
                }
            }
            return;
        };
        let items: Vec<JudgeItem> = parts
            .iter()
            .flat_map(|p| p.pending_ff.iter())
            .map(|(_, _, _, j)| JudgeItem {
                question: j.question.clone(),
                ground_truth: j.ground_truth.clone(),
                prediction: j.prediction.clone(),
            })
            .collect();
        let n = items.len();
        let mut verdicts = match judge.judge_all_blocking(items) {
            Ok(v) => v,
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        }
        .into_iter();
        for part in parts.iter_mut() {
            let pending = std::mem::take(&mut part.pending_ff);
            if pending.is_empty() {
                continue;
            }
            let mut text = String::with_capacity(part.text.len() + 16 * pending.len());
            let mut copied = 0;
            for (i, range, qt, _) in pending {
                let line_no = chunk.first_line + i as u64;
                let (reward, error) = match verdicts.next() {
                    Some(Ok(s)) => (Some(s.reward), None),
                    Some(Err(e)) => {
                        eprintln!("warning: line {line_no}: FF judge: {e}");
                        (None, Some(e.code()))
                    }
                    None => (None, Some("JUDGE_FAILED")),
                };
                text.push_str(&part.text[copied..range.start]);
                // The line parsed before, so it parses again.
                let line = std::str::from_utf8(chunk.line(i)).unwrap_or_default();
                match Record::parse(line) {
                    Ok(record) => text.push_str(&record.output_line(reward, error)),
                    Err(_) => text.push_str(&part.text[range.clone()]),
                }
                copied = range.end;
                part.stats.add(Some(qt), reward, error);
            }
            text.push_str(&part.text[copied..]);
            part.text = text;
        }
    }
}

#[derive(Default, Clone, Copy)]
struct TypeStats {
    lines: u64,
    scored: u64,
    reward_sum: f64,
}

/// Counts for the summary: per normalised question type and per error code.
#[derive(Default)]
struct Stats {
    lines: u64,
    invalid: u64,
    by_type: BTreeMap<QuestionType, TypeStats>,
    by_error: BTreeMap<&'static str, u64>,
}

impl Stats {
    fn add(&mut self, question_type: Option<QuestionType>, reward: Option<f64>, error: Option<&'static str>) {
        self.lines += 1;
        if let Some(code) = error {
            self.invalid += 1;
            *self.by_error.entry(code).or_default() += 1;
        }
        if let Some(qt) = question_type {
            let t = self.by_type.entry(qt).or_default();
            t.lines += 1;
            if let Some(r) = reward {
                t.scored += 1;
                t.reward_sum += r;
            }
        }
    }
}

#[derive(Default)]
struct Summary {
    stats: Stats,
    reported: u64,
}

impl Summary {
    fn report(&mut self, msg: &str) {
        self.reported += 1;
        if self.reported <= MAX_LINE_REPORTS {
            eprintln!("{msg}");
        } else if self.reported == MAX_LINE_REPORTS + 1 {
            eprintln!("(further malformed lines are counted but not shown)");
        }
    }

    fn merge(&mut self, part: &Stats) {
        let s = &mut self.stats;
        s.lines += part.lines;
        s.invalid += part.invalid;
        for (qt, t) in &part.by_type {
            let e = s.by_type.entry(*qt).or_default();
            e.lines += t.lines;
            e.scored += t.scored;
            e.reward_sum += t.reward_sum;
        }
        for (code, n) in &part.by_error {
            *s.by_error.entry(code).or_default() += n;
        }
    }

    fn print(&self, path: &Path) {
        let stats = &self.stats;
        let mut s = format!(
            "omnirl score: {} line(s) from {}, {} scored, {} invalid\n",
            stats.lines,
            path.display(),
            stats.lines - stats.invalid,
            stats.invalid
        );
        if !stats.by_type.is_empty() {
            s.push_str(&format!("  {:<5} {:>10} {:>10} {:>12}\n", "type", "lines", "scored", "mean_reward"));
            for (qt, t) in &stats.by_type {
                let mean = if t.scored > 0 { format!("{:.4}", t.reward_sum / t.scored as f64) } else { "-".to_owned() };
                s.push_str(&format!("  {:<5} {:>10} {:>10} {:>12}\n", qt.as_str(), t.lines, t.scored, mean));
            }
        }
        if !stats.by_error.is_empty() {
            let codes: Vec<String> = stats.by_error.iter().map(|(c, n)| format!("{c} {n}")).collect();
            s.push_str(&format!("  invalid by code: {}\n", codes.join(", ")));
        }
        eprint!("{s}");
    }
}
