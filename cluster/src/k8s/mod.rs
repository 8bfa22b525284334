//! Kubernetes client: `sluice submit`, `sluice scale executors` and `sluice status`.
//!
//! * [`submit`] renders the pipeline ConfigMap + Job from the chart's own
//!   template ([`template`], `helm/sluice/files/pipeline-job.yaml`), creates
//!   them, streams the driver pod's logs, waits for the Job and returns its
//!   outcome ([`JobOutcome::exit_code`] is the CLI's exit code).
//! * [`scale_executors`] patches the `<release>-executor` Deployment's scale
//!   subresource: the chart's one scale knob.
//! * [`status`] reports the scheduler and executor Deployments and the recent
//!   pipeline Jobs of a release.
//!
//! Every call goes through [`connect`], which turns a missing kubeconfig or an
//! unreachable API server into a [`K8sError`] that says what to check. The
//! clap front ends live in the `sluice` binary crate (`cli/src/k8s.rs`). No real cluster exists in the test
//! environment: `cluster/tests/k8s_api.rs` runs these calls against a local
//! HTTP server that speaks the few endpoints used.
//!
//! To add a command: write an `async fn(&Client, &Options)` here (testable
//! against the fake API server), a thin wrapper that calls [`connect`], and a
//! clap `Args` struct plus `run_*` entry in `cli/src/k8s.rs`.

mod error;
pub mod template;

use std::path::PathBuf;
use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;
use std::io::Write;

pub use error::K8sError;
use template::{dns_label_from, ChartDefaults, JobInput, RenderedJob, JOB_NAME_LABEL};

/// How to find the cluster.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Kubeconfig file; default: `KUBECONFIG`, `~/.kube/config`, then in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// Context inside the kubeconfig; default: its current context.
    pub context: Option<String>,
}

/// A connected client and the namespace of the kubeconfig context.
#[derive(Clone)]
pub struct Connection {
    /// The kube-rs client.
    pub client: Client,
    /// Namespace of the current context (`default` if none).
    pub default_namespace: String,
}

/// Loads the kubeconfig and checks that the API server answers (`GET /version`).
pub async fn connect(opts: &ConnectOptions) -> Result<Connection, K8sError> {
    let config = match &opts.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| K8sError::Kubeconfig {
                path: Some(path.clone()),
                detail: e.to_string(),
            })?;
            let options = KubeConfigOptions {
                context: opts.context.clone(),
                ..Default::default()
            };
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| K8sError::Kubeconfig {
                    path: Some(path.clone()),
                    detail: e.to_string(),
                })?
        }
        None if opts.context.is_some() => {
            let options = KubeConfigOptions {
                context: opts.context.clone(),
                ..Default::default()
            };
            Config::from_kubeconfig(&options)
                .await
                .map_err(|e| K8sError::Kubeconfig {
                    path: None,
                    detail: e.to_string(),
                })?
        }
        None => Config::infer().await.map_err(|e| K8sError::Kubeconfig {
            path: None,
            detail: e.to_string(),
        })?,
    };
    let url = config.cluster_url.to_string();
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| K8sError::Unreachable {
        url: url.clone(),
        detail: e.to_string(),
    })?;
    client.apiserver_version().await.map_err(|e| match e {
        kube::Error::Api(status) if status.reason == "Unauthorized" || status.code == 401 => {
            K8sError::Kubeconfig {
                path: opts.kubeconfig.clone(),
                detail: format!(
                    "the API server at {url} rejected the credentials ({})",
                    status.message
                ),
            }
        }
        other => K8sError::Unreachable {
            url: url.clone(),
            detail: other.to_string(),
        },
    })?;
    Ok(Connection {
        client,
        default_namespace,
    })
}

/// What `sluice submit` does.
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    /// The pipeline config (YAML) to run; stored in the Job's ConfigMap.
    pub config_path: PathBuf,
    /// Namespace; default: the kubeconfig context's.
    pub namespace: Option<String>,
    /// Helm release whose scheduler and ServiceAccount the Job uses.
    pub release: String,
    /// Image; default: the chart's `image` values.
    pub image: Option<String>,
    /// Steps to run (empty: the whole pipeline).
    pub steps: Vec<String>,
    /// Extra `sluice run` arguments (e.g. `--model gbt`).
    pub extra_args: Vec<String>,
    /// Job name; default `<release>-<pipeline>-<UTC timestamp>`.
    pub name: Option<String>,
    /// `sluice run --run-id` of the driver; default: the Job name. Every pod
    /// the Job retries continues this run instead of starting a new one.
    pub run_id: Option<String>,
    /// Lake URL (`SLUICE_LAKE` in the pod; the shipped cluster configs use
    /// `lake: ${SLUICE_LAKE}`); default: the chart's `lake.url`.
    pub lake: Option<String>,
    /// Extra environment of the driver (`KEY=VALUE`), after the chart's `extraEnv`.
    pub env: Vec<(String, String)>,
    /// Lake storage account (`AZURE_STORAGE_ACCOUNT_NAME` in the pod).
    pub storage_account: Option<String>,
    /// Label the pod for Azure workload identity.
    pub workload_identity: bool,
    /// Secret holding `AZURE_STORAGE_ACCOUNT_KEY` (key `azure-storage-account-key`).
    pub storage_key_secret: Option<String>,
    /// Wait for the Job to finish, streaming its logs.
    pub wait: bool,
    /// Give up waiting after this long (the Job keeps running).
    pub timeout: Option<Duration>,
    /// Interval between Job status polls.
    pub poll_interval: Duration,
    /// How to reach the cluster.
    pub connect: ConnectOptions,
}

impl SubmitOptions {
    /// Options for `config_path` with every other setting at its default.
    pub fn new(config_path: impl Into<PathBuf>) -> Self {
        SubmitOptions {
            config_path: config_path.into(),
            namespace: None,
            release: "sluice".into(),
            image: None,
            steps: Vec::new(),
            extra_args: Vec::new(),
            name: None,
            run_id: None,
            lake: None,
            env: Vec::new(),
            storage_account: None,
            workload_identity: false,
            storage_key_secret: None,
            wait: false,
            timeout: None,
            poll_interval: Duration::from_secs(2),
            connect: ConnectOptions::default(),
        }
    }
}

/// How a submitted Job ended (or that it was only submitted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Created; not waited for.
    Submitted {
        /// Namespace of the Job.
        namespace: String,
        /// The Job.
        job: String,
    },
    /// The Job completed.
    Succeeded {
        /// Namespace of the Job.
        namespace: String,
        /// The Job.
        job: String,
    },
    /// The Job failed (its pods exhausted the backoff limit or the deadline passed).
    Failed {
        /// Namespace of the Job.
        namespace: String,
        /// The Job.
        job: String,
        /// Kubernetes' reason and message of the `Failed` condition.
        reason: String,
    },
}

impl JobOutcome {
    /// The process exit code for this outcome (0 submitted/succeeded, 1 failed).
    pub fn exit_code(&self) -> i32 {
        match self {
            JobOutcome::Failed { .. } => 1,
            _ => 0,
        }
    }
}

impl std::fmt::Display for JobOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobOutcome::Submitted { namespace, job } => {
                write!(f, "job/{job} submitted in namespace {namespace} (follow: kubectl -n {namespace} logs -f job/{job})")
            }
            JobOutcome::Succeeded { namespace, job } => {
                write!(f, "job/{job} in namespace {namespace} succeeded")
            }
            JobOutcome::Failed {
                namespace,
                job,
                reason,
            } => {
                write!(f, "job/{job} in namespace {namespace} failed: {reason}")
            }
        }
    }
}

/// Keys that must never reach a ConfigMap in clear text.
const SECRET_KEYS: [&str; 6] = [
    "account_key",
    "access_key",
    "secret",
    "password",
    "sas_token",
    "client_secret",
];

fn find_secret_key(value: &serde_yaml::Value, path: &str) -> Option<String> {
    match value {
        serde_yaml::Value::Mapping(map) => map.iter().find_map(|(k, v)| {
            let key = k.as_str().unwrap_or_default();
            let here = if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            };
            let lower = key.to_ascii_lowercase();
            let has_value = matches!(v, serde_yaml::Value::String(s) if !s.is_empty());
            if has_value && SECRET_KEYS.iter().any(|s| lower.contains(s)) {
                Some(here)
            } else {
                find_secret_key(v, &here)
            }
        }),
        serde_yaml::Value::Sequence(items) => items.iter().find_map(|v| find_secret_key(v, path)),
        _ => None,
    }
}

/// Renders the ConfigMap and Job for `opts` (what `submit` creates, and what
/// `submit --dry-run` prints), reading the config file and the chart defaults.
pub fn render_submission(opts: &SubmitOptions, namespace: &str) -> Result<RenderedJob, K8sError> {
    let config_err = |detail: String| K8sError::Config {
        path: opts.config_path.clone(),
        detail,
    };
    let config_yaml = std::fs::read_to_string(&opts.config_path)
        .map_err(|e| config_err(format!("cannot read it ({e}); check the path")))?;
    let parsed: serde_yaml::Value = serde_yaml::from_str(&config_yaml)
        .map_err(|e| config_err(format!("not valid YAML: {e}")))?;
    if !parsed.is_mapping() {
        return Err(config_err(
            "expected a YAML mapping at the top level".into(),
        ));
    }
    if let Some(key) = find_secret_key(&parsed, "") {
        return Err(config_err(format!(
            "key '{key}' looks like a credential; it would be stored in a ConfigMap in clear text. \
             Remove it: pods get credentials from workload identity or --storage-key-secret"
        )));
    }
    template::check_dns_label("--release", &opts.release, 40)?;
    template::check_dns_label("--namespace", namespace, 63)?;
    let stem = opts
        .config_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pipeline")
        .to_string();
    let pipeline_raw = parsed
        .get("pipeline")
        .or_else(|| parsed.get("name"))
        .and_then(|v| v.as_str())
        .unwrap_or(&stem);
    let pipeline = dns_label_from(pipeline_raw, 20);
    let pipeline = if pipeline.is_empty() {
        "pipeline".to_string()
    } else {
        pipeline
    };
    let job_name = match &opts.name {
        Some(name) => name.clone(),
        None => {
            let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
            dns_label_from(&format!("{}-{}-{}", opts.release, pipeline, stamp), 52)
        }
    };
    template::check_dns_label("--name", &job_name, 52)?;
    for step in &opts.steps {
        if ![
            "ingest", "features", "train", "evaluate", "deploy", "predict",
        ]
        .contains(&step.as_str())
        {
            return Err(K8sError::Options {
                option: "--steps",
                detail: format!("unknown step '{step}'; training: ingest,features,train,evaluate,deploy; inference: ingest,features,predict"),
            });
        }
    }

    let run_id = opts.run_id.clone().unwrap_or_else(|| job_name.clone());
    if run_id.is_empty()
        || run_id.len() > 100
        || !run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(K8sError::Options {
            option: "--run-id",
            detail: format!(
                "'{run_id}' must be 1-100 letters, digits, '-' or '_' (a path segment of the lake)"
            ),
        });
    }

    let defaults = ChartDefaults::embedded()?;
    let mut input = JobInput::from_defaults(&defaults);
    input.release = opts.release.clone();
    input.namespace = namespace.to_string();
    input.job_name = job_name;
    input.pipeline = pipeline;
    input.config_yaml = config_yaml;
    input.steps = opts.steps.clone();
    input.extra_args = opts.extra_args.clone();
    input.run_id = run_id;
    input.scheduler_url = format!(
        "df://{}-scheduler:{}",
        opts.release, defaults.scheduler.port
    );
    input.image = match (&opts.image, defaults.image.reference()) {
        (Some(image), _) if !image.is_empty() => image.clone(),
        (_, Some(image)) => image,
        _ => {
            return Err(K8sError::Options {
                option: "--image",
                detail: "no image given and the chart has no default image.tag: pass --image \
                         <acr>.azurecr.io/sluice:<tag> (or set SLUICE_IMAGE)"
                    .into(),
            })
        }
    };
    if let Some(account) = &opts.storage_account {
        input.storage_account = Some(account.clone()).filter(|a| !a.is_empty());
    }
    input.workload_identity |= opts.workload_identity;
    if let Some(secret) = &opts.storage_key_secret {
        input.storage_key_secret =
            Some((secret.clone(), defaults.azure.existing_secret_key.clone()));
    }
    for (key, value) in &opts.env {
        if key.is_empty()
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || key.as_bytes()[0].is_ascii_digit()
        {
            return Err(K8sError::Options {
                option: "--env",
                detail: format!("'{key}' is not an environment variable name (A-Z, 0-9, _)"),
            });
        }
        if key.contains("KEY") || key.contains("SECRET") || key.contains("PASSWORD") {
            return Err(K8sError::Options {
                option: "--env",
                detail: format!(
                    "'{key}' looks like a credential; the Job would carry it in clear text. \
                     Use --storage-key-secret or workload identity"
                ),
            });
        }
        input.extra_env.push(json!({"name": key, "value": value}));
    }
    if let Some(lake) = &opts.lake {
        input.lake = Some(lake.clone()).filter(|l| !l.is_empty());
    }
    check_pod_lake(&parsed, &input, &opts.config_path)?;
    template::render_job(&input)
}

/// The lake a submitted pod will use must exist for it: a config that
/// reads `SLUICE_LAKE` needs `--lake` (or the chart's `lake.url`), a local
/// path would land on the pod's read-only root filesystem, and an Azure lake
/// needs credentials in the pod (workload identity, a storage key Secret, or
/// the emulator settings of a test).
fn check_pod_lake(
    config: &serde_yaml::Value,
    input: &JobInput,
    path: &std::path::Path,
) -> Result<(), K8sError> {
    let config_err = |detail: String| K8sError::Config {
        path: path.to_path_buf(),
        detail,
    };
    let Some(written) = config.get("lake").and_then(|l| l.as_str()) else {
        return Err(config_err(
            "key 'lake' is missing or not a URL string; the cluster configs use `lake: ${SLUICE_LAKE}` with --lake".into(),
        ));
    };
    let lake = if written.contains("${SLUICE_LAKE") {
        match (&input.lake, written.split_once(":-")) {
            (Some(lake), _) => lake.clone(),
            (None, Some((_, default))) => default.trim_end_matches('}').to_string(),
            (None, None) => {
                return Err(K8sError::Options {
                    option: "--lake",
                    detail: format!(
                        "{} has 'lake: {written}' and no lake URL is given: pass --lake \
                         abfss://<container>@<account>.dfs.core.windows.net/ (terraform output lake_url)",
                        path.display()
                    ),
                })
            }
        }
    } else {
        written.to_string()
    };
    let scheme = lake.split_once("://").map(|(s, _)| s).unwrap_or("");
    match scheme {
        "abfss" | "abfs" | "az" | "azure" | "adl" => {
            let emulator = input.extra_env.iter().any(|e| {
                e.get("name").and_then(|n| n.as_str()) == Some("AZURE_STORAGE_USE_EMULATOR")
            });
            if !(input.workload_identity || input.storage_key_secret.is_some() || emulator) {
                return Err(config_err(format!(
                    "key 'lake' is {} but the pod would have no credentials for it: pass \
                     --workload-identity (the chart's ServiceAccount carries the client id) or \
                     --storage-key-secret <secret>",
                    lake.split('?').next().unwrap_or_default()
                )));
            }
            Ok(())
        }
        "s3" | "gs" | "http" | "https" => Ok(()),
        _ => Err(config_err(format!(
            "key 'lake' is the local path '{lake}': in a pod it would be written to the \
             container's read-only root filesystem and lost; use the cluster lake \
             (`lake: ${{SLUICE_LAKE}}` with --lake abfss://...)"
        ))),
    }
}

/// `sluice submit`: connects, then runs [`submit_with`] with logs on stdout.
pub async fn submit(opts: &SubmitOptions) -> Result<JobOutcome, K8sError> {
    let conn = connect(&opts.connect).await?;
    let mut stdout = std::io::stdout();
    submit_with(&conn, opts, &mut stdout).await
}

/// Creates the ConfigMap and Job for `opts`; with `opts.wait`, streams the
/// driver pods' logs to `out` and waits for the Job to finish.
pub async fn submit_with<W>(
    conn: &Connection,
    opts: &SubmitOptions,
    out: &mut W,
) -> Result<JobOutcome, K8sError>
where
    W: Write + Send,
{
    let namespace = opts
        .namespace
        .clone()
        .unwrap_or_else(|| conn.default_namespace.clone());
    let rendered = render_submission(opts, &namespace)?;
    let job_name = rendered.job.metadata.name.clone().unwrap_or_default();
    let cm_name = rendered
        .config_map
        .metadata
        .name
        .clone()
        .unwrap_or_default();

    let config_maps: Api<ConfigMap> = Api::namespaced(conn.client.clone(), &namespace);
    let jobs: Api<Job> = Api::namespaced(conn.client.clone(), &namespace);
    config_maps
        .create(&PostParams::default(), &rendered.config_map)
        .await
        .map_err(|e| {
            K8sError::from_kube("create", format!("configmap/{cm_name}"), &namespace, e)
        })?;
    let created = jobs
        .create(&PostParams::default(), &rendered.job)
        .await
        .map_err(|e| K8sError::from_kube("create", format!("job/{job_name}"), &namespace, e))?;
    tracing::info!(job = %job_name, namespace = %namespace, "submitted pipeline job");

    // The ConfigMap belongs to the Job: it is garbage-collected with it (TTL).
    if let Some(uid) = created.metadata.uid.clone() {
        let owner = json!({"metadata": {"ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": uid,
            "blockOwnerDeletion": false, "controller": false
        }]}});
        config_maps
            .patch(&cm_name, &PatchParams::default(), &Patch::Merge(&owner))
            .await
            .map_err(|e| {
                K8sError::from_kube("patch", format!("configmap/{cm_name}"), &namespace, e)
            })?;
    }

    if !opts.wait {
        return Ok(JobOutcome::Submitted {
            namespace,
            job: job_name,
        });
    }
    // The timeout covers following the logs too (a log stream only ends
    // with its pod).
    match opts.timeout {
        None => wait_for_job(conn, &namespace, &job_name, opts, out).await,
        Some(timeout) => {
            match tokio::time::timeout(
                timeout,
                wait_for_job(conn, &namespace, &job_name, opts, out),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => Err(K8sError::Timeout {
                    job: job_name,
                    namespace,
                    seconds: timeout.as_secs(),
                }),
            }
        }
    }
}

/// Waits for `job` to finish, streaming the logs of each of its pods once.
async fn wait_for_job<W>(
    conn: &Connection,
    namespace: &str,
    job: &str,
    opts: &SubmitOptions,
    out: &mut W,
) -> Result<JobOutcome, K8sError>
where
    W: Write + Send,
{
    let jobs: Api<Job> = Api::namespaced(conn.client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(conn.client.clone(), namespace);
    let mut streamed: Vec<String> = Vec::new();
    loop {
        if let Some(outcome) = job_outcome(&jobs, namespace, job).await? {
            // Pods that ran since the last poll still get their logs shown.
            stream_new_pods(&pods, namespace, job, &mut streamed, out).await?;
            return Ok(outcome);
        }
        stream_new_pods(&pods, namespace, job, &mut streamed, out).await?;
        tokio::time::sleep(opts.poll_interval).await;
    }
}

/// The Job's outcome once it has a `Complete` or `Failed` condition.
async fn job_outcome(
    jobs: &Api<Job>,
    namespace: &str,
    job: &str,
) -> Result<Option<JobOutcome>, K8sError> {
    let current = jobs
        .get_status(job)
        .await
        .map_err(|e| K8sError::from_kube("get", format!("job/{job}"), namespace, e))?;
    let Some(status) = current.status else {
        return Ok(None);
    };
    for condition in status.conditions.unwrap_or_default() {
        if condition.status != "True" {
            continue;
        }
        match condition.type_.as_str() {
            "Complete" => {
                return Ok(Some(JobOutcome::Succeeded {
                    namespace: namespace.to_string(),
                    job: job.to_string(),
                }))
            }
            "Failed" => {
                let reason = [condition.reason, condition.message]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ");
                return Ok(Some(JobOutcome::Failed {
                    namespace: namespace.to_string(),
                    job: job.to_string(),
                    reason: if reason.is_empty() {
                        "Failed".into()
                    } else {
                        reason
                    },
                }));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Streams (follows) the logs of every pod of `job` that has started and was
/// not streamed yet, oldest first.
async fn stream_new_pods<W>(
    pods: &Api<Pod>,
    namespace: &str,
    job: &str,
    streamed: &mut Vec<String>,
    out: &mut W,
) -> Result<(), K8sError>
where
    W: Write + Send,
{
    let selector = format!("{JOB_NAME_LABEL}={job}");
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| K8sError::from_kube("list", format!("pods -l {selector}"), namespace, e))?;
    let mut ready: Vec<Pod> = list
        .items
        .into_iter()
        .filter(|p| {
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("Pending");
            phase != "Pending" && phase != "Unknown"
        })
        .collect();
    ready.sort_by_key(|p| p.metadata.creation_timestamp.clone());
    for pod in ready {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if streamed.contains(&name) {
            continue;
        }
        streamed.push(name.clone());
        let params = LogParams {
            follow: true,
            container: Some("sluice".into()),
            ..Default::default()
        };
        let stream = pods
            .log_stream(&name, &params)
            .await
            .map_err(|e| K8sError::from_kube("logs", format!("pod/{name}"), namespace, e))?;
        let mut lines = Box::pin(stream.lines());
        while let Some(line) = lines.next().await {
            let line = line.map_err(|source| K8sError::Output {
                pod: name.clone(),
                source,
            })?;
            writeln!(out, "{line}").map_err(|source| K8sError::Output {
                pod: name.clone(),
                source,
            })?;
        }
        out.flush()
            .map_err(|source| K8sError::Output { pod: name, source })?;
    }
    Ok(())
}

/// What `sluice scale executors N` does.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// Desired executor replicas.
    pub replicas: i32,
    /// Namespace; default: the kubeconfig context's.
    pub namespace: Option<String>,
    /// Helm release (the Deployment is `<release>-executor`).
    pub release: String,
    /// How to reach the cluster.
    pub connect: ConnectOptions,
}

/// Replica counts before and after a scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOutcome {
    /// The Deployment.
    pub deployment: String,
    /// Its namespace.
    pub namespace: String,
    /// Replicas before the patch.
    pub previous: i32,
    /// Replicas requested now.
    pub replicas: i32,
}

impl std::fmt::Display for ScaleOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deployment/{} in namespace {}: {} -> {} executors",
            self.deployment, self.namespace, self.previous, self.replicas
        )
    }
}

/// `sluice scale executors N`: connects, then [`scale_executors_with`].
pub async fn scale_executors(opts: &ScaleOptions) -> Result<ScaleOutcome, K8sError> {
    let conn = connect(&opts.connect).await?;
    scale_executors_with(&conn, opts).await
}

/// Patches `deployments/<release>-executor/scale` to `opts.replicas`.
pub async fn scale_executors_with(
    conn: &Connection,
    opts: &ScaleOptions,
) -> Result<ScaleOutcome, K8sError> {
    if !(0..=500).contains(&opts.replicas) {
        return Err(K8sError::Options {
            option: "replicas",
            detail: format!(
                "{} is outside 0..=500 (the chart's values.schema.json bound)",
                opts.replicas
            ),
        });
    }
    template::check_dns_label("--release", &opts.release, 40)?;
    let namespace = opts
        .namespace
        .clone()
        .unwrap_or_else(|| conn.default_namespace.clone());
    let deployment = format!("{}-executor", opts.release);
    let api: Api<Deployment> = Api::namespaced(conn.client.clone(), &namespace);
    let object = format!("deployment/{deployment}/scale");
    let before = api
        .get_scale(&deployment)
        .await
        .map_err(|e| K8sError::from_kube("get", object.clone(), &namespace, e))?;
    let patch = json!({"spec": {"replicas": opts.replicas}});
    let after = api
        .patch_scale(&deployment, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| K8sError::from_kube("patch", object, &namespace, e))?;
    Ok(ScaleOutcome {
        deployment,
        namespace,
        previous: before.spec.and_then(|s| s.replicas).unwrap_or(0),
        replicas: after.spec.and_then(|s| s.replicas).unwrap_or(opts.replicas),
    })
}

/// What `sluice status` reports on.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// Namespace; default: the kubeconfig context's.
    pub namespace: Option<String>,
    /// Helm release.
    pub release: String,
    /// At most this many pipeline Jobs, newest first.
    pub jobs: usize,
    /// How to reach the cluster.
    pub connect: ConnectOptions,
}

/// Replicas of one Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentState {
    /// Deployment name.
    pub name: String,
    /// Desired replicas.
    pub desired: i32,
    /// Ready replicas.
    pub ready: i32,
}

/// One pipeline Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// Job name.
    pub name: String,
    /// `sluice.dev/pipeline` label.
    pub pipeline: String,
    /// `Running`, `Succeeded` or `Failed`.
    pub state: String,
    /// Creation time (RFC 3339).
    pub created: String,
}

/// A release's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Namespace looked at.
    pub namespace: String,
    /// The scheduler Deployment, if it exists.
    pub scheduler: Option<DeploymentState>,
    /// The executor Deployment, if it exists.
    pub executors: Option<DeploymentState>,
    /// Recent pipeline Jobs, newest first.
    pub jobs: Vec<JobState>,
}

impl ClusterStatus {
    /// True when the scheduler and at least one executor are ready.
    pub fn healthy(&self) -> bool {
        let ready = |d: &Option<DeploymentState>| d.as_ref().is_some_and(|d| d.ready > 0);
        ready(&self.scheduler) && ready(&self.executors)
    }
}

impl std::fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "namespace {}", self.namespace)?;
        for (role, state) in [
            ("scheduler", &self.scheduler),
            ("executors", &self.executors),
        ] {
            match state {
                Some(d) => writeln!(
                    f,
                    "  {role:<10} {:<28} {}/{} ready",
                    d.name, d.ready, d.desired
                )?,
                None => writeln!(
                    f,
                    "  {role:<10} missing (is the chart installed in this namespace?)"
                )?,
            }
        }
        if self.jobs.is_empty() {
            writeln!(f, "  no pipeline jobs")?;
        }
        for job in &self.jobs {
            writeln!(
                f,
                "  job {:<40} {:<12} {:<10} {}",
                job.name, job.pipeline, job.state, job.created
            )?;
        }
        Ok(())
    }
}

/// `sluice status`: connects, then [`status_with`].
pub async fn status(opts: &StatusOptions) -> Result<ClusterStatus, K8sError> {
    let conn = connect(&opts.connect).await?;
    status_with(&conn, opts).await
}

/// Reads the scheduler and executor Deployments and the release's pipeline Jobs.
pub async fn status_with(
    conn: &Connection,
    opts: &StatusOptions,
) -> Result<ClusterStatus, K8sError> {
    template::check_dns_label("--release", &opts.release, 40)?;
    let namespace = opts
        .namespace
        .clone()
        .unwrap_or_else(|| conn.default_namespace.clone());
    let deployments: Api<Deployment> = Api::namespaced(conn.client.clone(), &namespace);
    let mut states = Vec::new();
    for component in ["scheduler", "executor"] {
        let name = format!("{}-{component}", opts.release);
        let found = deployments
            .get_opt(&name)
            .await
            .map_err(|e| K8sError::from_kube("get", format!("deployment/{name}"), &namespace, e))?;
        states.push(found.map(|d| DeploymentState {
            name: name.clone(),
            desired: d.spec.replicas.unwrap_or(1),
            ready: d.status.and_then(|s| s.ready_replicas).unwrap_or(0),
        }));
    }
    let selector = format!(
        "app.kubernetes.io/name=sluice,app.kubernetes.io/component=pipeline,app.kubernetes.io/instance={}",
        opts.release
    );
    let jobs: Api<Job> = Api::namespaced(conn.client.clone(), &namespace);
    let list = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| K8sError::from_kube("list", format!("jobs -l {selector}"), &namespace, e))?;
    let mut items = list.items;
    items.sort_by_key(|j| std::cmp::Reverse(j.metadata.creation_timestamp.clone()));
    let jobs = items
        .into_iter()
        .take(opts.jobs)
        .map(|j| {
            let status = j.status.unwrap_or_default();
            let condition = |t: &str| {
                status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == t && c.status == "True")
            };
            let state = if condition("Complete") {
                "Succeeded"
            } else if condition("Failed") {
                "Failed"
            } else {
                "Running"
            };
            JobState {
                name: j.metadata.name.unwrap_or_default(),
                pipeline: j
                    .metadata
                    .labels
                    .and_then(|l| l.get("sluice.dev/pipeline").cloned())
                    .unwrap_or_default(),
                state: state.into(),
                created: j
                    .metadata
                    .creation_timestamp
                    .map(|t| t.0.to_string())
                    .unwrap_or_default(),
            }
        })
        .collect();
    let executors = states.pop().flatten();
    let scheduler = states.pop().flatten();
    Ok(ClusterStatus {
        namespace,
        scheduler,
        executors,
        jobs,
    })
}
