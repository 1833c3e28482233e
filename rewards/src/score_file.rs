//! Streaming scoring of a JSONL prediction file, the pipeline behind `omnirl score`.
//!
//! Each input line `{"question_type", "prediction", "answer", ...}` yields one output line, in
//! input order: every input field (order and text kept) plus `"reward"` (number, or null when
//! the line could not be scored) and `"error"` (a code, or null); see [`crate::record`]. Three
//! stages overlap: a reader thread cuts the input into chunks, the calling thread scores each
//! chunk in parallel (rayon) and sends a chunk's FF lines to the LLM judge in one concurrent
//! batch when one is given, and a writer thread writes the output.
//!
//! Malformed lines (not UTF-8, not a JSON object, or missing `question_type`, `prediction` or
//! `answer`) are reported as `line N: <reason>` messages (the first 100 of them) and still
//! produce an output line, so output and input stay 1:1: the input's fields, if any, plus
//! `"reward": null, "error": "INVALID_INPUT_LINE"`; a line that is not a JSON object becomes
//! `{"line": N, "reward": null, "error": "INVALID_INPUT_LINE"}`. FF lines the judge could not
//! score get `"error": "JUDGE_FAILED"`; without a judge they score 0.0 with one warning.
//!
//! Left out: building the judge and printing; the caller hands in a judge (or none), receives
//! the messages through a callback and prints [`ScoreStats::summary_text`] itself.

use crate::QuestionType;
#[cfg(feature = "judge")]
use crate::judge::{Judge, JudgeItem};
use crate::record::{INVALID_INPUT_LINE, JudgeInput, Record, invalid_line_output};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufWriter, Write};
#[cfg(feature = "judge")]
use std::sync::Arc;
use std::sync::mpsc;
use thiserror::Error;

/// Lines per pipeline chunk (also the judge's batch), and per parallel task within it.
const CHUNK_LINES: usize = 16_384;
const TASK_LINES: usize = 512;
/// A chunk also ends once it holds this many bytes.
const CHUNK_BYTES: usize = 8 << 20;
/// Malformed lines reported individually; the rest are only counted.
const MAX_LINE_REPORTS: u64 = 100;

/// Why a stream could not be scored to the end. Bad lines are never errors: they become
/// output lines with an error code.
#[derive(Debug, Error)]
pub enum ScoreFileError {
    /// Reading the input failed (`name` is the name given to [`score_stream`]).
    #[error("cannot read input file {name}")]
    Read {
        name: String,
        #[source]
        source: io::Error,
    },
    /// Writing the output failed (a closed pipe included: its kind is `BrokenPipe`).
    #[error("cannot write the output")]
    Write(#[source] io::Error),
}

/// Counts for one normalised question type.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct TypeStats {
    /// Lines of this type, scored or not.
    pub lines: u64,
    /// Lines of this type that got a reward.
    pub scored: u64,
    /// Sum of their rewards.
    pub reward_sum: f64,
}

impl TypeStats {
    /// The mean reward of the scored lines; `None` when none was scored.
    pub fn mean_reward(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.reward_sum / self.scored as f64)
    }
}

/// What a run scored: per normalised question type and per error code.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ScoreStats {
    /// Input lines (= output lines).
    pub lines: u64,
    /// Lines with an error code.
    pub invalid: u64,
    pub by_type: BTreeMap<QuestionType, TypeStats>,
    pub by_error: BTreeMap<&'static str, u64>,
}

impl ScoreStats {
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

    fn merge(&mut self, part: &ScoreStats) {
        self.lines += part.lines;
        self.invalid += part.invalid;
        for (qt, t) in &part.by_type {
            let e = self.by_type.entry(*qt).or_default();
            e.lines += t.lines;
            e.scored += t.scored;
            e.reward_sum += t.reward_sum;
        }
        for (code, n) in &part.by_error {
            *self.by_error.entry(code).or_default() += n;
        }
    }

    /// The summary `omnirl score` prints on stderr (newline-terminated lines): totals, a table
    /// per question type, and the invalid lines per error code. `name` names the input.
    pub fn summary_text(&self, name: &str) -> String {
        let mut s = format!(
            "omnirl score: {} line(s) from {}, {} scored, {} invalid\n",
            self.lines,
            name,
            self.lines - self.invalid,
            self.invalid
        );
        if !self.by_type.is_empty() {
            s.push_str(&format!("  {:<5} {:>10} {:>10} {:>12}\n", "type", "lines", "scored", "mean_reward"));
            for (qt, t) in &self.by_type {
                let mean = t.mean_reward().map_or_else(|| "-".to_owned(), |m| format!("{m:.4}"));
                s.push_str(&format!("  {:<5} {:>10} {:>10} {:>12}\n", qt.as_str(), t.lines, t.scored, mean));
            }
        }
        if !self.by_error.is_empty() {
            let codes: Vec<String> = self.by_error.iter().map(|(c, n)| format!("{c} {n}")).collect();
            s.push_str(&format!("  invalid by code: {}\n", codes.join(", ")));
        }
        s
    }
}

/// Scores every line of `input` onto `output` (buffered here), FF lines at 0.0 (one warning).
/// `name` names the input in error messages; `on_message` receives each stderr-style message
/// (no trailing newline) on the calling thread, in order.
pub fn score_stream<R, W>(
    input: R,
    name: &str,
    output: W,
    mut on_message: impl FnMut(&str),
) -> Result<ScoreStats, ScoreFileError>
where
    R: BufRead + Send,
    W: Write + Send,
{
    run_pipeline(input, name, output, FreeForm::default(), &mut on_message)
}

/// [`score_stream`] with the FF lines sent to `judge` when one is given (a judge failure is a
/// `JUDGE_FAILED` line and a `warning: line N: FF judge: ...` message).
#[cfg(feature = "judge")]
pub fn score_stream_with_judge<R, W>(
    input: R,
    name: &str,
    output: W,
    judge: Option<Arc<Judge>>,
    mut on_message: impl FnMut(&str),
) -> Result<ScoreStats, ScoreFileError>
where
    R: BufRead + Send,
    W: Write + Send,
{
    run_pipeline(input, name, output, FreeForm { judge, warned: false }, &mut on_message)
}

fn run_pipeline<R, W>(
    input: R,
    name: &str,
    output: W,
    mut ff: FreeForm,
    on_message: &mut dyn FnMut(&str),
) -> Result<ScoreStats, ScoreFileError>
where
    R: BufRead + Send,
    W: Write + Send,
{
    let mut stats = ScoreStats::default();
    let mut reported = 0u64;
    std::thread::scope(|scope| {
        let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Result<Chunk, ScoreFileError>>(2);
        let reader = scope.spawn(move || read_chunks(input, name, chunk_tx));
        let (out_tx, out_rx) = mpsc::sync_channel::<Vec<String>>(2);
        let writer = scope.spawn(move || write_parts(output, out_rx));

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
            ff.resolve(&chunk, &mut parts, on_message);
            let mut texts = Vec::with_capacity(parts.len());
            for part in parts {
                for msg in &part.messages {
                    report(&mut reported, msg, on_message);
                }
                stats.merge(&part.stats);
                texts.push(part.text);
            }
            if out_tx.send(texts).is_err() {
                break; // the writer stopped: its error is returned below
            }
        }
        drop(out_tx);
        let written = writer.join().unwrap_or_else(|_| Err(io::Error::other("writer thread panicked")));
        let _ = reader.join();
        if let Some(e) = failure {
            return Err(e);
        }
        written.map_err(ScoreFileError::Write)
    })?;
    Ok(stats)
}

/// Passes on the first `MAX_LINE_REPORTS` malformed-line messages, then one notice.
fn report(reported: &mut u64, msg: &str, on_message: &mut dyn FnMut(&str)) {
    *reported += 1;
    if *reported <= MAX_LINE_REPORTS {
        on_message(msg);
    } else if *reported == MAX_LINE_REPORTS + 1 {
        on_message("(further malformed lines are counted but not shown)");
    }
}

fn read_chunks(input: impl BufRead, name: &str, chunks: mpsc::SyncSender<Result<Chunk, ScoreFileError>>) {
    let mut input = input;
    let mut first_line = 1u64;
    loop {
        match read_chunk(&mut input, first_line) {
            Ok(c) if c.lines.is_empty() => return,
            Ok(c) => {
                first_line += c.lines.len() as u64;
                if chunks.send(Ok(c)).is_err() {
                    return;
                }
            }
            Err(source) => {
                let _ = chunks.send(Err(ScoreFileError::Read { name: name.to_owned(), source }));
                return;
            }
        }
    }
}

fn write_parts(output: impl Write, parts: mpsc::Receiver<Vec<String>>) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, output);
    for texts in parts {
        for text in texts {
            out.write_all(text.as_bytes())?;
        }
    }
    out.flush()
}

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

/// Up to `CHUNK_LINES` lines or about `CHUNK_BYTES` bytes; no lines at end of input.
fn read_chunk(reader: &mut impl BufRead, first_line: u64) -> io::Result<Chunk> {
    let mut chunk = Chunk { first_line, data: Vec::with_capacity(CHUNK_BYTES + (64 << 10)), lines: Vec::new() };
    while chunk.lines.len() < CHUNK_LINES && chunk.data.len() < CHUNK_BYTES {
        let start = chunk.data.len();
        let n = reader.read_until(b'\n', &mut chunk.data)?;
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

/// The output of a run of lines: their text (one line each, newline-terminated), the
/// malformed-line messages and counts, and FF lines waiting for the judge.
struct Part {
    text: String,
    messages: Vec<String>,
    stats: ScoreStats,
    /// (index in chunk, byte range of its provisional output line in `text`, question type,
    /// judge input)
    pending_ff: Vec<(usize, std::ops::Range<usize>, QuestionType, JudgeInput)>,
}

fn score_part(chunk: &Chunk, first: usize, count: usize) -> Part {
    let mut part = Part {
        text: String::with_capacity(count * 320),
        messages: Vec::new(),
        stats: ScoreStats::default(),
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

/// FF handling: the judge when one is given, else 0.0 with one warning per run.
#[derive(Default)]
struct FreeForm {
    #[cfg(feature = "judge")]
    judge: Option<Arc<Judge>>,
    warned: bool,
}

impl FreeForm {
    /// Settles the chunk's FF lines: the judge's verdicts replace their provisional output
    /// when there is a judge; otherwise they keep 0.0.
    fn resolve(&mut self, chunk: &Chunk, parts: &mut [Part], on_message: &mut dyn FnMut(&str)) {
        if parts.iter().all(|p| p.pending_ff.is_empty()) {
            return;
        }
        #[cfg(feature = "judge")]
        if let Some(judge) = &self.judge {
            resolve_with_judge(judge, chunk, parts, on_message);
            return;
        }
        #[cfg(not(feature = "judge"))]
        let _ = chunk;
        if !self.warned {
            self.warned = true;
            on_message(
                "warning: no judge API key (DASHSCOPE_API_KEY or OSS_ACCESS_KEY, in the environment or .env): FF answers score 0.0",
            );
        }
        for part in parts.iter_mut() {
            for (_, _, qt, _) in std::mem::take(&mut part.pending_ff) {
                part.stats.add(Some(qt), Some(0.0), None);
            }
        }
    }
}

/// Judges all of a chunk's pending FF lines in one batch and rewrites their output lines.
#[cfg(feature = "judge")]
fn resolve_with_judge(judge: &Arc<Judge>, chunk: &Chunk, parts: &mut [Part], on_message: &mut dyn FnMut(&str)) {
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
                    on_message(&format!("warning: line {line_no}: FF judge: {e}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> (String, Vec<String>, ScoreStats) {
        let mut out = Vec::new();
        let mut messages = Vec::new();
        let stats = score_stream(input.as_bytes(), "t.jsonl", &mut out, |m| messages.push(m.to_owned())).unwrap();
        (String::from_utf8(out).unwrap(), messages, stats)
    }

    #[test]
    fn scores_lines_in_order_with_messages_and_stats() {
        let input = concat!(
            "{\"question_type\": \"MCQ\", \"prediction\": \"b\", \"answer\": \"B\"}\n",
            "{\"question_type\": \"TR\", \"prediction\": \"[[0, 10]]\", \"answer\": \"[[5, 15]]\"}\r\n",
            "not json\n",
            "{\"question_type\": \"NUM\", \"prediction\": \"x\", \"answer\": \"3\"}\n",
            "{\"question_type\": \"FF\", \"question\": \"Q\", \"prediction\": \"red\", \"answer\": \"Red\"}",
        );
        let (out, messages, stats) = run(input);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"question_type":"MCQ","prediction":"b","answer":"B","reward":1.0,"error":null}"#,
                r#"{"question_type":"TR","prediction":"[[0, 10]]","answer":"[[5, 15]]","reward":0.3333333333333333,"error":null}"#,
                r#"{"line":3,"reward":null,"error":"INVALID_INPUT_LINE"}"#,
                r#"{"question_type":"NUM","prediction":"x","answer":"3","reward":null,"error":"ANSWER_NOT_STRING"}"#,
                r#"{"question_type":"FF","question":"Q","prediction":"red","answer":"Red","reward":0.0,"error":null}"#,
            ]
        );
        assert!(out.ends_with('\n'));
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("warning: no judge API key"), "{messages:?}");
        assert!(messages[1].starts_with("line 3: "), "{messages:?}");

        assert_eq!((stats.lines, stats.invalid), (5, 2));
        assert_eq!(stats.by_error, BTreeMap::from([("ANSWER_NOT_STRING", 1), ("INVALID_INPUT_LINE", 1)]));
        let tr = stats.by_type[&QuestionType::Tr];
        assert_eq!((tr.lines, tr.scored), (1, 1));
        assert!((tr.reward_sum - 1.0 / 3.0).abs() < 1e-12);
        let num = stats.by_type[&QuestionType::Num];
        assert_eq!((num.lines, num.scored, num.mean_reward()), (1, 0, None));
        assert_eq!(stats.by_type[&QuestionType::Ff].mean_reward(), Some(0.0));
        assert_eq!(stats.by_type.len(), 4);

        let summary = stats.summary_text("t.jsonl");
        assert!(summary.starts_with("omnirl score: 5 line(s) from t.jsonl, 3 scored, 2 invalid\n"), "{summary}");
        assert!(summary.contains("\n  TR             1          1       0.3333\n"), "{summary}");
        assert!(summary.contains("\n  NUM            1          0            -\n"), "{summary}");
        assert!(summary.ends_with("  invalid by code: ANSWER_NOT_STRING 1, INVALID_INPUT_LINE 1\n"), "{summary}");
    }

    #[test]
    fn caps_line_reports_and_names_the_input_on_read_errors() {
        let input = "[]\n".repeat(150);
        let (out, messages, stats) = run(&input);
        assert_eq!(out.lines().count(), 150);
        assert_eq!(messages.len(), 101);
        assert!(messages[99].starts_with("line 100: not a JSON object"), "{}", messages[99]);
        assert_eq!(messages[100], "(further malformed lines are counted but not shown)");
        assert_eq!((stats.lines, stats.invalid), (150, 150));

        struct Failing;
        impl io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk gone"))
            }
        }
        let err = score_stream(io::BufReader::new(Failing), "in.jsonl", io::sink(), |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "cannot read input file in.jsonl");
        assert!(matches!(&err, ScoreFileError::Read { source, .. } if source.to_string() == "disk gone"));
    }
}
