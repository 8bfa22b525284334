"""Shared fixtures of the deployment test suite (run with tests/deploy/run.sh)."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "sluice"
PRODUCTION_VALUES = ROOT / "helm" / "values" / "production.yaml"
TERRAFORM = ROOT / "terraform"
DAGS = ROOT / "airflow" / "dags"
DOCKERFILE = ROOT / "Dockerfile"
SKIPS = Path(__file__).with_name("checkov-skips.yaml")
# Kubernetes version the manifests are validated against (AKS supported range).
KUBE_VERSION = "1.33"
RELEASE = "sluice"
NAMESPACE = "sluice"

VALUE_SETS = {
    "default": None,
    "production": PRODUCTION_VALUES,
}
# The chart has no default image tag (a missing tag fails the render): the
# "default" value set is the chart's defaults plus the one required value.
DEFAULT_SET = {"image": {"tag": "0.1.0"}}


def load_values(name: str) -> dict:
    """The values of a named value set (the chart defaults + an image tag for "default")."""
    path = VALUE_SETS[name]
    return yaml.safe_load(path.read_text()) if path else copy.deepcopy(DEFAULT_SET)


def render_chart(values: dict | None) -> dict[str, str]:
    """Render the chart offline with helm-python-sdk (Helm v4 Go SDK, no binary)."""
    import helm_python as helm

    chart = helm.Chart.load(str(CHART))
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests_of(rendered: dict[str, str]) -> list[dict]:
    """Every Kubernetes object in a render (NOTES.txt excluded)."""
    docs = []
    for path, text in sorted(rendered.items()):
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("_source", path)
                docs.append(doc)
    return docs


def strip_source(doc: dict) -> dict:
    """A manifest without the test's bookkeeping key."""
    return {k: v for k, v in doc.items() if k != "_source"}


@pytest.fixture(scope="session", params=sorted(VALUE_SETS))
def rendered(request) -> tuple[str, list[dict]]:
    """(value set name, rendered manifests) for each value set."""
    return request.param, manifests_of(render_chart(load_values(request.param)))


@pytest.fixture(scope="session")
def checkov_bin() -> str:
    """The checkov CLI from its own venv (run.sh exports SLUICE_CHECKOV)."""
    path = os.environ.get("SLUICE_CHECKOV") or shutil.which("checkov")
    if not path:
        pytest.fail("checkov not found: run tests/deploy/run.sh, which installs it and exports SLUICE_CHECKOV")
    return path


@pytest.fixture(scope="session")
def checkov_skips() -> dict[str, dict[str, str]]:
    """Skipped checkov checks with their reasons, per framework."""
    return yaml.safe_load(SKIPS.read_text())


def binary_dir() -> Path | None:
    """Directory of the built sluice, sluice-scheduler and sluice-executor
    (run.sh exports SLUICE_BIN from $CARGO_TARGET_DIR/release)."""
    path = os.environ.get("SLUICE_BIN")
    if not path:
        return None
    d = Path(path).parent
    if all(os.access(d / b, os.X_OK) for b in ("sluice", "sluice-scheduler", "sluice-executor")):
        return d
    return None


@pytest.fixture(scope="session")
def binaries() -> Path:
    """The directory holding the three binaries ("the image's /usr/local/bin")."""
    d = binary_dir()
    if d is None:
        pytest.skip("no built binaries next to SLUICE_BIN: cargo build --release --workspace --bins")
    return d


def expand_k8s_vars(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of command/args from the container env."""
    import re

    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def container_env(container: dict, pod_ip: str) -> dict[str, str]:
    """A container's env with plain values (fieldRef status.podIP -> pod_ip,
    secretKeyRef -> a placeholder: the tests never hold a real key)."""
    env = {}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = str(e["value"])
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[e["name"]] = pod_ip
        elif "secretKeyRef" in e.get("valueFrom", {}):
            env[e["name"]] = "secret-from-" + e["valueFrom"]["secretKeyRef"]["name"]
    return env


# The lake the DAG tests import the DAGs with (the Airflow env's SLUICE_LAKE).
DAG_LAKE = "abfss://lake@sluicelake.dfs.core.windows.net/"


@pytest.fixture(scope="session")
def dagbag(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
    os.environ["SLUICE_LAKE"] = DAG_LAKE
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


