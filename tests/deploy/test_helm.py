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
    assert set(_by_kind(docs, "Role")) == {"sluice-submitter", "sluice-airflow"}
    assert "sluice-executor" in _by_kind(docs, "PodDisruptionBudget")
    assert len(_by_kind(docs, "NetworkPolicy")) == 3
    for doc in docs:
        assert doc["metadata"].get("namespace") == "sluice", f"{doc['kind']}/{doc['metadata']['name']} has no namespace"
    # The chart keeps the long-lived parts only: pipeline runs are Jobs/pods
    # that `sluice submit` and Airflow create, never a Helm hook.
    assert not _by_kind(docs, "Job") and not _by_kind(docs, "CronJob")
    assert set(_by_kind(docs, "ConfigMap")) == {"sluice-pipelines"}
    for doc in docs:
        annotations = doc["metadata"].get("annotations") or {}
        assert not any(k.startswith("helm.sh/hook") for k in annotations), doc["metadata"]["name"]


def _pod_specs(docs):
    for doc in docs:
        if doc["kind"] == "Deployment":
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
    # sluice-scheduler serves /healthz and /readyz on its gRPC port (there is no /api/state).
    assert sched["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "grpc"}
    assert sched["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "grpc"}
    assert {p["containerPort"] for p in sched["ports"]} == {50050}
    assert "--port=50050" in sched["args"]
    exe = deployments["sluice-executor"]["spec"]["template"]["spec"]["containers"][0]
    assert exe["command"] == ["sluice-executor"]
    # The executor's health server, on the port the chart passes with --health-port.
    assert exe["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert exe["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in exe["ports"]}
    assert ports == {"flight": 50051, "grpc": 50052, "health": 50053}
    assert f"--health-port={ports['health']}" in exe["args"]
    assert f"--port={ports['flight']}" in exe["args"]
    assert f"--grpc-port={ports['grpc']}" in exe["args"]
    assert "--scheduler-host=sluice-scheduler" in exe["args"]
    assert "--external-host=$(POD_IP)" in exe["args"]


def test_executor_replicas_anti_affinity_and_pdb(rendered):
    name, docs = rendered
    values = helm.Chart.load(str(CHART)).values if name == "default" else load_values(name)
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
        if doc["kind"] == "Deployment":
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


def test_pipelines_configmap_holds_the_cluster_configs():
    """The DAGs' configs: abfss:// lake from SLUICE_LAKE, Ballista on the release's scheduler."""
    values = load_values("production")
    docs = manifests_of(render_chart(values))
    cm = _by_kind(docs, "ConfigMap")["sluice-pipelines"]
    assert set(cm["data"]) == {"training.yaml", "inference.yaml"}
    for key, kind in (("training.yaml", "training"), ("inference.yaml", "inference")):
        config = yaml.safe_load(cm["data"][key])
        assert config["kind"] == kind
        assert config["lake"] == "${SLUICE_LAKE}"
        assert config["engine"] == {"mode": "ballista", "scheduler": "${SLUICE_SCHEDULER}"}
    # Every Sluice container gets the lake URL.
    for name, spec in _pod_specs(docs):
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        assert env["SLUICE_LAKE"] == "abfss://lake@sluicelake.dfs.core.windows.net/", name
    # A value replaces a shipped config ('$' survives).
    values["pipelines"] = {"training": {"name": "small", "kind": "training", "lake": "${SLUICE_LAKE}", "steps": []}}
    cm = _by_kind(manifests_of(render_chart(values)), "ConfigMap")["sluice-pipelines"]
    assert yaml.safe_load(cm["data"]["training.yaml"])["lake"] == "${SLUICE_LAKE}"
    assert yaml.safe_load(cm["data"]["inference.yaml"])["kind"] == "inference"


def test_resource_names_follow_the_release_name():
    """`sluice scale/status --release R` address R-executor / R-scheduler for any R."""
    import helm_python as helm_mod

    chart = helm_mod.Chart.load(str(CHART))
    docs = manifests_of(chart.render(load_values("production"), name="prod", namespace="sluice", is_install=True))
    assert set(_by_kind(docs, "Deployment")) == {"prod-scheduler", "prod-executor"}
    exe = _by_kind(docs, "Deployment")["prod-executor"]["spec"]["template"]["spec"]["containers"][0]
    assert "--scheduler-host=prod-scheduler" in exe["args"]
    role = _by_kind(docs, "Role")["prod-submitter"]
    scale = next(r for r in role["rules"] if r["resources"] == ["deployments/scale"])
    assert scale["resourceNames"] == ["prod-executor"]


def test_submitter_role_is_the_rules_file_and_minimal():
    """One source for the Role: files/rbac/submitter-rules.yaml (the code's
    requests are checked against it in cluster/tests/k8s_api.rs)."""
    docs = manifests_of(render_chart(load_values("production")))
    role = _by_kind(docs, "Role")["sluice-submitter"]
    rules_file = (CHART / "files" / "rbac" / "submitter-rules.yaml").read_text().replace("${RELEASE}", "sluice")
    assert role["rules"] == yaml.safe_load(rules_file)
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert ("", "configmaps", "patch") in granted, "submit patches the owner reference"
    assert ("batch", "jobs/status", "get") in granted, "submit --wait reads the Job status"
    assert not any(r == "pods" and v in ("create", "delete", "patch") for _, r, v in granted), "only Airflow creates pods"
    for rule in role["rules"]:
        if rule["resources"] in (["deployments"], ["deployments/scale"]):
            assert rule.get("resourceNames"), rule
    airflow = _by_kind(docs, "Role")["sluice-airflow"]
    assert {r for rule in airflow["rules"] for r in rule["resources"]} == {"pods", "pods/log", "events"}
    binding = _by_kind(docs, "RoleBinding")["sluice-airflow"]
    assert binding["subjects"][0]["name"] == "airflow-worker"


def _schema_error(values) -> str:
    chart = helm.Chart.load(str(CHART))
    chart.render(load_values("production"), name="sluice", namespace="sluice", is_install=True)
    with pytest.raises(helm.HelmError) as err:
        chart.render(values, name="sluice", namespace="sluice", is_install=True)
    return str(err.value)


def test_render_fails_naming_the_key_for_a_missing_tag_and_a_lake_without_credentials():
    values = load_values("production")
    del values["image"]["tag"]
    text = _schema_error(values)
    assert "image.tag is required" in text, text
    values = load_values("production")
    values["azure"]["workloadIdentity"] = {"enabled": False, "clientId": ""}
    values["azure"]["existingSecret"] = ""
    text = _schema_error(values)
    assert "lake.url" in text and "azure.workloadIdentity.enabled" in text, text


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"image": {"repository": "x", "tag": "latest", "pullPolicy": "Always"}}, "tag"),
        ({"executor": {"replicas": -1}}, "replicas"),
        ({"pipelineJob": {"backoffLimit": -1}}, "backoffLimit"),
        ({"executor": {"healthPort": 0}}, "healthPort"),
        ({"lake": {"url": "ftp://x"}}, "url"),
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
