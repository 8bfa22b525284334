"""The chart lints clean, renders for default and production values, every
manifest validates strictly against the Kubernetes schema, and the hardening the
issue asks for is present in what is rendered."""

from __future__ import annotations

import copy
import json

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from conftest import CHART, KUBE_VERSION, VALUE_SETS, load_values, manifests_of, render_chart, strip_source


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_chart_lints_clean_in_strict_mode(value_set):
    report = helm.lint(str(CHART), load_values(value_set), strict=True, namespace="sluice", kube_version="v1.33.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["total_charts_linted"] == 1
    assert not report["errors"], report["errors"]
    assert not problems, problems


def test_every_rendered_manifest_validates_strictly(rendered):
    name, docs = rendered
    assert docs, f"{name}: nothing rendered"
    for doc in docs:
        try:
            kubernetes_validate.validate(strip_source(doc), KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{name}: {doc['_source']} {doc['kind']}/{doc['metadata']['name']}: {err}")


def test_strict_validation_rejects_an_unknown_field(rendered):
    """The validator really is strict: a misspelled field in a Deployment fails."""
    _, docs = rendered
    deployment = copy.deepcopy(strip_source(next(d for d in docs if d["kind"] == "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


def _by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_expected_objects_are_rendered(rendered):
    name, docs = rendered
    deployments = _by_kind(docs, "Deployment")
    assert set(deployments) == {"sluice-scheduler", "sluice-executor"}
    assert "sluice-scheduler" in _by_kind(docs, "Service")
    assert "sluice" in _by_kind(docs, "ServiceAccount")
    assert "sluice-submitter" in _by_kind(docs, "Role")
    assert "sluice-executor" in _by_kind(docs, "PodDisruptionBudget")
    assert len(_by_kind(docs, "NetworkPolicy")) == 3
    for doc in docs:
        assert doc["metadata"].get("namespace") == "sluice", f"{doc['kind']}/{doc['metadata']['name']} has no namespace"
    jobs = _by_kind(docs, "Job")
    if name == "production":
        assert set(jobs) == {"sluice-training"}
        assert "sluice-training-config" in _by_kind(docs, "ConfigMap")
    else:
        assert not jobs, "the pipeline Job is opt-in (pipelineJob.enabled)"


def _pod_specs(docs):
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def test_pods_are_hardened(rendered):
    _, docs = rendered
    for name, spec in _pod_specs(docs):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 10001, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["serviceAccountName"] == "sluice", name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], name
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{name}: read-only root fs needs a writable /tmp"


def test_probes_and_ports(rendered):
    _, docs = rendered
    deployments = _by_kind(docs, "Deployment")
    sched = deployments["sluice-scheduler"]["spec"]["template"]["spec"]["containers"][0]
    assert sched["command"] == ["sluice-scheduler"]
    assert sched["readinessProbe"]["httpGet"]["path"] == "/api/state"
    assert sched["livenessProbe"]["httpGet"]["port"] == "grpc"
    assert {p["containerPort"] for p in sched["ports"]} == {50050}
    exe = deployments["sluice-executor"]["spec"]["template"]["spec"]["containers"][0]
    assert exe["command"] == ["sluice-executor"]
    assert exe["readinessProbe"]["tcpSocket"]["port"] == "flight"
    assert exe["livenessProbe"]["tcpSocket"]["port"] == "flight"
    assert {p["containerPort"] for p in exe["ports"]} == {50051, 50052}
    assert "--scheduler-host=sluice-scheduler" in exe["args"]
    assert "--external-host=$(POD_IP)" in exe["args"]


def test_executor_replicas_anti_affinity_and_pdb(rendered):
    name, docs = rendered
    values = load_values(name) or helm.Chart.load(str(CHART)).values
    exe = _by_kind(docs, "Deployment")["sluice-executor"]
    assert exe["spec"]["replicas"] == values["executor"]["replicas"]
    anti = exe["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    key = (
        "requiredDuringSchedulingIgnoredDuringExecution"
        if values["executor"]["podAntiAffinity"] == "hard"
        else "preferredDuringSchedulingIgnoredDuringExecution"
    )
    assert key in anti
    pdb = _by_kind(docs, "PodDisruptionBudget")["sluice-executor"]
    assert pdb["spec"]["selector"]["matchLabels"] == exe["spec"]["selector"]["matchLabels"]


def test_autoscaling_renders_an_hpa_and_drops_replicas():
    values = load_values("production")
    values["executor"]["autoscaling"] = {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 12,
        "targetCPUUtilizationPercentage": 75,
    }
    docs = manifests_of(render_chart(values))
    hpa = _by_kind(docs, "HorizontalPodAutoscaler")["sluice-executor"]
    assert hpa["spec"]["maxReplicas"] == 12
    assert hpa["spec"]["scaleTargetRef"]["name"] == "sluice-executor"
    assert "replicas" not in _by_kind(docs, "Deployment")["sluice-executor"]["spec"]
    for doc in docs:
        kubernetes_validate.validate(strip_source(doc), KUBE_VERSION, strict=True)


def test_workload_identity_wiring_in_production():
    docs = manifests_of(render_chart(load_values("production")))
    sa = _by_kind(docs, "ServiceAccount")["sluice"]
    assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"]
    for name, spec in _pod_specs(docs):
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["AZURE_STORAGE_ACCOUNT_NAME"]["value"] == "sluicelake", name
        assert "AZURE_STORAGE_ACCOUNT_KEY" not in env, f"{name}: workload identity needs no key"
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            assert doc["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"


def test_storage_key_comes_only_from_a_secret_reference():
    values = load_values("production")
    values["azure"]["workloadIdentity"] = {"enabled": False, "clientId": ""}
    values["azure"]["existingSecret"] = "sluice-lake-key"
    docs = manifests_of(render_chart(values))
    for name, spec in _pod_specs(docs):
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        ref = env["AZURE_STORAGE_ACCOUNT_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "sluice-lake-key", "key": "azure-storage-account-key"}, name
        assert "value" not in env["AZURE_STORAGE_ACCOUNT_KEY"], name


def test_pipeline_job_runs_the_configured_steps():
    values = load_values("production")
    values["pipelineJob"]["steps"] = ["train"]
    values["pipelineJob"]["extraArgs"] = ["--model", "gbt"]
    values["pipelineJob"]["config"]["note"] = "costs ${HOME} nothing"
    docs = manifests_of(render_chart(values))
    job = _by_kind(docs, "Job")["sluice-training"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["sluice"]
    assert container["args"] == ["run", "/etc/sluice/config.yaml", "--steps", "train", "--model", "gbt"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 1
    cm = _by_kind(docs, "ConfigMap")["sluice-training-config"]
    # The config round-trips exactly, '$' included (escaped as \u0024 in transit).
    assert yaml.safe_load(cm["data"]["config.yaml"]) == values["pipelineJob"]["config"]
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "sluice-training-config"


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"image": {"repository": "x", "tag": "latest", "pullPolicy": "Always"}}, "tag"),
        ({"executor": {"replicas": -1}}, "replicas"),
        ({"pipelineJob": {"steps": ["trian"]}}, "steps"),
        ({"extraEnv": [{"name": "AZURE_STORAGE_ACCOUNT_KEY", "value": "x"}]}, "extraEnv"),
        ({"unknownKey": 1}, "unknownKey"),
    ],
)
def test_values_schema_rejects_bad_values(patch, key):
    chart = helm.Chart.load(str(CHART))
    values = copy.deepcopy(chart.values)

    def merge(dst, src):
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                merge(dst[k], v)
            else:
                dst[k] = v

    merge(values, patch)
    chart.validate_schema(chart.values)  # the defaults pass
    with pytest.raises(helm.HelmValuesError) as err:
        chart.validate_schema(values)
    assert key in str(err.value), str(err.value)


def test_values_schema_documents_every_default_key():
    """values.yaml and values.schema.json describe the same keys."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value, node, path):
        if isinstance(value, dict) and node.get("type") == "object" and "properties" in node:
            for k, v in value.items():
                assert k in node["properties"], f"values.yaml key {path + k} is not in values.schema.json"
                walk(v, node["properties"][k], f"{path}{k}.")

    walk(defaults, schema, "")
