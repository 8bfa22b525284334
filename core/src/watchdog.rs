//! The progress watchdog of cluster jobs, and what counts as "work lost
//! with a cluster process" (the failures a step retries).
//!
//! In `ballista` mode every query the engine runs becomes one Ballista job:
//! Ballista's client planner wraps the plan in a `DistributedQueryExec`,
//! which submits it to the scheduler and waits for its status. Upstream
//! Ballista can leave such a job running forever (a stage orphaned by a
//! replan after an executor was lost, a job whose last executor died), and
//! the client then waits forever too. [`WatchedPlanner`] wraps Ballista's
//! planner (installed by [`crate::session::connect`]), so **every** job the
//! engine submits runs under a [`WatchedExec`]: while the job runs, the
//! watchdog asks the scheduler for the job's status and its completed stages
//! (`GetJobStatus`, `GetJobMetrics`) and for the number of registered
//! executors (`/readyz`). When neither the status nor the set of completed
//! stages changed for `engine.watchdog_seconds`, it cancels the job on the
//! scheduler (`CancelJob`) and fails the query with an error naming the job,
//! the stages done, the executors registered at submission and now, and
//! the scheduler. Errors of the job itself are returned with the same
//! facts attached.
//!
//! Progress is seen per stage (the scheduler's gRPC API reports completed
//! stages, not tasks), so the bound must exceed the longest stage of a
//! healthy job; the default ([`crate::session::DEFAULT_WATCHDOG_SECONDS`])
//! does for stages of tens of minutes of work per executor.
//!
//! [`is_cluster_loss`] tells the step runner and the distributed trainer
//! which failures are worth a retry: lost executors, a lost or restarted
//! scheduler, a job the watchdog cancelled. Plan and data errors are not.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use ballista_core::config::BallistaConfig;
use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::planner::BallistaQueryPlanner;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{
    job_status, CancelJobParams, GetJobMetricsParams, GetJobStatusParams,
};
use ballista_core::utils::{create_grpc_client_endpoint, GrpcClientConfig};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion_proto::protobuf::LogicalPlanNode;
use futures::{Future, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

use crate::session::RetrySettings;
use sluice_common::error::EngineError;

/// Ballista's client exec node, as Sluice's client builds it.
type ClientExec = DistributedQueryExec<LogicalPlanNode>;

/// What the watchdog needs to know about the cluster.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// The scheduler's `host:port` (gRPC and `/readyz`).
    pub scheduler: String,
    /// No progress for this long: cancel the job and fail.
    pub stall: Duration,
}

impl WatchSettings {
    /// How often the scheduler is asked: a tenth of the bound, 0.5–10 s.
    pub fn poll_interval(&self) -> Duration {
        (self.stall / 10).clamp(Duration::from_millis(500), Duration::from_secs(10))
    }
}

/// Ballista's client query planner with a [`WatchedExec`] around every job.
pub struct WatchedPlanner {
    inner: BallistaQueryPlanner<LogicalPlanNode>,
    watch: Arc<WatchSettings>,
}

impl fmt::Debug for WatchedPlanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchedPlanner")
            .field("watch", &self.watch)
            .finish()
    }
}

impl WatchedPlanner {
    /// A planner submitting jobs to `scheduler_url` (`http://host:port`).
    pub fn new(scheduler_url: String, config: BallistaConfig, watch: WatchSettings) -> Self {
        Self {
            inner: BallistaQueryPlanner::new(scheduler_url, config),
            watch: Arc::new(watch),
        }
    }
}

#[async_trait::async_trait]
impl QueryPlanner for WatchedPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = self
            .inner
            .create_physical_plan(logical_plan, session)
            .await?;
        if plan.downcast_ref::<ClientExec>().is_some() {
            Ok(Arc::new(WatchedExec {
                inner: plan,
                watch: Arc::clone(&self.watch),
            }))
        } else {
            Ok(plan)
        }
    }
}

/// A Ballista job under the progress watchdog (see the module docs).
#[derive(Debug)]
pub struct WatchedExec {
    inner: Arc<dyn ExecutionPlan>,
    watch: Arc<WatchSettings>,
}

impl WatchedExec {
    fn job_id(&self) -> Option<String> {
        self.inner
            .downcast_ref::<ClientExec>()
            .and_then(|e| e.job_id())
            .map(|j| j.to_string())
    }
}

impl DisplayAs for WatchedExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WatchedExec: watchdog={}s, ", self.watch.stall.as_secs())?;
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for WatchedExec {
    fn name(&self) -> &str {
        "WatchedExec"
    }

    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let stream = self.inner.execute(partition, context)?;
        let me = Arc::new(WatchedExec {
            inner: Arc::clone(&self.inner),
            watch: Arc::clone(&self.watch),
        });
        let verdict = Arc::new(std::sync::Mutex::new(None));
        let executors = Arc::new(Executors::default());
        let watch = Box::pin(watch_job(
            Arc::clone(&me),
            Arc::clone(&verdict),
            Arc::clone(&executors),
        ));
        let state = Guarded {
            executors,
            verdict,
            stream,
            watch: Some(watch),
            me,
            done: false,
        };
        let out = futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            let item = match st.watch.as_mut() {
                Some(w) => {
                    tokio::select! {
                        item = st.stream.next() => item,
                        err = w => {
                            st.done = true;
                            return Some((Err(err), st));
                        }
                    }
                }
                None => st.stream.next().await,
            };
            if st.watch.is_some() && !matches!(item, Some(Err(_))) {
                // The job succeeded (results flow only then): unless an
                // executor was lost while it ran.
                st.watch = None;
                if let Some(e) = st.me.lost_during(&st.executors).await {
                    st.done = true;
                    return Some((Err(e), st));
                }
            }
            match item {
                None => None,
                Some(Ok(b)) => Some((Ok(b), st)),
                Some(Err(e)) => {
                    st.done = true;
                    // The watchdog's cancel makes the job fail ("Cancelled"):
                    // report why it was cancelled.
                    let stalled = st.verdict.lock().map(|mut v| v.take()).ok().flatten();
                    let e = match stalled {
                        Some(msg) => cluster_error(&st.me.watch, msg),
                        None => st.me.annotate(e).await,
                    };
                    Some((Err(e), st))
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), out)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.inner.metrics()
    }
}

/// The executors the scheduler reported registered while a job ran: the
/// most seen, and whether the count ever fell below it.
#[derive(Debug, Default)]
struct Executors {
    most: std::sync::atomic::AtomicUsize,
    fell: std::sync::atomic::AtomicBool,
}

impl Executors {
    fn saw(&self, n: usize) {
        use std::sync::atomic::Ordering::SeqCst;
        let most = self.most.fetch_max(n, SeqCst).max(n);
        if n < most {
            self.fell.store(true, SeqCst);
        }
    }
}

struct Guarded {
    executors: Arc<Executors>,
    verdict: Arc<std::sync::Mutex<Option<String>>>,
    stream: SendableRecordBatchStream,
    watch: Option<Pin<Box<dyn Future<Output = DataFusionError> + Send>>>,
    me: Arc<WatchedExec>,
    done: bool,
}

impl WatchedExec {
    /// The error for a job that succeeded although an executor was lost
    /// while it ran; `None` when none was.
    ///
    /// Ballista 55 recovers a lost executor inside the job by re-running
    /// its tasks and rolling stages back, but a rolled-back running stage
    /// keeps the outputs its finished tasks already handed to the next
    /// stage, and its re-run hands them over again: the job can succeed
    /// with rows twice (seen in the chaos tests). Such a result is never
    /// used: the job fails with a retryable error, and the step (or the
    /// training pass) runs again as a fresh job on the executors left.
    async fn lost_during(&self, seen: &Executors) -> Option<DataFusionError> {
        use std::sync::atomic::Ordering::SeqCst;
        if let Some(n) = executors_registered(&self.watch.scheduler).await {
            seen.saw(n);
        }
        if !seen.fell.load(SeqCst) {
            return None;
        }
        let job = self.job_id().unwrap_or_else(|| "(unknown id)".into());
        let now = executors_registered(&self.watch.scheduler)
            .await
            .map_or_else(|| "?".to_string(), |n| n.to_string());
        let msg = format!(
            "cluster job {job}: an executor was lost while it ran (executors registered: up to {}, {now} at its end); \
             its result is discarded because Ballista's in-job recovery can duplicate rows, and the work runs again",
            seen.most.load(SeqCst)
        );
        warn!("{msg}");
        Some(cluster_error(&self.watch, msg))
    }

    /// A job error with the facts a user needs: the job, the scheduler and
    /// the executors registered now.
    async fn annotate(&self, e: DataFusionError) -> DataFusionError {
        if let Some(name) = unknown_function(&e.to_string()) {
            return cluster_error(
                &self.watch,
                format!(
                    "the Ballista cluster does not know the function `{name}`: its scheduler and \
                     executors run another Sluice version than this client; deploy the same \
                     version everywhere (the image tag, or rebuild sluice-scheduler and \
                     sluice-executor)"
                ),
            );
        }
        let job = self.job_id().unwrap_or_else(|| "(not accepted)".into());
        let executors = match executors_registered(&self.watch.scheduler).await {
            Some(n) => format!("{n} executor(s) registered now"),
            None => "the scheduler does not answer /readyz".into(),
        };
        DataFusionError::External(Box::new(EngineError::cluster(
            self.watch.scheduler.clone(),
            format!("cluster job {job} failed ({executors}): {e}"),
        )))
    }
}

/// The function a cluster failed to resolve when it decoded a plan (a
/// scheduler or executor of another Sluice version): Ballista says
/// `LogicalExtensionCodec is not provided for scalar function <name>`.
pub fn unknown_function(message: &str) -> Option<String> {
    const UNKNOWN_FN: &str = "LogicalExtensionCodec is not provided for ";
    let rest = message.split(UNKNOWN_FN).nth(1)?;
    let (_, name) = rest.split_once(" function ")?;
    let name: String = name
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The state the watchdog compares between polls.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Progress {
    status: &'static str,
    stages_done: Vec<u32>,
}

/// Resolves (with the error to return) only when the job made no progress
/// for the bound; pends forever once the job has ended (its own stream
/// reports success or failure).
async fn watch_job(
    me: Arc<WatchedExec>,
    verdict: Arc<std::sync::Mutex<Option<String>>>,
    executors: Arc<Executors>,
) -> DataFusionError {
    let watch = Arc::clone(&me.watch);
    let poll = watch.poll_interval();
    let at_start = executors_registered(&watch.scheduler).await;
    if let Some(n) = at_start {
        executors.saw(n);
    }
    let url = format!("http://{}", watch.scheduler);
    let mut client: Option<SchedulerGrpcClient<tonic::transport::Channel>> = None;
    let mut last: Option<Progress> = None;
    let mut last_change = Instant::now();
    let mut last_error: Option<String> = None;
    loop {
        tokio::time::sleep(poll).await;
        if let Some(n) = executors_registered(&watch.scheduler).await {
            executors.saw(n);
        }
        let Some(job) = me.job_id() else {
            if last_change.elapsed() >= watch.stall {
                let msg = stalled(&watch, None, last.as_ref(), at_start, last_error).await;
                return cluster_error(&watch, msg);
            }
            continue;
        };
        if client.is_none() {
            let endpoint = create_grpc_client_endpoint(url.clone(), Some(&grpc_config(poll)));
            match endpoint {
                Ok(ep) => match tokio::time::timeout(poll * 2, ep.connect()).await {
                    Ok(Ok(ch)) => client = Some(SchedulerGrpcClient::new(ch)),
                    Ok(Err(e)) => last_error = Some(format!("cannot connect: {e}")),
                    Err(_) => last_error = Some("connect timed out".into()),
                },
                Err(e) => last_error = Some(format!("bad endpoint: {e}")),
            }
        }
        if let Some(c) = client.as_mut() {
            match tokio::time::timeout(poll * 2, progress(c, &job)).await {
                Ok(Ok(Some(p))) => {
                    if p.status == "successful" || p.status == "failed" {
                        // The job's own stream reports the outcome.
                        return std::future::pending().await;
                    }
                    if last.as_ref() != Some(&p) {
                        last = Some(p);
                        last_change = Instant::now();
                    }
                    last_error = None;
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    last_error = Some(e);
                    client = None;
                }
                Err(_) => {
                    last_error = Some("the scheduler did not answer in time".into());
                    client = None;
                }
            }
        }
        if last_change.elapsed() >= watch.stall {
            let msg = stalled(&watch, Some(&job), last.as_ref(), at_start, last_error).await;
            if let Ok(mut v) = verdict.lock() {
                *v = Some(msg.clone());
            }
            if let Some(c) = client.as_mut() {
                let cancelled = tokio::time::timeout(
                    poll * 2,
                    c.cancel_job(CancelJobParams {
                        job_id: job.clone(),
                    }),
                )
                .await;
                match cancelled {
                    Ok(Ok(r)) => {
                        info!(job = %job, cancelled = r.into_inner().cancelled, "watchdog cancelled a stalled cluster job")
                    }
                    Ok(Err(e)) => {
                        warn!(job = %job, error = %e, "watchdog could not cancel a stalled cluster job")
                    }
                    Err(_) => {
                        warn!(job = %job, "watchdog: the scheduler did not answer the cancel request")
                    }
                }
            }
            return cluster_error(&watch, msg);
        }
    }
}

fn grpc_config(poll: Duration) -> GrpcClientConfig {
    let secs = poll.as_secs().clamp(1, 10) * 2;
    GrpcClientConfig {
        connect_timeout_seconds: secs,
        timeout_seconds: secs,
        ..GrpcClientConfig::default()
    }
}

/// The job's status and completed stages; `None` while the scheduler does
/// not know the job yet.
async fn progress(
    client: &mut SchedulerGrpcClient<tonic::transport::Channel>,
    job: &str,
) -> std::result::Result<Option<Progress>, String> {
    let status = client
        .get_job_status(GetJobStatusParams {
            job_id: job.to_string(),
        })
        .await
        .map_err(|e| format!("GetJobStatus: {}", e.message()))?
        .into_inner();
    let Some(status) = status.status.and_then(|s| s.status) else {
        return Ok(None);
    };
    let status = match status {
        job_status::Status::Queued(_) => "queued",
        job_status::Status::Running(_) => "running",
        job_status::Status::Failed(_) => "failed",
        job_status::Status::Successful(_) => "successful",
    };
    let mut stages_done = Vec::new();
    if status == "running" {
        if let Ok(m) = client
            .get_job_metrics(GetJobMetricsParams {
                job_id: job.to_string(),
            })
            .await
        {
            stages_done = m.into_inner().stages.iter().map(|s| s.stage_id).collect();
            stages_done.sort_unstable();
        }
    }
    Ok(Some(Progress {
        status,
        stages_done,
    }))
}

async fn stalled(
    watch: &WatchSettings,
    job: Option<&str>,
    last: Option<&Progress>,
    at_start: Option<usize>,
    last_error: Option<String>,
) -> String {
    let now = executors_registered(&watch.scheduler).await;
    let executors = match (at_start, now) {
        (Some(a), Some(0)) => {
            format!("executors registered: {a} at submission, none now (every executor was lost)")
        }
        (Some(a), Some(n)) if n < a => format!(
            "executors registered: {a} at submission, {n} now ({} lost)",
            a - n
        ),
        (Some(a), Some(n)) => format!("executors registered: {a} at submission, {n} now"),
        (_, None) => "the scheduler does not answer /readyz".to_string(),
        (None, Some(n)) => format!("executors registered now: {n}"),
    };
    let stages = match last {
        Some(p) if p.stages_done.is_empty() => format!("{}, no stage completed", p.status),
        Some(p) => format!(
            "{}, stages completed: {}; stuck in the stage after them",
            p.status,
            p.stages_done
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "status never seen".to_string(),
    };
    let job = job.map_or_else(
        || {
            "a cluster job whose id the scheduler never reported (still being planned or queued)"
                .to_string()
        },
        |j| format!("cluster job {j}"),
    );
    let scheduler_note = last_error
        .map(|e| format!("; last scheduler error: {e}"))
        .unwrap_or_default();
    let msg = format!(
        "{job} made no progress for {} s (engine.watchdog_seconds) and was cancelled: {stages}; {executors}{scheduler_note}",
        watch.stall.as_secs()
    );
    warn!("{msg}");
    msg
}

fn cluster_error(watch: &WatchSettings, msg: String) -> DataFusionError {
    DataFusionError::External(Box::new(EngineError::cluster(watch.scheduler.clone(), msg)))
}

/// The number of executors the scheduler at `host:port` reports registered
/// (its `/readyz` body: `ready: N executors registered` or `not ready:
/// N/M executors registered`); `None` when it does not answer like a
/// Ballista scheduler.
pub async fn executors_registered(scheduler: &str) -> Option<usize> {
    let (code, body) = http_get(scheduler, "/readyz").await?;
    if code != 200 && code != 503 {
        return None;
    }
    parse_readyz(&body)
}

fn parse_readyz(body: &str) -> Option<usize> {
    let line = body.lines().find(|l| l.contains("executors registered"))?;
    let count = line
        .split(':')
        .nth(1)?
        .split_whitespace()
        .next()?
        .split('/')
        .next()?;
    count.parse().ok()
}

/// `GET http://<host:port><path>`: status code and body (2 s timeouts).
pub async fn http_get(hostport: &str, path: &str) -> Option<(u16, String)> {
    let t = Duration::from_secs(2);
    let mut s = tokio::time::timeout(t, tokio::net::TcpStream::connect(hostport))
        .await
        .ok()?
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
    tokio::time::timeout(t, s.write_all(req.as_bytes()))
        .await
        .ok()?
        .ok()?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(t, s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .strip_prefix("HTTP/1.")?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Some((code, body.to_string()))
}

/// One lost attempt of work that [`retry_lost`] ran again.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// What was run (`stats`, `pass 3 (tree 1 level 2)`, `step train`).
    pub what: String,
    /// The attempt that failed (1-based).
    pub attempt: u32,
    /// Its error.
    pub error: String,
    /// Seconds waited before the next attempt.
    pub backoff_seconds: f64,
}

impl fmt::Display for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.error)
    }
}

/// Runs `work(attempt)` until it succeeds, fails for another reason than a
/// lost cluster process ([`is_cluster_loss`]), or used `retry.attempts`
/// attempts; waits `retry.backoff` between attempts, logs each lost one and
/// adds it to `log`. The distributed trainer runs each query through it;
/// the pipeline runs whole steps through it.
pub async fn retry_lost<T, F, Fut>(
    retry: &RetrySettings,
    what: &str,
    log: &mut Vec<Retry>,
    mut work: F,
) -> sluice_common::error::Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = sluice_common::error::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match work(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < retry.attempts && is_cluster_loss(&e.to_string()) => {
                let wait = retry.backoff(attempt + 1);
                warn!(what, attempt, of = retry.attempts, backoff_seconds = wait.as_secs_f64(), error = %e,
                    "work lost with a cluster process; running it again");
                log.push(Retry {
                    what: what.to_string(),
                    attempt,
                    error: e.to_string(),
                    backoff_seconds: wait.as_secs_f64(),
                });
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether an error means work was lost with a cluster process (an
/// executor or the scheduler died, was evicted or restarted, or the
/// watchdog cancelled a stalled job), so running the work again can
/// succeed. Plan, data and configuration errors are not.
pub fn is_cluster_loss(message: &str) -> bool {
    const LOST: [&str; 20] = [
        "made no progress for",
        "executors were lost",
        "executor lost",
        "executorlost",
        "was lost",
        "fetchpartition",
        "fetch partition",
        "failed to fetch",
        "error fetching",
        "h2 protocol error",
        "broken pipe",
        "connection refused",
        "transport error",
        "connection reset",
        "stream closed without job completing",
        "tcp connect error",
        "error getting status for job",
        "lost the ballista scheduler",
        "status: unavailable",
        "cannot reach the ballista scheduler",
    ];
    let lower = message.to_ascii_lowercase();
    LOST.iter().any(|p| lower.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_bodies_parse() {
        assert_eq!(parse_readyz("ready: 2 executors registered\n"), Some(2));
        assert_eq!(
            parse_readyz("not ready: 0/2 executors registered\n"),
            Some(0)
        );
        assert_eq!(parse_readyz("<html>hello</html>"), None);
    }

    #[test]
    fn lost_processes_are_retryable_and_plan_errors_are_not() {
        assert!(is_cluster_loss(
            "cluster job abc made no progress for 30 s (engine.watchdog_seconds)"
        ));
        assert!(is_cluster_loss(
            "Job x failed: all executors were lost and no executor re-registered within 10s"
        ));
        assert!(is_cluster_loss(
            "Execution error: h2 protocol error: broken"
        ));
        assert!(!is_cluster_loss("Schema error: No field named foo"));
        assert!(!is_cluster_loss("data error in raw/wifi: bad row"));
    }

    #[test]
    fn an_unknown_function_is_found_in_ballistas_words() {
        assert_eq!(
            unknown_function(
                "status: Internal, message: \"LogicalExtensionCodec is not provided for scalar function sluice_new\""
            ),
            Some("sluice_new".to_string())
        );
        assert_eq!(unknown_function("Schema error: No field named foo"), None);
    }

    #[test]
    fn a_fall_in_the_executor_count_is_remembered() {
        use std::sync::atomic::Ordering::SeqCst;
        let e = Executors::default();
        e.saw(2);
        e.saw(3);
        assert!(!e.fell.load(SeqCst));
        // A replacement registered, then the lost one was removed.
        e.saw(2);
        e.saw(3);
        assert!(e.fell.load(SeqCst));
        assert_eq!(e.most.load(SeqCst), 3);
    }

    #[test]
    fn poll_interval_is_bounded() {
        let w = |s| WatchSettings {
            scheduler: "h:1".into(),
            stall: Duration::from_secs(s),
        };
        assert_eq!(w(600).poll_interval(), Duration::from_secs(10));
        assert_eq!(w(20).poll_interval(), Duration::from_secs(2));
        assert_eq!(w(1).poll_interval(), Duration::from_millis(500));
    }
}
