//! `omnirl report`: one static, self-contained HTML page about a run directory (or an
//! `omnirl eval --out` directory): training curves, before/after figures, and trajectories.
//!
//! What it reads (everything optional, but something must be there):
//! * `<stage>/metrics.jsonl` of every sub-directory: line charts of `reward/mean`,
//!   `accuracy/mean`, `sft/loss`, `actor/pg_loss` and the caller's extra metric names
//!   ([`charts`]);
//! * `summary.json`: its `figures` (per question type, before the first training stage and after
//!   each) as a table and a grouped bar chart of accuracy; the `per_type` figures of each eval
//!   directory's own `summary.json` are added as one more column;
//! * `results.jsonl` of the run directory itself and of every sub-directory (eval stages, sweep
//!   points), and the given `omnirl infer` trajectory files: browsable trajectories with their
//!   media ([`trajectories`], [`media`]), at most `max_trajectories` of them (trajectory files
//!   first, then results in directory order).
//!
//! Relative video paths are looked up from the working directory, then under the given media
//! roots, then under the run directory. The page ([`html`]) has inline CSS, JS and SVG only.
//! Left out: TensorBoard event files (the JSONL metrics hold the same scalars), and comparing
//! runs.

pub mod charts;
pub mod html;
pub mod media;
pub mod trajectories;

use charts::{bar_chart, fmt_num, line_chart, parse_metrics};
use html::{esc, page};
use media::{MediaEmbedder, MediaOptions};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use trajectories::{Item, VideoLookup};

/// The metrics drawn when a stage logged them.
pub const DEFAULT_METRICS: [&str; 4] = ["reward/mean", "accuracy/mean", "sft/loss", "actor/pg_loss"];

/// Why no report could be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}: not a directory")]
    NotADirectory(String),
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}: nothing to report (no metrics.jsonl, summary.json, results.jsonl or trajectory file)")]
    Empty(String),
}

fn file_err(path: &Path, message: impl ToString) -> ReportError {
    ReportError::File { path: path.display().to_string(), message: message.to_string() }
}

/// What to put in the report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub run_dir: PathBuf,
    /// `omnirl infer` trajectory files.
    pub trajectory_files: Vec<PathBuf>,
    pub max_trajectories: usize,
    /// Extra metric names to draw.
    pub metrics: Vec<String>,
    /// Where relative video paths are looked for (after the working directory).
    pub media_roots: Vec<PathBuf>,
    pub media: MediaOptions,
}

/// The page and what went into it.
#[derive(Debug, Clone)]
pub struct Report {
    pub html: String,
    pub charts: usize,
    pub trajectories: usize,
    pub media_items: usize,
    pub media_bytes: usize,
}

fn read(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|e| file_err(path, e))
}

fn read_json(path: &Path) -> Result<Value, ReportError> {
    serde_json::from_str(&read(path)?).map_err(|e| file_err(path, format!("not JSON: {e}")))
}

/// The stage directories, in the order of `summary.json`'s stages, then by name.
fn stage_dirs(run_dir: &Path, summary: Option<&Value>) -> Result<Vec<(String, PathBuf)>, ReportError> {
    let entries = std::fs::read_dir(run_dir).map_err(|e| file_err(run_dir, e))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            let d = run_dir.join(n);
            d.join("metrics.jsonl").is_file() || d.join("results.jsonl").is_file() || d.join("summary.json").is_file()
        })
        .collect();
    names.sort();
    let order: Vec<String> = summary
        .and_then(|s| s.get("stages"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.get("name").and_then(Value::as_str).map(String::from)).collect())
        .unwrap_or_default();
    let rank = |n: &String| order.iter().position(|o| o == n).unwrap_or(usize::MAX);
    names.sort_by_key(|n| (rank(n), n.clone()));
    Ok(names.into_iter().map(|n| (n.clone(), run_dir.join(n))).collect())
}

/// The curves section; returns (html, number of charts).
fn curves(stages: &[(String, PathBuf)], extra: &[String]) -> Result<(String, usize), ReportError> {
    let mut out = String::from("<section id=\"curves\"><h2>Training curves</h2>");
    let mut count = 0;
    for (name, dir) in stages {
        let path = dir.join("metrics.jsonl");
        if !path.is_file() {
            continue;
        }
        let series = parse_metrics(&read(&path)?);
        let _ = write!(out, "<h3>{}</h3><div class=\"charts\">", esc(name));
        let wanted: Vec<&str> = DEFAULT_METRICS.iter().copied().chain(extra.iter().map(String::as_str)).collect();
        let mut drawn = 0;
        for m in wanted {
            if let Some(points) = series.points.get(m) {
                out.push_str(&line_chart(m, points));
                drawn += 1;
            }
        }
        out.push_str("</div>");
        if drawn == 0 {
            let names = series.names.iter().take(12).cloned().collect::<Vec<_>>().join(", ");
            let _ = write!(out, "<p class=\"note\">none of the drawn metrics was logged (logged: {})</p>", esc(&names));
        }
        if series.bad_lines > 0 {
            let _ = write!(
                out,
                "<p class=\"note\">{} unreadable line(s) skipped in {}</p>",
                series.bad_lines,
                esc(&path.display().to_string())
            );
        }
        count += drawn;
    }
    if count == 0 {
        out.push_str("<p class=\"note\">no metrics.jsonl with drawable metrics in this directory</p>");
    }
    out.push_str("</section>");
    Ok((out, count))
}

/// Figure sets (label -> type -> figures) in display order: before_*, after_* (stage order), then
/// eval directories' own summaries.
fn figure_sets(
    summary: Option<&Value>,
    stages: &[(String, PathBuf)],
    run_dir: &Path,
) -> Result<Vec<(String, Value)>, ReportError> {
    let mut sets: Vec<(String, Value)> = Vec::new();
    if let Some(Value::Object(figs)) = summary.and_then(|s| s.get("figures")) {
        let stage_rank = |label: &str| {
            let stage = label.split_once('_').map_or(label, |(_, s)| s);
            let before = label.starts_with("before_");
            (
                if before { 0 } else { 1 },
                stages.iter().position(|(n, _)| n == stage).unwrap_or(usize::MAX),
                label.to_string(),
            )
        };
        let mut labels: Vec<&String> = figs.keys().collect();
        labels.sort_by_key(|l| stage_rank(l));
        sets.extend(labels.into_iter().map(|l| (l.clone(), figs[l].clone())));
    }
    let mut eval_dirs: Vec<(String, PathBuf)> = stages.to_vec();
    eval_dirs.insert(0, (".".into(), run_dir.to_path_buf()));
    for (name, dir) in eval_dirs {
        let path = dir.join("summary.json");
        if !dir.join("results.jsonl").is_file() || !path.is_file() {
            continue;
        }
        if let Some(per_type) = read_json(&path)?.get("per_type").filter(|v| v.is_object()) {
            let label = if name == "." { "eval".to_string() } else { format!("{name} (eval)") };
            sets.push((label, per_type.clone()));
        }
    }
    Ok(sets)
}

/// The before/after section; returns (html, number of charts).
fn figures_section(sets: &[(String, Value)]) -> (String, usize) {
    let mut out = String::from("<section id=\"figures\"><h2>Figures per question type</h2>");
    if sets.is_empty() {
        out.push_str("<p class=\"note\">no summary.json figures in this directory</p></section>");
        return (out, 0);
    }
    let mut types: Vec<String> = Vec::new();
    for (_, v) in sets {
        if let Value::Object(m) = v {
            for k in m.keys() {
                if !types.contains(k) {
                    types.push(k.clone());
                }
            }
        }
    }
    types.sort_by_key(|t| (t != "all", t.clone()));
    let cell = |v: &Value, t: &str, k: &str| v.get(t).and_then(|f| f.get(k)).and_then(Value::as_f64);
    out.push_str("<table><tr><th>type</th>");
    for (label, _) in sets {
        let _ = write!(out, "<th>{}</th>", esc(label));
    }
    out.push_str("</tr>");
    for t in &types {
        let _ = write!(out, "<tr><th>{}</th>", esc(t));
        for (_, v) in sets {
            match (cell(v, t, "accuracy"), cell(v, t, "mean_reward"), cell(v, t, "episodes")) {
                (Some(a), r, n) => {
                    let _ = write!(
                        out,
                        "<td>accuracy {}<br>reward {}<br>n = {}</td>",
                        esc(&fmt_num(a)),
                        esc(&r.map_or("–".into(), fmt_num)),
                        esc(&n.map_or("–".into(), fmt_num))
                    );
                }
                _ => out.push_str("<td>–</td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table><div class=\"charts\">");
    let series: Vec<(String, Vec<Option<f64>>)> =
        sets.iter().map(|(l, v)| (l.clone(), types.iter().map(|t| cell(v, t, "accuracy")).collect())).collect();
    out.push_str(&bar_chart("accuracy per question type", &types, &series));
    out.push_str("</div></section>");
    (out, 1)
}

/// The trajectories to show, capped.
fn collect_items(opts: &ReportOptions, stages: &[(String, PathBuf)]) -> Result<(Vec<Item>, usize), ReportError> {
    let mut items = Vec::new();
    for f in &opts.trajectory_files {
        let line = read_json(f)?;
        if !line.is_object() {
            return Err(file_err(f, "expected one JSON object (an `omnirl infer` trajectory)"));
        }
        items.push(Item { source: f.display().to_string(), line });
    }
    let mut dirs: Vec<(String, PathBuf)> = vec![(".".into(), opts.run_dir.clone())];
    dirs.extend(stages.iter().cloned());
    for (name, dir) in dirs {
        let path = dir.join("results.jsonl");
        if !path.is_file() {
            continue;
        }
        let label = if name == "." { "results.jsonl".to_string() } else { format!("{name}/results.jsonl") };
        for (i, l) in read(&path)?.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let line: Value =
                serde_json::from_str(l).map_err(|e| file_err(&path, format!("line {}: not JSON: {e}", i + 1)))?;
            items.push(Item { source: format!("{label}:{}", i + 1), line });
        }
    }
    let total = items.len();
    items.truncate(opts.max_trajectories);
    Ok((items, total))
}

/// Builds the page.
pub fn build(opts: &ReportOptions) -> Result<Report, ReportError> {
    let run_dir = &opts.run_dir;
    if !run_dir.is_dir() {
        return Err(ReportError::NotADirectory(run_dir.display().to_string()));
    }
    let summary_path = run_dir.join("summary.json");
    let summary = if summary_path.is_file() { Some(read_json(&summary_path)?) } else { None };
    let stages = stage_dirs(run_dir, summary.as_ref())?;
    let (curves_html, n_curves) = curves(&stages, &opts.metrics)?;
    let sets = figure_sets(summary.as_ref(), &stages, run_dir)?;
    let (figures_html, n_figs) = figures_section(&sets);
    let (items, total) = collect_items(opts, &stages)?;
    if n_curves == 0 && sets.is_empty() && total == 0 && summary.is_none() {
        return Err(ReportError::Empty(run_dir.display().to_string()));
    }
    let mut lookup = VideoLookup { roots: opts.media_roots.clone() };
    lookup.roots.push(run_dir.clone());
    let mut embed = MediaEmbedder::new(opts.media.clone());
    let mut traj = String::from("<section id=\"trajectories\"><h2>Trajectories</h2>");
    if items.is_empty() {
        traj.push_str("<p class=\"note\">no results.jsonl or trajectory file</p>");
    } else {
        traj.push_str(
            "<div class=\"controls\"><label>type <select id=\"f-type\"><option value=\"\">all</option></select></label>\
             <label>outcome <select id=\"f-outcome\"><option value=\"\">all</option><option value=\"correct\">correct</option>\
             <option value=\"incorrect\">incorrect</option><option value=\"unscored\">unscored</option></select></label>\
             <label>text <input id=\"f-text\" type=\"search\"></label><button id=\"f-expand\" type=\"button\">expand all</button>\
             <button id=\"f-collapse\" type=\"button\">collapse all</button><span id=\"f-shown\" class=\"note\"></span></div>",
        );
        if total > items.len() {
            let _ = write!(traj, "<p class=\"note\">showing the first {} of {total} trajectories</p>", items.len());
        }
        for (i, item) in items.iter().enumerate() {
            // The first trajectory starts open, so the page shows one at a glance.
            traj.push_str(&trajectories::render(item, &lookup, &mut embed, i == 0));
        }
        if embed.over_budget > 0 {
            let _ = write!(
                traj,
                "<p class=\"note\">{} media item(s) left out: the media budget was spent</p>",
                embed.over_budget
            );
        }
    }
    traj.push_str("</section>");
    let title = match summary.as_ref().and_then(|s| s.get("recipe")).and_then(Value::as_str) {
        Some(r) => format!("omnirl report: {r}"),
        None => "omnirl report".to_string(),
    };
    let subtitle = format!("{} · {} chart(s) · {} trajectory(ies)", run_dir.display(), n_curves + n_figs, items.len());
    let body = format!("{curves_html}\n{figures_html}\n{traj}");
    Ok(Report {
        html: page(&title, &subtitle, &body),
        charts: n_curves + n_figs,
        trajectories: items.len(),
        media_items: embed.embedded,
        media_bytes: embed.used(),
    })
}
