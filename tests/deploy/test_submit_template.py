"""`sluice submit` renders its Job from the chart's files/pipeline-job.yaml
with the chart's values.yaml defaults (both embedded in the binary): the pod
it creates follows the rendered chart (image, ServiceAccount, the env of
every Sluice container plus SLUICE_SCHEDULER, security contexts, selector
labels admitted by the NetworkPolicies), it is a plain Job (no Helm hook),
and its manifests validate strictly. Needs the built `sluice` binary."""

from __future__ import annotations

import os
import subprocess

import kubernetes_validate
import pytest
import yaml

from conftest import CHART, KUBE_VERSION, load_values, manifests_of, render_chart, strip_source


def submit_dry_run(binaries, config, *extra) -> list[dict]:
    proc = subprocess.run(
        [str(binaries / "sluice"), "submit", str(config), "--dry-run", "--namespace", "sluice", "--release", "sluice", *extra],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def test_cli_job_follows_the_rendered_chart(binaries, tmp_path):
    values = load_values("production")
    # What the CLI takes from the chart's values.yaml defaults.
    values["logLevel"] = yaml.safe_load((CHART / "values.yaml").read_text())["logLevel"]
    chart_docs = manifests_of(render_chart(values))
    exe = next(d for d in chart_docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "sluice-executor")
    chart_pod = strip_source(exe)["spec"]["template"]
    chart_container = chart_pod["spec"]["containers"][0]

    config = tmp_path / "training.yaml"
    config.write_text((CHART / "files" / "pipelines" / "training.yaml").read_text())
    image = f"{values['image']['repository']}:{values['image']['tag']}"
    docs = submit_dry_run(
        binaries, config, "--image", image, "--steps", "train", "--model", "gbt", "--name", "sluice-training-1",
        "--storage-account", values["azure"]["storageAccountName"], "--workload-identity", "--lake", values["lake"]["url"],
    )
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Job"]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        assert not any(k.startswith("helm.sh/hook") for k in (doc["metadata"].get("annotations") or {}))
    job = next(d for d in docs if d["kind"] == "Job")
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert cm["data"]["config.yaml"] == config.read_text()
    pod = job["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == chart_container["image"]
    assert pod["spec"]["serviceAccountName"] == chart_pod["spec"]["serviceAccountName"]
    assert pod["spec"]["securityContext"] == chart_pod["spec"]["securityContext"]
    assert container["securityContext"] == chart_container["securityContext"]
    # The chart's env list, plus the scheduler URL of this release.
    chart_env = [e for e in chart_container["env"] if e["name"] != "POD_IP"]
    expected = chart_env + [{"name": "SLUICE_SCHEDULER", "value": "df://sluice-scheduler:50050"}]
    assert container["env"] == expected
    assert container["args"] == ["run", "/etc/sluice/config.yaml", "--steps", "train", "--run-id", "sluice-training-1", "--model", "gbt"]
    labels = pod["metadata"]["labels"]
    for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "azure.workload.identity/use"):
        assert labels[key] == chart_pod["metadata"]["labels"][key], key
    assert labels["app.kubernetes.io/component"] == "pipeline"
    # The driver pod is admitted by the release's NetworkPolicies.
    for policy in (d for d in chart_docs if d["kind"] == "NetworkPolicy"):
        for rule in policy["spec"]["ingress"]:
            for peer in rule.get("from", []):
                for k, v in peer.get("podSelector", {}).get("matchLabels", {}).items():
                    assert labels.get(k) == v, (policy["metadata"]["name"], k)


@pytest.mark.parametrize(
    "lake_line, extra, message",
    [
        ("lake: ${SLUICE_LAKE}", [], "--lake"),
        ("lake: abfss://lake@acct.dfs.core.windows.net/", [], "key 'lake'"),
        ("lake: ./lake", ["--workload-identity"], "read-only root filesystem"),
    ],
)
def test_submit_refuses_a_lake_the_pod_cannot_use(binaries, tmp_path, lake_line, extra, message):
    config = tmp_path / "bad.yaml"
    config.write_text(f"name: t\nkind: training\n{lake_line}\nsteps: []\n")
    proc = subprocess.run(
        [str(binaries / "sluice"), "submit", str(config), "--dry-run", "--namespace", "sluice", "--image", "acr.io/sluice:1", *extra],
        capture_output=True, text=True,
        # No SLUICE_LAKE from the caller: `--lake` (or that variable) is what is missing.
        env={k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")},
    )
    assert proc.returncode == 1, proc
    assert message in proc.stderr, proc.stderr


def test_submit_without_an_image_names_the_option(binaries, tmp_path):
    config = tmp_path / "t.yaml"
    config.write_text("name: t\nkind: training\nlake: abfss://lake@acct.dfs.core.windows.net/\nsteps: []\n")
    proc = subprocess.run(
        [str(binaries / "sluice"), "submit", str(config), "--dry-run", "--namespace", "sluice", "--workload-identity"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1 and "--image" in proc.stderr, proc
