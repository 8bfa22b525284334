//! The `sluice` command line: argument parsing, terminal output (tables,
//! progress bars drawn from the library's progress events) and process
//! setup; every subcommand calls into the library crates. This crate is the
//! only one with clap, anyhow and indicatif.

use clap::{Parser, Subcommand, ValueEnum};

pub mod cluster;
pub mod datagen;
pub mod ingest;
pub mod k8s;
pub mod models;
pub mod progress_view;
pub mod quickstart;
pub mod report;
pub mod run;
pub mod runs;
pub mod table;

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
    /// Log format: `text` (default) or `json` (one object per line, progress included).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Hide progress bars and informational logs (warnings and errors stay).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The lake (path or URL); overrides the config's `lake:` [default for
    /// `models`, `runs` and `report`: ./lake].
    #[arg(long, global = true, env = "SLUICE_LAKE")]
    pub lake: Option<String>,
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
    /// Print the config reference (`docs`, Markdown) or its JSON Schema (`schema`).
    Config(ConfigArgs),
    /// List, inspect and compare models in the registry.
    Models(models::ModelsArgs),
    /// List and inspect pipeline runs.
    Runs(runs::RunsArgs),
    /// Print (or open) the report of a run.
    Report(report::ReportArgs),
    /// Print a shell completion script (`sluice completions bash > ...`).
    Completions(CompletionsArgs),
    /// Submit a pipeline (or one step) as a Kubernetes Job and follow it.
    Submit(crate::k8s::SubmitArgs),
    /// Scale a deployment on Kubernetes (`sluice scale executors N`).
    Scale(crate::k8s::ScaleArgs),
    /// Show the Sluice deployments and jobs on Kubernetes.
    Status(crate::k8s::StatusArgs),
    /// Generate a synthetic data lake (raw tables, training CSVs, truth labels).
    Datagen(datagen::DatagenArgs),
    /// Validate and unify the training CSVs or the raw tables into Parquet.
    Ingest(ingest::IngestArgs),
    /// Start, stop or inspect a local Ballista cluster (scheduler + executors on 127.0.0.1).
    Cluster(cluster::ClusterArgs),
}

/// Arguments of `sluice config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// What to print.
    #[arg(value_enum)]
    pub what: ConfigOutput,
}

/// Outputs of `sluice config`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ConfigOutput {
    /// Every key of a pipeline file with its type, default and meaning
    /// (Markdown; the generated part of docs/CONFIG.md).
    Docs,
    /// The JSON Schema of a pipeline file (for editors, e.g.
    /// `# yaml-language-server: $schema=sluice.schema.json`).
    Schema,
}

/// Arguments of `sluice completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Exit status when the reader of stdout went away: a Unix tool killed by
/// SIGPIPE (128 + 13).
pub const BROKEN_PIPE_EXIT: i32 = 141;

/// Writes a command's output; a reader that closes the pipe early
/// (`sluice config docs | head`) ends the command quietly with
/// [`BROKEN_PIPE_EXIT`], like `println!` output does (`main`'s hook).
fn write_stdout(bytes: &[u8]) -> anyhow::Result<i32> {
    use std::io::Write as _;
    match std::io::stdout().write_all(bytes) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(BROKEN_PIPE_EXIT),
        Err(e) => Err(e.into()),
    }
}

/// Installs the tracing subscriber (text or JSON, `RUST_LOG` filter, default
/// `info`, or `warn` when `quiet`).
pub fn init_logging(format: LogFormat, quiet: bool) {
    sluice_core::logging::init(
        matches!(format, LogFormat::Json),
        if quiet { "warn" } else { "info" },
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        || progress_view::LogWriter,
    );
}

/// Runs the parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    init_logging(cli.log_format, cli.quiet);
    match (cli.quiet, cli.log_format) {
        (true, _) => sluice_common::progress::set_sink(None),
        (false, LogFormat::Text) => progress_view::install_text(),
        (false, LogFormat::Json) => {
            progress_view::install_log_lines(std::time::Duration::from_secs(2))
        }
    }
    let lake = cli.lake;
    match cli.command {
        Command::Quickstart(args) => quickstart::run(args).await,
        Command::Run(args) => run::run(args, lake).await,
        Command::Validate(args) => run::validate(args, lake).await,
        Command::Config(args) => write_stdout(
            match args.what {
                ConfigOutput::Docs => sluice_engine::config::reference::markdown(),
                ConfigOutput::Schema => format!(
                    "{}\n",
                    serde_json::to_string_pretty(&sluice_engine::config::reference::json_schema())?
                ),
            }
            .as_bytes(),
        ),
        Command::Models(args) => models::run(args, &default_lake(lake)).await,
        Command::Runs(args) => runs::run(args, &default_lake(lake)).await,
        Command::Report(args) => report::run(args, &default_lake(lake)).await,
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut cmd, "sluice", &mut script);
            write_stdout(&script)
        }
        Command::Submit(mut args) => {
            args.lake = lake;
            crate::k8s::run_submit(&args).await
        }
        Command::Scale(args) => crate::k8s::run_scale(&args).await,
        Command::Status(args) => crate::k8s::run_status(&args).await,
        Command::Datagen(args) => datagen::run(args).await,
        Command::Ingest(args) => ingest::run(args, lake).await,
        Command::Cluster(args) => cluster::run(args).await,
    }
}

/// The lake of commands that read one: `--lake`/`SLUICE_LAKE`, else `./lake`.
fn default_lake(lake: Option<String>) -> String {
    lake.unwrap_or_else(|| "./lake".to_string())
}

/// Formats an error and its causes for people: each cause once (a message
/// that already quotes its cause is not repeated).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}
