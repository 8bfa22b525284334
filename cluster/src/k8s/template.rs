//! The pipeline ConfigMap + Job, rendered from the chart's own template.
//!
//! `helm/sluice/files/pipeline-job.yaml` is the single source of truth for the
//! Job's shape: this module embeds it at compile time, together with the
//! chart's `values.yaml` for the defaults (image, resources, deadlines,
//! environment, lake, scheduler port), so a submitted pod follows the chart. Each
//! `${SLUICE_<KEY>}` placeholder is replaced by the JSON of its value, with
//! `$` escaped as `\u0024` so a value can never form a placeholder; the
//! result is YAML (JSON is YAML flow syntax) that deserializes into
//! `k8s-openapi` types.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::K8sError;

/// The chart's shared Job template, embedded at compile time.
pub const SHARED_JOB_TEMPLATE: &str = include_str!("../../../helm/sluice/files/pipeline-job.yaml");

/// The chart's `values.yaml`, embedded for its defaults.
pub const CHART_VALUES: &str = include_str!("../../../helm/sluice/values.yaml");

/// Where the pipeline config is mounted in the driver pod (the template's mount).
pub const CONFIG_MOUNT_PATH: &str = "/etc/sluice/config.yaml";

/// Label Kubernetes puts on the pods of a Job.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// The subset of the chart's values that shape a pipeline Job.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartDefaults {
    /// `image`.
    pub image: ImageValues,
    /// `imagePullSecrets`.
    pub image_pull_secrets: Vec<Value>,
    /// `logLevel`.
    pub log_level: String,
    /// `extraEnv`.
    pub extra_env: Vec<Value>,
    /// `azure`.
    pub azure: AzureValues,
    /// `lake`.
    pub lake: LakeValues,
    /// `scheduler`.
    pub scheduler: SchedulerValues,
    /// `pipelineJob`.
    pub pipeline_job: PipelineJobValues,
}

/// `lake` values.
#[derive(Debug, Clone, Deserialize)]
pub struct LakeValues {
    /// Lake URL (`SLUICE_LAKE` of every pod), empty when not set.
    pub url: String,
}

/// `scheduler` values (the part a pipeline driver needs).
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerValues {
    /// gRPC port of the scheduler Service.
    pub port: u16,
}

/// `image` values.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageValues {
    /// Repository, e.g. `<acr>.azurecr.io/sluice`.
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// Digest (`sha256:...`), wins over the tag when set.
    #[serde(default)]
    pub digest: String,
    /// Pull policy.
    pub pull_policy: String,
}

impl ImageValues {
    /// `repository@digest` or `repository:tag`, as the chart's `sluice.image`
    /// helper; `None` when neither a tag nor a digest is set (the chart's
    /// default: the image is the operator's to name).
    pub fn reference(&self) -> Option<String> {
        if !self.digest.is_empty() {
            Some(format!("{}@{}", self.repository, self.digest))
        } else if !self.tag.is_empty() {
            Some(format!("{}:{}", self.repository, self.tag))
        } else {
            None
        }
    }
}

/// `azure` values.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureValues {
    /// `storageAccountName`.
    pub storage_account_name: String,
    /// `workloadIdentity`.
    pub workload_identity: WorkloadIdentityValues,
    /// `existingSecret`: Secret holding the storage key, or empty.
    pub existing_secret: String,
    /// `existingSecretKey`.
    pub existing_secret_key: String,
}

/// `azure.workloadIdentity` values.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkloadIdentityValues {
    /// Label pods for the workload identity webhook.
    pub enabled: bool,
}

/// `pipelineJob` values.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineJobValues {
    /// Pod retries.
    pub backoff_limit: i64,
    /// Wall-clock limit in seconds.
    pub active_deadline_seconds: i64,
    /// Seconds a finished Job is kept.
    pub ttl_seconds_after_finished: i64,
    /// `/tmp` size limit.
    pub tmp_size_limit: String,
    /// Driver requests/limits.
    pub resources: Value,
    /// Node selector.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations.
    #[serde(default)]
    pub tolerations: Vec<Value>,
}

impl ChartDefaults {
    /// The defaults of the chart this binary was built with.
    pub fn embedded() -> Result<Self, K8sError> {
        serde_yaml::from_str(CHART_VALUES).map_err(|e| K8sError::Template {
            file: "values.yaml",
            detail: format!("cannot read the pipeline Job defaults: {e}"),
        })
    }
}

/// Everything a pipeline Job is rendered from.
#[derive(Debug, Clone)]
pub struct JobInput {
    /// Helm release whose scheduler the pipeline uses (names the ServiceAccount).
    pub release: String,
    /// Namespace of the Job.
    pub namespace: String,
    /// Job name (a DNS label, at most 52 characters).
    pub job_name: String,
    /// Pipeline name (label `sluice.dev/pipeline`).
    pub pipeline: String,
    /// The pipeline config YAML, stored in the ConfigMap.
    pub config_yaml: String,
    /// `sluice run` steps (empty: all).
    pub steps: Vec<String>,
    /// Extra `sluice run` arguments.
    pub extra_args: Vec<String>,
    /// Image reference.
    pub image: String,
    /// Image pull policy.
    pub image_pull_policy: String,
    /// `sluice run --run-id`: a retried pod continues this run.
    pub run_id: String,
    /// Lake URL (`SLUICE_LAKE` in the pod), if any.
    pub lake: Option<String>,
    /// Ballista scheduler URL (`SLUICE_SCHEDULER` in the pod: `sluice run`
    /// runs on it whatever the config's engine says).
    pub scheduler_url: String,
    /// Storage account of the lake (`AZURE_STORAGE_ACCOUNT_NAME`), if any.
    pub storage_account: Option<String>,
    /// Label the pod for Azure workload identity.
    pub workload_identity: bool,
    /// Secret (name, key) holding `AZURE_STORAGE_ACCOUNT_KEY`, when no workload identity.
    pub storage_key_secret: Option<(String, String)>,
    /// `RUST_LOG` of the driver.
    pub log_level: String,
    /// Extra environment entries (Kubernetes `EnvVar` objects).
    pub extra_env: Vec<Value>,
    /// Pod retries.
    pub backoff_limit: i64,
    /// Wall-clock limit in seconds.
    pub active_deadline_seconds: i64,
    /// Seconds a finished Job is kept.
    pub ttl_seconds_after_finished: i64,
    /// `/tmp` size limit.
    pub tmp_size_limit: String,
    /// Driver requests/limits.
    pub resources: Value,
    /// Node selector.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations.
    pub tolerations: Vec<Value>,
    /// Image pull secrets (`LocalObjectReference` objects).
    pub image_pull_secrets: Vec<Value>,
}

impl JobInput {
    /// A Job input with the chart's defaults; the caller sets names and config.
    pub fn from_defaults(defaults: &ChartDefaults) -> Self {
        let azure = &defaults.azure;
        let job = &defaults.pipeline_job;
        JobInput {
            release: "sluice".into(),
            namespace: "default".into(),
            job_name: String::new(),
            pipeline: String::new(),
            config_yaml: String::new(),
            steps: Vec::new(),
            extra_args: Vec::new(),
            image: defaults.image.reference().unwrap_or_default(),
            image_pull_policy: defaults.image.pull_policy.clone(),
            run_id: String::new(),
            lake: Some(defaults.lake.url.clone()).filter(|s| !s.is_empty()),
            scheduler_url: format!("df://sluice-scheduler:{}", defaults.scheduler.port),
            storage_account: Some(azure.storage_account_name.clone()).filter(|s| !s.is_empty()),
            workload_identity: azure.workload_identity.enabled,
            storage_key_secret: Some((
                azure.existing_secret.clone(),
                azure.existing_secret_key.clone(),
            ))
            .filter(|(name, _)| !name.is_empty()),
            log_level: defaults.log_level.clone(),
            extra_env: defaults.extra_env.clone(),
            backoff_limit: job.backoff_limit,
            active_deadline_seconds: job.active_deadline_seconds,
            ttl_seconds_after_finished: job.ttl_seconds_after_finished,
            tmp_size_limit: job.tmp_size_limit.clone(),
            resources: job.resources.clone(),
            node_selector: job.node_selector.clone(),
            tolerations: job.tolerations.clone(),
            image_pull_secrets: defaults.image_pull_secrets.clone(),
        }
    }

    /// Labels of the ConfigMap and Job (the chart's selector labels plus the pipeline).
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "sluice".into()),
            ("app.kubernetes.io/instance".into(), self.release.clone()),
            ("app.kubernetes.io/component".into(), "pipeline".into()),
            ("app.kubernetes.io/part-of".into(), "sluice".into()),
            (
                "app.kubernetes.io/managed-by".into(),
                "sluice-submit".into(),
            ),
            (
                "app.kubernetes.io/version".into(),
                env!("CARGO_PKG_VERSION").into(),
            ),
            ("sluice.dev/pipeline".into(), self.pipeline.clone()),
        ])
    }

    /// `sluice run` arguments of the driver container. `--run-id` is always
    /// passed, so a pod the Job retries continues the same run.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["run".to_string(), CONFIG_MOUNT_PATH.to_string()];
        if !self.steps.is_empty() {
            args.push("--steps".into());
            args.push(self.steps.join(","));
        }
        if !self.run_id.is_empty() {
            args.push("--run-id".into());
            args.push(self.run_id.clone());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// The driver's environment, in the order of the chart's `sluice.envList`
    /// with `SLUICE_SCHEDULER` after `SLUICE_LAKE`.
    pub fn env(&self) -> Vec<Value> {
        let mut env = vec![json!({"name": "RUST_LOG", "value": self.log_level})];
        if let Some(account) = &self.storage_account {
            env.push(json!({"name": "AZURE_STORAGE_ACCOUNT_NAME", "value": account}));
        }
        if let Some((name, key)) = &self.storage_key_secret {
            env.push(json!({
                "name": "AZURE_STORAGE_ACCOUNT_KEY",
                "valueFrom": {"secretKeyRef": {"name": name, "key": key}}
            }));
        }
        if let Some(lake) = &self.lake {
            env.push(json!({"name": "SLUICE_LAKE", "value": lake}));
        }
        env.push(json!({"name": "SLUICE_SCHEDULER", "value": self.scheduler_url}));
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// The value of every placeholder of the shared template.
    pub fn placeholders(&self) -> BTreeMap<&'static str, Value> {
        let labels = self.labels();
        let mut pod_labels = labels.clone();
        if self.workload_identity {
            pod_labels.insert("azure.workload.identity/use".into(), "true".into());
        }
        BTreeMap::from([
            ("CONFIGMAP_NAME", json!(format!("{}-config", self.job_name))),
            ("JOB_NAME", json!(self.job_name)),
            ("NAMESPACE", json!(self.namespace)),
            ("LABELS", json!(labels)),
            ("POD_LABELS", json!(pod_labels)),
            ("CONFIG_YAML", json!(self.config_yaml)),
            ("BACKOFF_LIMIT", json!(self.backoff_limit)),
            (
                "ACTIVE_DEADLINE_SECONDS",
                json!(self.active_deadline_seconds),
            ),
            (
                "TTL_SECONDS_AFTER_FINISHED",
                json!(self.ttl_seconds_after_finished),
            ),
            ("SERVICE_ACCOUNT", json!(self.release)),
            ("IMAGE_PULL_SECRETS", json!(self.image_pull_secrets)),
            ("NODE_SELECTOR", json!(self.node_selector)),
            ("TOLERATIONS", json!(self.tolerations)),
            ("IMAGE", json!(self.image)),
            ("IMAGE_PULL_POLICY", json!(self.image_pull_policy)),
            ("ARGS", json!(self.args())),
            ("ENV", json!(self.env())),
            ("RESOURCES", self.resources.clone()),
            ("TMP_SIZE_LIMIT", json!(self.tmp_size_limit)),
        ])
    }
}

/// The two objects `sluice submit` creates.
#[derive(Debug, Clone)]
pub struct RenderedJob {
    /// Holds the pipeline config at `config.yaml`.
    pub config_map: ConfigMap,
    /// Runs `sluice run` on it.
    pub job: Job,
    /// The rendered YAML (both documents), as `--dry-run` prints it.
    pub yaml: String,
}

/// Replaces every `${SLUICE_<KEY>}` in `template` by the JSON of `values[KEY]`
/// in one pass, `$` escaped as `\u0024`. A placeholder without a value is an
/// error, and so is a value no placeholder uses.
pub fn fill_placeholders(
    template: &str,
    values: &BTreeMap<&str, Value>,
) -> Result<String, K8sError> {
    const OPEN: &str = "${SLUICE_";
    let mut out = String::with_capacity(template.len() + 1024);
    let mut used = std::collections::BTreeSet::new();
    let mut rest = template;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let end = after.find('}').ok_or_else(|| K8sError::Template {
            file: "files/pipeline-job.yaml",
            detail: format!(
                "unterminated placeholder near '{}'",
                &rest[start..(start + 40).min(rest.len())]
            ),
        })?;
        let key = &after[..end];
        let value = values.get(key).ok_or_else(|| K8sError::Template {
            file: "files/pipeline-job.yaml",
            detail: format!("placeholder SLUICE_{key} has no value in cluster/src/k8s/template.rs"),
        })?;
        used.insert(key);
        out.push_str(&value.to_string().replace('$', "\\u0024"));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if let Some(unused) = values.keys().find(|k| !used.contains(**k)) {
        return Err(K8sError::Template {
            file: "files/pipeline-job.yaml",
            detail: format!(
                "the template has no placeholder SLUICE_{unused}, but sluice submit sets it"
            ),
        });
    }
    Ok(out)
}

/// Renders the ConfigMap and Job of `input` from the shared template.
pub fn render_job(input: &JobInput) -> Result<RenderedJob, K8sError> {
    let yaml = fill_placeholders(SHARED_JOB_TEMPLATE, &input.placeholders())?;
    let template_error = |detail: String| K8sError::Template {
        file: "files/pipeline-job.yaml",
        detail,
    };
    let mut config_map = None;
    let mut job = None;
    for doc in serde_yaml::Deserializer::from_str(&yaml) {
        let value = Value::deserialize(doc)
            .map_err(|e| template_error(format!("rendered YAML does not parse: {e}")))?;
        match value.get("kind").and_then(Value::as_str) {
            Some("ConfigMap") => {
                config_map = Some(serde_json::from_value::<ConfigMap>(value).map_err(|e| {
                    template_error(format!("the ConfigMap is not a valid ConfigMap: {e}"))
                })?)
            }
            Some("Job") => {
                job = Some(serde_json::from_value::<Job>(value).map_err(|e| {
                    template_error(format!("the Job is not a valid batch/v1 Job: {e}"))
                })?)
            }
            other => {
                return Err(template_error(format!(
                    "unexpected document kind {other:?}"
                )))
            }
        }
    }
    match (config_map, job) {
        (Some(config_map), Some(job)) => Ok(RenderedJob {
            config_map,
            job,
            yaml,
        }),
        _ => Err(template_error(
            "the template must hold one ConfigMap and one Job".into(),
        )),
    }
}

/// Checks that `name` is a DNS-1123 label of at most `max` characters.
pub fn check_dns_label(option: &'static str, name: &str, max: usize) -> Result<(), K8sError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(K8sError::Options {
            option,
            detail: format!("'{name}' must be lowercase letters, digits and '-', at most {max} characters, not starting or ending with '-'"),
        })
    }
}

/// Lowercases `raw` and maps anything outside `[a-z0-9-]` to '-' (for names derived from files).
pub fn dns_label_from(raw: &str, max: usize) -> String {
    let mut out: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-');
    out[..out.len().min(max)].trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> JobInput {
        let mut input = JobInput::from_defaults(&ChartDefaults::embedded().unwrap());
        input.namespace = "sluice".into();
        input.job_name = "sluice-training-1".into();
        input.pipeline = "training".into();
        input.config_yaml =
            "pipeline: training\nlake: abfss://lake@acct.dfs.core.windows.net/\n".into();
        input.image = "sluiceacr.azurecr.io/sluice:0.1.0".into();
        input.run_id = "sluice-training-1".into();
        input
    }

    #[test]
    fn chart_defaults_parse_from_the_embedded_values() {
        let defaults = ChartDefaults::embedded().unwrap();
        assert_eq!(defaults.pipeline_job.backoff_limit, 1);
        assert!(defaults.pipeline_job.resources["limits"]["memory"].is_string());
        assert_eq!(
            defaults.image.reference(),
            None,
            "the chart names no default image tag"
        );
        assert_eq!(defaults.scheduler.port, 50050);
    }

    #[test]
    fn renders_a_job_that_round_trips_through_k8s_openapi_without_loss() {
        let rendered = render_job(&input()).unwrap();
        // Strictness: every rendered field is known to k8s-openapi (unknown fields
        // would be dropped by deserialization and the round trip would differ).
        for doc in serde_yaml::Deserializer::from_str(&rendered.yaml) {
            let raw = Value::deserialize(doc).unwrap();
            let typed = match raw["kind"].as_str().unwrap() {
                "Job" => serde_json::to_value(serde_json::from_value::<Job>(raw.clone()).unwrap())
                    .unwrap(),
                _ => {
                    serde_json::to_value(serde_json::from_value::<ConfigMap>(raw.clone()).unwrap())
                        .unwrap()
                }
            };
            assert_eq!(typed, raw);
        }
        let spec = rendered.job.spec.as_ref().unwrap();
        let pod = spec.template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        assert_eq!(
            container.args.as_ref().unwrap(),
            &["run", CONFIG_MOUNT_PATH, "--run-id", "sluice-training-1"]
        );
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.service_account_name.as_deref(), Some("sluice"));
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        let volumes = pod.volumes.as_ref().unwrap();
        assert_eq!(
            volumes[0].config_map.as_ref().unwrap().name,
            rendered.config_map.metadata.name.clone().unwrap()
        );
        assert_eq!(
            rendered.config_map.data.as_ref().unwrap()["config.yaml"],
            input().config_yaml
        );
    }

    #[test]
    fn dollar_signs_in_values_never_form_placeholders() {
        let mut input = input();
        input.config_yaml = "note: ${SLUICE_JOB_NAME} and $HOME\n".into();
        let rendered = render_job(&input).unwrap();
        assert_eq!(
            rendered.config_map.data.unwrap()["config.yaml"],
            input.config_yaml
        );
    }

    #[test]
    fn steps_env_and_identity_follow_the_input() {
        let mut input = input();
        input.steps = vec!["train".into()];
        input.extra_args = vec!["--model".into(), "gbt".into()];
        input.workload_identity = true;
        input.storage_account = Some("sluicelake".into());
        let job = render_job(&input).unwrap().job;
        let pod = job.spec.unwrap().template;
        assert_eq!(
            pod.metadata.unwrap().labels.unwrap()["azure.workload.identity/use"],
            "true"
        );
        let container = &pod.spec.unwrap().containers[0];
        assert_eq!(
            container.args.as_ref().unwrap(),
            &[
                "run",
                CONFIG_MOUNT_PATH,
                "--steps",
                "train",
                "--run-id",
                "sluice-training-1",
                "--model",
                "gbt"
            ]
        );
        let env = container.env.as_ref().unwrap();
        assert_eq!(env[1].name, "AZURE_STORAGE_ACCOUNT_NAME");
        let scheduler = env.iter().find(|e| e.name == "SLUICE_SCHEDULER").unwrap();
        assert_eq!(
            scheduler.value.as_deref(),
            Some("df://sluice-scheduler:50050")
        );
        assert!(env.iter().all(|e| e.name != "AZURE_STORAGE_ACCOUNT_KEY"));
    }

    #[test]
    fn missing_and_unused_placeholders_are_errors() {
        let mut values = input().placeholders();
        values.remove("IMAGE");
        let err = fill_placeholders(SHARED_JOB_TEMPLATE, &values).unwrap_err();
        assert!(err.to_string().contains("SLUICE_IMAGE"), "{err}");
        let mut values = input().placeholders();
        values.insert("NOT_IN_TEMPLATE", json!(1));
        let err = fill_placeholders(SHARED_JOB_TEMPLATE, &values).unwrap_err();
        assert!(err.to_string().contains("SLUICE_NOT_IN_TEMPLATE"), "{err}");
    }

    #[test]
    fn dns_labels() {
        assert_eq!(
            dns_label_from("Training_Config.v2", 52),
            "training-config-v2"
        );
        assert_eq!(dns_label_from("--a--b--", 52), "a-b");
        assert!(check_dns_label("--name", "sluice-training", 52).is_ok());
        assert!(check_dns_label("--name", "Sluice", 52).is_err());
        assert!(check_dns_label("--name", &"a".repeat(53), 52).is_err());
    }
}
