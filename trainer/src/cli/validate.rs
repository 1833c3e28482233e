//! `omnirl validate RECIPE [--set k=v]... [--json]`: the dry run.
//!
//! Exit status 0 when there is no error (warnings allowed), 1 when there is at least one.
//! Text mode prints every problem to stderr and, when there are no errors, the resolved
//! recipe and the plan to stdout. `--json` always prints one JSON object to stdout with
//! `ok`, `errors`, `warnings`, `problems`, `overrides`, `recipe` and `plan` (the plan
//! includes `world_size`, `rank` and `local_rank`).

use crate::dry_run::{self, DryRun, StagePlan};
use crate::recipe::emit::to_yaml;
use clap::Args;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Recipe YAML file.
    pub recipe: PathBuf,
    /// Override a recipe key, e.g. `--set stages.rl.optimizer.lr=2e-6` (repeatable; applied
    /// after the environment-variable overrides).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let env = |k: &str| std::env::var(k).ok();
    let result = dry_run::run(&args.recipe, &args.sets, &env);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        for p in &result.problems {
            eprintln!("{p}");
        }
        if result.ok {
            print!("{}", render_text(&result)?);
        }
        eprintln!(
            "{}: {} error(s), {} warning(s) in {} ms",
            result.recipe_file, result.errors, result.warnings, result.elapsed_ms
        );
    }
    Ok(if result.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The resolved recipe and the plan, for people.
pub fn render_text(r: &DryRun) -> anyhow::Result<String> {
    let mut s = String::new();
    writeln!(s, "# resolved recipe ({})", r.recipe_file)?;
    for o in &r.overrides {
        writeln!(s, "# override {} = {} ({})", o.key, o.value, o.source)?;
    }
    if let Some(recipe) = &r.resolved {
        s.push_str(&to_yaml(recipe));
    }
    let p = &r.plan.ranks;
    writeln!(s, "\n# plan")?;
    writeln!(
        s,
        "distributed: world_size {} (rank {}, local_rank {} of {}, {} node(s)), launcher: {}, gpu: {}",
        p.world_size,
        p.rank,
        p.local_rank,
        p.local_world_size,
        p.nnodes.map_or("?".to_string(), |n| n.to_string()),
        p.launcher.describe(),
        p.gpu_index.map_or("none".to_string(), |g| format!("{g} (from {})", p.gpu_source)),
    )?;
    for (i, st) in r.plan.stages.iter().enumerate() {
        render_stage(&mut s, i, st)?;
    }
    Ok(s)
}

/// `8.93B`, `1.25M`, or the exact count below a million.
fn count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n => n.to_string(),
    }
}

fn render_stage(s: &mut String, i: usize, st: &StagePlan) -> anyhow::Result<()> {
    let kind = st.kind.map_or("?", |k| k.as_str());
    writeln!(s, "stage {} `{}` ({kind})", i + 1, st.name)?;
    writeln!(s, "  model: {}", st.model.source)?;
    if let Some(p) = &st.model.params {
        let (t, l, v, a) = (count(p.total()), count(p.llm), count(p.vision), count(p.audio));
        writeln!(s, "  parameters: {t} (language model {l}, vision {v}, audio {a})")?;
    }
    if let Some(m) = &st.model.memory {
        writeln!(s, "  memory per rank:")?;
        for line in m.to_string().lines() {
            writeln!(s, "  {line}")?;
        }
    }
    for f in &st.data {
        let types: Vec<String> = f.question_types.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(
            s,
            "  data ({}): {} [{}] {} samples ({}), {} media files",
            f.role,
            f.file.display(),
            f.format,
            f.samples,
            types.join(", "),
            f.distinct_media
        )?;
    }
    if let Some(b) = &st.rl_batch {
        writeln!(
            s,
            "  batch: {} prompts x {} = {} episodes/step, {} per rank, waves of {} ({} per step)",
            b.prompts_per_step, b.group_size, b.episodes_per_step, b.episodes_per_rank, b.wave_size, b.waves_per_step
        )?;
    }
    if let Some(b) = &st.sft_batch {
        writeln!(
            s,
            "  batch: {} per device x {} accumulation = global batch {}",
            b.per_device_batch_size, b.gradient_accumulation_steps, b.global_batch_size
        )?;
    }
    if let Some(w) = st.eval_waves {
        writeln!(s, "  generation waves: {w}")?;
    }
    if let Some(p) = &st.steps {
        writeln!(
            s,
            "  steps: {} per epoch x {} epoch(s) = {} (warm-up {}), {} checkpoint(s)",
            p.steps_per_epoch, p.epochs, p.total_steps, p.warmup_steps, p.checkpoints
        )?;
    }
    if let Some(t) = &st.turn_budget {
        writeln!(s, "  turn budget: {}..{} turns (cap {})", t.min, t.max, t.cap)?;
    }
    if let Some(m) = &st.media_tokens {
        writeln!(
            s,
            "  media tokens at the limits: get_frames {}, get_clip {}, get_audio {}",
            m.get_frames, m.get_clip, m.get_audio
        )?;
    }
    if let Some(h) = &st.host_memory {
        match h.media_cache_bytes {
            0 => writeln!(s, "  host memory per rank: media cache off")?,
            b => writeln!(s, "  host memory per rank: media cache up to {} MiB", b >> 20)?,
        }
    }
    if let Some(l) = &st.row_lengths {
        writeln!(
            s,
            "  row lengths: {} of {} sampled rows over max_seq_length {} (longest {} tokens)",
            l.over_max_seq_length, l.sampled, l.max_seq_length, l.longest
        )?;
    }
    Ok(())
}
