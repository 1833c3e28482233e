//! The pass-rate filter of an rl stage (`data.pass_rate_filter`; docs/recipes.md, "Picking RL
//! prompts by pass rate"): before the first step the policy the stage starts from plays
//! `samples` episodes of every training prompt with the stage's training sampling, and the stage
//! trains only on the prompts whose mean episode reward is below `keep_below`, the ones that
//! policy still gets wrong. The reference picks its RL files offline, from its teacher's
//! failures; this picks them from the policy RL starts from, inside the run.
//!
//! The outcome is `<stage>/pass_rates.jsonl`, one line per training prompt (`question_id`,
//! `question_type`, `mean_reward`, `kept`), written before step 1. `--resume` reads it back
//! instead of measuring again, so a continued stage draws from the same prompts. The episodes
//! play in chunks of one training step's episodes (their media is held until the chunk ends);
//! under data parallelism each rank plays every `world`-th prompt, with the sampling seeds of one
//! process, and the reward sums are added up over the ranks.
//!
//! Left out: a lower bound (dropping the prompts never solved, which give a group no signal until
//! one rollout succeeds) and filtering again during training (DAPO's dynamic sampling). The
//! reference has neither.

use super::RunError;
use super::episodes::{driver, media_cache, sampling, video_opener};
use super::judge::FfJudge;
use super::model::Model;
use super::stage::StagePlace;
use super::world::World;
use super::write_atomic;
use crate::metrics::Scalars;
use crate::recipe::PassRateFilter;
use crate::recipe::resolved::{Episodes, RlStage};
use rollout::episode::EpisodeSpec;
use rollout::trajectory::Trajectory;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// The filter's outcome in a stage directory.
pub const PASS_RATES_FILE: &str = "pass_rates.jsonl";

/// One line of [`PASS_RATES_FILE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassRate {
    pub question_id: String,
    pub question_type: String,
    pub mean_reward: f64,
    pub kept: bool,
}

/// Adds `trajectories` to the reward sums of `sums.len() / 2` prompts (matched by
/// `sample_index`): the summed episode reward of each prompt, then how many episodes each had.
/// A data-parallel run adds the sums up over its ranks.
pub fn add_reward_sums(sums: &mut [f64], trajectories: &[Trajectory]) {
    let prompts = sums.len() / 2;
    for t in trajectories.iter().filter(|t| t.sample_index < prompts) {
        sums[t.sample_index] += t.episode_reward;
        sums[prompts + t.sample_index] += 1.0;
    }
}

/// The filter's verdict on each prompt from its (summed) [`add_reward_sums`]: a prompt none of
/// whose episodes finished counts as mean reward 0.
pub fn pass_rates(specs: &[Arc<EpisodeSpec>], sums: &[f64], keep_below: f64) -> Vec<PassRate> {
    let n = specs.len();
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (total, count) = (sums.get(i).copied().unwrap_or(0.0), sums.get(n + i).copied().unwrap_or(0.0));
            let mean_reward = if count > 0.0 { total / count } else { 0.0 };
            PassRate {
                question_id: s.question_id.clone(),
                question_type: s.question_type.clone(),
                mean_reward,
                kept: mean_reward < keep_below,
            }
        })
        .collect()
}

/// The training prompts of `stage` that pass its filter (all of `specs` without one), and the
/// filter's scalars for the step-0 metrics line. Measured here, or read back on `--resume`;
/// fewer kept prompts than one step's `rollout.prompts_per_step` is an error.
pub fn filter_prompts(
    model: &mut Model,
    at: &StagePlace<'_>,
    stage: &RlStage,
    judge: Option<&FfJudge>,
    specs: Vec<Arc<EpisodeSpec>>,
) -> Result<(Vec<Arc<EpisodeSpec>>, Scalars), RunError> {
    let Some(filter) = stage.data.pass_rate_filter else { return Ok((specs, Scalars::default())) };
    let &StagePlace { world, stage_dir, seed, resume, .. } = at;
    let resuming = resume.is_some();
    let path = stage_dir.join(PASS_RATES_FILE);
    let t0 = std::time::Instant::now();
    let rates = if resuming {
        read_pass_rates(&path, &specs)?
    } else {
        let sums = measure(model, world, stage, judge, filter, seed, &specs)?;
        let rates = pass_rates(&specs, &sums, filter.keep_below);
        if world.is_main() {
            write_pass_rates(&path, &rates)?;
        }
        rates
    };
    let kept: Vec<Arc<EpisodeSpec>> =
        specs.iter().zip(&rates).filter(|(_, r)| r.kept).map(|(s, _)| s.clone()).collect();
    let name = &stage.name;
    enough_kept(name, kept.len(), specs.len(), stage.rollout.prompts_per_step as usize, filter, &path)?;
    let wall_s = t0.elapsed().as_secs_f64();
    if world.is_main() {
        let how = if resuming { "read back from" } else { "written to" };
        eprintln!(
            "stage `{name}`: the pass-rate filter keeps {} of {} training prompts (mean reward below {} over {} \
             episodes each; {how} {}) in {wall_s:.1} s",
            kept.len(),
            specs.len(),
            filter.keep_below,
            filter.samples,
            path.display()
        );
    }
    let mut scalars = Scalars::default();
    scalars.push("data/pass_rate/prompts", specs.len() as f64);
    scalars.push("data/pass_rate/kept", kept.len() as f64);
    let mean = rates.iter().map(|r| r.mean_reward).sum::<f64>() / rates.len().max(1) as f64;
    scalars.push("data/pass_rate/mean_reward", mean);
    scalars.push("data/pass_rate/wall_s", wall_s);
    Ok((kept, scalars))
}

/// The dry run checked one step's prompts against every training prompt; the filter may keep
/// fewer than one step needs.
fn enough_kept(
    stage: &str,
    kept: usize,
    total: usize,
    per_step: usize,
    filter: PassRateFilter,
    path: &Path,
) -> Result<(), RunError> {
    if kept >= per_step.max(1) {
        return Ok(());
    }
    Err(RunError::Data(format!(
        "stage `{stage}`: data.pass_rate_filter kept {kept} of the {total} training prompts (the others' mean reward \
         over {} episodes is at least keep_below = {}), fewer than the {per_step} of one step \
         (rollout.prompts_per_step); raise keep_below or train on harder prompts ({})",
        filter.samples,
        filter.keep_below,
        path.display()
    )))
}

/// This rank's share of the filter's episodes, played in chunks of one step's episodes; the
/// reward sums of every prompt ([`add_reward_sums`]), summed over the ranks.
fn measure(
    model: &mut Model,
    world: &World,
    stage: &RlStage,
    judge: Option<&FfJudge>,
    filter: PassRateFilter,
    seed: u64,
    specs: &[Arc<EpisodeSpec>],
) -> Result<Vec<f64>, RunError> {
    let episodes: &Episodes = &stage.episodes;
    let samples = filter.samples.max(1) as usize;
    let (rank, size) = (world.rank() as usize, world.size().max(1) as usize);
    let mine: Vec<usize> = (rank..specs.len()).step_by(size).collect();
    let step_episodes = (stage.rollout.prompts_per_step * stage.rollout.group_size) as usize;
    let chunk = (step_episodes / (samples * size)).max(1);
    // The seed of "step 0": training steps use seed + step, from 1.
    let s = sampling(&stage.rollout.sampling, episodes.max_response_length, false, seed);
    let mut drv = driver(episodes, model.encoder.clone(), samples, s, seed)?;
    let opener = video_opener(&stage.preprocess, media_cache(episodes));
    let mut sums = vec![0.0; 2 * specs.len()];
    for part in mine.chunks(chunk) {
        drv.config.global_samples = part.to_vec();
        let batch: Vec<Arc<EpisodeSpec>> = part.iter().map(|&i| specs[i].clone()).collect();
        let mut out = model.rollout(&drv, &batch, opener.clone(), episodes.prefix_cache_bytes)?;
        if let Some(j) = judge {
            j.rescore(&mut out.trajectories, episodes.settings.shaping.format_reward)?;
        }
        add_reward_sums(&mut sums, &out.trajectories);
    }
    world.sum(&mut sums)?;
    Ok(sums)
}

fn write_pass_rates(path: &Path, rates: &[PassRate]) -> Result<(), RunError> {
    let mut text = String::new();
    for r in rates {
        text.push_str(&serde_json::to_string(r).map_err(|e| RunError::Data(e.to_string()))?);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// The filter's outcome written before the stage's first step, checked against this run's
/// training prompts.
fn read_pass_rates(path: &Path, specs: &[Arc<EpisodeSpec>]) -> Result<Vec<PassRate>, RunError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        RunError::Data(format!(
            "--resume: cannot read {} ({e}): the stage's pass-rate filter writes it before its first step",
            path.display()
        ))
    })?;
    let mut rates = Vec::with_capacity(specs.len());
    for (i, line) in text.lines().enumerate() {
        let r: PassRate =
            serde_json::from_str(line).map_err(|e| RunError::Data(format!("{}:{}: {e}", path.display(), i + 1)))?;
        rates.push(r);
    }
    let same = rates.len() == specs.len() && rates.iter().zip(specs).all(|(r, s)| r.question_id == s.question_id);
    if !same {
        return Err(RunError::Data(format!(
            "--resume: {} lists {} prompts, not this stage's {} training prompts in order: were data.train_files or \
             data.max_samples changed?",
            path.display(),
            rates.len(),
            specs.len()
        )));
    }
    Ok(rates)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rollout::episode::VideoMeta;

    fn spec(id: &str, qtype: &str) -> Arc<EpisodeSpec> {
        Arc::new(EpisodeSpec {
            question_id: id.into(),
            video: "v.mp4".into(),
            question_type: qtype.into(),
            qtype: rewards::QuestionType::Mcq,
            question: "?".into(),
            options: Vec::new(),
            answer: "A".into(),
            meta: VideoMeta { duration: 10.0, fps: None, has_audio: false },
            data_source: None,
            annotations: None,
        })
    }

    fn episode(sample_index: usize, copy: usize, reward: f64) -> Trajectory {
        let mut t =
            Trajectory::new("g".into(), format!("t{sample_index}-{copy}"), sample_index, copy, spec("x", "MCQ"));
        t.episode_reward = reward;
        t
    }

    #[test]
    fn a_prompt_stays_while_its_mean_reward_is_below_keep_below() {
        let specs = [spec("a", "MCQ_Colour"), spec("b", "TR"), spec("c", "SIZE"), spec("d", "NUM")];
        // Two episodes a prompt: a solved twice, b once, c graded, d's episodes never came back.
        let episodes = [episode(0, 0, 1.0), episode(0, 1, 1.0), episode(1, 0, 1.0), episode(1, 1, 0.0)]
            .into_iter()
            .chain([episode(2, 0, 0.5), episode(2, 1, 0.25), episode(7, 0, 1.0)])
            .collect::<Vec<_>>();
        let mut sums = vec![0.0; 2 * specs.len()];
        add_reward_sums(&mut sums, &episodes);
        assert_eq!(sums, [2.0, 1.0, 0.75, 0.0, 2.0, 2.0, 2.0, 0.0]);
        // (keep_below, kept a b c d): 1.0 drops only what is solved every time.
        let table: [(f64, [bool; 4]); 4] = [
            (1.0, [false, true, true, true]),
            (0.5, [false, false, true, true]),
            (0.375, [false, false, false, true]),
            (1.5, [true, true, true, true]),
        ];
        for (keep_below, kept) in table {
            let rates = pass_rates(&specs, &sums, keep_below);
            assert_eq!(rates.iter().map(|r| r.kept).collect::<Vec<_>>(), kept, "keep_below {keep_below}");
            let means: Vec<f64> = rates.iter().map(|r| r.mean_reward).collect();
            assert_eq!(means, [1.0, 0.5, 0.375, 0.0]);
            assert_eq!(rates[1].question_id, "b");
            assert_eq!(rates[1].question_type, "TR");
        }
    }

    #[test]
    fn a_resumed_stage_reads_back_the_same_prompts_or_says_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PASS_RATES_FILE);
        let specs = vec![spec("a", "MCQ"), spec("b", "TR")];
        let rates = pass_rates(&specs, &[1.0, 0.0, 1.0, 1.0], 1.0);
        write_pass_rates(&path, &rates).unwrap();
        assert_eq!(read_pass_rates(&path, &specs).unwrap(), rates);
        let other = vec![spec("a", "MCQ"), spec("c", "TR")];
        let e = read_pass_rates(&path, &other).unwrap_err().to_string();
        assert!(e.contains("lists 2 prompts, not this stage's 2 training prompts in order"), "{e}");
        std::fs::write(&path, "{\"question_id\": 3}\n").unwrap();
        let e = read_pass_rates(&path, &specs).unwrap_err().to_string();
        assert!(e.contains(&format!("{}:1:", path.display())), "{e}");
        let e = read_pass_rates(&dir.path().join("nope.jsonl"), &specs).unwrap_err().to_string();
        assert!(e.contains("writes it before its first step"), "{e}");
    }

    #[test]
    fn keeping_fewer_prompts_than_one_step_is_an_error() {
        let f = PassRateFilter { samples: 2, keep_below: 0.5 };
        let path = Path::new("runs/x/rl/pass_rates.jsonl");
        assert!(enough_kept("rl", 8, 20, 8, f, path).is_ok());
        let e = enough_kept("rl", 7, 20, 8, f, path).unwrap_err().to_string();
        assert!(e.contains("stage `rl`: data.pass_rate_filter kept 7 of the 20 training prompts"), "{e}");
        assert!(e.contains("keep_below = 0.5), fewer than the 8 of one step (rollout.prompts_per_step)"), "{e}");
        assert!(e.contains("runs/x/rl/pass_rates.jsonl"), "{e}");
        assert!(enough_kept("rl", 0, 20, 1, f, path).is_err());
    }
}
