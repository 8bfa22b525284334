//! [`K8sError`]: what can go wrong between `sluice submit/scale/status` and a cluster.

use std::path::PathBuf;

/// Errors of the Kubernetes client, by phase. Messages name the file, object or
/// URL at fault and what to check; they never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// No usable kubeconfig (none found, unreadable, or without a current context).
    #[error(
        "no usable Kubernetes configuration{}: {detail}. Write one with `az aks get-credentials \
         --resource-group <rg> --name <aks>` (terraform output aks_get_credentials), or point \
         KUBECONFIG / --kubeconfig at a kubeconfig file",
        path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default()
    )]
    Kubeconfig {
        /// The kubeconfig file given explicitly, if any.
        path: Option<PathBuf>,
        /// What kube-rs reported.
        detail: String,
    },

    /// The API server named by the kubeconfig did not answer.
    #[error(
        "cannot reach the Kubernetes API server at {url}: {detail}. Check the kubeconfig's current \
         context, your network/VPN, and that your IP is in the AKS authorized IP ranges"
    )]
    Unreachable {
        /// Cluster URL from the kubeconfig.
        url: String,
        /// The transport error.
        detail: String,
    },

    /// The API server refused or failed a request.
    #[error("Kubernetes API {request} failed ({code} {reason}): {message}{hint}")]
    Api {
        /// What was attempted, e.g. `create job/x in namespace 'sluice'`.
        request: String,
        /// HTTP status code.
        code: u16,
        /// Kubernetes reason (`NotFound`, `Forbidden`, `AlreadyExists`, ...).
        reason: String,
        /// Server message.
        message: String,
        /// What to check, derived from the reason.
        hint: &'static str,
    },

    /// A transport error in the middle of a session (after connecting).
    #[error("Kubernetes API {request} failed: {detail}")]
    Transport {
        /// What was attempted.
        request: String,
        /// The transport error.
        detail: String,
    },

    /// The pipeline config file could not be read or is not YAML.
    #[error("pipeline config {path}: {detail}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// The shared Job template or the chart defaults embedded in the binary are broken.
    #[error("Job template (helm/sluice/{file}): {detail}")]
    Template {
        /// File inside the chart.
        file: &'static str,
        /// What is wrong.
        detail: String,
    },

    /// Invalid options (names, replica counts, ...).
    #[error("invalid option {option}: {detail}")]
    Options {
        /// The option at fault.
        option: &'static str,
        /// What was expected.
        detail: String,
    },

    /// The Job did not finish within `--timeout`.
    #[error("job/{job} in namespace '{namespace}' did not finish within {seconds} s; it keeps running: `kubectl -n {namespace} get job {job}`")]
    Timeout {
        /// The Job.
        job: String,
        /// Its namespace.
        namespace: String,
        /// The timeout.
        seconds: u64,
    },

    /// Writing the Job's logs to the output failed.
    #[error("writing the logs of pod {pod}: {source}")]
    Output {
        /// The pod whose logs were being copied.
        pod: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl K8sError {
    /// Wraps a kube-rs error of a request on `object` in `namespace`.
    pub fn from_kube(
        verb: &'static str,
        object: impl std::fmt::Display,
        namespace: &str,
        err: kube::Error,
    ) -> Self {
        let request = format!("{verb} {object} in namespace '{namespace}'");
        match err {
            kube::Error::Api(status) => {
                let hint = match status.reason.as_str() {
                    "Forbidden" => ". Your identity lacks RBAC rights: bind the chart's '<release>-submitter' Role (values submitter.rbac.subjects)",
                    "NotFound" => ". Check --namespace and --release (the chart's resources are named <release>-scheduler / <release>-executor)",
                    "AlreadyExists" => ". Pick another --name or delete the old object",
                    "Unauthorized" => ". Your credentials expired: refresh them (az aks get-credentials, kubelogin)",
                    _ => "",
                };
                K8sError::Api {
                    request,
                    code: status.code,
                    reason: status.reason.clone(),
                    message: status.message.clone(),
                    hint,
                }
            }
            other => K8sError::Transport {
                request,
                detail: other.to_string(),
            },
        }
    }
}
