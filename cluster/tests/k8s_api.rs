//! `sluice submit`, `scale executors` and `status` against a fake Kubernetes API.
//!
//! No cluster exists in the test environment. [`FakeApi`] is a small HTTP/1.1
//! server on 127.0.0.1 that speaks the few endpoints the client uses (version,
//! create ConfigMap, create Job, patch ConfigMap, Job status, list pods by
//! label, pod logs, deployment scale, get deployment, list Jobs) and records
//! every request; kube-rs reaches it through a generated kubeconfig (plain
//! http, bearer token), exactly as it would reach AKS.
//!
//! RBAC is derived from the code: the server authorizes every request with
//! the chart's `<release>-submitter` Role rules
//! (`helm/sluice/files/rbac/submitter-rules.yaml`, what the chart renders)
//! and answers 403 to anything not granted, as the API server would; and
//! `the_submitter_role_grants_exactly_what_the_commands_use` runs every
//! command and compares the requests made with the Role, rule by rule.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_cluster::k8s::{
    self, ConnectOptions, JobOutcome, K8sError, ScaleOptions, StatusOptions, SubmitOptions,
};

/// One request the fake API server received.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: Option<Value>,
}

/// How the fake cluster behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    Succeed,
    Fail,
    Forbidden,
    /// The driver pod's log stream never ends (a Job still running).
    EndlessLogs,
}

/// One authorization attribute set: (API group, resource[/subresource], verb).
type Grant = (String, String, String);

/// The Role's rules, as the chart renders them for release `sluice`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

fn submitter_rules() -> Vec<Rule> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../helm/sluice/files/rbac/submitter-rules.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text.replace("${RELEASE}", "sluice")).unwrap()
}

/// The request attributes Kubernetes authorizes: (group, resource, verb, name).
fn attributes(req: &Recorded) -> Option<(Grant, Option<String>)> {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (resource, name, sub) = match rest {
        ["namespaces", _, resource] => (*resource, None, None),
        ["namespaces", _, resource, name] => (*resource, Some(*name), None),
        ["namespaces", _, resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return None,
    };
    let watch = req.query.split('&').any(|kv| kv == "watch=true");
    let verb = match (req.method.as_str(), name) {
        ("POST", None) => "create",
        ("GET", None) if watch => "watch",
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("PATCH", Some(_)) => "patch",
        ("PUT", Some(_)) => "update",
        ("DELETE", Some(_)) => "delete",
        _ => "unknown",
    };
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_string(),
    };
    Some((
        (group.to_string(), resource, verb.to_string()),
        name.map(str::to_string),
    ))
}

/// Kubernetes' RBAC rule match: group, resource and verb listed, and the
/// object named in `resourceNames` when the rule has any.
fn allowed(rules: &[Rule], grant: &Grant, name: Option<&str>) -> bool {
    let (group, resource, verb) = grant;
    rules.iter().any(|r| {
        r.api_groups.contains(group)
            && r.resources.contains(resource)
            && r.verbs.contains(verb)
            && (r.resource_names.is_empty()
                || name.is_some_and(|n| r.resource_names.iter().any(|x| x == n)))
    })
}

struct State {
    scenario: Scenario,
    rules: Vec<Rule>,
    used: Vec<Grant>,
    status_polls: usize,
    executor_replicas: i64,
    config_maps: BTreeMap<String, Value>,
    jobs: BTreeMap<String, Value>,
}

struct FakeApi {
    url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    fn start(scenario: Scenario) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(Mutex::new(State {
            scenario,
            rules: submitter_rules(),
            used: Vec::new(),
            status_polls: 0,
            executor_replicas: 3,
            config_maps: BTreeMap::new(),
            jobs: BTreeMap::new(),
        }));
        let recorded = requests.clone();
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (recorded, state) = (recorded.clone(), shared.clone());
                std::thread::spawn(move || serve(stream, &recorded, &state));
            }
        });
        FakeApi {
            url,
            requests,
            state,
        }
    }

    /// Every (group, resource, verb) the Role allowed so far.
    fn used(&self) -> BTreeSet<Grant> {
        self.state.lock().unwrap().used.iter().cloned().collect()
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: sluice\n\
             current-context: fake\nusers:\n- name: tester\n  user:\n    token: fake-token\n",
            self.url
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn serve(stream: TcpStream, recorded: &Mutex<Vec<Recorded>>, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    // One request per connection (`connection: close`), as kube's client copes with.
    {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let request = Recorded {
            method,
            path: path.to_string(),
            query: query.to_string(),
            headers,
            body: (!body.is_empty()).then(|| serde_json::from_slice(&body).unwrap()),
        };
        recorded.lock().unwrap().push(request.clone());
        let endless = state.lock().unwrap().scenario == Scenario::EndlessLogs
            && request.path.ends_with("/log");
        if endless {
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
            let _ = stream.write_all(head.as_bytes());
            let line = b"still training\n";
            let _ = stream.write_all(format!("{:x}\r\n", line.len()).as_bytes());
            let _ = stream.write_all(line);
            let _ = stream.write_all(b"\r\n");
            let _ = stream.flush();
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        let (code, content_type, payload) = route(&request, &mut state.lock().unwrap());
        let head = format!(
            "HTTP/1.1 {code} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            payload.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&payload);
        let _ = stream.flush();
    }
}

fn status(code: u16, reason: &str, message: &str) -> (u16, &'static str, Vec<u8>) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "code": code, "reason": reason, "message": message});
    (code, "application/json", body.to_string().into_bytes())
}

fn ok(code: u16, body: Value) -> (u16, &'static str, Vec<u8>) {
    (code, "application/json", body.to_string().into_bytes())
}

fn route(req: &Recorded, state: &mut State) -> (u16, &'static str, Vec<u8>) {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    if req.path == "/version" {
        return ok(
            200,
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "fake",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64"}),
        );
    }
    if state.scenario == Scenario::Forbidden {
        return status(
            403,
            "Forbidden",
            "jobs.batch is forbidden: User \"tester\" cannot create resource",
        );
    }
    // The API server's authorizer, with the chart's submitter Role.
    if let Some((grant, name)) = attributes(req) {
        if !allowed(&state.rules, &grant, name.as_deref()) {
            let (group, resource, verb) = &grant;
            return status(
                403,
                "Forbidden",
                &format!(
                    "{resource}.{group} \"{}\" is forbidden: User \"tester\" cannot {verb} resource \"{resource}\" in API group \"{group}\"",
                    name.unwrap_or_default()
                ),
            );
        }
        state.used.push(grant);
    }
    match (req.method.as_str(), segments.as_slice()) {
        ("POST", ["api", "v1", "namespaces", _, "configmaps"]) => {
            let mut cm = req.body.clone().unwrap();
            cm["metadata"]["uid"] = json!("cm-uid-1");
            state.config_maps.insert(
                cm["metadata"]["name"].as_str().unwrap().to_string(),
                cm.clone(),
            );
            ok(201, cm)
        }
        ("PATCH", ["api", "v1", "namespaces", _, "configmaps", name]) => {
            let mut cm = state.config_maps[*name].clone();
            cm["metadata"]["ownerReferences"] =
                req.body.as_ref().unwrap()["metadata"]["ownerReferences"].clone();
            ok(200, cm)
        }
        ("POST", ["apis", "batch", "v1", "namespaces", _, "jobs"]) => {
            let mut job = req.body.clone().unwrap();
            job["metadata"]["uid"] = json!("job-uid-1");
            state.jobs.insert(
                job["metadata"]["name"].as_str().unwrap().to_string(),
                job.clone(),
            );
            ok(201, job)
        }
        ("GET", ["apis", "batch", "v1", "namespaces", _, "jobs", name, "status"]) => {
            let Some(job) = state.jobs.get(*name) else {
                return status(404, "NotFound", &format!("jobs.batch \"{name}\" not found"));
            };
            let mut job = job.clone();
            state.status_polls += 1;
            job["status"] = if state.status_polls < 3 {
                json!({"active": 1})
            } else if state.scenario == Scenario::Fail {
                json!({"failed": 2, "conditions": [{"type": "Failed", "status": "True",
                    "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]})
            } else {
                json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
            };
            ok(200, job)
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods"]) => {
            let selector = req.query.replace("%3D", "=").replace("%2F", "/");
            let job = selector
                .split('&')
                .find_map(|kv| kv.strip_prefix("labelSelector=batch.kubernetes.io/job-name="))
                .unwrap_or("none")
                .to_string();
            let phase = if state.scenario == Scenario::Fail {
                "Failed"
            } else {
                "Running"
            };
            ok(
                200,
                json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [
                    {"metadata": {"name": format!("{job}-abcde"), "namespace": ns,
                                  "creationTimestamp": "2026-11-26T10:00:00Z"},
                     "status": {"phase": phase}},
                    {"metadata": {"name": format!("{job}-pending"), "namespace": ns},
                     "status": {"phase": "Pending"}}
                ]}),
            )
        }
        ("GET", ["api", "v1", "namespaces", _, "pods", pod, "log"]) => {
            let text = format!("{pod}: ingest done\n{pod}: training gbt, 200 trees\n");
            (200, "text/plain", text.into_bytes())
        }
        ("GET", ["apis", "apps", "v1", "namespaces", ns, "deployments", name, "scale"])
        | ("PATCH", ["apis", "apps", "v1", "namespaces", ns, "deployments", name, "scale"]) => {
            if *name != "sluice-executor" {
                return status(
                    404,
                    "NotFound",
                    &format!("deployments.apps \"{name}\" not found"),
                );
            }
            if req.method == "PATCH" {
                state.executor_replicas = req.body.as_ref().unwrap()["spec"]["replicas"]
                    .as_i64()
                    .unwrap();
            }
            ok(
                200,
                json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"replicas": state.executor_replicas}, "status": {"replicas": 3}}),
            )
        }
        ("GET", ["apis", "apps", "v1", "namespaces", ns, "deployments", name]) => {
            let (desired, ready) = match *name {
                "sluice-scheduler" => (1, 1),
                "sluice-executor" => (state.executor_replicas, 2),
                _ => {
                    return status(
                        404,
                        "NotFound",
                        &format!("deployments.apps \"{name}\" not found"),
                    )
                }
            };
            ok(
                200,
                json!({"kind": "Deployment", "apiVersion": "apps/v1",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"replicas": desired, "selector": {"matchLabels": {"a": "b"}},
                         "template": {"spec": {"containers": [{"name": "c"}]}}},
                "status": {"replicas": desired, "readyReplicas": ready}}),
            )
        }
        ("GET", ["apis", "batch", "v1", "namespaces", ns, "jobs"]) => {
            let job = |name: &str, created: &str, condition: &str| {
                json!({"metadata": {"name": name, "namespace": ns, "creationTimestamp": created,
                                    "labels": {"sluice.dev/pipeline": "training"}},
                       "status": {"conditions": [{"type": condition, "status": "True"}]}})
            };
            ok(
                200,
                json!({"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": [
                    job("sluice-training-old", "2026-11-20T10:00:00Z", "Failed"),
                    job("sluice-training-new", "2026-11-26T10:00:00Z", "Complete"),
                ]}),
            )
        }
        _ => status(
            404,
            "NotFound",
            &format!("no route for {} {}", req.method, req.path),
        ),
    }
}

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("training.yaml");
    std::fs::write(
        &path,
        "pipeline: training\nengine:\n  mode: ballista\n  scheduler: df://sluice-scheduler:50050\n\
         lake: abfss://lake@sluicelake.dfs.core.windows.net/\n",
    )
    .unwrap();
    path
}

fn submit_options(dir: &Path, api: &FakeApi) -> SubmitOptions {
    let mut opts = SubmitOptions::new(write_config(dir));
    opts.name = Some("sluice-training-test".into());
    opts.steps = vec!["train".into()];
    opts.extra_args = vec!["--model".into(), "gbt".into()];
    opts.image = Some("sluiceacr.azurecr.io/sluice:0.1.0".into());
    opts.storage_account = Some("sluicelake".into());
    opts.workload_identity = true;
    opts.poll_interval = Duration::from_millis(20);
    opts.timeout = Some(Duration::from_secs(30));
    opts.connect = ConnectOptions {
        kubeconfig: Some(api.kubeconfig(dir)),
        context: None,
    };
    opts
}

fn find<'a>(requests: &'a [Recorded], method: &str, path: &str) -> Vec<&'a Recorded> {
    requests
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .collect()
}

#[tokio::test]
async fn submit_creates_configmap_and_job_streams_logs_and_succeeds() {
    let api = FakeApi::start(Scenario::Succeed);
    let dir = tempfile::tempdir().unwrap();
    let opts = SubmitOptions {
        wait: true,
        ..submit_options(dir.path(), &api)
    };
    let conn = k8s::connect(&opts.connect).await.unwrap();
    assert_eq!(conn.default_namespace, "sluice");
    let mut logs = Vec::new();
    let outcome = k8s::submit_with(&conn, &opts, &mut logs).await.unwrap();

    assert_eq!(
        outcome,
        JobOutcome::Succeeded {
            namespace: "sluice".into(),
            job: "sluice-training-test".into()
        }
    );
    assert_eq!(outcome.exit_code(), 0);
    let logs = String::from_utf8(logs).unwrap();
    assert_eq!(
        logs,
        "sluice-training-test-abcde: ingest done\nsluice-training-test-abcde: training gbt, 200 trees\n",
        "each started pod's logs are streamed exactly once; pending pods are not"
    );

    let requests = api.requests();
    assert!(requests
        .iter()
        .all(|r| r.headers.get("authorization").map(String::as_str) == Some("Bearer fake-token")));
    let cm = find(&requests, "POST", "/api/v1/namespaces/sluice/configmaps");
    assert_eq!(cm.len(), 1);
    let cm = cm[0].body.as_ref().unwrap();
    assert_eq!(cm["metadata"]["name"], "sluice-training-test-config");
    assert_eq!(
        cm["data"]["config.yaml"].as_str().unwrap(),
        std::fs::read_to_string(&opts.config_path).unwrap()
    );

    let job = find(&requests, "POST", "/apis/batch/v1/namespaces/sluice/jobs");
    assert_eq!(job.len(), 1);
    let job = job[0].body.as_ref().unwrap();
    let pod = &job["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["image"], "sluiceacr.azurecr.io/sluice:0.1.0");
    assert_eq!(container["command"], json!(["sluice"]));
    assert_eq!(
        container["args"],
        json!([
            "run",
            "/etc/sluice/config.yaml",
            "--steps",
            "train",
            "--run-id",
            "sluice-training-test",
            "--model",
            "gbt"
        ])
    );
    assert_eq!(
        pod["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    assert_eq!(pod["spec"]["serviceAccountName"], "sluice");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(container["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "AZURE_STORAGE_ACCOUNT_NAME" && e["value"] == "sluicelake"));
    assert!(!job.to_string().contains("AZURE_STORAGE_ACCOUNT_KEY"));

    // The Job sent is exactly the one rendered from the chart's shared template.
    let rendered = k8s::render_submission(&opts, "sluice").unwrap();
    assert_eq!(job, &serde_json::to_value(&rendered.job).unwrap());

    let patch = find(
        &requests,
        "PATCH",
        "/api/v1/namespaces/sluice/configmaps/sluice-training-test-config",
    );
    assert_eq!(patch.len(), 1);
    assert_eq!(
        patch[0].headers["content-type"],
        "application/merge-patch+json"
    );
    let owner = &patch[0].body.as_ref().unwrap()["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["uid"].as_str()),
        (Some("Job"), Some("job-uid-1"))
    );

    let polls = find(
        &requests,
        "GET",
        "/apis/batch/v1/namespaces/sluice/jobs/sluice-training-test/status",
    );
    assert_eq!(polls.len(), 3, "polls until the Complete condition");
    let pods = find(&requests, "GET", "/api/v1/namespaces/sluice/pods");
    assert!(!pods.is_empty());
    assert!(
        pods[0]
            .query
            .contains("batch.kubernetes.io%2Fjob-name%3Dsluice-training-test"),
        "{}",
        pods[0].query
    );
    let log = find(
        &requests,
        "GET",
        "/api/v1/namespaces/sluice/pods/sluice-training-test-abcde/log",
    );
    assert_eq!(log.len(), 1);
    assert!(
        log[0].query.contains("follow=true") && log[0].query.contains("container=sluice"),
        "{}",
        log[0].query
    );
    // Order: connect, ConfigMap, Job, owner patch, then status polls.
    let order: Vec<&str> = requests.iter().map(|r| r.method.as_str()).take(4).collect();
    assert_eq!(order, ["GET", "POST", "POST", "PATCH"]);
}

#[tokio::test]
async fn a_failed_job_is_reported_with_its_reason_and_exit_code_1() {
    let api = FakeApi::start(Scenario::Fail);
    let dir = tempfile::tempdir().unwrap();
    let opts = SubmitOptions {
        wait: true,
        ..submit_options(dir.path(), &api)
    };
    let conn = k8s::connect(&opts.connect).await.unwrap();
    let mut logs = Vec::new();
    let outcome = k8s::submit_with(&conn, &opts, &mut logs).await.unwrap();
    match &outcome {
        JobOutcome::Failed { job, reason, .. } => {
            assert_eq!(job, "sluice-training-test");
            assert!(reason.starts_with("BackoffLimitExceeded"), "{reason}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(outcome.exit_code(), 1);
    assert!(
        String::from_utf8(logs).unwrap().contains("ingest done"),
        "failed pods' logs are shown too"
    );
}

#[tokio::test]
async fn submit_without_wait_creates_and_returns() {
    let api = FakeApi::start(Scenario::Succeed);
    let dir = tempfile::tempdir().unwrap();
    let opts = submit_options(dir.path(), &api);
    let conn = k8s::connect(&opts.connect).await.unwrap();
    let outcome = k8s::submit_with(&conn, &opts, &mut Vec::new())
        .await
        .unwrap();
    assert!(matches!(outcome, JobOutcome::Submitted { .. }));
    let requests = api.requests();
    assert!(requests
        .iter()
        .all(|r| !r.path.ends_with("/status") && !r.path.ends_with("/log")));
}

#[tokio::test]
async fn scale_patches_the_executor_scale_subresource() {
    let api = FakeApi::start(Scenario::Succeed);
    let dir = tempfile::tempdir().unwrap();
    let opts = ScaleOptions {
        replicas: 7,
        namespace: None,
        release: "sluice".into(),
        connect: ConnectOptions {
            kubeconfig: Some(api.kubeconfig(dir.path())),
            context: None,
        },
    };
    let outcome = k8s::scale_executors(&opts).await.unwrap();
    assert_eq!((outcome.previous, outcome.replicas), (3, 7));
    assert_eq!(outcome.deployment, "sluice-executor");
    let requests = api.requests();
    let patch = find(
        &requests,
        "PATCH",
        "/apis/apps/v1/namespaces/sluice/deployments/sluice-executor/scale",
    );
    assert_eq!(patch.len(), 1);
    assert_eq!(
        patch[0].body.as_ref().unwrap(),
        &json!({"spec": {"replicas": 7}})
    );
    assert_eq!(
        patch[0].headers["content-type"],
        "application/merge-patch+json"
    );

    let bad = ScaleOptions {
        replicas: -1,
        ..opts.clone()
    };
    assert!(matches!(
        k8s::scale_executors(&bad).await,
        Err(K8sError::Options {
            option: "replicas",
            ..
        })
    ));
    let missing = ScaleOptions {
        release: "other".into(),
        ..opts
    };
    // The Role names this release's executor Deployment only.
    let err = k8s::scale_executors(&missing).await.unwrap_err();
    assert!(
        matches!(err, K8sError::Api { code: 403, .. })
            && err.to_string().contains("deployment/other-executor/scale")
            && err.to_string().contains("submitter"),
        "{err}"
    );
}

#[tokio::test]
async fn status_reports_deployments_and_recent_jobs() {
    let api = FakeApi::start(Scenario::Succeed);
    let dir = tempfile::tempdir().unwrap();
    let connect = ConnectOptions {
        kubeconfig: Some(api.kubeconfig(dir.path())),
        context: None,
    };
    let state = k8s::status(&StatusOptions {
        namespace: Some("sluice".into()),
        release: "sluice".into(),
        jobs: 5,
        connect: connect.clone(),
    })
    .await
    .unwrap();
    assert!(state.healthy());
    assert_eq!(state.scheduler.as_ref().unwrap().ready, 1);
    assert_eq!(
        (
            state.executors.as_ref().unwrap().desired,
            state.executors.as_ref().unwrap().ready
        ),
        (3, 2)
    );
    let names: Vec<_> = state
        .jobs
        .iter()
        .map(|j| (j.name.as_str(), j.state.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("sluice-training-new", "Succeeded"),
            ("sluice-training-old", "Failed")
        ]
    );
    let text = state.to_string();
    assert!(
        text.contains("sluice-executor") && text.contains("2/3 ready"),
        "{text}"
    );
    let list = api
        .requests()
        .into_iter()
        .find(|r| r.path == "/apis/batch/v1/namespaces/sluice/jobs")
        .unwrap();
    assert!(
        list.query
            .contains("app.kubernetes.io%2Fcomponent%3Dpipeline"),
        "{}",
        list.query
    );

    // Another release's Deployments are outside this release's Role.
    let other = k8s::status(&StatusOptions {
        namespace: None,
        release: "nothere".into(),
        jobs: 5,
        connect,
    })
    .await
    .unwrap_err();
    assert!(
        matches!(other, K8sError::Api { code: 403, .. })
            && other.to_string().contains("deployment/nothere-scheduler"),
        "{other}"
    );
}

#[tokio::test]
async fn forbidden_requests_say_which_role_to_bind() {
    let api = FakeApi::start(Scenario::Forbidden);
    let dir = tempfile::tempdir().unwrap();
    let opts = submit_options(dir.path(), &api);
    let err = k8s::submit(&opts).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, K8sError::Api { code: 403, .. }), "{text}");
    assert!(
        text.contains("configmap/sluice-training-test-config") && text.contains("submitter"),
        "{text}"
    );
    assert!(
        !text.contains("fake-token"),
        "errors never print credentials"
    );
}

#[tokio::test]
async fn missing_kubeconfig_and_unreachable_cluster_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-kubeconfig");
    let err = k8s::connect(&ConnectOptions {
        kubeconfig: Some(missing.clone()),
        context: None,
    })
    .await
    .err()
    .unwrap();
    let text = err.to_string();
    assert!(matches!(err, K8sError::Kubeconfig { .. }), "{text}");
    assert!(
        text.contains(&missing.display().to_string()) && text.contains("az aks get-credentials"),
        "{text}"
    );

    // A kubeconfig pointing at a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("dead");
    std::fs::write(
        &config,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: dead\n  context:\n    cluster: dead\n    user: u\ncurrent-context: dead\n\
             users:\n- name: u\n  user:\n    token: secret-token\n"
        ),
    )
    .unwrap();
    let err = k8s::connect(&ConnectOptions {
        kubeconfig: Some(config),
        context: None,
    })
    .await
    .err()
    .unwrap();
    let text = err.to_string();
    assert!(matches!(err, K8sError::Unreachable { .. }), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && !text.contains("secret-token"),
        "{text}"
    );

    let unknown_context = k8s::connect(&ConnectOptions {
        kubeconfig: Some(dir.path().join("dead")),
        context: Some("prod".into()),
    })
    .await
    .err()
    .unwrap();
    assert!(
        matches!(unknown_context, K8sError::Kubeconfig { .. }),
        "{unknown_context}"
    );
}

#[test]
fn configs_with_credentials_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leaky.yaml");
    std::fs::write(
        &path,
        "pipeline: training\nlake:\n  azure:\n    account_key: c2VjcmV0\n",
    )
    .unwrap();
    let err = k8s::render_submission(&SubmitOptions::new(&path), "sluice").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("lake.azure.account_key") && text.contains("leaky.yaml"),
        "{text}"
    );
    assert!(
        !text.contains("c2VjcmV0"),
        "the secret value is never printed"
    );
}

#[test]
fn bad_steps_and_names_are_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SubmitOptions::new(write_config(dir.path()));
    opts.steps = vec!["trian".into()];
    assert!(k8s::render_submission(&opts, "sluice")
        .unwrap_err()
        .to_string()
        .contains("unknown step 'trian'"));
    opts.steps = vec![];
    opts.name = Some("Bad_Name".into());
    assert!(matches!(
        k8s::render_submission(&opts, "sluice"),
        Err(K8sError::Options {
            option: "--name",
            ..
        })
    ));
    opts.name = None;
    opts.image = Some("sluiceacr.azurecr.io/sluice:0.1.0".into());
    opts.workload_identity = true;
    let rendered = k8s::render_submission(&opts, "sluice").unwrap();
    let name = rendered.job.metadata.name.unwrap();
    assert!(
        name.starts_with("sluice-training-") && name.len() <= 52,
        "{name}"
    );
}

#[tokio::test]
async fn the_submitter_role_grants_exactly_what_the_commands_use() {
    let api = FakeApi::start(Scenario::Succeed);
    let dir = tempfile::tempdir().unwrap();
    let submit = SubmitOptions {
        wait: true,
        ..submit_options(dir.path(), &api)
    };
    let conn = k8s::connect(&submit.connect).await.unwrap();
    k8s::submit_with(&conn, &submit, &mut Vec::new())
        .await
        .unwrap();
    k8s::scale_executors(&ScaleOptions {
        replicas: 3,
        namespace: None,
        release: "sluice".into(),
        connect: submit.connect.clone(),
    })
    .await
    .unwrap();
    k8s::status(&StatusOptions {
        namespace: None,
        release: "sluice".into(),
        jobs: 5,
        connect: submit.connect.clone(),
    })
    .await
    .unwrap();
    let refused: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path != "/version")
        .filter(|r| {
            let (grant, name) = attributes(r).unwrap();
            !allowed(&submitter_rules(), &grant, name.as_deref())
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(refused.is_empty(), "the Role lacks: {refused:?}");
    let granted: BTreeSet<Grant> = submitter_rules()
        .iter()
        .flat_map(|r| {
            r.api_groups.iter().flat_map(move |g| {
                r.resources.iter().flat_map(move |res| {
                    r.verbs
                        .iter()
                        .map(move |v| (g.clone(), res.clone(), v.clone()))
                })
            })
        })
        .collect();
    let used = api.used();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "the Role grants what no command uses (too broad): {unused:?}"
    );
    assert_eq!(used, granted);
}

#[test]
fn submitted_pods_get_the_run_id_lake_and_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("training.yaml");
    std::fs::write(
        &path,
        "name: t\nkind: training\nlake: ${SLUICE_LAKE}\nengine:\n  mode: ballista\n  scheduler: ${SLUICE_SCHEDULER}\nsteps: []\n",
    )
    .unwrap();
    let mut opts = SubmitOptions::new(&path);
    opts.release = "prod".into();
    opts.name = Some("prod-training-1".into());
    opts.image = Some("acr.io/sluice:1".into());
    opts.workload_identity = true;
    opts.steps = vec!["ingest".into()];
    opts.lake = Some("abfss://lake@acct.dfs.core.windows.net/".into());
    let job = k8s::render_submission(&opts, "sluice").unwrap().job;
    let pod = job.spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    // The Job's retries re-run the same args: the same run continues.
    assert_eq!(
        container.args.as_ref().unwrap(),
        &[
            "run",
            "/etc/sluice/config.yaml",
            "--steps",
            "ingest",
            "--run-id",
            "prod-training-1"
        ]
    );
    let env: BTreeMap<_, _> = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.as_str(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        env["SLUICE_LAKE"],
        "abfss://lake@acct.dfs.core.windows.net/"
    );
    assert_eq!(env["SLUICE_SCHEDULER"], "df://prod-scheduler:50050");

    opts.run_id = Some("daily-2026-11-26".into());
    opts.env = vec![("HTTPS_PROXY".into(), "http://proxy:3128".into())];
    let job = k8s::render_submission(&opts, "sluice").unwrap().job;
    let container = &job.spec.unwrap().template.spec.unwrap().containers[0];
    let args = container.args.as_ref().unwrap();
    assert_eq!(args[args.len() - 1], "daily-2026-11-26");
    assert!(container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .any(|e| e.name == "HTTPS_PROXY"));
}

#[test]
fn submit_refuses_a_pod_without_a_usable_lake_or_image() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, lake: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("name: t\nkind: training\nlake: {lake}\nsteps: []\n"),
        )
        .unwrap();
        path
    };
    let base = |path: &Path| {
        let mut opts = SubmitOptions::new(path);
        opts.image = Some("acr.io/sluice:1".into());
        opts.workload_identity = true;
        opts
    };
    // ${SLUICE_LAKE} without --lake (the chart has no default lake.url).
    let err =
        k8s::render_submission(&base(&write("a.yaml", "${SLUICE_LAKE}")), "sluice").unwrap_err();
    assert!(
        matches!(
            err,
            K8sError::Options {
                option: "--lake",
                ..
            }
        ),
        "{err}"
    );
    // An Azure lake and no credentials for the pod.
    let mut opts = base(&write(
        "b.yaml",
        "abfss://lake@acct.dfs.core.windows.net/x?sig=SECRETSAS",
    ));
    opts.workload_identity = false;
    let text = k8s::render_submission(&opts, "sluice")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("b.yaml")
            && text.contains("key 'lake'")
            && text.contains("--workload-identity")
            && !text.contains("SECRETSAS"),
        "{text}"
    );
    opts.storage_key_secret = Some("lake-key".into());
    assert!(k8s::render_submission(&opts, "sluice").is_ok());
    // A local lake would be written to the pod's read-only root filesystem.
    let text = k8s::render_submission(&base(&write("c.yaml", "./lake")), "sluice")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("c.yaml") && text.contains("read-only root filesystem"),
        "{text}"
    );
    // No image: the chart names none by default.
    let mut opts = base(&write("d.yaml", "abfss://lake@acct.dfs.core.windows.net/"));
    opts.image = None;
    assert!(matches!(
        k8s::render_submission(&opts, "sluice"),
        Err(K8sError::Options {
            option: "--image",
            ..
        })
    ));
    // A bad run id names the option.
    let mut opts = base(&write("e.yaml", "abfss://lake@acct.dfs.core.windows.net/"));
    opts.run_id = Some("a/b".into());
    assert!(matches!(
        k8s::render_submission(&opts, "sluice"),
        Err(K8sError::Options {
            option: "--run-id",
            ..
        })
    ));
}

#[tokio::test]
async fn the_timeout_also_bounds_following_the_logs() {
    let api = FakeApi::start(Scenario::EndlessLogs);
    let dir = tempfile::tempdir().unwrap();
    let opts = SubmitOptions {
        wait: true,
        timeout: Some(Duration::from_secs(2)),
        ..submit_options(dir.path(), &api)
    };
    let conn = k8s::connect(&opts.connect).await.unwrap();
    let started = std::time::Instant::now();
    let mut logs = Vec::new();
    let err = k8s::submit_with(&conn, &opts, &mut logs).await.unwrap_err();
    assert!(matches!(err, K8sError::Timeout { seconds: 2, .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "gave up after {:?}",
        started.elapsed()
    );
}
