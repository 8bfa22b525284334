"""Shared fixtures of the deployment test suite (run with tests/deploy/run.sh)."""

from __future__ import annotations

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


def load_values(name: str) -> dict | None:
    """The values of a named value set (None = the chart defaults)."""
    path = VALUE_SETS[name]
    return yaml.safe_load(path.read_text()) if path else None


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
