//! `sluice cluster up|down|status`: a local Ballista cluster (one scheduler
//! and N executors on 127.0.0.1) for development; see [`sluice_cluster::local`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use sluice_cluster::local::{self as cluster, ClusterOptions, ClusterState, LocalCluster};

/// Arguments of `sluice cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// `sluice cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start a scheduler and N executors on 127.0.0.1 and wait until they are ready.
    Up {
        /// Number of executors.
        #[arg(long, default_value_t = 2)]
        executors: usize,
        /// The scheduler's port; executor i uses base+1+3i (Flight), base+2+3i (gRPC), base+3+3i (health).
        #[arg(long, default_value_t = cluster::DEFAULT_BASE_PORT)]
        base_port: u16,
        /// Directory of the state file, logs and executor work dirs.
        #[arg(long, default_value = ".sluice/cluster")]
        dir: PathBuf,
        /// Tasks each executor runs at the same time.
        #[arg(long, default_value_t = 1)]
        concurrent_tasks: usize,
        /// Memory limit per executor, e.g. `2GiB`.
        #[arg(long)]
        memory_limit: Option<String>,
    },
    /// Stop the cluster started by `up` (SIGTERM, then SIGKILL after the grace period).
    Down {
        /// The directory given to `up`.
        #[arg(long, default_value = ".sluice/cluster")]
        dir: PathBuf,
        /// Seconds to wait after SIGTERM before SIGKILL.
        #[arg(long, default_value_t = 10)]
        grace_seconds: u64,
    },
    /// Print the cluster's processes and whether they are alive and ready.
    Status {
        /// The directory given to `up`.
        #[arg(long, default_value = ".sluice/cluster")]
        dir: PathBuf,
    },
}

/// Runs `sluice cluster ...`; returns the exit code.
pub async fn run(args: ClusterArgs) -> anyhow::Result<i32> {
    match args.command {
        ClusterCommand::Up {
            executors,
            base_port,
            dir,
            concurrent_tasks,
            memory_limit,
        } => {
            if dir.join(cluster::STATE_FILE).exists() {
                anyhow::bail!(
                    "a cluster is already recorded in {}; run `sluice cluster down --dir {}` first",
                    dir.join(cluster::STATE_FILE).display(),
                    dir.display()
                );
            }
            let opts = ClusterOptions {
                base_port,
                dir: dir.clone(),
                concurrent_tasks,
                memory_limit,
                ..ClusterOptions::default()
            };
            let c = LocalCluster::start(executors, opts).await?;
            let state = c.detach();
            print_state(&state);
            println!(
                "ready: use `engine: {{ mode: ballista, scheduler: {} }}` or `--scheduler {}`; stop with `sluice cluster down --dir {}`",
                state.scheduler_url,
                state.scheduler_url,
                dir.display()
            );
            Ok(0)
        }
        ClusterCommand::Down { dir, grace_seconds } => {
            let killed = cluster::stop_from_state(&dir, Duration::from_secs(grace_seconds))?;
            if killed.is_empty() {
                println!("cluster in {} stopped", dir.display());
            } else {
                println!(
                    "cluster in {} stopped; killed after the grace period: {}",
                    dir.display(),
                    killed.join(", ")
                );
            }
            Ok(0)
        }
        ClusterCommand::Status { dir } => {
            if !dir.join(cluster::STATE_FILE).exists() {
                println!(
                    "no local cluster in {} (nothing started there with `sluice cluster up`); start one with `sluice cluster up --executors 2`",
                    dir.display()
                );
                return Ok(1);
            }
            let state = ClusterState::read(&dir)?;
            print_state(&state);
            let all_up = std::iter::once(&state.scheduler)
                .chain(&state.executors)
                .all(|p| cluster::is_alive(p.pid));
            Ok(if all_up { 0 } else { 1 })
        }
    }
}

fn print_state(state: &ClusterState) {
    println!("scheduler: {}", state.scheduler_url);
    for p in std::iter::once(&state.scheduler).chain(&state.executors) {
        let alive = cluster::is_alive(p.pid);
        let ready = alive && cluster::http_status(p.health_port, "/readyz") == Some(200);
        println!(
            "  {:<12} pid {:<8} port {:<6} health {:<6} {} log {}",
            p.name,
            p.pid,
            p.port,
            p.health_port,
            if ready {
                "ready"
            } else if alive {
                "running"
            } else {
                "dead"
            },
            p.log.display()
        );
    }
}
