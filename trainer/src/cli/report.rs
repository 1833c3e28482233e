//! `omnirl report RUN_DIR [--out FILE] [--trajectory FILE]... [--max-trajectories N]
//! [--metric NAME]... [--media-root DIR]... [--no-media] [--thumb-width PX]
//! [--frames-per-step N] [--audio-seconds S] [--media-budget-mb MB]`: writes one static,
//! self-contained HTML page about a run directory of `omnirl train` (or an `omnirl eval --out`
//! directory): training curves per stage, before/after figures per question type, and browsable
//! trajectories with their frames, audio and clips embedded (see `run_report`).
//!
//! The page goes to `--out` (default `RUN_DIR/report.html`), written atomically; stdout gets one
//! line: the path, charts, trajectories and the size. Exit status 0 on success, 2 when the
//! directory holds nothing to report or a file is unreadable (the message names it). Left out:
//! serving the page (open the file in a browser).

use crate::run::write_atomic;
use crate::run_report::media::MediaOptions;
use crate::run_report::{ReportOptions, build};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run directory (or an `omnirl eval --out` directory).
    pub run_dir: PathBuf,
    /// Output file (default: RUN_DIR/report.html).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// An `omnirl infer` trajectory file to include (repeatable).
    #[arg(long = "trajectory", value_name = "FILE")]
    pub trajectories: Vec<PathBuf>,
    /// Most trajectories shown (trajectory files first, then eval results).
    #[arg(long, default_value_t = 20)]
    pub max_trajectories: usize,
    /// Also draw this metric of metrics.jsonl (repeatable).
    #[arg(long = "metric", value_name = "NAME")]
    pub metrics: Vec<String>,
    /// Directory relative video paths are looked up in (repeatable; after the working directory).
    #[arg(long = "media-root", value_name = "DIR")]
    pub media_roots: Vec<PathBuf>,
    /// Do not extract or embed any media.
    #[arg(long)]
    pub no_media: bool,
    /// Thumbnail width in pixels.
    #[arg(long, default_value_t = 160)]
    pub thumb_width: usize,
    /// Most thumbnails per step (an even subset of the step's frames).
    #[arg(long, default_value_t = 8)]
    pub frames_per_step: usize,
    /// Seconds of each audio embedded (from its start).
    #[arg(long, default_value_t = 6.0)]
    pub audio_seconds: f64,
    /// Total size of the embedded media, in MiB.
    #[arg(long, default_value_t = 4.0)]
    pub media_budget_mb: f64,
}

pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let opts = ReportOptions {
        run_dir: args.run_dir.clone(),
        trajectory_files: args.trajectories.clone(),
        max_trajectories: args.max_trajectories,
        metrics: args.metrics.clone(),
        media_roots: args.media_roots.clone(),
        media: MediaOptions {
            enabled: !args.no_media,
            thumb_width: args.thumb_width,
            max_frames: args.frames_per_step,
            audio_seconds: args.audio_seconds,
            budget_bytes: (args.media_budget_mb.max(0.0) * 1024.0 * 1024.0) as usize,
        },
    };
    let report = build(&opts)?;
    let out = args.out.clone().unwrap_or_else(|| args.run_dir.join("report.html"));
    write_atomic(&out, report.html.as_bytes())?;
    println!(
        "{}: {} chart(s), {} trajectory(ies), {} media item(s), {:.1} KiB",
        out.display(),
        report.charts,
        report.trajectories,
        report.media_items,
        report.html.len() as f64 / 1024.0
    );
    Ok(ExitCode::SUCCESS)
}
