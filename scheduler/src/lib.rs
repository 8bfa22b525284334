//! # sluice-scheduler
//!
//! Ballista 55's scheduler with Sluice's session setup: every session the
//! scheduler plans a job in is built by
//! [`sluice_core::session::scheduler_session_builder`], so it resolves every
//! Sluice UDF/UDAF (the one list) and the lake's object store (`abfss://`,
//! `az://`, `s3://`, `gs://` through
//! [`sluice_core::session::LakeStoreRegistry`]).
//!
//! The binary is thin: [`SchedulerArgs`] (flags and `SLUICE_SCHEDULER_*`
//! environment variables) → [`SchedulerArgs::to_config`] → [`run`], which
//! serves Ballista's gRPC API, `/healthz` (liveness) and `/readyz` (ready
//! once `--min-ready-executors` executors are registered) on one port, and
//! stops on SIGTERM or Ctrl-C.

pub mod affinity;
pub mod slots;

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::error::BallistaError;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_process::start_server;
use clap::{Parser, ValueEnum};

/// How the scheduler hands tasks to executors.
#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub enum Policy {
    /// The scheduler pushes tasks to executors (Ballista's default, lowest latency).
    #[default]
    PushStaged,
    /// Executors poll the scheduler for work.
    PullStaged,
}

/// How tasks are spread over free executor slots.
#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub enum Distribution {
    /// One task per executor in turn (spreads work over executors).
    #[default]
    RoundRobin,
    /// Fill the first executor's free slots first.
    Bias,
}

/// Flags of `sluice-scheduler`; every flag also reads an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "sluice-scheduler",
    version,
    about = "Sluice's Ballista scheduler"
)]
pub struct SchedulerArgs {
    /// Address to bind the gRPC + health port to (`0.0.0.0` in a pod).
    #[arg(long, env = "SLUICE_SCHEDULER_BIND_HOST", default_value = "127.0.0.1")]
    pub bind_host: String,
    /// Port of the gRPC API; `/healthz` and `/readyz` are served on it too.
    #[arg(long, env = "SLUICE_SCHEDULER_PORT", default_value_t = 50050)]
    pub port: u16,
    /// Host name executors and clients reach this scheduler at (the Service name in Kubernetes).
    #[arg(
        long,
        env = "SLUICE_SCHEDULER_EXTERNAL_HOST",
        default_value = "localhost"
    )]
    pub external_host: String,
    /// `/readyz` answers 200 once this many executors are registered.
    #[arg(
        long,
        env = "SLUICE_SCHEDULER_MIN_READY_EXECUTORS",
        default_value_t = 1
    )]
    pub min_ready_executors: usize,
    /// An executor without a heartbeat for this long is declared lost and its tasks rescheduled.
    #[arg(
        long,
        env = "SLUICE_SCHEDULER_EXECUTOR_TIMEOUT_SECONDS",
        default_value_t = 180
    )]
    pub executor_timeout_seconds: u64,
    /// How often to look for lost executors.
    #[arg(
        long,
        env = "SLUICE_SCHEDULER_EXPIRE_DEAD_EXECUTOR_INTERVAL_SECONDS",
        default_value_t = 15
    )]
    pub expire_dead_executor_interval_seconds: u64,
    /// How long running jobs wait for an executor when the last one is lost, before failing.
    #[arg(long, env = "SLUICE_SCHEDULER_NO_EXECUTORS_GRACE_PERIOD_SECONDS")]
    pub no_executors_grace_period_seconds: Option<u64>,
    /// Attempts of one task before its job fails.
    #[arg(long, env = "SLUICE_SCHEDULER_TASK_MAX_FAILURES", default_value_t = 4)]
    pub task_max_failures: usize,
    /// Attempts of one stage (re-runs after lost shuffle output) before its job fails.
    #[arg(long, env = "SLUICE_SCHEDULER_STAGE_MAX_FAILURES", default_value_t = 4)]
    pub stage_max_failures: usize,
    /// Task scheduling policy.
    #[arg(long, env = "SLUICE_SCHEDULER_POLICY", value_enum, default_value_t = Policy::PushStaged)]
    pub scheduling_policy: Policy,
    /// Task distribution over executor slots.
    #[arg(long, env = "SLUICE_SCHEDULER_TASK_DISTRIBUTION", value_enum, default_value_t = Distribution::RoundRobin)]
    pub task_distribution: Distribution,
    /// Send each distributed-training pass's scan task for a partition to
    /// the same executor every pass (the one holding that partition's
    /// binned rows); other tasks follow `--task-distribution`. Push-staged
    /// scheduling only.
    #[arg(
        long,
        env = "SLUICE_SCHEDULER_TRAINING_AFFINITY",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub training_affinity: bool,
    /// Seconds after a job finishes before its shuffle files are deleted (0: never).
    #[arg(
        long,
        env = "SLUICE_SCHEDULER_JOB_DATA_CLEANUP_SECONDS",
        default_value_t = 300
    )]
    pub finished_job_data_clean_up_interval_seconds: u64,
    /// Log JSON lines instead of text.
    #[arg(long, env = "SLUICE_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

impl SchedulerArgs {
    /// The socket address to bind.
    pub fn bind_addr(&self) -> Result<SocketAddr, BallistaError> {
        format!("{}:{}", self.bind_host, self.port)
            .parse()
            .map_err(|e| {
                BallistaError::Configuration(format!(
                    "invalid bind address {}:{} ({e}); check --bind-host/--port",
                    self.bind_host, self.port
                ))
            })
    }

    /// Ballista's scheduler config with Sluice's session builder and config
    /// producer installed.
    pub fn to_config(&self) -> SchedulerConfig {
        let mut cfg = SchedulerConfig {
            bind_host: self.bind_host.clone(),
            bind_port: self.port,
            external_host: self.external_host.clone(),
            min_ready_executors: self.min_ready_executors,
            executor_timeout_seconds: self.executor_timeout_seconds,
            expire_dead_executor_interval_seconds: self.expire_dead_executor_interval_seconds,
            no_executors_grace_period_seconds: self
                .no_executors_grace_period_seconds
                .unwrap_or(self.executor_timeout_seconds),
            task_max_failures: self.task_max_failures,
            stage_max_failures: self.stage_max_failures,
            scheduling_policy: match self.scheduling_policy {
                Policy::PushStaged => TaskSchedulingPolicy::PushStaged,
                Policy::PullStaged => TaskSchedulingPolicy::PullStaged,
            },
            task_distribution: match self.task_distribution {
                Distribution::RoundRobin => TaskDistributionPolicy::RoundRobin,
                Distribution::Bias => TaskDistributionPolicy::Bias,
            },
            finished_job_data_clean_up_interval_seconds: self
                .finished_job_data_clean_up_interval_seconds,
            ..SchedulerConfig::default()
        };
        cfg = cfg
            .with_override_config_producer(sluice_core::session::ballista_config_producer())
            .with_override_session_builder(Arc::new(
                sluice_core::session::scheduler_session_builder,
            ));
        cfg
    }
}

/// Installs the tracing subscriber ([`sluice_core::logging::init_server`]).
pub fn init_logging(json: bool) {
    sluice_core::logging::init_server(json);
}

/// Runs the scheduler until SIGTERM or Ctrl-C (then returns `Ok`), or until
/// the server fails (then returns the error).
pub async fn run(args: SchedulerArgs) -> Result<(), BallistaError> {
    let addr = args.bind_addr()?;
    let config = args.to_config();
    tracing::info!(
        %addr,
        external_host = %args.external_host,
        functions = sluice_core::session::sluice_scalar_udfs().len()
            + sluice_core::session::sluice_aggregate_udfs().len(),
        "starting the Sluice scheduler"
    );
    let memory = BallistaCluster::new_from_config(&config).await?;
    let cluster = BallistaCluster::new(
        Arc::new(slots::SlotLedger::new(
            memory.cluster_state(),
            args.training_affinity,
        )),
        memory.job_state(),
    );
    tokio::select! {
        res = start_server(cluster, addr, Arc::new(config)) => {
            res.map_err(|e| match e {
                BallistaError::IoError(io) => BallistaError::General(format!(
                    "cannot serve on {addr}: {io}; is the port already in use?"
                )),
                other => other,
            })
        }
        _ = shutdown_signal() => {
            tracing::info!("scheduler received a shutdown signal, stopping");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot install the SIGTERM handler: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_ballista_config() {
        let args = SchedulerArgs::parse_from([
            "sluice-scheduler",
            "--port",
            "6123",
            "--external-host",
            "sched.svc",
            "--executor-timeout-seconds",
            "9",
            "--task-max-failures",
            "2",
        ]);
        let cfg = args.to_config();
        assert_eq!(cfg.bind_port, 6123);
        assert_eq!(cfg.scheduler_endpoint(), "sched.svc:6123");
        assert_eq!(cfg.executor_timeout_seconds, 9);
        assert_eq!(cfg.no_executors_grace_period_seconds, 9);
        assert_eq!(cfg.task_max_failures, 2);
        assert!(cfg.override_session_builder.is_some());
        assert!(cfg.override_config_producer.is_some());
        assert_eq!(args.bind_addr().unwrap().port(), 6123);
    }

    #[test]
    fn bad_bind_host_is_named() {
        let args = SchedulerArgs::parse_from(["sluice-scheduler", "--bind-host", "not a host"]);
        let e = args.bind_addr().unwrap_err().to_string();
        assert!(e.contains("not a host"), "{e}");
    }
}
