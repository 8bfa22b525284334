"""The DAGs import with DagBag (no database), have the expected task graph
(train GBT || train RF truly parallel; inference gated on a deployed model),
retries and timeouts, and each task's pod renders to a manifest that validates
strictly against Kubernetes and carries what the cluster needs (the release's
NetworkPolicy labels, the chart's pipelines ConfigMap, SLUICE_LAKE and
SLUICE_SCHEDULER)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import kubernetes_validate
import pytest

from conftest import DAGS, KUBE_VERSION, NAMESPACE, RELEASE, load_values, manifests_of, render_chart

from conftest import DAG_LAKE as LAKE


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


def pod_tasks(dag):
    """The tasks that run a `sluice` pod (all but the retraining trigger)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    return [t for t in dag.tasks if isinstance(t, KubernetesPodOperator)]


def test_inference_graph_waits_for_a_deployed_model(dagbag):
    dag = dagbag.dags["sluice_inference"]
    assert edges(dag) == {
        ("model_ready", "ingest"),
        ("ingest", "features"),
        ("features", "predict"),
        ("predict", "retrain_on_drift"),
    }
    gate = dag.get_task("model_ready")
    assert gate.cmds == ["sluice"]
    assert gate.arguments == ["models", "show", "indoor-outdoor", "latest"]
    assert gate.retries >= 12, "polls like a sensor until the first deploy"
    # The training DAG's deploy task publishes the model Asset.
    deploy = dagbag.dags["sluice_training"].get_task("deploy")
    assert [a.uri for a in deploy.outlets] == ["sluice://models/indoor-outdoor"]


def test_inference_reads_and_writes_the_runs_day(dagbag):
    """Issue 16: each daily run processes its own `date=<ds>` partition."""
    import copy

    dag = dagbag.dags["sluice_inference"]
    for step in ("ingest", "features", "predict"):
        task = dag.get_task(step)
        assert task.arguments[-2:] == ["--partition", "date={{ ds }}"], step
        args = _render_pod(dag, copy.deepcopy(task))["spec"]["containers"][0]["args"]
        assert args[-2:] == ["--partition", "date=2026-11-26"], args


def test_drift_skips_predict_and_triggers_training(dagbag):
    """Issue 19: the predict pod's exit code 3 (drifted, predictions committed)
    skips the task instead of failing it, and the retraining trigger runs only
    when predict was skipped; the cluster config makes drift exit with 3."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    dag = dagbag.dags["sluice_inference"]
    predict = dag.get_task("predict")
    assert list(predict.skip_on_exit_code) == [3]
    retrain = dag.get_task("retrain_on_drift")
    assert isinstance(retrain, TriggerDagRunOperator)
    assert retrain.trigger_dag_id == "sluice_training"
    assert retrain.trigger_rule == "all_skipped"
    assert retrain.upstream_task_ids == {"predict"}
    assert retrain.conf["reason"] == "drift"
    assert "sluice_training" in dagbag.dag_ids
    cm = next(d for d in manifests_of(render_chart(load_values("production")))
              if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{RELEASE}-pipelines")
    import yaml

    config = yaml.safe_load(cm["data"]["inference.yaml"])
    [predict_step] = [s for s in config["steps"] if s["step"] == "predict"]
    assert predict_step["drift"]["exit_on_drift"] is True


def test_a_dag_without_a_lake_fails_to_import_naming_the_param(monkeypatch, tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delenv("SLUICE_LAKE", raising=False)
    bag = DagBag(dag_folder=str(DAGS))
    errors = " ".join(bag.import_errors.values())
    assert "param lake" in errors, errors


@pytest.mark.parametrize("dag_id", ["sluice_training", "sluice_inference"])
def test_tasks_have_retries_timeouts_and_run_one_step(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert set(dag.params.keys()) >= {"image", "config", "namespace"}
    assert dag.dagrun_timeout is not None
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
        assert task.execution_timeout is not None, task.task_id
    for task in pod_tasks(dag):
        assert task.cmds == ["sluice"]
        args = task.arguments
        if task.task_id == "model_ready":
            continue
        assert args[0] == "run" and args[1] == "{{ params.config }}"
        assert args[2] == "--steps" and args[3] in {"ingest", "features", "train", "evaluate", "deploy", "predict"}
        assert "--run-id" in args, "step pods of one DAG run share one Sluice run"
        assert task.image == "{{ params.image }}"


def _render_pod(dag, task, try_number=1, run_id="scheduled__2026-11-26T00:00:00+00:00"):
    """Render the task's templates with a minimal context and build its pod."""
    from kubernetes.client import ApiClient

    params = {k: dag.params[k] for k in dag.params.keys()}
    context = {
        "params": params,
        "dag_run": SimpleNamespace(run_id=run_id),
        "run_id": run_id,
        "ds": "2026-11-26",
        "task": task,
        "dag": dag,
        "ti": SimpleNamespace(try_number=try_number),
    }
    env = dag.get_template_env()
    for field in ("image", "namespace", "arguments", "env_vars"):
        setattr(task, field, task.render_template(getattr(task, field), context, env))
    pod = task.build_pod_request_obj(dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)


@pytest.fixture(scope="module")
def chart_docs():
    return manifests_of(render_chart(load_values("production")))


@pytest.mark.parametrize("dag_id", ["sluice_training", "sluice_inference"])
def test_task_pods_validate_and_are_hardened(dagbag, dag_id, chart_docs):
    import copy

    dag = dagbag.dags[dag_id]
    pipelines = next(d for d in chart_docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{RELEASE}-pipelines")
    policies = [d for d in chart_docs if d["kind"] == "NetworkPolicy"]
    for original in pod_tasks(dag):
        task = copy.deepcopy(original)
        pod = _render_pod(dag, task)
        kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)
        spec = pod["spec"]
        container = spec["containers"][0]
        assert container["image"] == "sluiceacr.azurecr.io/sluice:0.1.0"
        if original.task_id != "model_ready":
            assert container["args"][5] == "scheduled__2026-11-26T00-00-00-00-00"
            # The config the pod reads is a key of the chart's ConfigMap.
            config_file = container["args"][1]
            assert config_file.startswith("/etc/sluice/"), config_file
            assert config_file.removeprefix("/etc/sluice/") in pipelines["data"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["config"]["configMap"]["name"] == f"{RELEASE}-pipelines"
        assert pod["metadata"]["namespace"] == NAMESPACE
        labels = pod["metadata"]["labels"]
        assert labels["azure.workload.identity/use"] == "true"
        # Admitted by the release's NetworkPolicies towards scheduler and executors.
        for policy in policies:
            for rule in policy["spec"]["ingress"]:
                for peer in rule.get("from", []):
                    wanted = peer.get("podSelector", {}).get("matchLabels", {})
                    assert all(labels.get(k) == v for k, v in wanted.items()), (policy["metadata"]["name"], wanted)
        assert spec["serviceAccountName"] == "sluice"
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["limits"]["memory"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert "AZURE_STORAGE_ACCOUNT_KEY" not in env
        assert env["SLUICE_LAKE"] == LAKE
        assert env["SLUICE_SCHEDULER"] == f"df://{RELEASE}-scheduler:50050"


def test_a_retried_task_continues_the_same_run(dagbag):
    """Retries render the same --run-id: `sluice run --run-id` continues the run."""
    import copy

    dag = dagbag.dags["sluice_training"]
    first = _render_pod(dag, copy.deepcopy(dag.get_task("train_gbt")), try_number=1)
    retry = _render_pod(dag, copy.deepcopy(dag.get_task("train_gbt")), try_number=3)
    args = first["spec"]["containers"][0]["args"]
    assert args == retry["spec"]["containers"][0]["args"]
    assert args[args.index("--run-id") + 1] == "scheduled__2026-11-26T00-00-00-00-00"
