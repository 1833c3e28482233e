//! `omnirl train RECIPE [--set k=v]... [--resume [DIR]]`: validates the recipe (the dry run; on
//! any error it prints the problems as `omnirl validate` does and exits 1 without touching
//! anything), then runs its stages in order (`run::run_recipe`) and prints the before/after
//! figures and the run directory. `--resume` without a directory continues the newest run of the
//! recipe under its `output_dir` (`run::resume`). Exit status 0 on success, 1 on recipe errors,
//! 2 on a failed run, 128 + the signal number after a clean stop on SIGTERM/SIGINT (the step
//! checkpoint is saved; the message gives the command that continues).
//! Launched by mpirun, srun or env variables (RANK/WORLD_SIZE/...), every rank runs the stages
//! data-parallel (`run::world`); only rank 0 prints and writes.

use crate::dry_run;
use crate::recipe::emit::to_yaml;
use crate::run::resume::newest_run;
use crate::run::{RunOptions, World, interrupt, run_recipe};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Recipe YAML file.
    pub recipe: PathBuf,
    /// Override a recipe key, e.g. `--set stages.rl.schedule.max_steps=2` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Continue a run: in DIR, or in the newest run of this recipe when DIR is left out.
    #[arg(long, num_args = 0..=1, value_name = "DIR")]
    pub resume: Option<Option<PathBuf>>,
}

pub fn run(args: &TrainArgs) -> anyhow::Result<ExitCode> {
    let env = |k: &str| std::env::var(k).ok();
    let dry = dry_run::run(&args.recipe, &args.sets, &env);
    for p in &dry.problems {
        eprintln!("{p}");
    }
    let Some(recipe) = dry.resolved_recipe.clone().filter(|_| dry.ok) else {
        eprintln!("{}: {} error(s), {} warning(s): not starting", dry.recipe_file, dry.errors, dry.warnings);
        return Ok(ExitCode::from(1));
    };
    let resume = match &args.resume {
        None => None,
        Some(Some(dir)) => Some(dir.clone()),
        Some(None) => match newest_run(&recipe.output_dir, &recipe.name, |_| true) {
            Some(dir) => Some(dir),
            None => anyhow::bail!("--resume: no run of `{}` under {}", recipe.name, recipe.output_dir.display()),
        },
    };
    let opts = RunOptions { resume, progress: std::io::stderr().is_terminal() };
    let mut say = |line: &str| eprintln!("omnirl train: {line}");
    let yaml = to_yaml(dry.resolved.as_ref().unwrap_or(&serde_json::Value::Null));
    let world = World::start(&recipe.distributed)?;
    interrupt::install()?;
    let out = match run_recipe(&recipe, &yaml, &opts, &world, &mut say) {
        Ok(out) => out,
        Err(e) if e.stop_signal().is_some() => {
            if world.is_main() {
                eprintln!("omnirl train: {e}");
                let sets: String = args.sets.iter().map(|s| format!(" --set '{s}'")).collect();
                eprintln!("omnirl train: continue with: omnirl train {}{sets} --resume", args.recipe.display());
            }
            return Ok(ExitCode::from((128 + e.stop_signal().unwrap_or(0).clamp(0, 127)) as u8));
        }
        // One failing rank of several: end the job with the rank named instead of leaving the
        // others waiting in a collective (the launcher tears the rest down).
        Err(e) if world.size() > 1 => {
            eprintln!("omnirl train: rank {} of {}: {e}", world.rank(), world.size());
            std::process::exit(2);
        }
        Err(e) => return Err(e.into()),
    };
    if world.is_main() {
        println!("{}", serde_json::to_string_pretty(&out.summary["figures"])?);
        println!("run directory: {}", out.run_dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
