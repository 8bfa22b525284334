"""The DAGs import with DagBag (no database), have the expected task graph
(train GBT || train RF truly parallel), retries and timeouts, and each task's
pod renders to a manifest that validates strictly against Kubernetes."""

from __future__ import annotations

import os
from types import SimpleNamespace

import kubernetes_validate
import pytest

from conftest import DAGS, KUBE_VERSION


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def edges(dag) -> set[tuple[str, str]]:
    return {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"sluice_training", "sluice_inference"}


def test_training_graph_trains_gbt_and_rf_in_parallel(dagbag):
    dag = dagbag.dags["sluice_training"]
    assert edges(dag) == {
        ("ingest", "features"),
        ("features", "train_gbt"),
        ("features", "train_rf"),
        ("train_gbt", "evaluate"),
        ("train_rf", "evaluate"),
        ("evaluate", "deploy"),
    }
    gbt, rf = dag.get_task("train_gbt"), dag.get_task("train_rf")
    # Truly parallel: neither is upstream of the other, and the DAG lets both run at once.
    assert rf.task_id not in gbt.get_flat_relative_ids(upstream=True)
    assert gbt.task_id not in rf.get_flat_relative_ids(upstream=True)
    assert dag.max_active_tasks >= 2
    assert gbt.arguments[-2:] == ["--model", "gbt"]
    assert rf.arguments[-2:] == ["--model", "rf"]


def test_inference_graph(dagbag):
    dag = dagbag.dags["sluice_inference"]
    assert edges(dag) == {("ingest", "features"), ("features", "predict")}


@pytest.mark.parametrize("dag_id", ["sluice_training", "sluice_inference"])
def test_tasks_have_retries_timeouts_and_run_one_step(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert set(dag.params.keys()) >= {"image", "config", "namespace"}
    assert dag.dagrun_timeout is not None
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
        assert task.execution_timeout is not None, task.task_id
        assert task.cmds == ["sluice"]
        args = task.arguments
        assert args[0] == "run" and args[1] == "{{ params.config }}"
        assert args[2] == "--steps" and args[3] in {"ingest", "features", "train", "evaluate", "deploy", "predict"}
        assert "--run-id" in args, "step pods of one DAG run share one Sluice run"
        assert task.image == "{{ params.image }}"


def _render_pod(dag, task):
    """Render the task's templates with a minimal context and build its pod."""
    from kubernetes.client import ApiClient

    params = {k: dag.params[k] for k in dag.params.keys()}
    context = {
        "params": params,
        "dag_run": SimpleNamespace(run_id="scheduled__2026-11-26T00:00:00+00:00"),
        "run_id": "scheduled__2026-11-26T00:00:00+00:00",
        "ds": "2026-11-26",
        "task": task,
        "dag": dag,
    }
    env = dag.get_template_env()
    for field in ("image", "namespace", "arguments"):
        setattr(task, field, task.render_template(getattr(task, field), context, env))
    pod = task.build_pod_request_obj(dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)


@pytest.mark.parametrize("dag_id", ["sluice_training", "sluice_inference"])
def test_task_pods_validate_and_are_hardened(dagbag, dag_id):
    import copy

    dag = dagbag.dags[dag_id]
    for original in dag.tasks:
        task = copy.deepcopy(original)
        pod = _render_pod(dag, task)
        kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)
        spec = pod["spec"]
        container = spec["containers"][0]
        assert container["image"] == "sluiceacr.azurecr.io/sluice:0.1.0"
        assert container["args"][5] == "scheduled__2026-11-26T00-00-00-00-00"
        assert pod["metadata"]["namespace"] == "sluice"
        assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
        assert spec["serviceAccountName"] == "sluice"
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["limits"]["memory"]
        assert not any(e["name"] == "AZURE_STORAGE_ACCOUNT_KEY" for e in container.get("env", []))
