//! # sluice-executor
//!
//! Ballista 55's executor carrying Sluice's session setup. Ballista does not
//! ship functions or object stores to executors, so this binary installs them
//! through the executor's override hooks:
//!
//! * `override_function_registry`: [`sluice_core::session::function_registry`]
//!   (DataFusion's functions plus every Sluice UDF/UDAF from the one list);
//! * `override_runtime_producer`:
//!   [`sluice_core::session::executor_runtime_producer`] (the lake store
//!   registry for `abfss://`, `az://`, `s3://`, `gs://`; spill files in the
//!   work dir);
//! * `override_config_producer`: the shared Ballista session config.
//!
//! Sluice adds no custom plan nodes, so Ballista's default logical and
//! physical extension codecs are the right ones; when one is added, its codec
//! goes next to the registry here and in the scheduler.
//!
//! The binary is thin: [`ExecutorArgs`] (flags and `SLUICE_EXECUTOR_*`
//! environment variables) → [`ExecutorArgs::to_config`] → [`run`], which also
//! serves `/healthz` (liveness) and `/readyz` (last heartbeat to the
//! scheduler succeeded) on `--health-port`. On SIGTERM the executor tells the
//! scheduler it is terminating, drains its running tasks and exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::error::BallistaError;
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_executor::health::ExecutorHealth;
use clap::{Parser, ValueEnum};
use sluice_core::session::training_cache::{self, CacheSettings};

/// How the executor receives tasks (must match the scheduler's policy).
#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub enum Policy {
    /// The scheduler pushes tasks to the executor's gRPC port.
    #[default]
    PushStaged,
    /// The executor polls the scheduler for work.
    PullStaged,
}

/// Flags of `sluice-executor`; every flag also reads an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "sluice-executor",
    version,
    about = "Sluice's Ballista executor"
)]
pub struct ExecutorArgs {
    /// Address to bind the Flight, gRPC and health ports to (`0.0.0.0` in a pod).
    #[arg(long, env = "SLUICE_EXECUTOR_BIND_HOST", default_value = "127.0.0.1")]
    pub bind_host: String,
    /// Host name or IP the scheduler and other executors reach this executor
    /// at (the pod IP in Kubernetes). Default: the address the scheduler sees.
    #[arg(long, env = "SLUICE_EXECUTOR_EXTERNAL_HOST")]
    pub external_host: Option<String>,
    /// Arrow Flight port (shuffle and result fetches).
    #[arg(long, env = "SLUICE_EXECUTOR_PORT", default_value_t = 50051)]
    pub port: u16,
    /// gRPC port the scheduler pushes tasks to.
    #[arg(long, env = "SLUICE_EXECUTOR_GRPC_PORT", default_value_t = 50052)]
    pub grpc_port: u16,
    /// HTTP port of `/healthz` and `/readyz`.
    #[arg(long, env = "SLUICE_EXECUTOR_HEALTH_PORT", default_value_t = 50053)]
    pub health_port: u16,
    /// Scheduler host.
    #[arg(long, env = "SLUICE_SCHEDULER_HOST", default_value = "localhost")]
    pub scheduler_host: String,
    /// Scheduler gRPC port.
    #[arg(long, env = "SLUICE_SCHEDULER_PORT", default_value_t = 50050)]
    pub scheduler_port: u16,
    /// Keep retrying to reach the scheduler for this long at start-up.
    #[arg(
        long,
        env = "SLUICE_EXECUTOR_SCHEDULER_CONNECT_TIMEOUT_SECONDS",
        default_value_t = 60
    )]
    pub scheduler_connect_timeout_seconds: u16,
    /// Tasks run at the same time (Ballista vcores); 0 = number of cores.
    #[arg(long, env = "SLUICE_EXECUTOR_CONCURRENT_TASKS", default_value_t = 0)]
    pub concurrent_tasks: usize,
    /// Directory for shuffle files and spills (default: a fresh temp dir).
    #[arg(long, env = "SLUICE_EXECUTOR_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Memory for all running tasks, e.g. `4GiB`; operators spill past it.
    /// `0` = unbounded; default: 70% of the host or cgroup memory.
    #[arg(long, env = "SLUICE_EXECUTOR_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// Memory for executor-resident training data (the binned batches and
    /// margins distributed training keeps between passes), e.g. `2GiB`;
    /// `0` turns the cache off. Default: `SLUICE_TRAIN_CACHE_MB` MiB, 1GiB.
    #[arg(long, env = "SLUICE_EXECUTOR_TRAIN_CACHE")]
    pub train_cache: Option<String>,
    /// Disk in the work dir (`<work dir>/sluice-train-cache`) for training
    /// batches past `--train-cache`, e.g. `16GiB`; `0` drops them instead
    /// (the passes then read them from the source again). Default:
    /// `SLUICE_TRAIN_SPILL_MB` MiB, 16GiB.
    #[arg(long, env = "SLUICE_EXECUTOR_TRAIN_SPILL")]
    pub train_spill: Option<String>,
    /// Seconds between heartbeats to the scheduler.
    #[arg(long, env = "SLUICE_EXECUTOR_HEARTBEAT_SECONDS", default_value_t = 60)]
    pub heartbeat_interval_seconds: u64,
    /// Task scheduling policy (must match the scheduler's).
    #[arg(long, env = "SLUICE_SCHEDULER_POLICY", value_enum, default_value_t = Policy::PushStaged)]
    pub scheduling_policy: Policy,
    /// Executor id (default: a fresh unique id).
    #[arg(long, env = "SLUICE_EXECUTOR_ID")]
    pub executor_id: Option<String>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "SLUICE_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

impl ExecutorArgs {
    /// Ballista's executor config with Sluice's function registry, runtime
    /// producer and config producer installed.
    pub fn to_config(&self) -> Result<ExecutorProcessConfig, BallistaError> {
        let memory_pool_size = match &self.memory_limit {
            None => None,
            Some(s) => Some(
                sluice_core::session::parse_bytes(s)
                    .map_err(|e| BallistaError::Configuration(format!("--memory-limit: {e}")))?
                    as u64,
            ),
        };
        if let Some(dir) = &self.work_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                BallistaError::Configuration(format!(
                    "cannot create the work dir {}: {e}",
                    dir.display()
                ))
            })?;
            check_work_dir(dir)?;
        }
        let mut cfg = ExecutorProcessConfig {
            bind_host: self.bind_host.clone(),
            external_host: self.external_host.clone(),
            port: self.port,
            grpc_port: self.grpc_port,
            scheduler_host: self.scheduler_host.clone(),
            scheduler_port: self.scheduler_port,
            scheduler_connect_timeout_seconds: self.scheduler_connect_timeout_seconds,
            vcores: self.concurrent_tasks,
            task_scheduling_policy: match self.scheduling_policy {
                Policy::PushStaged => TaskSchedulingPolicy::PushStaged,
                Policy::PullStaged => TaskSchedulingPolicy::PullStaged,
            },
            work_dir: self.work_dir.as_ref().map(|p| p.display().to_string()),
            executor_heartbeat_interval_seconds: self.heartbeat_interval_seconds.max(1),
            memory_pool_size,
            print_thread_info: false,
            override_function_registry: Some(Arc::new(sluice_core::session::function_registry())),
            override_runtime_producer: Some(sluice_core::session::executor_runtime_producer(
                self.work_dir.clone(),
            )),
            override_config_producer: Some(sluice_core::session::ballista_config_producer()),
            ..ExecutorProcessConfig::default()
        };
        if let Some(id) = &self.executor_id {
            cfg.executor_id = id.clone();
        }
        Ok(cfg)
    }

    /// The training cache's settings: sizes from the flags (or the
    /// `SLUICE_TRAIN_*` environment), spill files under the work dir (or,
    /// without one, a per-process temp dir).
    pub fn train_cache_settings(&self) -> Result<CacheSettings, BallistaError> {
        let size = |flag: &str, v: &Option<String>, default: usize| match v {
            None => Ok(default),
            Some(s) => sluice_core::session::parse_bytes(s).map_err(|_| {
                BallistaError::Configuration(format!(
                    "--{flag}: `{s}` is not a size; expected e.g. `4GiB`, `512MiB` or `0`"
                ))
            }),
        };
        let env = CacheSettings::from_env();
        let spill_bytes = size("train-spill", &self.train_spill, env.spill_bytes)?;
        let spill_dir = match &self.work_dir {
            Some(dir) => dir.join("sluice-train-cache"),
            None => std::env::temp_dir().join(format!("sluice-train-cache-{}", std::process::id())),
        };
        Ok(CacheSettings {
            memory_bytes: size("train-cache", &self.train_cache, env.memory_bytes)?,
            spill_dir: (spill_bytes > 0).then_some(spill_dir),
            spill_bytes,
            ..env
        })
    }

    /// The health server's socket address.
    pub fn health_addr(&self) -> Result<SocketAddr, BallistaError> {
        format!("{}:{}", self.bind_host, self.health_port)
            .parse()
            .map_err(|e| {
                BallistaError::Configuration(format!(
                    "invalid health address {}:{} ({e}); check --bind-host/--health-port",
                    self.bind_host, self.health_port
                ))
            })
    }
}

/// Bytes the start-up check writes to the work dir: a full or read-only
/// disk fails here, with the path, instead of in the first shuffle write.
const WORK_DIR_PROBE_BYTES: usize = 1 << 20;

/// Writes (and removes) a 1 MiB probe file in the work dir, where shuffle
/// files and spills go, so an executor whose work dir is full or not
/// writable refuses to start with an error naming the path, instead of
/// failing tasks (and, after `--task-max-failures`, jobs) later.
pub fn check_work_dir(dir: &std::path::Path) -> Result<(), BallistaError> {
    let probe = dir.join(format!(".sluice-probe-{}", std::process::id()));
    let result = write_probe(&probe);
    let _ = std::fs::remove_file(&probe);
    result.map_err(|e| work_dir_error(dir, e))
}

fn write_probe(file: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(file)?;
    f.write_all(&vec![0u8; WORK_DIR_PROBE_BYTES])?;
    f.sync_all()
}

fn work_dir_error(dir: &std::path::Path, e: std::io::Error) -> BallistaError {
    BallistaError::Configuration(format!(
        "the work dir {} cannot hold shuffle files ({e}): writing {} KiB there failed; \
         free space or point --work-dir (SLUICE_EXECUTOR_WORK_DIR) elsewhere",
        dir.display(),
        WORK_DIR_PROBE_BYTES / 1024
    ))
}

/// Installs the tracing subscriber ([`sluice_core::logging::init_server`]).
pub fn init_logging(json: bool) {
    sluice_core::logging::init_server(json);
}

/// The health routes: `/healthz` is liveness (always 200 while the process
/// serves), `/readyz` is 200 after a successful heartbeat to the scheduler.
pub fn health_router(health: ExecutorHealth) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route(
            "/readyz",
            get(|State(h): State<ExecutorHealth>| async move {
                if h.is_ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: no successful heartbeat to the scheduler yet\n",
                    )
                }
            }),
        )
        .with_state(health)
}

/// Runs the executor until SIGTERM or Ctrl-C (Ballista then fences it at the
/// scheduler and drains running tasks) or until it fails.
pub async fn run(args: ExecutorArgs) -> Result<(), BallistaError> {
    let health_addr = args.health_addr()?;
    let config = args.to_config()?;
    let cache = args.train_cache_settings()?;
    if let Some(dir) = &cache.spill_dir {
        tracing::info!(dir = %dir.display(), memory_bytes = cache.memory_bytes, spill_bytes = cache.spill_bytes, "training cache");
    }
    let spill_dir = cache.spill_dir.clone();
    training_cache::configure(cache).map_err(|e| {
        BallistaError::Configuration(format!(
            "cannot prepare the training spill dir {}: {e}",
            spill_dir.unwrap_or_default().display()
        ))
    })?;
    let health = config.health.clone();
    let listener = tokio::net::TcpListener::bind(health_addr)
        .await
        .map_err(|e| {
            BallistaError::General(format!(
                "cannot bind the health port {health_addr}: {e}; is it already in use?"
            ))
        })?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let health_task = tokio::spawn(async move {
        axum::serve(listener, health_router(health))
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    tracing::info!(
        executor_id = %config.executor_id,
        flight = %format!("{}:{}", args.bind_host, args.port),
        grpc = %format!("{}:{}", args.bind_host, args.grpc_port),
        health = %health_addr,
        scheduler = %format!("{}:{}", args.scheduler_host, args.scheduler_port),
        "starting the Sluice executor"
    );
    let result = start_executor_process(Arc::new(config)).await;
    let _ = stop_tx.send(());
    if let Ok(Err(e)) = health_task.await {
        tracing::warn!("health server stopped with an error: {e}");
    }
    result.map_err(|e| match e {
        BallistaError::GrpcConnectionError(msg) | BallistaError::General(msg)
            if msg.contains("scheduler") =>
        {
            BallistaError::General(format!(
                "{msg} (scheduler {}:{})",
                args.scheduler_host, args.scheduler_port
            ))
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_ballista_config() {
        let dir = std::env::temp_dir().join(format!("sluice-exec-test-{}", std::process::id()));
        let args = ExecutorArgs::parse_from([
            "sluice-executor",
            "--port",
            "7001",
            "--grpc-port",
            "7002",
            "--concurrent-tasks",
            "3",
            "--memory-limit",
            "1GiB",
            "--work-dir",
            dir.to_str().unwrap(),
            "--external-host",
            "10.0.0.7",
        ]);
        let cfg = args.to_config().unwrap();
        assert_eq!(cfg.port, 7001);
        assert_eq!(cfg.grpc_port, 7002);
        assert_eq!(cfg.vcores, 3);
        assert_eq!(cfg.memory_pool_size, Some(1024 * 1024 * 1024));
        assert_eq!(cfg.external_host.as_deref(), Some("10.0.0.7"));
        assert!(dir.is_dir());
        let reg = cfg.override_function_registry.as_ref().unwrap();
        for f in sluice_core::session::sluice_scalar_udfs() {
            assert!(reg.scalar_functions.contains_key(f.name()));
        }
        for f in sluice_core::session::sluice_aggregate_udfs() {
            assert!(reg.aggregate_functions.contains_key(f.name()));
        }
        assert!(cfg.override_runtime_producer.is_some());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_work_dir_that_cannot_be_written_is_named() {
        // `/dev/full` accepts no byte (ENOSPC on every write): what a full
        // disk does to the probe.
        let full = std::path::Path::new("/dev/full");
        if full.exists() {
            let e = write_probe(full).unwrap_err();
            let e = work_dir_error(std::path::Path::new("/work/dir"), e).to_string();
            assert!(
                e.contains("/work/dir") && e.contains("No space left"),
                "{e}"
            );
        }
        // A work dir under a regular file cannot be created at all.
        let file = std::env::temp_dir().join(format!("sluice-exec-file-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let dir = file.join("work");
        let args =
            ExecutorArgs::parse_from(["sluice-executor", "--work-dir", dir.to_str().unwrap()]);
        let e = match args.to_config() {
            Ok(_) => panic!("an unusable work dir must be rejected"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(dir.to_str().unwrap()), "{e}");
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn bad_memory_limit_is_named() {
        let args = ExecutorArgs::parse_from(["sluice-executor", "--memory-limit", "lots"]);
        let e = match args.to_config() {
            Ok(_) => panic!("a bad memory limit must be rejected"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("--memory-limit"), "{e}");
    }

    #[test]
    fn train_cache_flags_set_memory_and_spill() {
        let args = ExecutorArgs::parse_from([
            "sluice-executor",
            "--work-dir",
            "/data/work",
            "--train-cache",
            "64MiB",
            "--train-spill",
            "2GiB",
        ]);
        let s = args.train_cache_settings().unwrap();
        assert_eq!(s.memory_bytes, 64 << 20);
        assert_eq!(s.spill_bytes, 2 << 30);
        assert_eq!(
            s.spill_dir.as_deref(),
            Some(std::path::Path::new("/data/work/sluice-train-cache"))
        );
        let none = ExecutorArgs::parse_from(["sluice-executor", "--train-spill", "0"]);
        assert_eq!(none.train_cache_settings().unwrap().spill_dir, None);
        let bad = ExecutorArgs::parse_from(["sluice-executor", "--train-cache", "much"]);
        let e = bad.train_cache_settings().unwrap_err().to_string();
        assert!(e.contains("--train-cache"), "{e}");
    }
}
