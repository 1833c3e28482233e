//! The data pass of the dry run: every data file of every stage is checked once (files shared
//! by stages are checked once per format and media root), in parallel, with the line-level
//! checks of `rollout::data`. RL files also yield the video durations the turn budget needs.
//!
//! Formats by role: sft train files are SFT turns (RL samples with `data.source: expert`); rl
//! train files are RL samples; rl validation files and eval files are checked as evaluation
//! samples (an RL line is also a
//! valid evaluation line; missing video metadata is probed at run time).
//!
//! Then every distinct existing video is probed once, in parallel (`rollout::media::probe`:
//! headers plus a readability check of the file's end, no decoding): unreadable, truncated or
//! video-less files are errors; RL samples whose `has_audio` or `duration_seconds` (more than
//! 1 s off) disagree with the file are warnings, one per video.

use crate::problem::{Problem, Severity};
use crate::recipe::resolved::{ResolvedRecipe, ResolvedStage, SftSource};
use rayon::prelude::*;
use rollout::data::{self, CheckOptions, DataFormat, DataReport, RlSample};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;

/// One file a stage reads, and in which role.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataTask {
    pub file: PathBuf,
    pub format: DataFormat,
    pub media_root: Option<PathBuf>,
    pub check_media: bool,
}

/// What the plan shows for one checked file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileSummary {
    pub file: PathBuf,
    pub role: &'static str,
    pub format: DataFormat,
    pub samples: usize,
    pub question_types: std::collections::BTreeMap<String, usize>,
    pub distinct_media: usize,
    pub missing_media: usize,
    pub errors: usize,
    pub warnings: usize,
}

/// The checked files of one stage.
#[derive(Debug, Clone, Default)]
pub struct StageData {
    pub train: Vec<FileSummary>,
    pub val: Vec<FileSummary>,
    /// Durations of the valid RL training samples (for turn budgets).
    pub durations: Vec<f64>,
}

impl StageData {
    pub fn train_samples(&self) -> u64 {
        self.train.iter().map(|f| f.samples as u64).sum()
    }
}

struct Checked {
    report: DataReport,
    durations: Vec<f64>,
    /// RL files: what the samples claim about each video (for the probe pass).
    claims: HashMap<PathBuf, Claims>,
}

/// What the RL samples referring to one video say about it.
#[derive(Debug, Default, Clone)]
struct Claims {
    lines: usize,
    with_audio: usize,
    /// Distinct `duration_seconds` values (bit patterns), with their line counts.
    durations: HashMap<u64, usize>,
}

fn run_task(task: &DataTask) -> Checked {
    let opts =
        CheckOptions { media_root: task.media_root.clone(), check_media: task.check_media, ..CheckOptions::default() };
    if task.format == DataFormat::Rl {
        let (report, samples) =
            data::read_mapped(&task.file, &opts, |s: RlSample| (s.duration_seconds, s.has_audio, s.video_path));
        let mut claims: HashMap<PathBuf, Claims> = HashMap::new();
        let mut durations = Vec::with_capacity(samples.len());
        for (_, (d, audio, video)) in samples {
            durations.push(d);
            let c = claims.entry(video).or_default();
            c.lines += 1;
            c.with_audio += usize::from(audio);
            *c.durations.entry(d.to_bits()).or_default() += 1;
        }
        Checked { report, durations, claims }
    } else {
        Checked {
            report: data::check_file(&task.file, task.format, &opts),
            durations: Vec::new(),
            claims: HashMap::new(),
        }
    }
}

/// Largest difference between a sample's `duration_seconds` and the probed duration that
/// passes without a warning.
const DURATION_TOLERANCE_S: f64 = 1.0;

/// Probes every distinct existing video once, in parallel: unreadable, truncated and
/// video-less files are errors at the video's path; RL samples whose `has_audio` or
/// `duration_seconds` disagree with the file are warnings (one per video). Skipped when the
/// build cannot decode (no `ffmpeg` feature) or media checks are off.
fn probe_videos(checked: &[Checked]) -> Vec<Problem> {
    if !rollout::media::DECODING_AVAILABLE {
        return Vec::new();
    }
    let mut claims: HashMap<&PathBuf, Claims> = HashMap::new();
    let mut videos: Vec<&PathBuf> = Vec::new();
    for c in checked.iter().filter(|c| c.report.media_checked) {
        videos.extend(&c.report.videos);
        for (v, cl) in &c.claims {
            let e = claims.entry(v).or_default();
            e.lines += cl.lines;
            e.with_audio += cl.with_audio;
            for (d, n) in &cl.durations {
                *e.durations.entry(*d).or_default() += n;
            }
        }
    }
    videos.sort();
    videos.dedup();
    let probed: Vec<(&PathBuf, Result<rollout::media::VideoInfo, rollout::media::MediaError>)> =
        videos.par_iter().map(|v| (*v, rollout::media::probe(v))).collect();
    let mut problems = Vec::new();
    for (video, result) in probed {
        let at = video.display().to_string();
        let info = match result {
            Ok(info) => info,
            Err(e) => {
                problems.push(Problem::error(at, e.to_string()));
                continue;
            }
        };
        let Some(cl) = claims.get(video) else { continue };
        if cl.with_audio > 0 && !info.has_audio {
            problems.push(Problem::warning(
                at.clone(),
                format!("{} sample(s) say has_audio: true but the file has no audio stream", cl.with_audio),
            ));
        }
        let off: Vec<(f64, usize)> = cl
            .durations
            .iter()
            .map(|(d, n)| (f64::from_bits(*d), *n))
            .filter(|(d, _)| (d - info.duration_s).abs() > DURATION_TOLERANCE_S)
            .collect();
        if let Some(&(d, _)) = off.first() {
            let lines: usize = off.iter().map(|(_, n)| n).sum();
            problems.push(Problem::warning(
                at,
                format!(
                    "{lines} sample(s) give duration_seconds {d} but the file lasts {:.3} s (more than {DURATION_TOLERANCE_S} s apart)",
                    info.duration_s
                ),
            ));
        }
    }
    problems
}

fn tasks_of(recipe: &ResolvedRecipe) -> Vec<Vec<(DataTask, &'static str)>> {
    recipe
        .stages
        .iter()
        .map(|stage| {
            let task = |file: &PathBuf, format, root: &Option<PathBuf>, check_media: bool| DataTask {
                file: file.clone(),
                format,
                media_root: root.clone(),
                check_media,
            };
            let mut out = Vec::new();
            match stage {
                ResolvedStage::Sft(s) => {
                    let d = &s.data;
                    let (files, format) = match &d.source {
                        SftSource::Files(files) => (files, DataFormat::Sft),
                        SftSource::Expert { prompts, .. } => (prompts, DataFormat::Rl),
                    };
                    out.extend(files.iter().map(|f| (task(f, format, &d.media_root, d.check_media), "train")));
                }
                ResolvedStage::Rl(r) => {
                    let d = &r.data;
                    out.extend(
                        d.train_files.iter().map(|f| (task(f, DataFormat::Rl, &d.media_root, d.check_media), "train")),
                    );
                    out.extend(
                        d.val_files.iter().map(|f| (task(f, DataFormat::Eval, &d.media_root, d.check_media), "val")),
                    );
                }
                ResolvedStage::Eval(e) => {
                    let d = &e.data;
                    out.extend(
                        d.files.iter().map(|f| (task(f, DataFormat::Eval, &d.media_root, d.check_media), "eval")),
                    );
                }
            }
            out
        })
        .collect()
}

fn to_problem(p: &data::DataProblem) -> Problem {
    Problem {
        severity: if p.is_error() { Severity::Error } else { Severity::Warning },
        location: p.location(),
        key: None,
        message: p.detail(),
    }
}

/// Checks every data file of `recipe`; returns per-stage summaries and all problems (each
/// file's problems once, however many stages read it).
pub fn check_recipe_data(recipe: &ResolvedRecipe) -> (Vec<StageData>, Vec<Problem>) {
    let per_stage = tasks_of(recipe);
    let mut unique: Vec<DataTask> = Vec::new();
    for (task, _) in per_stage.iter().flatten() {
        if !unique.contains(task) {
            unique.push(task.clone());
        }
    }
    let checked: Vec<Checked> = unique.par_iter().map(run_task).collect();
    let mut problems = probe_videos(&checked);
    for c in &checked {
        problems.extend(c.report.problems.iter().map(to_problem));
        if c.report.problems_omitted > 0 {
            problems.push(Problem::warning(
                c.report.file.display().to_string(),
                format!("{} more problems in this file not shown", c.report.problems_omitted),
            ));
        }
    }
    let stages = per_stage
        .iter()
        .map(|tasks| {
            let mut sd = StageData::default();
            for (task, role) in tasks {
                let Some(idx) = unique.iter().position(|t| t == task) else { continue };
                let c = &checked[idx];
                let r = &c.report;
                let summary = FileSummary {
                    file: r.file.clone(),
                    role,
                    format: r.format,
                    samples: r.samples,
                    question_types: r.question_types.clone(),
                    distinct_media: r.distinct_media,
                    missing_media: r.missing_media,
                    errors: r.errors,
                    warnings: r.warnings,
                };
                if *role == "train" {
                    sd.durations.extend(&c.durations);
                    sd.train.push(summary);
                } else {
                    sd.val.push(summary);
                }
            }
            sd
        })
        .collect();
    (stages, problems)
}
