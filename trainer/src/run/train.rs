//! `omnirl train`'s runner: a validated, resolved recipe's stages, in order, in one run directory.
//!
//! Layout of `<output_dir>/<name>[-N]/` (or the `--resume` directory):
//! `recipe.yaml` (the resolved recipe), `init/` (the random initialisation, when a stage starts
//! from `init: random`), `<stage>/final/` (each training stage's result, a Hugging Face
//! checkpoint), `<stage>/checkpoints/step-N/`, `<stage>/metrics.jsonl`, `<stage>/tensorboard/`,
//! `<rl stage>/rollouts/`, `<eval stage>/{results.jsonl, summary.json, summary.csv}`, and
//! `summary.json` with the per-type figures on the held-out set before the first training stage
//! and after each one.
//!
//! Resume (`run::resume`): the resolved recipe must be the run's; a stage whose `final/` exists
//! is skipped (its figures measured if the run stopped before them), and the first unfinished
//! one continues from its newest complete step checkpoint, announced as `resuming stage <name>
//! from step <N>` (step 0: from its start). A stop signal ends the run at the next step boundary
//! with a step checkpoint (`run::interrupt`). Each stage loads its
//! `ModelSource`: an earlier stage's result, a checkpoint directory, or the run's random
//! initialisation. The tokenizer is the model's `tokenizer.json`, else the small byte tokenizer
//! over its special ids; a random initialisation whose config puts the special ids at 0-10 gets
//! a BPE trained on the text of the first stage that starts from it (its SFT files, or the
//! expert's trajectories on its prompts: `run::bpe`), saved as `init/tokenizer.json` and carried
//! into every checkpoint of the run.
//! Under data parallelism (`run::world`) every rank runs this same sequence; rank 0 writes the
//! files and the others wait at barriers before reading them.
//! Left out: resuming an eval stage part-way (it is short and runs again).

use super::RUN_RECIPE_FILE;
use super::bpe::{config_wants_trained_bpe, train_bpe};
use super::episodes::{TypeFigures, eval_specs, rl_specs};
use super::eval::{EvalSetup, Evaluation, eval_scalars, evaluate, write_eval_outputs};
use super::interrupt;
use super::judge::FfJudge;
use super::model::{Loading, Model, encoder_for};
use super::resume::{check_same_recipe, stage_checkpoint};
use super::rl::rl;
use super::sft::{expert_corpus, sft};
use super::sft_rows::SftFiles;
use super::stage::{StagePlace, StageReport};
use super::world::World;
use super::{RunError, write_atomic};
use crate::checkpoint::{RandomCheckpointOptions, write_random_checkpoint_with};
use crate::metrics::MetricsLogger;
use crate::model::{FloatDtype, KeyLayout, OmniThinkerConfig};
use crate::recipe::resolved::{EvalStage, ModelSource, ResolvedRecipe, ResolvedStage, SftSource};
use rollout::episode::{EpisodeSpec, PromptEncoder};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue in this run directory.
    pub resume: Option<PathBuf>,
    /// Draw progress bars (on a terminal).
    pub progress: bool,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub summary: Value,
}

/// At most this much text trains a run's tokenizer from SFT files.
const TOKENIZER_CORPUS_BYTES: usize = 32 << 20;

fn fresh_run_dir(recipe: &ResolvedRecipe) -> PathBuf {
    let base = recipe.output_dir.join(&recipe.name);
    if !base.exists() {
        return base;
    }
    (2u32..).map(|n| recipe.output_dir.join(format!("{}-{n}", recipe.name))).find(|p| !p.exists()).unwrap_or(base)
}

/// The model directory `stage` starts from (writing the random initialisation when it is the
/// first to need it).
fn stage_input(
    recipe: &ResolvedRecipe,
    world: &World,
    stage: &ResolvedStage,
    run_dir: &Path,
    results: &BTreeMap<String, PathBuf>,
) -> Result<PathBuf, RunError> {
    match &stage.model_ref().source {
        ModelSource::Stage(from) => {
            results.get(from).cloned().ok_or_else(|| RunError::Config(format!("stage `{from}` has no result")))
        }
        ModelSource::Checkpoint(dir) => Ok(dir.clone()),
        ModelSource::Random(config) => {
            let dir = run_dir.join("init");
            // Rank 0 writes the initialisation; the others load it after the barrier.
            if world.is_main() && !dir.join("config.json").is_file() {
                write_init(recipe, stage, config, run_dir, &dir)?;
            }
            world.barrier()?;
            Ok(dir)
        }
    }
}

/// Writes `dir`: a random thinker from `config` seeded with the run's seed, and when the config
/// asks for it, a BPE tokenizer trained on `stage`'s text.
fn write_init(
    recipe: &ResolvedRecipe,
    stage: &ResolvedStage,
    config: &Path,
    run_dir: &Path,
    dir: &Path,
) -> Result<(), RunError> {
    let cfg =
        OmniThinkerConfig::from_file(config).map_err(|e| RunError::Model(format!("{}: {e}", config.display())))?;
    let tmp = run_dir.join("init.tmp-write");
    let opts = RandomCheckpointOptions {
        layout: KeyLayout::ThinkerPrefixed,
        dtype: FloatDtype::F32,
        seed: Some(recipe.seed as i64),
        write_config: true,
    };
    write_random_checkpoint_with(&cfg, &tmp, 1, &opts).map_err(|e| RunError::Model(e.to_string()))?;
    if stage.model_ref().tokenizer.is_none() && config_wants_trained_bpe(&cfg) {
        let json = train_bpe(&tokenizer_corpus(stage, recipe.seed)?, cfg.text().vocab_size)?;
        let file = tmp.join("tokenizer.json");
        std::fs::write(&file, json).map_err(RunError::io(&file))?;
    }
    std::fs::rename(&tmp, dir).map_err(RunError::io(dir))
}

/// The text a run's tokenizer is trained on: the stage's SFT files, or the expert's
/// trajectories on its prompts under its environment.
fn tokenizer_corpus(stage: &ResolvedStage, seed: u64) -> Result<Vec<String>, RunError> {
    match stage {
        ResolvedStage::Sft(s) => match &s.data.source {
            SftSource::Files(files) => {
                SftFiles::index(files, s.data.media_root.as_deref(), s.data.max_samples)?.corpus(TOKENIZER_CORPUS_BYTES)
            }
            SftSource::Expert { prompts, episodes } => {
                let specs = rl_specs(prompts, s.data.media_root.as_deref(), s.data.max_samples)?;
                expert_corpus(episodes, &s.preprocess, &specs, seed)
            }
        },
        ResolvedStage::Rl(s) => {
            let specs = rl_specs(&s.data.train_files, s.data.media_root.as_deref(), s.data.max_samples)?;
            expert_corpus(&s.episodes, &s.preprocess, &specs, seed)
        }
        ResolvedStage::Eval(s) => {
            let specs = eval_specs(&s.data.files, s.data.media_root.as_deref(), s.data.max_samples)?;
            expert_corpus(&s.episodes, &s.preprocess, &specs, seed)
        }
    }
}

/// The held-out evaluation the before/after figures use: the eval stage's files and settings,
/// else the first rl stage's validation files with its validation sampling.
struct Figures<'a> {
    setup: EvalSetup<'a>,
    specs: Vec<Arc<EpisodeSpec>>,
    /// The eval stage whose own evaluation this is.
    eval_stage: Option<&'a str>,
}

fn figure_setup<'a>(
    recipe: &'a ResolvedRecipe,
    judges: &'a BTreeMap<String, FfJudge>,
) -> Result<Option<Figures<'a>>, RunError> {
    let eval = recipe.stages.iter().find_map(|s| match s {
        ResolvedStage::Eval(e) if !e.data.files.is_empty() => Some(e),
        _ => None,
    });
    if let Some(e) = eval {
        let specs = eval_specs(&e.data.files, e.data.media_root.as_deref(), e.data.max_samples)?;
        return Ok(Some(Figures { setup: eval_setup(e, judges.get(&e.name)), specs, eval_stage: Some(&e.name) }));
    }
    let rl = recipe.stages.iter().find_map(|s| match s {
        ResolvedStage::Rl(r) if !r.data.val_files.is_empty() => Some(r),
        _ => None,
    });
    let Some(r) = rl else { return Ok(None) };
    let specs = eval_specs(&r.data.val_files, r.data.media_root.as_deref(), r.data.max_samples)?;
    let setup = EvalSetup {
        episodes: &r.episodes,
        preprocess: &r.preprocess,
        sampling: &r.rollout.val_sampling,
        batch: r.rollout.val_prompts_per_step as usize,
        judge: judges.get(&r.name),
    };
    Ok(Some(Figures { setup, specs, eval_stage: None }))
}

fn eval_setup<'a>(e: &'a EvalStage, judge: Option<&'a FfJudge>) -> EvalSetup<'a> {
    EvalSetup {
        episodes: &e.episodes,
        preprocess: &e.preprocess,
        sampling: &e.sampling,
        batch: e.prompts_per_step as usize,
        judge,
    }
}

/// The judges of the recipe's rl and eval stages, by stage name.
fn judges(recipe: &ResolvedRecipe) -> Result<BTreeMap<String, FfJudge>, RunError> {
    let mut out = BTreeMap::new();
    for s in &recipe.stages {
        let spec = match s {
            ResolvedStage::Rl(r) => r.judge.as_ref(),
            ResolvedStage::Eval(e) => e.judge.as_ref(),
            ResolvedStage::Sft(_) => None,
        };
        if let Some(spec) = spec {
            out.insert(s.name().to_string(), FfJudge::new(spec)?);
        }
    }
    Ok(out)
}

/// Runs every stage of `recipe` (already validated) on this rank of `world`; `say` receives
/// progress lines (on rank 0 only).
pub fn run_recipe(
    recipe: &ResolvedRecipe,
    resolved_yaml: &str,
    opts: &RunOptions,
    world: &World,
    say: &mut dyn FnMut(&str),
) -> Result<RunSummary, RunError> {
    let t0 = std::time::Instant::now();
    let main = world.is_main();
    let mut quiet = |_: &str| {};
    let say: &mut dyn FnMut(&str) = if main { say } else { &mut quiet };
    let run_dir = open_run_dir(recipe, resolved_yaml, opts, world)?;
    say(&format!("run directory: {}", run_dir.display()));
    if world.size() > 1 {
        say(&format!("{} ranks over {}", world.size(), world.comm().backend()));
    }
    tch::manual_seed(recipe.seed as i64);
    let judges = judges(recipe)?;
    let figs = figure_setup(recipe, &judges)?;
    let cx = RunContext {
        recipe,
        world,
        run_dir: &run_dir,
        dev: world.device(&recipe.distributed),
        judges: &judges,
        figs: figs.as_ref(),
        t0,
        main,
    };
    let mut st = RunState::earlier(&run_dir);
    // `--resume` names the stage it continues, once.
    let mut announce = opts.resume.is_some();
    for stage in &recipe.stages {
        let name = stage.name().to_string();
        let stage_dir = run_dir.join(&name);
        if main {
            std::fs::create_dir_all(&stage_dir).map_err(RunError::io(&stage_dir))?;
        }
        let input = stage_input(recipe, world, stage, &run_dir, &st.results)?;
        let encoder = encoder_for(&input, stage.model_ref().tokenizer.as_deref())?;
        let final_dir = stage_dir.join("final");
        let done = stage.train_model().is_some() && final_dir.join("config.json").is_file();
        let resume_from =
            if announce && !done && stage.train_model().is_some() { stage_checkpoint(&stage_dir, say) } else { None };
        if announce && !done {
            let step = resume_from.as_ref().map_or(0, |(step, _)| *step);
            say_plain(main, &format!("resuming stage {name} from step {step}"));
            announce = false;
        }
        if interrupt::agreed(world)? {
            return Err(interrupt::interrupted(&name, 0));
        }
        let here = StageInputs { name, stage_dir, input, final_dir, encoder };
        match stage {
            ResolvedStage::Eval(e) => cx.eval_stage(&mut st, e, here, say)?,
            _ if done => cx.finished_stage(&mut st, stage, here, say)?,
            _ => {
                let resume = resume_from.as_ref().map(|(_, dir)| dir.as_path());
                cx.train_stage(&mut st, stage, here, resume, opts.progress, say)?;
            }
        }
    }
    let summary = if main { st.write_summary(&cx, true)? } else { Value::Null };
    world.barrier()?;
    Ok(RunSummary { run_dir, summary })
}

/// The run directory: a fresh one, or the `--resume` one after checking that it is a run of
/// this very recipe; rank 0 creates it and writes the resolved recipe once.
fn open_run_dir(
    recipe: &ResolvedRecipe,
    resolved_yaml: &str,
    opts: &RunOptions,
    world: &World,
) -> Result<PathBuf, RunError> {
    let run_dir = world.agree_path(&opts.resume.clone().unwrap_or_else(|| fresh_run_dir(recipe)))?;
    if opts.resume.is_some() {
        if !run_dir.join(RUN_RECIPE_FILE).is_file() {
            return Err(RunError::Config(format!(
                "--resume {}: not a run directory (no recipe.yaml)",
                run_dir.display()
            )));
        }
        check_same_recipe(&run_dir, resolved_yaml)?;
    }
    if world.is_main() {
        std::fs::create_dir_all(&run_dir).map_err(RunError::io(&run_dir))?;
        let recipe_file = run_dir.join(RUN_RECIPE_FILE);
        if !recipe_file.exists() {
            write_atomic(&recipe_file, resolved_yaml.as_bytes())?;
        }
    }
    world.barrier()?;
    Ok(run_dir)
}

/// What every stage of a run reads.
struct RunContext<'a> {
    recipe: &'a ResolvedRecipe,
    world: &'a World,
    run_dir: &'a Path,
    dev: tch::Device,
    judges: &'a BTreeMap<String, FfJudge>,
    figs: Option<&'a Figures<'a>>,
    t0: std::time::Instant,
    /// Rank 0, which writes.
    main: bool,
}

/// What the stages so far have left: figures, reports, results, and the latest evaluation.
struct RunState {
    figures: BTreeMap<String, Value>,
    /// Stage reports of the run being resumed (from its summary.json).
    earlier_reports: Vec<StageReport>,
    reports: Vec<StageReport>,
    results: BTreeMap<String, PathBuf>,
    /// The figures' evaluation of the latest result, reused by the eval stage it belongs to.
    last_eval: Option<(PathBuf, Evaluation)>,
}

/// One stage's place and inputs.
struct StageInputs {
    name: String,
    stage_dir: PathBuf,
    /// The model directory the stage starts from.
    input: PathBuf,
    final_dir: PathBuf,
    /// The prompt encoder and the tokenizer's vocabulary size.
    encoder: (Arc<dyn PromptEncoder>, Option<usize>),
}

impl RunState {
    /// On resume, the figures and stage reports written before the interruption are kept.
    fn earlier(run_dir: &Path) -> RunState {
        let earlier: Value = std::fs::read_to_string(run_dir.join("summary.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        RunState {
            figures: serde_json::from_value(earlier["figures"].clone()).unwrap_or_default(),
            earlier_reports: serde_json::from_value(earlier["stages"].clone()).unwrap_or_default(),
            reports: Vec::new(),
            results: BTreeMap::new(),
            last_eval: None,
        }
    }

    fn write_summary(&self, cx: &RunContext<'_>, done: bool) -> Result<Value, RunError> {
        write_summary(cx.recipe, cx.run_dir, cx.t0, &self.reports, &self.figures, done)
    }

    /// Evaluates `model` on the figures' held-out set as `label` (`before_sft`, `after_rl`).
    fn measure(
        &mut self,
        cx: &RunContext<'_>,
        model: &mut Model,
        label: &str,
        say: &mut dyn FnMut(&str),
    ) -> Result<Option<Evaluation>, RunError> {
        let Some(f) = cx.figs else { return Ok(None) };
        let ev = evaluate(model, &f.setup, &f.specs, cx.recipe.seed)?;
        say(&describe(label, &ev.figures));
        self.figures.insert(label.to_string(), serde_json::to_value(&ev.figures).unwrap_or(Value::Null));
        Ok(Some(ev))
    }
}

impl RunContext<'_> {
    /// An eval stage: the figures' evaluation of the same model when it is this stage's own,
    /// else a fresh one; writes results.jsonl, summary.json/csv and the metrics.
    fn eval_stage(
        &self,
        st: &mut RunState,
        e: &EvalStage,
        here: StageInputs,
        say: &mut dyn FnMut(&str),
    ) -> Result<(), RunError> {
        let StageInputs { name, stage_dir, input, encoder: (encoder, vocab_limit), .. } = here;
        let ev = match st.last_eval.take() {
            Some((dir, ev)) if self.figs.and_then(|f| f.eval_stage) == Some(e.name.as_str()) && dir == input => {
                say(&format!("stage `{name}` (eval): reusing the figures' evaluation of this model"));
                ev
            }
            _ => {
                let how = Loading::eval(self.dev, e.model.dtype);
                if let Some(note) = how.cpu_fallback() {
                    say(&format!("stage `{name}`: {note}"));
                }
                let mut model = Model::load(&input, &how, encoder, vocab_limit)?;
                let specs = eval_specs(&e.data.files, e.data.media_root.as_deref(), e.data.max_samples)?;
                say(&format!("stage `{name}` (eval): {} samples", specs.len()));
                evaluate(&mut model, &eval_setup(e, self.judges.get(&name)), &specs, self.recipe.seed)?
            }
        };
        if self.main {
            write_eval_outputs(&stage_dir, &ev)?;
            let mut logger = MetricsLogger::open(&stage_dir, &e.logging, 1, None).map_err(RunError::io(&stage_dir))?;
            logger.log(0, true, &eval_scalars("eval", &ev.figures)).map_err(RunError::io(&stage_dir))?;
        }
        say(&describe(&name, &ev.figures));
        st.reports.push(StageReport { name, kind: "eval".into(), wall_s: ev.wall_s, ..StageReport::default() });
        Ok(())
    }

    /// A training stage whose result a resumed run already has: its report is kept, and its
    /// after-figures measured if the run stopped before them.
    fn finished_stage(
        &self,
        st: &mut RunState,
        stage: &ResolvedStage,
        here: StageInputs,
        say: &mut dyn FnMut(&str),
    ) -> Result<(), RunError> {
        let StageInputs { name, final_dir, encoder: (encoder, vocab_limit), .. } = here;
        say(&format!("stage `{name}`: already done, resuming after it"));
        st.reports.extend(st.earlier_reports.iter().filter(|r| r.name == name).cloned());
        let label = format!("after_{name}");
        if let Some(train) = stage.train_model()
            && self.figs.is_some()
            && !st.figures.contains_key(&label)
        {
            // Stopped between the stage's result and its figures: measure them now.
            let how = Loading::eval(self.dev, train.input.dtype);
            let mut model = Model::load(&final_dir, &how, encoder, vocab_limit)?;
            st.last_eval = st.measure(self, &mut model, &label, say)?.map(|ev| (final_dir.clone(), ev));
        }
        st.results.insert(name, final_dir);
        Ok(())
    }

    /// An SFT or RL stage: load, the before-figures if none exist yet, train, save the result
    /// (rank 0), the after-figures, and the summary so far.
    fn train_stage(
        &self,
        st: &mut RunState,
        stage: &ResolvedStage,
        here: StageInputs,
        resume: Option<&Path>,
        progress: bool,
        say: &mut dyn FnMut(&str),
    ) -> Result<(), RunError> {
        let StageInputs { name, stage_dir, input, final_dir, encoder: (encoder, vocab_limit) } = here;
        let Some(train) = stage.train_model() else { return Ok(()) };
        let kl = matches!(stage, ResolvedStage::Rl(r) if r.algorithm.kl_coef > 0.0);
        let how = Loading::train(train, self.dev, kl, self.recipe.seed);
        if let Some(note) = how.cpu_fallback() {
            say(&format!("stage `{name}`: {note}"));
        }
        let mut model = Model::load(&input, &how, encoder, vocab_limit)?;
        self.world.broadcast_weights(model.thinker())?;
        if st.figures.is_empty()
            && let Some(f) = self.figs
        {
            say(&format!("evaluating before `{name}` on {} held-out samples", f.specs.len()));
            st.measure(self, &mut model, &format!("before_{name}"), say)?;
            if self.main {
                st.write_summary(self, false)?;
            }
        }
        let at = StagePlace { world: self.world, stage_dir: &stage_dir, seed: self.recipe.seed, progress, resume };
        let report = match stage {
            ResolvedStage::Sft(s) => sft(&mut model, &at, s)?,
            ResolvedStage::Rl(r) => rl(&mut model, &at, r, self.judges.get(&name))?,
            ResolvedStage::Eval(_) => return Ok(()),
        };
        say(&stage_line(&report));
        if self.main {
            model.save_result(&final_dir, train.lora.as_ref().is_some_and(|l| l.merge))?;
        }
        self.world.barrier()?;
        st.reports.push(report);
        st.last_eval = st.measure(self, &mut model, &format!("after_{name}"), say)?.map(|ev| (final_dir.clone(), ev));
        st.results.insert(name, final_dir);
        if self.main {
            st.write_summary(self, false)?;
        }
        Ok(())
    }
}

/// A contract line of `--resume` (rank 0, on stderr, without the progress prefix).
fn say_plain(main: bool, line: &str) {
    if main {
        eprintln!("{line}");
    }
}

/// `stage `sft`: 40 steps in 12.3 s` (with the rows an SFT stage read and dropped).
fn stage_line(r: &StageReport) -> String {
    let mut line = format!("stage `{}`: {} steps in {:.1} s", r.name, r.steps, r.wall_s);
    if let (Some(rows), Some(dropped)) = (r.rows, r.dropped_rows) {
        line.push_str(&format!("; {rows} rows read, {dropped} dropped (longer than schedule.max_seq_length)"));
    }
    line
}

/// Writes `summary.json` (also after each stage, with `complete: false`).
fn write_summary(
    recipe: &ResolvedRecipe,
    run_dir: &Path,
    t0: std::time::Instant,
    reports: &[StageReport],
    figures: &BTreeMap<String, Value>,
    complete: bool,
) -> Result<Value, RunError> {
    let summary = json!({
        "recipe": recipe.name,
        "run_dir": run_dir.display().to_string(),
        "complete": complete,
        "wall_s": t0.elapsed().as_secs_f64(),
        "stages": reports,
        "figures": figures,
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| RunError::Data(e.to_string()))?;
    write_atomic(&run_dir.join("summary.json"), text.as_bytes())?;
    Ok(summary)
}

/// One line per question type: accuracy and mean reward.
pub fn describe(label: &str, figs: &BTreeMap<String, TypeFigures>) -> String {
    let parts: Vec<String> = figs
        .iter()
        .map(|(k, f)| format!("{k} acc {:.2} reward {:.3} (n={})", f.accuracy, f.mean_reward, f.episodes))
        .collect();
    format!("{label}: {}", parts.join("; "))
}
