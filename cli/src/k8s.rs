//! clap front ends of `sluice submit`, `sluice scale executors N` and `sluice status`.
//!
//! The `sluice` binary adds them as subcommands and exits with the code the
//! `run_*` functions return.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use sluice_cluster::k8s::{ConnectOptions, ScaleOptions, StatusOptions, SubmitOptions};

/// Cluster selection shared by the three commands.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Kubernetes namespace of the Sluice release (default: the kubeconfig context's).
    #[arg(long, short = 'n', env = "SLUICE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Helm release name: resources are <release>-scheduler, <release>-executor.
    #[arg(long, default_value = "sluice", env = "SLUICE_RELEASE")]
    pub release: String,
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
}

impl ClusterArgs {
    fn connect(&self) -> ConnectOptions {
        ConnectOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }
}

/// `sluice submit <config.yaml>`: run a pipeline (or some steps) as a Kubernetes Job.
#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    /// Pipeline config (YAML, no secrets); stored in a ConfigMap mounted at /etc/sluice.
    pub config: PathBuf,
    /// Cluster selection.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Image to run (default: the chart's image.repository:image.tag).
    #[arg(long, env = "SLUICE_IMAGE")]
    pub image: Option<String>,
    /// Comma-separated steps to run (default: the whole pipeline).
    #[arg(long, value_delimiter = ',')]
    pub steps: Vec<String>,
    /// Restrict training to one model (`gbt` or `rf`).
    #[arg(long)]
    pub model: Option<String>,
    /// Job name (default: <release>-<pipeline>-<UTC timestamp>).
    #[arg(long)]
    pub name: Option<String>,
    /// Sluice run id of the driver (default: the Job name); a retried pod continues it.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Lake URL given to the pod as SLUICE_LAKE (default: the chart's
    /// lake.url); set from the global `--lake`.
    #[arg(skip)]
    pub lake: Option<String>,
    /// Extra environment of the driver pod, KEY=VALUE (repeatable; no credentials).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,
    /// Lake storage account, exported to the pod as AZURE_STORAGE_ACCOUNT_NAME.
    #[arg(long, env = "AZURE_STORAGE_ACCOUNT_NAME")]
    pub storage_account: Option<String>,
    /// Label the pod for Azure workload identity (the chart's ServiceAccount carries the client id).
    #[arg(long, env = "SLUICE_WORKLOAD_IDENTITY")]
    pub workload_identity: bool,
    /// Secret holding the storage key (key `azure-storage-account-key`), when no workload identity.
    #[arg(long)]
    pub storage_key_secret: Option<String>,
    /// Wait for the Job, streaming its logs; exit with its outcome.
    #[arg(long)]
    pub wait: bool,
    /// Stop waiting (and following logs) after this many seconds; the Job keeps running.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Print the ConfigMap and Job as YAML instead of creating them.
    #[arg(long)]
    pub dry_run: bool,
}

impl SubmitArgs {
    /// The library options these arguments stand for.
    pub fn options(&self) -> SubmitOptions {
        let mut opts = SubmitOptions::new(&self.config);
        opts.namespace = self.cluster.namespace.clone();
        opts.release = self.cluster.release.clone();
        opts.image = self.image.clone();
        opts.steps = self.steps.clone();
        if let Some(model) = &self.model {
            opts.extra_args = vec!["--model".into(), model.clone()];
        }
        opts.name = self.name.clone();
        opts.run_id = self.run_id.clone();
        opts.lake = self.lake.clone();
        opts.env = self.env.clone();
        opts.storage_account = self.storage_account.clone();
        opts.workload_identity = self.workload_identity;
        opts.storage_key_secret = self.storage_key_secret.clone();
        opts.wait = self.wait;
        opts.timeout = self.timeout.map(Duration::from_secs);
        opts.connect = self.cluster.connect();
        opts
    }
}

/// Parses `KEY=VALUE` of `--env`.
fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

/// `sluice submit`; returns the exit code (the Job's outcome with `--wait`).
pub async fn run_submit(args: &SubmitArgs) -> anyhow::Result<i32> {
    let opts = args.options();
    if args.dry_run {
        let namespace = opts.namespace.clone().unwrap_or_else(|| "default".into());
        let rendered = sluice_cluster::k8s::render_submission(&opts, &namespace)?;
        print!("{}", rendered.yaml);
        return Ok(0);
    }
    let outcome = sluice_cluster::k8s::submit(&opts).await?;
    eprintln!("{outcome}");
    Ok(outcome.exit_code())
}

/// `sluice scale <target> <N>`.
#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// What to scale.
    #[command(subcommand)]
    pub target: ScaleTarget,
}

/// Scalable parts of a release.
#[derive(Debug, Clone, Subcommand)]
pub enum ScaleTarget {
    /// Set the executor Deployment's replicas.
    Executors {
        /// Desired number of executors (0..=500).
        replicas: i32,
        /// Cluster selection.
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

/// `sluice scale executors N`; returns the exit code.
pub async fn run_scale(args: &ScaleArgs) -> anyhow::Result<i32> {
    let ScaleTarget::Executors { replicas, cluster } = &args.target;
    let outcome = sluice_cluster::k8s::scale_executors(&ScaleOptions {
        replicas: *replicas,
        namespace: cluster.namespace.clone(),
        release: cluster.release.clone(),
        connect: cluster.connect(),
    })
    .await?;
    println!("{outcome}");
    Ok(0)
}

/// `sluice status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Cluster selection.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Show at most this many recent pipeline Jobs.
    #[arg(long, default_value_t = 10)]
    pub jobs: usize,
}

/// `sluice status`; exit code 0 when the scheduler and an executor are ready, else 1.
pub async fn run_status(args: &StatusArgs) -> anyhow::Result<i32> {
    let state = sluice_cluster::k8s::status(&StatusOptions {
        namespace: args.cluster.namespace.clone(),
        release: args.cluster.release.clone(),
        jobs: args.jobs,
        connect: args.cluster.connect(),
    })
    .await?;
    print!("{state}");
    Ok(if state.healthy() { 0 } else { 1 })
}
