//! The `sluice` command line: argument parsing and process setup only; every
//! subcommand calls into the library.

use clap::{Parser, Subcommand, ValueEnum};

pub mod cluster;
pub mod datagen;
pub mod ingest;
pub mod models;
pub mod quickstart;
pub mod run;

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Sluice: scalable batch ML pipelines on DataFusion and Ballista.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None)]
pub struct Cli {
    /// Log format: `text` (default) or `json`.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Hide progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a small lake and run both pipelines end to end (no setup).
    Quickstart(quickstart::QuickstartArgs),
    /// Run a pipeline config (all steps, or part of it with --steps/--from/--resume).
    Run(run::RunArgs),
    /// Check pipeline configs without running them.
    Validate(run::ValidateArgs),
    /// List and inspect models in the registry.
    Models(models::ModelsArgs),
    /// Submit a pipeline (or one step) as a Kubernetes Job and follow it.
    Submit(crate::k8s::cli::SubmitArgs),
    /// Scale a deployment on Kubernetes (`sluice scale executors N`).
    Scale(crate::k8s::cli::ScaleArgs),
    /// Show the Sluice deployments and jobs on Kubernetes.
    Status(crate::k8s::cli::StatusArgs),
    /// Generate a synthetic data lake (raw tables, training CSVs, truth labels).
    Datagen(datagen::DatagenArgs),
    /// Validate and unify the training CSVs or the raw tables into Parquet.
    Ingest(ingest::IngestArgs),
    /// Start, stop or inspect a local Ballista cluster (scheduler + executors on 127.0.0.1).
    Cluster(cluster::ClusterArgs),
}

/// Installs the tracing subscriber (text or JSON, `RUST_LOG` filter, default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Runs the parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    init_logging(cli.log_format);
    crate::progress::set_enabled(!cli.quiet && matches!(cli.log_format, LogFormat::Text));
    match cli.command {
        Command::Quickstart(args) => quickstart::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Validate(args) => run::validate(args),
        Command::Models(args) => models::run(args).await,
        Command::Submit(args) => crate::k8s::cli::run_submit(&args).await,
        Command::Scale(args) => crate::k8s::cli::run_scale(&args).await,
        Command::Status(args) => crate::k8s::cli::run_status(&args).await,
        Command::Datagen(args) => datagen::run(args).await,
        Command::Ingest(args) => ingest::run(args).await,
        Command::Cluster(args) => cluster::run(args).await,
    }
}
