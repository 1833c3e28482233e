//! Semantic checks of a recipe that need nothing but the recipe: required values, ranges,
//! and combinations the reference rejects (or silently mishandles). Checks that need the
//! world size, the data or the model live in `dry_run`.

use super::OriginIndex;
use super::data_section::*;
use super::schema::{Backend, DeviceKind, Recipe, Stage, StageKind};
use super::sections::*;
use crate::problem::Problem;

use crate::model::LORA_TARGETS;

struct Checker<'a> {
    origins: &'a OriginIndex,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn error(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(self.origins.problem(key, true, message));
    }

    fn warn(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(self.origins.problem(key, false, message));
    }

    fn positive(&mut self, key: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.error(key, format!("must be a finite number > 0, found {value}"));
        }
    }

    fn at_least(&mut self, key: &str, value: u64, min: u64) {
        if value < min {
            self.error(key, format!("must be at least {min}, found {value}"));
        }
    }

    fn in_unit(&mut self, key: &str, value: f64, include_zero: bool, include_one: bool) {
        let lo = if include_zero { value >= 0.0 } else { value > 0.0 };
        let hi = if include_one { value <= 1.0 } else { value < 1.0 };
        if !(lo && hi) {
            let l = if include_zero { "[0" } else { "(0" };
            let h = if include_one { "1]" } else { "1)" };
            self.error(key, format!("must be in {l}, {h}, found {value}"));
        }
    }
}

impl Recipe {
    /// Every problem in the recipe itself, located via `origins`.
    pub fn validate(&self, origins: &OriginIndex) -> Vec<Problem> {
        let mut c = Checker { origins, problems: Vec::new() };
        if self.stages.is_empty() {
            c.error("stages", "a recipe needs at least one stage (kind: sft, rl or eval)");
        }
        if self.name.trim().is_empty() {
            c.error("name", "must not be empty");
        }
        let d = &self.distributed;
        c.positive("distributed.gpu_memory_gib", d.gpu_memory_gib);
        c.at_least("distributed.timeout_s", d.timeout_s, 1);
        if d.backend == Backend::Nccl && d.device == DeviceKind::Cpu {
            c.error("distributed.backend", "nccl needs GPUs but distributed.device is cpu; use mpi or auto");
        }
        let mut names: Vec<String> = Vec::new();
        for (i, stage) in self.stages.iter().enumerate() {
            let name = stage.display_name();
            if names.contains(&name) {
                c.error(
                    &format!("stages[{i}].name"),
                    format!("stage name `{name}` is used twice; give each stage a unique name"),
                );
            }
            check_stage(&mut c, &format!("stages[{i}]"), stage, &names, &self.stages);
            names.push(name);
        }
        c.problems
    }
}

fn check_pass_rate_filter(c: &mut Checker, at: &str, kind: StageKind, f: &PassRateFilter, max_steps: bool) {
    let key = format!("{at}.data.pass_rate_filter");
    if kind != StageKind::Rl {
        c.error(&key, "only rl stages filter their training prompts by pass rate; remove the key");
        return;
    }
    c.at_least(&format!("{key}.samples"), f.samples.into(), 1);
    c.positive(&format!("{key}.keep_below"), f.keep_below);
    if !max_steps {
        c.warn(
            &key,
            "an epoch is as long as the prompts the filter keeps, known only when the stage starts: the plan \
             counts every prompt, and the run may take fewer steps; set schedule.max_steps to fix its length",
        );
    }
}

fn check_stage(c: &mut Checker, at: &str, stage: &Stage, earlier: &[String], all: &[Stage]) {
    let Some(kind) = stage.kind else {
        c.error(&format!("{at}.kind"), "required: one of sft, rl, eval");
        return;
    };
    check_model(c, at, stage, earlier, all);
    let data = &stage.data;
    match kind {
        StageKind::Sft | StageKind::Rl if data.train_files.is_empty() => {
            let env = if kind == StageKind::Rl { " (or TRAIN_FILE)" } else { "" };
            c.error(&format!("{at}.data.train_files"), format!("required: at least one training file{env}"));
        }
        StageKind::Eval if data.val_files.is_empty() => {
            c.error(&format!("{at}.data.val_files"), "required: at least one evaluation file");
        }
        _ => {}
    }
    if data.max_samples == Some(0) {
        c.error(&format!("{at}.data.max_samples"), "must be at least 1 (or omitted for all samples)");
    }
    if let Some(f) = &data.pass_rate_filter {
        check_pass_rate_filter(c, at, kind, f, stage.schedule.max_steps.is_some());
    }
    let o = &stage.optimizer;
    if kind != StageKind::Eval {
        c.positive(&format!("{at}.optimizer.lr"), o.lr.unwrap_or(0.0));
        for (j, beta) in o.betas.iter().enumerate() {
            c.in_unit(&format!("{at}.optimizer.betas[{j}]"), *beta, true, false);
        }
        c.positive(&format!("{at}.optimizer.eps"), o.eps);
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            c.error(&format!("{at}.optimizer.weight_decay"), format!("must be >= 0, found {}", o.weight_decay));
        }
        c.in_unit(&format!("{at}.optimizer.warmup_ratio"), o.warmup_ratio.unwrap_or(0.0), true, false);
        c.positive(&format!("{at}.optimizer.grad_clip"), o.grad_clip);
        c.at_least(&format!("{at}.checkpoint.save_every"), stage.checkpoint.save_every.unwrap_or(0), 1);
        c.at_least(&format!("{at}.checkpoint.keep_last"), stage.checkpoint.keep_last.into(), 1);
    }
    let s = &stage.schedule;
    c.at_least(&format!("{at}.schedule.epochs"), s.epochs.unwrap_or(0).into(), 1);
    if let Some(max) = s.max_steps {
        c.at_least(&format!("{at}.schedule.max_steps"), max, 1);
    }
    c.at_least(&format!("{at}.schedule.per_device_batch_size"), s.per_device_batch_size.into(), 1);
    c.at_least(&format!("{at}.schedule.gradient_accumulation_steps"), s.gradient_accumulation_steps.into(), 1);
    c.at_least(&format!("{at}.schedule.max_seq_length"), s.max_seq_length.into(), 64);
    if s.val_every == Some(0) {
        c.error(&format!("{at}.schedule.val_every"), "must be at least 1 (or null to validate only at the end)");
    }
    if let Some(every) = stage.logging.log_every {
        c.at_least(&format!("{at}.logging.log_every"), every, 1);
    }
    c.at_least(&format!("{at}.data.num_workers"), data.num_workers.into(), 1);
    if kind != StageKind::Sft || data.source == DataSource::Expert {
        check_environment(c, at, stage);
        check_rollout(c, at, stage);
    } else if data.media_cache_mib.is_some() {
        c.error(
            &format!("{at}.data.media_cache_mib"),
            "an sft stage that trains on files runs no episodes, so it has no media to cache; remove the key",
        );
    }
    if kind == StageKind::Rl {
        check_algorithm(c, at, stage);
    }
}

fn check_model(c: &mut Checker, at: &str, stage: &Stage, earlier: &[String], all: &[Stage]) {
    let m = &stage.model;
    let key = format!("{at}.model");
    match (&m.from_stage, &m.path, m.init) {
        (Some(_), Some(_), _) => {
            c.error(&format!("{key}.from_stage"), "set either model.path or model.from_stage, not both")
        }
        (Some(from), None, _) if !earlier.contains(from) => {
            let known = all.iter().map(Stage::display_name).collect::<Vec<_>>();
            let msg = if known.contains(from) {
                format!("stage `{from}` runs after this one; from_stage must name an earlier stage")
            } else {
                format!("no earlier stage is named `{from}` (stages: {})", known.join(", "))
            };
            c.error(&format!("{key}.from_stage"), msg);
        }
        (None, None, ModelInit::Pretrained) => c.error(
            &format!("{key}.path"),
            "required: a checkpoint directory (or model.from_stage, or init: random with model.config)",
        ),
        (None, _, ModelInit::Random) if m.config.is_none() => {
            c.error(&format!("{key}.config"), "init: random needs a config.json to build the model from")
        }
        _ => {}
    }
    if m.config.is_some() && (m.init != ModelInit::Random || m.from_stage.is_some()) {
        c.error(
            &format!("{key}.config"),
            "only init: random builds a model from model.config; a checkpoint or an earlier stage brings its own config.json",
        );
    }
    if m.path.is_some() && m.init == ModelInit::Random {
        c.error(
            &format!("{key}.path"),
            "init: random builds the model from model.config; remove model.path or use init: pretrained",
        );
    }
    if let Some(lora) = &m.lora {
        c.at_least(&format!("{key}.lora.rank"), lora.rank.into(), 1);
        c.positive(&format!("{key}.lora.alpha"), lora.alpha);
        if lora.dropout != 0.0 {
            c.error(
                &format!("{key}.lora.dropout"),
                format!("{} is not supported: adapters train without dropout (set 0)", lora.dropout),
            );
        }
        if lora.target_modules.is_empty() {
            c.error(&format!("{key}.lora.target_modules"), "must name at least one module");
        }
        for (j, t) in lora.target_modules.iter().enumerate() {
            if !LORA_TARGETS.contains(&t.as_str()) {
                let hint = crate::recipe::de::did_you_mean(t, &LORA_TARGETS)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                c.error(
                    &format!("{key}.lora.target_modules[{j}]"),
                    format!("unknown module `{t}`; expected one of: {}{hint}", LORA_TARGETS.join(", ")),
                );
            }
        }
    }
}

fn check_environment(c: &mut Checker, at: &str, stage: &Stage) {
    let e = &stage.environment;
    let key = |k: &str| format!("{at}.environment.{k}");
    let max_steps = e.max_steps.unwrap_or(0);
    // Step 1 may not answer and the last step must, so an episode needs two steps to score.
    if max_steps < 2 {
        c.error(&key("max_steps"), format!("must be at least 2 (step 1 cannot answer), found {max_steps}"));
    }
    if e.dynamic_steps {
        if e.min_max_steps < 2 {
            c.error(
                &key("min_max_steps"),
                format!("must be at least 2 (step 1 cannot answer), found {}", e.min_max_steps),
            );
        }
        if e.min_max_steps > max_steps && max_steps >= 2 {
            c.warn(
                &key("min_max_steps"),
                format!("{} exceeds max_steps {max_steps}: every episode gets max_steps", e.min_max_steps),
            );
        }
    }
    c.at_least(&key("max_frames"), e.max_frames.into(), 1);
    c.positive(&key("min_audio_seconds"), e.min_audio_seconds);
    c.positive(&key("max_audio_seconds"), e.max_audio_seconds);
    c.positive(&key("max_clip_seconds"), e.max_clip_seconds);
    if e.max_audio_seconds < e.min_audio_seconds {
        c.error(
            &key("max_audio_seconds"),
            format!("{} is below min_audio_seconds {}", e.max_audio_seconds, e.min_audio_seconds),
        );
    }
    if e.max_clip_seconds.fract() != 0.0 {
        c.warn(
            &key("max_clip_seconds"),
            format!(
                "the reference casts this limit to an integer ({}) for the prompt and the step budget",
                e.max_clip_seconds.trunc()
            ),
        );
    }
    c.at_least(&key("min_clip_frames"), e.min_clip_frames.into(), 1);
    if let Some(p) = &e.system_prompt {
        if !p.is_file() {
            c.error(&key("system_prompt"), format!("template file {} not found", p.display()));
        } else if let Err(err) = rollout::prompt::PromptTemplate::from_file(p) {
            c.error(&key("system_prompt"), err.to_string());
        }
    }
    let p = &stage.preprocess;
    let pkey = |k: &str| format!("{at}.preprocess.{k}");
    if p.image_min_pixels > p.image_max_pixels {
        c.error(
            &pkey("image_min_pixels"),
            format!("{} exceeds image_max_pixels {}", p.image_min_pixels, p.image_max_pixels),
        );
    }
    if p.video_min_pixels > p.video_frame_max_pixels {
        c.error(
            &pkey("video_min_pixels"),
            format!("{} exceeds video_frame_max_pixels {}", p.video_min_pixels, p.video_frame_max_pixels),
        );
    }
    c.at_least(&pkey("image_min_pixels"), p.image_min_pixels, 28 * 28);
    c.positive(&pkey("clip_fps"), p.clip_fps);
    c.at_least(&pkey("max_clip_frames"), p.max_clip_frames.into(), 2);
}

fn check_rollout(c: &mut Checker, at: &str, stage: &Stage) {
    let r = &stage.rollout;
    let key = |k: &str| format!("{at}.rollout.{k}");
    c.at_least(&key("prompts_per_step"), r.prompts_per_step.into(), 1);
    c.at_least(&key("val_prompts_per_step"), r.val_prompts_per_step.into(), 1);
    c.at_least(&key("micro_ratio"), r.micro_ratio.into(), 1);
    if stage.kind == Some(StageKind::Rl) {
        let group = r.group_size.unwrap_or(0);
        c.at_least(&key("group_size"), group.into(), 1);
        if group == 1 {
            c.warn(&key("group_size"), "a group of 1 has no baseline: GRPO advantages are all zero");
        }
    }
    // The environment ends an episode when its prompt exceeds max_prompt_length - 32.
    c.at_least(&key("max_prompt_length"), r.max_prompt_length.into(), 64);
    c.at_least(&key("max_response_length"), r.max_response_length.into(), 1);
    for (name, s) in [("sampling", r.sampling.clone().unwrap_or_default()), ("val_sampling", r.val_sampling.clone())] {
        c.positive(&key(&format!("{name}.temperature")), s.temperature);
        c.in_unit(&key(&format!("{name}.top_p")), s.top_p, false, true);
        if s.top_k == Some(0) {
            c.error(&key(&format!("{name}.top_k")), "must be at least 1 (or null for no top-k)");
        }
    }
    let rw = &stage.reward;
    if !(rw.invalid_action_penalty.is_finite() && rw.invalid_action_penalty >= 0.0) {
        c.error(&format!("{at}.reward.invalid_action_penalty"), "must be a finite number >= 0");
    }
    if rw.judge.enabled {
        c.positive(&format!("{at}.reward.judge.timeout_s"), rw.judge.timeout_s);
        c.at_least(&format!("{at}.reward.judge.concurrency"), rw.judge.concurrency.into(), 1);
        if !(rw.judge.base_url.starts_with("http://") || rw.judge.base_url.starts_with("https://")) {
            c.error(
                &format!("{at}.reward.judge.base_url"),
                format!("expected an http(s) URL, found `{}`", rw.judge.base_url),
            );
        }
    }
}

fn check_algorithm(c: &mut Checker, at: &str, stage: &Stage) {
    let a = &stage.algorithm;
    let key = |k: &str| format!("{at}.algorithm.{k}");
    c.positive(&key("epsilon"), a.epsilon);
    c.at_least(&key("ppo_epochs"), a.ppo_epochs.into(), 1);
    if a.update_flow == UpdateFlow::OnPolicy && a.ppo_epochs != 1 {
        c.error(
            &key("ppo_epochs"),
            format!(
                "update_flow on-policy takes exactly one pass (ppo_epochs 1), found {}; use update_flow: ppo for more",
                a.ppo_epochs
            ),
        );
    }
    c.at_least(&key("ppo_mini_batch_size"), a.ppo_mini_batch_size.into(), 1);
    c.at_least(&key("micro_batch_size_per_gpu"), a.micro_batch_size_per_gpu.into(), 1);
    c.in_unit(&key("clip_ratio_low"), a.clip_ratio_low, false, false);
    c.positive(&key("clip_ratio_high"), a.clip_ratio_high);
    if !(a.clip_ratio_c.is_finite() && a.clip_ratio_c > 1.0) {
        c.error(&key("clip_ratio_c"), format!("the dual-clip bound must be > 1, found {}", a.clip_ratio_c));
    }
    if let Some(cap) = a.tis_cap
        && !(cap.is_finite() && cap >= 1.0)
    {
        c.error(&key("tis_cap"), format!("the importance-weight cap must be >= 1 (or null to disable), found {cap}"));
    }
    for (k, v) in [("kl_coef", a.kl_coef), ("entropy_coef", a.entropy_coef)] {
        if !(v.is_finite() && v >= 0.0) {
            c.error(&key(k), format!("must be a finite number >= 0, found {v}"));
        }
    }
}
