//! The RL stage, top to bottom (the reference's order of one training step): draw
//! `prompts_per_step` prompts (`DataCursor`: `data.shuffle`, `data.data_seed`, whole batches
//! only); roll out `group_size` episodes of each with the training sampling (whole groups per
//! rank); score FF answers with the judge; one row per stored turn; one `RlLearner` step
//! (old log-probs and entropies, GRPO/TAURA advantages, the update); metrics; the rollout dump;
//! validation every `val_every` steps and at the last step (and before the first with
//! `val_before_train`) on `data.val_files` with the validation sampling; a step checkpoint every
//! `save_every` steps (and on a stop signal). Given a step checkpoint (`--resume`), it restores
//! the weights, optimizer and data cursor and continues with the next step: every step's
//! sampling seeds derive from `(seed, step)`, so the continued run rolls out what the
//! uninterrupted one would have.
//!
//! With `data.pass_rate_filter` the training prompts are first narrowed to those the starting
//! policy still gets wrong (`pass_rate`); its figures join the step-0 line.
//!
//! Validation scalars (`val/<type>/accuracy`, `val/<type>/mean_reward`) join the step's line;
//! the one before training is logged at step 0. Rollout dumps are `<stage>/rollouts/<step>.jsonl`
//! (one line per stored turn; `<step>.rank<r>.jsonl` per rank under data parallelism).

use super::RunError;
use super::episodes::{driver, eval_specs, media_cache, rl_specs, sampling, video_opener};
use super::eval::{EvalSetup, eval_scalars, evaluate};
use super::judge::FfJudge;
use super::model::Model;
use super::pass_rate::filter_prompts;
use super::resume::restore_step;
use super::stage::{StagePlace, StageReport, after_step, open_logger};
use super::world::World;
use super::write_atomic;
use crate::checkpoint::train_state::TrainState;
use crate::dist::data_parallel::{group_expected_tokens, shard_groups};
use crate::dry_run::batch::total_steps;
use crate::learner::cursor::DataCursor;
use crate::learner::rows::RlRow;
use crate::learner::thinker::turn_media;
use crate::learner::{AdamWConfig, RlLearner};
use crate::metrics::{Progress, Scalars, media_scalars, rollout_scalars};
use crate::model::thinker::MediaInput;
use crate::recipe::OldLogprobs;
use crate::recipe::resolved::{Logging, RlData, RlRollout, RlSchedule, RlStage};
use rollout::episode::EpisodeSpec;
use std::path::Path;
use std::sync::Arc;

/// Runs the RL stage (see the module doc); `judge` is the stage's FF judge (built from its
/// `reward.judge`, once per run).
pub fn rl(
    model: &mut Model,
    at: &StagePlace<'_>,
    stage: &RlStage,
    judge: Option<&FfJudge>,
) -> Result<StageReport, RunError> {
    let RlStage {
        name,
        model: _,
        data,
        episodes,
        preprocess,
        rollout,
        judge: _,
        algorithm,
        optimizer,
        schedule,
        checkpoint,
        logging,
        rollout_dumps,
    } = stage;
    let RlData {
        train_files,
        val_files,
        media_root,
        shuffle,
        data_seed,
        max_samples,
        check_media: _,
        pass_rate_filter: _,
    } = data;
    let RlRollout { prompts_per_step, group_size, val_prompts_per_step, sampling: train_sampling, val_sampling } =
        rollout;
    let RlSchedule { epochs, max_steps, val_every, val_before_train } = schedule;
    let Logging { sinks, log_every, progress_bars } = logging;
    let StagePlace { world, stage_dir, seed, progress, resume } = *at;
    let t0 = std::time::Instant::now();
    let specs = rl_specs(train_files, media_root.as_deref(), *max_samples)?;
    let (specs, filter_scalars) = filter_prompts(model, at, stage, judge, specs)?;
    let val_specs = eval_specs(val_files, media_root.as_deref(), *max_samples)?;
    let end_ids = model.encoder.stop_ids();
    // The dry run refuses data with fewer prompts than one step (and the pass-rate filter
    // refuses to keep fewer), so a step always draws `prompts_per_step` prompts.
    let prompts = (*prompts_per_step as usize).max(1);
    if specs.len() < prompts {
        return Err(RunError::Data(format!(
            "stage `{name}`: {} training prompts, fewer than the {prompts} of one step (rollout.prompts_per_step)",
            specs.len()
        )));
    }
    let group = (*group_size).max(1) as usize;
    let cursor = DataCursor::new(specs.len(), *data_seed, *shuffle, true);
    let total = total_steps(cursor.batches_per_epoch(prompts) as u64, *epochs, *max_steps);
    let (adamw, mut sync) = world.optimizer(model.thinker(), AdamWConfig::from_recipe(optimizer, total))?;
    let mut learner = RlLearner::with_optimizer(algorithm, adamw);
    // The data cursor lives in the state a step checkpoint saves.
    let mut state = TrainState::new(name.clone(), seed, cursor);
    if let Some(dir) = resume {
        state = restore_step(model, world, &mut sync, &mut learner.optimizer, dir, name)?;
    }
    let mut logger = open_logger(world, stage_dir, sinks, *log_every, resume.map(|_| state.step))?;
    let cache = media_cache(episodes);
    let opener = video_opener(preprocess, cache.clone());
    let validation =
        EvalSetup { episodes, preprocess, sampling: val_sampling, batch: *val_prompts_per_step as usize, judge };
    let validate = |model: &mut Model| -> Result<Scalars, RunError> {
        Ok(eval_scalars("val", &evaluate(model, &validation, &val_specs, seed)?.figures))
    };
    // Step 0's line: the pass-rate filter's figures and the validation before training.
    let mut scalars = filter_scalars;
    if *val_before_train && !val_specs.is_empty() && resume.is_none() {
        scalars.extend(validate(model)?);
    }
    if let Some(l) = logger.as_mut().filter(|_| !scalars.is_empty() && resume.is_none()) {
        l.log(0, true, &scalars).map_err(RunError::io(stage_dir))?;
    }
    let bar = Progress::new(total, "rl", progress && *progress_bars && world.is_main());
    bar.set_position(state.step);
    let pd = model.patch_dim()?;
    // The reference applies it only without the format reward.
    let shaping = &episodes.settings.shaping;
    let invalid_penalty = if shaping.format_reward { 0.0 } else { shaping.invalid_action_penalty };
    let mut report = StageReport { name: name.clone(), kind: "rl".into(), ..StageReport::default() };
    for step in state.step + 1..=total {
        let batch = state
            .cursor
            .next_batch(prompts)
            .ok_or_else(|| RunError::Data(format!("stage `{name}`: no training prompts")))?;
        let batch_specs: Vec<Arc<EpisodeSpec>> = batch.indices.iter().map(|&i| specs[i].clone()).collect();
        let mut s = sampling(train_sampling, episodes.max_response_length, true, seed.wrapping_add(step));
        s.policy_scores = algorithm.old_logprobs == OldLogprobs::Rollout;
        let mut drv = driver(episodes, model.encoder.clone(), group, s, seed.wrapping_add(step))?;
        // Whole groups per rank, balanced by expected tokens; the global sample indices keep
        // each episode's ids and sampling seed those of one process.
        let (mine, samples) = shard_prompts(&batch_specs, world, group, episodes.max_response_length)?;
        drv.config.global_samples = samples;
        let mut out = model.rollout(&drv, &mine, opener.clone(), episodes.prefix_cache_bytes)?;
        let mut scalars = Scalars::default();
        if let Some(j) = judge {
            let r = j.rescore(&mut out.trajectories, episodes.settings.shaping.format_reward)?;
            scalars.push("reward/judged_ff", r.judged as f64);
        }
        let rows: Vec<RlRow<MediaInput>> = out
            .trajectories
            .iter()
            .map(|t| RlRow::from_trajectory(t, &end_ids, invalid_penalty, |turn| turn_media(turn, pd)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        scalars.extend(rollout_scalars(&out.trajectories));
        scalars.extend(media_scalars(&out.stats, cache.as_ref().map(|c| c.take_stats()).as_ref()));
        let reward_sum: f64 = out.trajectories.iter().map(|t| t.episode_reward).sum();
        let mut totals = [rows.len() as f64, reward_sum, out.trajectories.len() as f64];
        world.sum(&mut totals)?;
        if totals[0] > 0.0 {
            scalars.extend(learner.step(model.thinker(), &rows, &mut sync)?.scalars().0);
        }
        scalars.push("rollout/wall_s", out.stats.wall_s);
        let prompt_tokens = out.stats.prompt_tokens.max(1) as f64;
        scalars.push("rollout/prefix_cached_share", out.stats.cached_prompt_tokens as f64 / prompt_tokens);
        if *rollout_dumps {
            dump(world, stage_dir, step, &out.trajectories)?;
        }
        let mut scalars = world.mean_scalars(scalars)?;
        let validating = !val_specs.is_empty() && (step == total || val_every.is_some_and(|n| n > 0 && step % n == 0));
        if validating {
            scalars.extend(validate(model)?);
        }
        if let Some(l) = logger.as_mut() {
            l.log(step, step == total || validating, &scalars).map_err(RunError::io(stage_dir))?;
        }
        bar.set_message(format!("reward {:.3}", totals[1] / totals[2].max(1.0)));
        bar.inc(1);
        state.step = step;
        report.last = scalars.0.into_iter().collect();
        report.steps = step;
        after_step(model, at, &sync, &learner.optimizer, &state, checkpoint, total)?;
    }
    bar.finish();
    report.wall_s = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// Writes this rank's rollouts of `step` (one line per stored turn).
fn dump(
    world: &World,
    stage_dir: &Path,
    step: u64,
    trajectories: &[rollout::trajectory::Trajectory],
) -> Result<(), RunError> {
    let dir = stage_dir.join("rollouts");
    std::fs::create_dir_all(&dir).map_err(RunError::io(&dir))?;
    let file = if world.size() > 1 { format!("{step}.rank{}.jsonl", world.rank()) } else { format!("{step}.jsonl") };
    let mut bytes = Vec::new();
    rollout::trajectory::write_dump(&mut bytes, trajectories).map_err(RunError::io(&dir))?;
    write_atomic(&dir.join(file), &bytes)
}

/// This rank's prompts of a step (whole groups, `shard_groups` balanced by an expected-token
/// estimate: question length plus a full response) and their indices in the global batch.
fn shard_prompts(
    batch: &[Arc<EpisodeSpec>],
    world: &World,
    group: usize,
    max_response: u32,
) -> Result<(Vec<Arc<EpisodeSpec>>, Vec<usize>), RunError> {
    if world.size() <= 1 {
        return Ok((batch.to_vec(), (0..batch.len()).collect()));
    }
    let tokens: Vec<u64> =
        batch.iter().map(|s| group_expected_tokens(s.question.len() / 3, f64::from(max_response), group)).collect();
    let plan = shard_groups(&tokens, world.size()).map_err(|e| RunError::Dist(e.to_string()))?;
    let mine = plan.groups.get(world.rank() as usize).cloned().unwrap_or_default();
    Ok((mine.iter().map(|&i| batch[i].clone()).collect(), mine))
}
