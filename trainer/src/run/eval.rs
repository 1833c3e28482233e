//! Evaluation: one episode per held-out sample with the stage's validation sampling, the
//! per-type figures, and the files an evaluation writes (`results.jsonl`, `summary.json`,
//! `summary.csv`, the reference's evaluation outputs). FF answers go to the judge when the stage
//! has one.
//!
//! Left out: sharding an evaluation over ranks (every rank evaluates the whole set with the same
//! weights and seed; only rank 0 writes).

use super::RunError;
use super::episodes::{TypeFigures, driver, figures, media_cache, sampling, video_opener};
use super::judge::FfJudge;
use super::model::Model;
use super::write_atomic;
use crate::metrics::Scalars;
use crate::recipe::resolved::Episodes;
use crate::recipe::{PreprocessConfig, SamplingConfig};
use rollout::episode::EpisodeSpec;
use rollout::trajectory::Trajectory;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// One evaluation pass: figures per question type, and the trajectories.
pub struct Evaluation {
    pub figures: BTreeMap<String, TypeFigures>,
    pub trajectories: Vec<Trajectory>,
    pub wall_s: f64,
}

/// How an evaluation runs: the stage's episodes, media budgets and sampling, how many samples
/// one rollout batch takes, and the FF judge.
#[derive(Clone, Copy)]
pub struct EvalSetup<'a> {
    pub episodes: &'a Episodes,
    pub preprocess: &'a PreprocessConfig,
    pub sampling: &'a SamplingConfig,
    /// Samples per rollout batch (each sample keeps the episode seed of its position in `specs`).
    pub batch: usize,
    pub judge: Option<&'a FfJudge>,
}

/// Evaluates `model` on `specs`, one episode per sample, in batches of `setup.batch`.
pub fn evaluate(
    model: &mut Model,
    setup: &EvalSetup<'_>,
    specs: &[Arc<EpisodeSpec>],
    seed: u64,
) -> Result<Evaluation, RunError> {
    let t0 = std::time::Instant::now();
    let s = sampling(setup.sampling, setup.episodes.max_response_length, false, seed);
    let opener = video_opener(setup.preprocess, media_cache(setup.episodes));
    let mut trajectories = Vec::with_capacity(specs.len());
    let mut drv = driver(setup.episodes, model.encoder.clone(), 1, s, seed)?;
    for (c, chunk) in specs.chunks(setup.batch.max(1)).enumerate() {
        let first = c * setup.batch.max(1);
        drv.config.global_samples = (first..first + chunk.len()).collect();
        let mut batch = model.rollout(&drv, chunk, opener.clone(), setup.episodes.prefix_cache_bytes)?;
        if let Some(j) = setup.judge {
            j.rescore(&mut batch.trajectories, setup.episodes.settings.shaping.format_reward)?;
        }
        trajectories.extend(batch.trajectories);
    }
    Ok(Evaluation { figures: figures(&trajectories), trajectories, wall_s: t0.elapsed().as_secs_f64() })
}

/// The `content` of an answer action in `response`, read with the episode's own parser.
pub fn answer_content(response: &str) -> Option<String> {
    match rollout::episode::parse_action(response, false).ok()?.action {
        rollout::episode::Action::Answer { content } => Some(content),
        _ => None,
    }
}

fn prediction(t: &Trajectory) -> Value {
    let Some(last) = t.turns.last() else { return Value::Null };
    if last.outcome.action_name() != "answer" {
        return Value::Null;
    }
    answer_content(&last.response).map_or(Value::Null, Value::String)
}

/// One `results.jsonl` line (its fields: the README's table of run outputs); `steps` holds one record per stored turn
/// (`run::trace`: response fields, action, error, delivered media), for `omnirl report`.
pub fn result_line(t: &Trajectory) -> Value {
    let frames: usize = t.turns.iter().map(|x| x.outcome.delivered.n_frames).sum();
    let audio: f64 = t.turns.iter().map(|x| x.outcome.delivered.audio_seconds()).sum();
    let clip: f64 = t.turns.iter().filter_map(|x| x.outcome.delivered.clip_range).map(|(s, e)| (e - s).max(0.0)).sum();
    let errors: Vec<&str> = t.turns.iter().filter_map(|x| x.outcome.error_code.map(|c| c.as_str())).collect();
    let actions: Vec<&str> = t.turns.iter().map(|x| x.outcome.action_name()).collect();
    json!({
        "question_id": t.spec.question_id,
        "video": t.spec.video,
        "question_type": t.spec.question_type,
        "type": t.spec.qtype.as_str(),
        "data_source": t.spec.data_source,
        "question": t.spec.question,
        "answer": t.spec.answer,
        "prediction": prediction(t),
        "reward": t.episode_reward,
        "correct": t.won,
        "turns": t.turns.len(),
        "actions": actions,
        "error_codes": errors,
        "runtime_error": t.dropped.as_ref().map(|d| d.to_string()),
        "last_response": t.turns.last().map(|x| x.response.clone()),
        "frames_used": frames,
        "audio_seconds": audio,
        "clip_seconds": clip,
        "steps": super::trace::stored_steps(t),
    })
}

/// Writes `results.jsonl`, `summary.json` and `summary.csv` of an evaluation into `dir`.
pub fn write_eval_outputs(dir: &Path, ev: &Evaluation) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(RunError::io(dir))?;
    let mut lines = String::new();
    for t in &ev.trajectories {
        lines.push_str(&result_line(t).to_string());
        lines.push('\n');
    }
    write_atomic(&dir.join("results.jsonl"), lines.as_bytes())?;
    let mut by_source: BTreeMap<String, Vec<Trajectory>> = BTreeMap::new();
    for t in &ev.trajectories {
        by_source.entry(t.spec.data_source.clone().unwrap_or_else(|| "unknown".into())).or_default().push(t.clone());
    }
    let sources: BTreeMap<String, BTreeMap<String, TypeFigures>> =
        by_source.iter().map(|(k, v)| (k.clone(), figures(v))).collect();
    let n = ev.trajectories.len().max(1) as f64;
    let runtime_errors = ev.trajectories.iter().filter(|t| t.dropped.is_some()).count() as f64 / n;
    let lines_of = |f: &dyn Fn(&Trajectory) -> f64| ev.trajectories.iter().map(f).sum::<f64>() / n;
    // Turns, frames, seconds of media and runtime errors, overall, per type and per source.
    let all_use = super::consumption::consumption(&ev.trajectories);
    let type_use = super::consumption::by_type(&ev.trajectories);
    let source_use: BTreeMap<String, BTreeMap<String, super::consumption::Consumption>> =
        by_source.iter().map(|(k, v)| (k.clone(), super::consumption::by_type(v))).collect();
    let summary = json!({
        "samples": ev.trajectories.len(),
        "per_type": ev.figures,
        "per_source": sources,
        "mean_turns": lines_of(&|t| t.turns.len() as f64),
        "mean_frames": lines_of(&|t| t.turns.iter().map(|x| x.outcome.delivered.n_frames as f64).sum()),
        "mean_audio_seconds": lines_of(&|t| t.turns.iter().map(|x| x.outcome.delivered.audio_seconds()).sum()),
        "runtime_error_rate": runtime_errors,
        "wall_s": ev.wall_s,
        "mean_clip_seconds": all_use.mean_clip_seconds,
        "mean_media_seconds": all_use.mean_media_seconds,
        "total_frames": all_use.total_frames,
        "total_media_seconds": all_use.total_media_seconds,
        "runtime_errors": all_use.runtime_errors,
        "consumption": {"all": all_use, "per_type": type_use, "per_source": source_use},
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| RunError::Data(e.to_string()))?;
    write_atomic(&dir.join("summary.json"), text.as_bytes())?;
    let mut csv = String::from(concat!(
        "group,type,episodes,accuracy,mean_reward,mean_turns,no_answer_rate,",
        "mean_frames,mean_media_seconds,runtime_error_rate\n"
    ));
    let mut row = |group: &str, ty: &str, f: &TypeFigures, c: Option<&super::consumption::Consumption>| {
        let c = c.cloned().unwrap_or_default();
        csv.push_str(&format!(
            "{group},{ty},{},{:.4},{:.4},{:.3},{:.4},{:.3},{:.3},{:.4}\n",
            f.episodes,
            f.accuracy,
            f.mean_reward,
            f.mean_turns,
            f.no_answer_rate,
            c.mean_frames,
            c.mean_media_seconds,
            c.runtime_error_rate
        ));
    };
    for (ty, f) in &ev.figures {
        row("all", ty, f, type_use.get(ty));
    }
    for (src, figs) in &sources {
        for (ty, f) in figs {
            row(&format!("source:{src}"), ty, f, source_use.get(src).and_then(|u| u.get(ty)));
        }
    }
    write_atomic(&dir.join("summary.csv"), csv.as_bytes())?;
    Ok(())
}

/// Scalars of an evaluation, for the metrics sinks.
pub fn eval_scalars(prefix: &str, figs: &BTreeMap<String, TypeFigures>) -> Scalars {
    let mut s = Scalars::default();
    for (ty, f) in figs {
        s.push(format!("{prefix}/{ty}/accuracy"), f.accuracy);
        s.push(format!("{prefix}/{ty}/mean_reward"), f.mean_reward);
    }
    s
}
