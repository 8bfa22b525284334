//! The one session setup: every DataFusion `SessionState` Sluice uses (the
//! embedded engine, the Ballista client, the scheduler and every executor) is
//! built here, with every Sluice function registered from the one list and
//! the lake's object store reachable from every process.
//!
//! Who calls what:
//!
//! | process | entry point |
//! |---|---|
//! | embedded engine, `sluice` driver | [`connect`] (or [`session_state`]) |
//! | Ballista client (`engine.mode: ballista`) | [`connect`] → `SessionContext::remote_with_state` |
//! | `sluice-scheduler` | [`scheduler_session_builder`], [`ballista_config_producer`] |
//! | `sluice-executor` | [`function_registry`], [`executor_runtime_producer`], [`ballista_config_producer`] |
//!
//! Ballista does not ship functions to executors, and its built-in object
//! store registry only knows local files, S3 and HTTP; so both travel here:
//! the function list through [`function_registry`] and the stores through
//! [`LakeStoreRegistry`], which builds a store lazily for any `az://`,
//! `abfss://`, `s3://`, `gs://` or `http(s)://` URL from the URL and the
//! process environment (the same way [`sluice_lake::lake::Lake::open`] does).
//!
//! To add a function: add it to the list of its crate (`sluice_transforms`
//! for features, `sluice_ml::distributed` for training aggregates); nothing
//! here changes.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use ballista::extension::SessionContextExt;
use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::{ConfigProducer, RuntimeProducer};
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionState;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use url::Url;

use sluice_common::error::{EngineError, Result};
use sluice_lake::lake::{redact, Lake};

/// Where plans run.
#[derive(
    schemars::JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EngineMode {
    /// In-process DataFusion (the default; no setup).
    #[default]
    Embedded,
    /// A Ballista cluster reached through `scheduler`.
    Ballista,
}

impl std::fmt::Display for EngineMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineMode::Embedded => "embedded",
            EngineMode::Ballista => "ballista",
        })
    }
}

/// Engine settings (the `engine:` block of a pipeline config).
#[derive(schemars::JsonSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// `embedded` (default) or `ballista`.
    #[serde(default)]
    pub mode: EngineMode,
    /// Ballista scheduler URL (`df://host:50050`), required in `ballista`
    /// mode (`sluice run --scheduler` overrides it).
    #[serde(default)]
    pub scheduler: Option<String>,
    /// Partitions per query (default: the number of cores).
    #[serde(default)]
    pub target_partitions: Option<usize>,
    /// Memory limit of the embedded engine, e.g. `8GiB` or `512MiB`
    /// (operators spill to disk past it).
    #[serde(default)]
    pub memory_limit: Option<String>,
    /// Rows per Arrow record batch (default 8192).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Any DataFusion setting by its full key, e.g.
    /// `datafusion.optimizer.prefer_hash_join: "false"` (sort-merge joins,
    /// which spill, for joins whose build sides exceed `memory_limit`; hash
    /// joins cannot spill). An unknown key fails naming
    /// `engine.options.<key>`. Sluice sets
    /// `datafusion.execution.parquet.compression` to `lz4_raw` (readable by
    /// Spark 3.4+, pyarrow, DuckDB, Polars); set it here to e.g. `zstd(3)`
    /// or `snappy` for other readers.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub options: std::collections::BTreeMap<String, String>,
    /// `ballista` mode: a cluster job that makes no progress (no stage
    /// finishes, its status does not change) for this many seconds is
    /// cancelled on the scheduler and fails with an error naming the job,
    /// its stages and the executors lost (at least 1; docs/DISTRIBUTED.md,
    /// "Fault tolerance").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_WATCHDOG_SECONDS))]
    pub watchdog_seconds: Option<u64>,
    /// `ballista` mode: how often a step (and a distributed training pass)
    /// whose cluster job failed because executors or the scheduler were
    /// lost, or was cancelled by the watchdog, is run again. Retries are
    /// logged and listed in the run outcome (`steps[].attempts`,
    /// `steps[].retries`).
    #[serde(default, skip_serializing_if = "RetrySettings::is_default")]
    pub retry: RetrySettings,
    /// `ballista` mode: Ballista's adaptive planner (AQE). Off by default:
    /// the static execution graph recovers from lost executors
    /// (docs/DISTRIBUTED.md, "Fault tolerance").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adaptive_planner: bool,
}

/// Default of `engine.watchdog_seconds`.
pub const DEFAULT_WATCHDOG_SECONDS: u64 = 600;

impl EngineSettings {
    /// The progress watchdog's bound (`engine.watchdog_seconds`).
    pub fn watchdog(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.watchdog_seconds
                .unwrap_or(DEFAULT_WATCHDOG_SECONDS)
                .max(1),
        )
    }
}

/// Retries of work lost with a cluster process (`engine.retry`).
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Attempts in all (1 = no retry; default 3).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Seconds before the first retry; each further retry waits twice as
    /// long (default 5).
    #[serde(default = "default_backoff")]
    pub backoff_seconds: f64,
}

fn default_attempts() -> u32 {
    3
}

fn default_backoff() -> f64 {
    5.0
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            backoff_seconds: default_backoff(),
        }
    }
}

impl RetrySettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// One attempt, no retry.
    pub fn once() -> Self {
        RetrySettings {
            attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before attempt `attempt` (2, 3, ...): `backoff × 2^(attempt-2)`.
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        let exp = attempt.saturating_sub(2).min(16) as i32;
        std::time::Duration::from_secs_f64((self.backoff_seconds.max(0.0)) * 2f64.powi(exp))
    }

    /// Checks the values (`engine.retry.*`).
    pub fn validate(&self) -> Result<()> {
        if self.attempts == 0 {
            return Err(EngineError::config(
                "engine.retry.attempts",
                "must be at least 1 (1 = no retry)",
            ));
        }
        if !self.backoff_seconds.is_finite() || self.backoff_seconds < 0.0 {
            return Err(EngineError::config(
                "engine.retry.backoff_seconds",
                format!("`{}` is not a number of seconds >= 0", self.backoff_seconds),
            ));
        }
        Ok(())
    }
}

/// Parses `8GiB`, `512MiB`, `1.5GB`, `1000000` into bytes.
pub fn parse_bytes(s: &str) -> Result<usize> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.trim().parse().map_err(|_| {
        EngineError::config(
            "engine.memory_limit",
            format!("`{s}` is not a size; expected e.g. `8GiB`, `512MiB`"),
        )
    })?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(EngineError::config(
                "engine.memory_limit",
                format!("unknown unit `{other}` in `{s}`; use B, KiB, MiB or GiB"),
            ))
        }
    };
    Ok((n * mult) as usize)
}

/// The executors' training cache (the binned batches and margins
/// distributed training keeps between level passes, spilled to the work
/// dir past its memory): its settings, and how a process sets them.
pub mod training_cache {
    pub use sluice_ml::distributed::resident::{configure, CacheSettings};
}

// ---------------------------------------------------------------------------
// The one function list
// ---------------------------------------------------------------------------

/// Every Sluice scalar UDF: the feature functions of `sluice_transforms`
/// and the binning function of `sluice_ml::distributed`.
pub fn sluice_scalar_udfs() -> Vec<Arc<ScalarUDF>> {
    let mut v: Vec<Arc<ScalarUDF>> = sluice_transforms::scalar_udfs()
        .into_iter()
        .map(Arc::new)
        .collect();
    v.extend(sluice_ml::distributed::scalar_udfs());
    v.push(Arc::new(crate::predict::predict_udf()));
    v.push(Arc::new(crate::explain::explain_udf()));
    v.push(Arc::new(crate::bounds::value_bounds_udf()));
    v
}

/// Every Sluice aggregate UDF: the distributed-training aggregates from
/// `sluice_ml::distributed` and ingestion's key-order check.
pub fn sluice_aggregate_udfs() -> Vec<Arc<AggregateUDF>> {
    let mut v = sluice_ml::distributed::aggregate_udfs();
    v.push(Arc::new(crate::ordered::keys_ordered_udaf()));
    v.push(Arc::new(sluice_ml::drift::profile_udaf()));
    v
}

/// Every Sluice window UDF (`sluice_shift` from `sluice_transforms`).
pub fn sluice_window_udfs() -> Vec<Arc<WindowUDF>> {
    sluice_transforms::window_udfs()
        .into_iter()
        .map(Arc::new)
        .collect()
}

/// Registers every Sluice function (the one list) on a state builder, on top
/// of whatever functions the builder already has (DataFusion's defaults when
/// `with_default_features` was called first).
pub fn with_sluice_functions(mut builder: SessionStateBuilder) -> SessionStateBuilder {
    builder
        .scalar_functions()
        .get_or_insert_with(Vec::new)
        .extend(sluice_scalar_udfs());
    builder
        .aggregate_functions()
        .get_or_insert_with(Vec::new)
        .extend(sluice_aggregate_udfs());
    builder
        .window_functions()
        .get_or_insert_with(Vec::new)
        .extend(sluice_window_udfs());
    builder
}

/// Registers every Sluice function on an existing context (used after
/// Ballista's client upgrade, which resets the function lists to Ballista's
/// defaults).
pub fn register_sluice_functions(ctx: &SessionContext) {
    for f in sluice_scalar_udfs() {
        ctx.register_udf(f.as_ref().clone());
    }
    for f in sluice_aggregate_udfs() {
        ctx.register_udaf(f.as_ref().clone());
    }
    for f in sluice_window_udfs() {
        ctx.register_udwf(f.as_ref().clone());
    }
}

/// The function registry an executor decodes task plans with: DataFusion's
/// and Ballista's defaults plus every Sluice function.
pub fn function_registry() -> BallistaFunctionRegistry {
    let mut reg = BallistaFunctionRegistry::default();
    for f in sluice_scalar_udfs() {
        for alias in std::iter::once(f.name().to_string()).chain(f.aliases().iter().cloned()) {
            reg.scalar_functions.insert(alias, Arc::clone(&f));
        }
    }
    for f in sluice_aggregate_udfs() {
        for alias in std::iter::once(f.name().to_string()).chain(f.aliases().iter().cloned()) {
            reg.aggregate_functions.insert(alias, Arc::clone(&f));
        }
    }
    for f in sluice_window_udfs() {
        for alias in std::iter::once(f.name().to_string()).chain(f.aliases().iter().cloned()) {
            reg.window_functions.insert(alias, Arc::clone(&f));
        }
    }
    reg
}

// ---------------------------------------------------------------------------
// Object stores
// ---------------------------------------------------------------------------

/// An object-store registry that knows local files and creates the store for
/// any cloud URL on first use, from the URL and the process environment
/// (`AZURE_*`, `AWS_*`, `GOOGLE_*`; workload identity). Stores are cached per
/// scheme, container/user and host, so `abfss://a@acct...` and
/// `abfss://b@acct...` get separate stores.
///
/// Installed on every process: the embedded engine, the Ballista client, the
/// scheduler (through its session builder) and every executor (through its
/// runtime producer).
#[derive(Debug)]
pub struct LakeStoreRegistry {
    local: Arc<dyn ObjectStore>,
    stores: RwLock<Vec<(String, Arc<dyn ObjectStore>)>>,
    env: Vec<(String, String)>,
}

impl Default for LakeStoreRegistry {
    fn default() -> Self {
        Self::from_env()
    }
}

impl LakeStoreRegistry {
    /// A registry whose stores read their options from the current process
    /// environment.
    pub fn from_env() -> Self {
        Self::with_options(std::env::vars().collect())
    }

    /// A registry whose stores are built with exactly these options (keys as
    /// `object_store::parse_url_opts` accepts them, e.g.
    /// `AZURE_STORAGE_ACCOUNT_NAME`).
    pub fn with_options(env: Vec<(String, String)>) -> Self {
        Self {
            local: Arc::new(LocalFileSystem::new()),
            stores: RwLock::new(Vec::new()),
            env,
        }
    }

    /// The cache key of a URL: scheme, user info (the Azure container in
    /// `abfss://container@account...`), host and port.
    fn key(url: &Url) -> String {
        let user = url.username();
        let host = url.host_str().unwrap_or("");
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        if user.is_empty() {
            format!("{}://{host}{port}", url.scheme())
        } else {
            format!("{}://{user}@{host}{port}", url.scheme())
        }
    }

    fn lookup(&self, key: &str) -> Option<Arc<dyn ObjectStore>> {
        let stores = self.stores.read().unwrap_or_else(|p| p.into_inner());
        stores
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| Arc::clone(s))
    }

    fn insert(&self, key: String, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        let mut stores = self.stores.write().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = stores.iter_mut().find(|(k, _)| *k == key) {
            return Some(std::mem::replace(&mut slot.1, store));
        }
        stores.push((key, store));
        None
    }

    /// Builds the store for `url` from the URL and the options.
    fn build(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let mut root = url.clone();
        root.set_path("/");
        root.set_query(None);
        root.set_fragment(None);
        let (store, _) = object_store::parse_url_opts(&root, self.env.clone()).map_err(|e| {
            DataFusionError::External(Box::new(EngineError::lake(
                redact(&root),
                format!(
                    "cannot create the object store ({e}); check the URL form and the credentials in this process's environment"
                ),
            )))
        })?;
        Ok(Arc::from(store))
    }
}

impl ObjectStoreRegistry for LakeStoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.insert(Self::key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let key = Self::key(url);
        let mut stores = self.stores.write().unwrap_or_else(|p| p.into_inner());
        match stores.iter().position(|(k, _)| *k == key) {
            Some(i) => Ok(stores.remove(i).1),
            None => Err(DataFusionError::Execution(format!(
                "no object store registered for {}",
                redact(url)
            ))),
        }
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let key = Self::key(url);
        if let Some(s) = self.lookup(&key) {
            return Ok(s);
        }
        match url.scheme() {
            "" | "file" => Ok(Arc::clone(&self.local)),
            "az" | "azure" | "abfs" | "abfss" | "adl" | "s3" | "s3a" | "gs" | "http" | "https" => {
                let store = self.build(url)?;
                // Another task may have raced us; keep the first one.
                if let Some(existing) = self.lookup(&key) {
                    return Ok(existing);
                }
                self.insert(key, Arc::clone(&store));
                Ok(store)
            }
            other => Err(DataFusionError::Execution(format!(
                "no object store for scheme `{other}` in {}; Sluice supports file, az, abfss, s3, gs and http(s) URLs",
                redact(url)
            ))),
        }
    }
}

// ---------------------------------------------------------------------------
// Session state
// ---------------------------------------------------------------------------

/// Parquet compression of everything Sluice writes unless
/// `engine.options` sets `datafusion.execution.parquet.compression`.
pub const PARQUET_COMPRESSION: &str = "lz4_raw";

/// The session config shared by every process.
pub fn session_config(settings: &EngineSettings) -> Result<SessionConfig> {
    let mut cfg = SessionConfig::new()
        .with_information_schema(true)
        .with_batch_size(settings.batch_size.unwrap_or(8192));
    if let Some(p) = settings.target_partitions {
        cfg = cfg.with_target_partitions(p.max(1));
    }
    // Lake outputs are intermediates read back within minutes: LZ4 (raw)
    // writes about 10 % faster than DataFusion's default zstd(3) on the
    // unified table (docs/PERFORMANCE.md). `engine.options` overrides it.
    cfg.options_mut().execution.parquet.compression = Some(PARQUET_COMPRESSION.into());
    for (key, value) in &settings.options {
        cfg.options_mut()
            .set(key, value)
            .map_err(|e| EngineError::config(format!("engine.options.{key}"), e.to_string()))?;
    }
    Ok(cfg)
}

/// A runtime environment with the [`LakeStoreRegistry`], an optional memory
/// limit (operators spill past it) and an optional spill directory.
pub fn runtime_env(
    memory_limit: Option<usize>,
    temp_dir: Option<PathBuf>,
) -> Result<Arc<RuntimeEnv>> {
    let mut rt = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(LakeStoreRegistry::from_env()));
    if let Some(limit) = memory_limit {
        rt = rt.with_memory_limit(limit, 1.0);
    }
    if let Some(dir) = temp_dir {
        rt = rt.with_temp_file_path(dir);
    }
    Ok(Arc::new(rt.build()?))
}

/// Builds a session state from a config and a runtime: DataFusion's default
/// features plus every Sluice function.
pub fn state_from_parts(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionState {
    let builder = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features();
    with_sluice_functions(builder).build()
}

/// Builds the session state with Sluice's functions and, when a lake is
/// given, its object store.
pub fn session_state(settings: &EngineSettings, lake: Option<&Lake>) -> Result<SessionState> {
    let limit = settings
        .memory_limit
        .as_deref()
        .map(parse_bytes)
        .transpose()?;
    let runtime = runtime_env(limit, None)?;
    if let Some(lake) = lake {
        if lake.url().scheme() != "file" {
            runtime.register_object_store(&lake.store_url(), lake.store());
        }
    }
    Ok(state_from_parts(session_config(settings)?, runtime))
}

// ---------------------------------------------------------------------------
// Ballista: client, scheduler and executor hooks
// ---------------------------------------------------------------------------

/// The base session config of the scheduler and executors: Ballista's
/// defaults (the Ballista config extension) plus Sluice's shared settings.
/// The client's own settings travel with every job and override these.
pub fn ballista_session_config() -> SessionConfig {
    SessionConfig::new_with_ballista().with_information_schema(true)
}

/// A [`ConfigProducer`] for the scheduler and executors.
pub fn ballista_config_producer() -> ConfigProducer {
    Arc::new(ballista_session_config)
}

/// The scheduler's session builder (Ballista's `override_session_builder`):
/// turns the session config a client sent into a state with every Sluice
/// function, Ballista's optimizer rules and the [`LakeStoreRegistry`], so the
/// scheduler can plan over `abfss://` tables and resolve Sluice UDFs.
pub fn scheduler_session_builder(config: SessionConfig) -> datafusion::error::Result<SessionState> {
    let runtime = runtime_env(None, None).map_err(DataFusionError::from)?;
    let builder = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules());
    Ok(with_sluice_functions(builder).build())
}

/// The executor's runtime producer (Ballista's `override_runtime_producer`):
/// a runtime with the [`LakeStoreRegistry`] and spill files under `work_dir`.
/// Ballista wraps it with the per-task memory pool (`--memory-limit`).
pub fn executor_runtime_producer(work_dir: Option<PathBuf>) -> RuntimeProducer {
    Arc::new(move |_config: &SessionConfig| {
        runtime_env(None, work_dir.clone()).map_err(DataFusionError::from)
    })
}

/// A session context for `settings`: embedded, or connected to Ballista.
///
/// In `ballista` mode the context plans locally and submits every query to the
/// scheduler at `settings.scheduler` (`df://host:port`); the scheduler and the
/// executors must be Sluice's own binaries so that they know the same
/// functions and object stores.
pub async fn connect(settings: &EngineSettings, lake: Option<&Lake>) -> Result<SessionContext> {
    let state = session_state(settings, lake)?;
    match settings.mode {
        EngineMode::Embedded => Ok(SessionContext::new_with_state(state)),
        EngineMode::Ballista => {
            let url = settings.scheduler.as_deref().ok_or_else(|| {
                EngineError::config(
                    "engine.scheduler",
                    "ballista mode needs a scheduler URL, e.g. `df://localhost:50050` (or --scheduler)",
                )
            })?;
            let parsed = Url::parse(url).map_err(|e| {
                EngineError::config(
                    "engine.scheduler",
                    format!("`{url}` is not a URL ({e}); expected e.g. `df://localhost:50050`"),
                )
            })?;
            let host = parsed.host_str().unwrap_or("");
            let port = parsed.port().unwrap_or(50050);
            probe_scheduler(host, port).await?;
            // Every job runs under the progress watchdog, with the planner
            // that recovers from lost executors (the static graph unless
            // `engine.adaptive_planner`).
            let config = state
                .config()
                .clone()
                .upgrade_for_ballista()
                .with_ballista_adaptive_query_planner(settings.adaptive_planner);
            let planner = crate::watchdog::WatchedPlanner::new(
                format!("http://{host}:{port}"),
                config.ballista_config(),
                crate::watchdog::WatchSettings {
                    scheduler: format!("{host}:{port}"),
                    stall: settings.watchdog(),
                },
            );
            let config = config.with_ballista_query_planner(Arc::new(planner));
            let state = SessionStateBuilder::new_from_existing(state)
                .with_config(config)
                .build();
            let ctx = SessionContext::remote_with_state(url, state)
                .await
                .map_err(|e| {
                    EngineError::cluster(
                        format!("{host}:{port}"),
                        format!("cannot open a Ballista session: {e}"),
                    )
                })?;
            // `remote_with_state` resets the function lists to Ballista's
            // defaults: put Sluice's back so the client can plan with them.
            register_sluice_functions(&ctx);
            if let Some(lake) = lake {
                lake.register(&ctx);
            }
            Ok(ctx)
        }
    }
}

/// Fails fast with a clear error when nothing listens at the scheduler's
/// address (Ballista's own client would only fail at the first query).
async fn probe_scheduler(host: &str, port: u16) -> Result<()> {
    let addr = format!("{host}:{port}");
    match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    {
        Ok(Ok(probe)) => {
            drop(probe);
            // Something listens: it must be a Ballista scheduler (its
            // `/readyz` reports the registered executors).
            match crate::watchdog::http_get(&addr, "/readyz").await {
                Some((_, body)) if body.contains("executors registered") => Ok(()),
                Some((code, body)) => Err(EngineError::cluster(
                    addr,
                    format!(
                        "the service there answers but is not a Ballista scheduler (GET /readyz: HTTP {code}, `{}`); check engine.scheduler / --scheduler",
                        body.trim().chars().take(80).collect::<String>()
                    ),
                )),
                None => Err(EngineError::cluster(
                    addr,
                    "the service there accepts connections but does not answer like a Ballista scheduler (no HTTP reply to GET /readyz); check engine.scheduler / --scheduler",
                )),
            }
        }
        Ok(Err(e)) => Err(EngineError::cluster(
            addr,
            format!(
                "cannot reach the Ballista scheduler ({e}); is it running (`sluice cluster up`)?"
            ),
        )),
        Err(_) => Err(EngineError::cluster(
            addr,
            "timed out connecting to the Ballista scheduler after 10 s",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datafusion_options_pass_through_and_unknown_keys_are_named() {
        let mut s = EngineSettings::default();
        s.options.insert(
            "datafusion.optimizer.prefer_hash_join".into(),
            "false".into(),
        );
        let cfg = session_config(&s).unwrap();
        assert!(!cfg.options().optimizer.prefer_hash_join);
        s.options.insert(
            "datafusion.optimizer.prefer_hash_jion".into(),
            "false".into(),
        );
        let e = session_config(&s).unwrap_err().to_string();
        assert!(
            e.contains("engine.options.datafusion.optimizer.prefer_hash_jion"),
            "{e}"
        );
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_bytes("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("lots")
            .unwrap_err()
            .to_string()
            .contains("engine.memory_limit"));
        assert!(parse_bytes("3 parsecs")
            .unwrap_err()
            .to_string()
            .contains("parsecs"));
    }

    #[tokio::test]
    async fn embedded_session_runs_sql() {
        let ctx = connect(&EngineSettings::default(), None).await.unwrap();
        let batches = ctx
            .sql("select 1 + 1 as x")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(batches[0].num_rows(), 1);
    }

    #[test]
    fn one_list_has_no_duplicate_names() {
        let mut names: Vec<String> = sluice_scalar_udfs()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        names.extend(sluice_aggregate_udfs().iter().map(|f| f.name().to_string()));
        names.extend(sluice_window_udfs().iter().map(|f| f.name().to_string()));
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(n, names.len(), "duplicate function names in the one list");
    }

    #[test]
    fn every_sluice_function_is_in_every_session() {
        let state = session_state(&EngineSettings::default(), None).unwrap();
        let sched = scheduler_session_builder(ballista_session_config()).unwrap();
        let reg = function_registry();
        for f in sluice_scalar_udfs() {
            assert!(
                state.scalar_functions().contains_key(f.name()),
                "{}",
                f.name()
            );
            assert!(
                sched.scalar_functions().contains_key(f.name()),
                "{}",
                f.name()
            );
            assert!(reg.scalar_functions.contains_key(f.name()), "{}", f.name());
        }
        for f in sluice_aggregate_udfs() {
            assert!(
                state.aggregate_functions().contains_key(f.name()),
                "{}",
                f.name()
            );
            assert!(
                sched.aggregate_functions().contains_key(f.name()),
                "{}",
                f.name()
            );
            assert!(
                reg.aggregate_functions.contains_key(f.name()),
                "{}",
                f.name()
            );
        }
        // DataFusion's own functions are still there.
        assert!(state.scalar_functions().contains_key("abs"));
        assert!(reg.scalar_functions.contains_key("abs"));
    }

    #[test]
    fn registry_builds_cloud_stores_lazily_and_keys_by_container() {
        let reg = LakeStoreRegistry::with_options(vec![
            ("azure_storage_account_name".into(), "acct".into()),
            ("azure_storage_account_key".into(), "a2V5".into()),
        ]);
        let a = Url::parse("abfss://one@acct.dfs.core.windows.net/lake/x.parquet").unwrap();
        let b = Url::parse("abfss://two@acct.dfs.core.windows.net/lake/").unwrap();
        let sa = reg.get_store(&a).unwrap();
        let sa2 = reg.get_store(&a).unwrap();
        let sb = reg.get_store(&b).unwrap();
        assert!(Arc::ptr_eq(&sa, &sa2), "stores are cached");
        assert!(!Arc::ptr_eq(&sa, &sb), "containers get separate stores");
        assert!(reg.get_store(&Url::parse("file:///tmp/x").unwrap()).is_ok());
        let e = reg
            .get_store(&Url::parse("ftp://h/x").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("ftp"), "{e}");
    }
}
