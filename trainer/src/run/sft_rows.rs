//! The rows of an SFT stage, built ahead of the learner.
//!
//! * [`SftFiles`]: the stage's SFT-format files, indexed once by line offsets (a streaming pass;
//!   lines are read back with positioned reads when a batch needs them), so a dataset of tens
//!   of thousands of turns with long contexts never sits in memory. Line numbers count every
//!   line, blank ones included, as the dry run reports them.
//! * [`RowSource`]: where item `i` of the stage comes from: an SFT line (parsed, its media
//!   decoded by the rollout processors, rendered by the chat template: `rollout::sft`), or an
//!   expert trajectory's turn already in memory.
//! * [`produce`]: walks the data cursor batch by batch on a worker pool and sends each rank's
//!   share of every batch down a bounded channel, so decoding runs ahead of the learner. Rows
//!   longer than `max_seq_length` (prompt + target, media tokens included) are dropped and
//!   counted. Rows come out in cursor order whatever the thread timing.
//!
//! Errors name `file:line` and the field; a line that fails mid-stage stops the stage (the
//! dry run has checked every line's schema and that every media file exists before training).
//! Left out: sharding the line index across ranks (each rank indexes every file; the index is
//! 24 bytes a line).

use super::RunError;
use crate::learner::cursor::DataCursor;
use crate::learner::rows::SftRow;
use crate::learner::thinker::items_media;
use crate::model::thinker::MediaInput;
use rollout::data::{MediaBase, SftTurn, parse_record};
use rollout::episode::PromptEncoder;
use rollout::sft::{MediaBudgets, sft_example, sft_texts};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

/// Batches built ahead of the learner.
pub const PREFETCH_BATCHES: usize = 2;

/// One line of the stage's files.
#[derive(Debug, Clone, Copy)]
struct LineRef {
    file: u32,
    offset: u64,
    len: u32,
    /// 1-based.
    line: u32,
}

/// The lines of a stage's SFT files.
#[derive(Debug)]
pub struct SftFiles {
    files: Vec<(PathBuf, File, MediaBase)>,
    lines: Vec<LineRef>,
}

impl SftFiles {
    /// Indexes the non-blank lines of `paths` (at most `max_per_file` of each).
    pub fn index(paths: &[PathBuf], media_root: Option<&Path>, max_per_file: Option<usize>) -> Result<Self, RunError> {
        let mut files = Vec::with_capacity(paths.len());
        let mut lines = Vec::new();
        for (f, path) in paths.iter().enumerate() {
            let file = File::open(path).map_err(RunError::io(path))?;
            let mut reader = BufReader::with_capacity(1 << 20, file.try_clone().map_err(RunError::io(path))?);
            let (mut offset, mut line, mut kept) = (0u64, 0u32, 0usize);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', &mut buf).map_err(RunError::io(path))?;
                if n == 0 || kept >= max_per_file.unwrap_or(usize::MAX) {
                    break;
                }
                line += 1;
                if !buf.trim_ascii().is_empty() {
                    let len = u32::try_from(n).map_err(|_| {
                        RunError::Data(format!("{}:{line}: the line is longer than 4 GiB", path.display()))
                    })?;
                    lines.push(LineRef { file: f as u32, offset, len, line });
                    kept += 1;
                }
                offset += n as u64;
            }
            let base =
                MediaBase { root: media_root.map(Path::to_path_buf), file_dir: path.parent().map(Path::to_path_buf) };
            files.push((path.clone(), file, base));
        }
        Ok(SftFiles { files, lines })
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// `file:line` of item `i`.
    pub fn location(&self, i: usize) -> String {
        match self.lines.get(i) {
            Some(l) => format!("{}:{}", self.files[l.file as usize].0.display(), l.line),
            None => format!("line #{i}"),
        }
    }

    /// Item `i` parsed, with its media paths resolved against the media root and its file's
    /// directory.
    pub fn turn(&self, i: usize) -> Result<SftTurn, RunError> {
        let l = self.lines.get(i).ok_or_else(|| RunError::Data(format!("no line #{i}")))?;
        let (path, file, base) = &self.files[l.file as usize];
        let mut bytes = vec![0u8; l.len as usize];
        file.read_exact_at(&mut bytes, l.offset).map_err(RunError::io(path))?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        parse_record::<SftTurn>(text, base).map_err(|e| RunError::Data(format!("{}: {e}", self.location(i))))
    }

    /// The texts of the files (deduplicated, at most `max_bytes`): the corpus a run's tokenizer
    /// is trained on when a random-initialised model starts on these files.
    pub fn corpus(&self, max_bytes: usize) -> Result<Vec<String>, RunError> {
        let (mut seen, mut out, mut bytes) = (HashSet::new(), Vec::new(), 0usize);
        for i in 0..self.len() {
            for text in sft_texts(&self.turn(i)?) {
                if bytes >= max_bytes {
                    return Ok(out);
                }
                if seen.insert(text.clone()) {
                    bytes += text.len();
                    out.push(text);
                }
            }
        }
        Ok(out)
    }
}

/// How rows are made from items.
pub struct RowBuilder {
    pub encoder: Arc<dyn PromptEncoder>,
    pub budgets: MediaBudgets,
    pub patch_dim: usize,
    pub max_seq_length: usize,
}

/// Where a stage's items come from.
pub enum RowSource {
    Files(SftFiles),
    /// The expert's turns (already rows).
    Rows(Vec<SftRow<MediaInput>>),
}

impl RowSource {
    pub fn len(&self) -> usize {
        match self {
            RowSource::Files(f) => f.len(),
            RowSource::Rows(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `i` as a row, or `None` when it is longer than `max_seq_length`.
    pub fn row(&self, i: usize, b: &RowBuilder) -> Result<Option<SftRow<MediaInput>>, RunError> {
        let row = match self {
            RowSource::Rows(rows) => rows.get(i).cloned().ok_or_else(|| RunError::Data(format!("no row #{i}")))?,
            RowSource::Files(files) => {
                let turn = files.turn(i)?;
                let at = || files.location(i);
                let ex = sft_example(&turn, b.encoder.as_ref(), &b.budgets)
                    .map_err(|e| RunError::Data(format!("{}: {e}", at())))?;
                let media =
                    items_media(&ex.media, b.patch_dim).map_err(|e| RunError::Data(format!("{}: {e}", at())))?;
                SftRow::new(&ex.prompt_ids, &ex.target_ids, &b.encoder.stop_ids(), media)
            }
        };
        Ok((row.ids.len() <= b.max_seq_length).then_some(row))
    }
}

/// One rank's share of one step's batch.
#[derive(Debug)]
pub struct Prepared {
    pub rows: Vec<SftRow<MediaInput>>,
    /// Items of this share dropped for their length.
    pub dropped: usize,
    /// The cursor after this batch (what a checkpoint stores).
    pub cursor: DataCursor,
    /// Seconds the worker pool spent building the share.
    pub build_s: f64,
}

/// How [`produce`] walks the data.
pub struct Walk {
    pub cursor: DataCursor,
    /// Items per step over every rank.
    pub per_step: usize,
    pub steps: u64,
    pub rank: usize,
    pub world: usize,
}

/// Sends each step's share of rows (see the module doc) until `walk.steps` batches are sent,
/// an item fails (its error is sent), or the receiver is gone.
pub fn produce(
    source: &RowSource,
    builder: &RowBuilder,
    mut walk: Walk,
    pool: &rayon::ThreadPool,
    tx: &SyncSender<Result<Prepared, RunError>>,
) {
    use rayon::prelude::*;
    for _ in 0..walk.steps {
        let t0 = std::time::Instant::now();
        let Some(batch) = walk.cursor.next_batch(walk.per_step) else {
            let _ = tx.send(Err(RunError::Data("the training data is empty".into())));
            return;
        };
        let n = batch.indices.len();
        let mine = &batch.indices[walk.rank * n / walk.world..(walk.rank + 1) * n / walk.world];
        let built: Vec<Result<Option<SftRow<MediaInput>>, RunError>> =
            pool.install(|| mine.par_iter().map(|&i| source.row(i, builder)).collect());
        let mut prepared =
            Prepared { rows: Vec::with_capacity(mine.len()), dropped: 0, cursor: walk.cursor.clone(), build_s: 0.0 };
        for r in built {
            match r {
                Ok(Some(row)) => prepared.rows.push(row),
                Ok(None) => prepared.dropped += 1,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        prepared.build_s = t0.elapsed().as_secs_f64();
        if tx.send(Ok(prepared)).is_err() {
            return;
        }
    }
}
