"""`sluice submit` and the chart render the pipeline Job from one template
(helm/sluice/files/pipeline-job.yaml): with the same inputs both produce the
same pod spec, and the CLI's manifests validate strictly. Needs a built
`sluice` binary with the submit subcommand (run.sh finds it in
$CARGO_TARGET_DIR); the Rust side is also covered by engine/tests/k8s_api.rs."""

from __future__ import annotations

import os
import subprocess

import kubernetes_validate
import pytest
import yaml

from conftest import CHART, KUBE_VERSION, load_values, manifests_of, render_chart, strip_source


@pytest.fixture(scope="module")
def sluice_bin() -> str:
    path = os.environ.get("SLUICE_BIN")
    if not path or not os.access(path, os.X_OK):
        pytest.skip("no built sluice binary (SLUICE_BIN / $CARGO_TARGET_DIR/release/sluice): build it with cargo build --release -p sluice-engine")
    probe = subprocess.run([path, "submit", "--help"], capture_output=True, text=True)
    if probe.returncode != 0 or "--dry-run" not in probe.stdout:
        pytest.skip(f"{path} has no `submit --dry-run` subcommand yet")
    return path


def test_cli_and_chart_render_the_same_job(sluice_bin, tmp_path):
    values = load_values("production")
    config = values["pipelineJob"]["config"]
    config_file = tmp_path / "training.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=True))
    values["pipelineJob"]["config"] = yaml.safe_load(config_file.read_text())
    values["pipelineJob"]["steps"] = ["train"]
    values["pipelineJob"]["extraArgs"] = ["--model", "gbt"]
    # The CLI takes the chart's defaults for what it has no flag for.
    chart_defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in ("resources", "nodeSelector", "tolerations", "tmpSizeLimit", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        values["pipelineJob"][key] = chart_defaults["pipelineJob"][key]
    values["logLevel"] = chart_defaults["logLevel"]
    chart_docs = manifests_of(render_chart(values))
    chart_job = next(d for d in chart_docs if d["kind"] == "Job")

    image = f"{values['image']['repository']}:{values['image']['tag']}"
    proc = subprocess.run(
        [sluice_bin, "submit", str(config_file), "--dry-run", "--namespace", "sluice", "--release", "sluice",
         "--image", image, "--steps", "train", "--model", "gbt", "--name", "sluice-training",
         "--storage-account", values["azure"]["storageAccountName"], "--workload-identity"],
        capture_output=True, text=True, check=True,
    )
    cli_docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert sorted(d["kind"] for d in cli_docs) == ["ConfigMap", "Job"]
    for doc in cli_docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    cli_job = next(d for d in cli_docs if d["kind"] == "Job")
    cli_cm = next(d for d in cli_docs if d["kind"] == "ConfigMap")
    assert yaml.safe_load(cli_cm["data"]["config.yaml"]) == config

    # Same pod spec; metadata differs only by who manages it (Helm vs sluice-submit).
    assert cli_job["spec"]["template"]["spec"] == strip_source(chart_job)["spec"]["template"]["spec"]
    for key in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        assert cli_job["spec"][key] == chart_job["spec"][key], key
    shared = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component", "sluice.dev/pipeline", "azure.workload.identity/use"}
    cli_labels = cli_job["spec"]["template"]["metadata"]["labels"]
    chart_labels = chart_job["spec"]["template"]["metadata"]["labels"]
    assert {k: cli_labels[k] for k in shared} == {k: chart_labels[k] for k in shared}
