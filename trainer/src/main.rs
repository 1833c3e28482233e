//! The `omnirl` binary: parses the command line and hands over to `trainer::cli`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use trainer::cli;

#[derive(Debug, Parser)]
#[command(name = "omnirl", version, about = "Train omni-modal active-perception video agents with SFT and RL")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Dry run: check a recipe, its data and model, and print the plan, before any GPU is touched.
    Validate(cli::validate::ValidateArgs),
    /// Score predictions against ground truth, one JSON line per input line.
    Score(cli::score::ScoreArgs),
    /// Advantages (GRPO, TAURA, GRPO without std) of rollout rows, one JSON line per input line.
    Advantage(cli::advantage::AdvantageArgs),
    /// Run one media action (probe, frames, audio, clip) as the environment would; prints JSON.
    Media(cli::media::MediaArgs),
    /// Generate from the thinker for one prompt (text, ids, and media files).
    Generate(cli::generate::GenerateArgs),
    /// Teacher-forced log-prob and entropy of every token after the first.
    Logprobs(cli::logprobs::LogprobsArgs),
    /// Replay one episode on a video with given model responses; one JSON line per step.
    Replay(cli::replay::ReplayArgs),
    /// Run a recipe's stages in order (SFT, RL, eval) in one run directory.
    Train(cli::train::TrainArgs),
    /// Evaluate a checkpoint on an eval JSONL file: results.jsonl, summary.json, summary.csv.
    Eval(cli::eval::EvalArgs),
    /// Best-of-N SFT data: roll out a policy on RL questions, keep verified, audited trajectories.
    Synth(cli::synth::SynthArgs),
    /// Performance suite: learner / decode throughput, encoders, RL memory, CUDA parity, NCCL.
    Bench(cli::bench::BenchArgs),
    /// Run one episode on a video with a checkpoint, printing each turn live; writes trajectory.json.
    Infer(cli::infer::InferArgs),
    /// Serve a web page to run the agent on examples or uploaded videos, turn by turn.
    Demo(cli::demo::DemoArgs),
    /// Write a self-contained HTML report of a run directory (curves, figures, trajectories).
    Report(cli::report::ReportArgs),
}

fn main() -> ExitCode {
    let parsed = Cli::parse();
    let result = match &parsed.command {
        Command::Validate(args) => cli::validate::run(args),
        Command::Score(args) => cli::score::run(args),
        Command::Advantage(args) => cli::advantage::run(args),
        Command::Media(args) => cli::media::run(args),
        Command::Generate(args) => cli::generate::run(args),
        Command::Logprobs(args) => cli::logprobs::run(args),
        Command::Replay(args) => cli::replay::run(args),
        Command::Train(args) => cli::train::run(args),
        Command::Eval(args) => cli::eval::run(args),
        Command::Synth(args) => cli::synth::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Infer(args) => cli::infer::run(args),
        Command::Report(args) => cli::report::run(args),
        Command::Demo(args) => cli::demo::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("omnirl: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
