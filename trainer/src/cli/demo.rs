//! `omnirl demo --model DIR [--host 127.0.0.1] [--port 8080] [--examples DIR]... [--recipe R
//! [--stage NAME]] [--max-upload-mib 512] [--queue 4] [--dtype D] [--device D]`: the web demo
//! (`trainer::demo`): loads the checkpoint once, then serves a page to run episodes on built-in
//! examples or uploaded videos, turn by turn.
//!
//! The environment, preprocessing and tokenizer come from the recipe stage as in `omnirl infer`
//! (`--stage`, else the first eval, rl or expert sft stage). Without `--recipe`, a checkpoint
//! inside a run directory (`runs/quickstart/rl/final`) takes its own stage of the run's
//! `recipe.yaml`, else a default eval stage. Examples default to `data/quickstart` (its held-out
//! questions) and `data/examples`, those of them that exist. It binds to 127.0.0.1 unless
//! `--host` says otherwise, and says so when it does not; `--port 0` picks a free port. Prints
//! `listening on http://ADDR` once the model is loaded. Exit status 2 on a bad model, recipe or examples directory, or a port in use
//! (the message names it). Left out: TLS and authentication (see `demo::server`).

use super::checkpoint_stage;
use crate::cli::generate::load_options;
use crate::demo::{DemoConfig, bind, server::stop_signal};
use anyhow::{Context as _, bail};
use clap::Args;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Checkpoint directory (config.json + safetensors; tokenizer.json when it has one).
    #[arg(long)]
    pub model: PathBuf,
    /// Address to bind; anything but loopback exposes the model to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: a free one, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// A directory of examples (its `eval.jsonl`), repeatable. Default: data/quickstart and
    /// data/examples.
    #[arg(long = "examples", value_name = "DIR")]
    pub examples: Vec<PathBuf>,
    /// Take the environment, preprocessing and system prompt from this recipe.
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// With --recipe: the stage to take them from (default: the first eval, rl or sft stage).
    #[arg(long, requires = "recipe")]
    pub stage: Option<String>,
    /// Largest upload, MiB.
    #[arg(long, default_value_t = 512)]
    pub max_upload_mib: u64,
    /// Runs that may wait behind the running one; more are answered "busy".
    #[arg(long, default_value_t = 4)]
    pub queue: usize,
    /// Seconds a created run waits for its page to open its event stream.
    #[arg(long, default_value_t = 30.0)]
    pub attach_timeout: f64,
    /// Compute dtype: f32 (default), bf16 or f16.
    #[arg(long)]
    pub dtype: Option<String>,
    /// cpu, cuda or cuda:N (default: cuda when available).
    #[arg(long)]
    pub device: Option<String>,
}

fn config(args: &DemoArgs) -> anyhow::Result<DemoConfig> {
    if !args.model.join("config.json").is_file() {
        bail!("{}: not a checkpoint directory (no config.json)", args.model.display());
    }
    let stage = checkpoint_stage(args.recipe.as_deref(), args.stage.as_deref(), &args.model, 42, "omnirl demo")?;
    let examples = if args.examples.is_empty() {
        ["data/quickstart", "data/examples"]
            .iter()
            .map(PathBuf::from)
            .filter(|d| d.join("eval.jsonl").is_file())
            .collect()
    } else {
        args.examples.clone()
    };
    if args.queue == 0 {
        bail!("--queue must be at least 1");
    }
    Ok(DemoConfig {
        model: args.model.clone(),
        load: load_options(Some(args.dtype.as_deref().unwrap_or("f32")), args.device.as_deref())?,
        stage,
        examples,
        max_upload_bytes: args.max_upload_mib.max(1) << 20,
        queue_bound: args.queue,
        attach_timeout_s: args.attach_timeout,
    })
}

pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let cfg = config(args)?;
    let loopback = args.host == "localhost" || args.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let server = bind(&args.host, args.port).await?;
        if !loopback {
            eprintln!(
                "omnirl demo: warning: listening on {} (not loopback): anyone who can reach this address can upload \
                 videos and run the model",
                server.addr
            );
        }
        eprintln!("omnirl demo: loading {} ...", args.model.display());
        let ready = |addr| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on http://{addr}");
            let _ = out.flush();
        };
        server.serve(cfg, stop_signal(), ready).await?;
        eprintln!("omnirl demo: stopped; uploads removed");
        Ok::<ExitCode, anyhow::Error>(ExitCode::SUCCESS)
    })
}
