"""Sluice pipelines on Airflow: one KubernetesPodOperator pod per pipeline step.

Two DAGs:

* ``sluice_training``: ingest -> features -> (train GBT || train RF) -> evaluate -> deploy.
  The two trainings are independent tasks (separate pods, no edge between
  them), so Airflow runs them at the same time. ``deploy`` publishes the
  ``MODEL_ASSET`` Airflow Asset (the model registry's ``latest`` pointer).
* ``sluice_inference``: model_ready -> ingest -> features -> predict ->
  retrain_on_drift, daily. ``model_ready`` is a pod running ``sluice models
  show <model> latest``: it fails (and is retried, like a sensor) until a
  deployed model exists, so predict never runs before the first training has
  deployed. Each step pod runs with ``--partition date={{ ds }}``: the run
  reads the raw tables' ``date=<ds>`` partitions only, and its predictions go
  to ``predictions/date=<ds>/`` (a rerun of the day replaces them). The
  cluster's inference config sets ``drift: {exit_on_drift: true}``, so the
  predict pod exits with 3 when the input drifted (after committing the
  predictions and drift.json); the task's ``skip_on_exit_code=3`` turns that
  into a skipped task instead of a failure (no retry), and
  ``retrain_on_drift``, a ``TriggerDagRunOperator`` of ``sluice_training``
  with ``trigger_rule=all_skipped``, starts the training DAG exactly then
  (docs/MONITORING.md).

Every step pod runs ``sluice run /etc/sluice/<pipeline>.yaml --steps <step>
--run-id <run id>``. The run id comes from the Airflow DAG run, which a task
retry keeps: the step pods of one DAG run and every retry of a step share one
Sluice run in the lake (``--run-id`` creates the run or continues it), so a
retried task resumes instead of recomputing finished steps.

The pipeline configs are the chart's ``<release>-pipelines`` ConfigMap
(helm/sluice/files/pipelines/*.yaml): the lake comes from ``SLUICE_LAKE``
(the DAG param ``lake``) and the engine is Ballista on the release's scheduler
Service (``SLUICE_SCHEDULER``). The pods carry the chart's selector labels
(``app.kubernetes.io/name`` + ``instance``), which the release's
NetworkPolicies admit to the scheduler and executors, and the same hardening
and identity as the chart's pods: non-root, read-only root filesystem, no
privilege escalation, Azure workload identity, no secrets.

Deployment-wide settings are environment variables of the Airflow workers:
``SLUICE_IMAGE``, ``SLUICE_NAMESPACE``, ``SLUICE_RELEASE``, ``SLUICE_LAKE``,
``SLUICE_STORAGE_ACCOUNT``, ``SLUICE_WORKLOAD_IDENTITY`` (default true),
``SLUICE_MODEL_NAME``, ``SLUICE_DRIVER_NODE_POOL`` and ``SLUICE_POD_ENV`` (a
JSON object of extra environment for the step pods). docs/DEPLOY.md lists
them.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Asset, Param
from kubernetes.client import models as k8s

# Deployment-wide settings come from the Airflow environment, not from code.
IMAGE = os.environ.get("SLUICE_IMAGE", "sluiceacr.azurecr.io/sluice:0.1.0")
NAMESPACE = os.environ.get("SLUICE_NAMESPACE", "sluice")
# The Helm release: its resources are <release>-scheduler, <release>-pipelines, ...
RELEASE = os.environ.get("SLUICE_RELEASE", "sluice")
SERVICE_ACCOUNT = os.environ.get("SLUICE_SERVICE_ACCOUNT", RELEASE)
LAKE = os.environ.get("SLUICE_LAKE", "")
STORAGE_ACCOUNT = os.environ.get("SLUICE_STORAGE_ACCOUNT", "")
WORKLOAD_IDENTITY = os.environ.get("SLUICE_WORKLOAD_IDENTITY", "true").lower() in ("1", "true", "yes")
MODEL_NAME = os.environ.get("SLUICE_MODEL_NAME", "indoor-outdoor")
NODE_POOL = os.environ.get("SLUICE_DRIVER_NODE_POOL", "system")
POD_ENV: dict[str, str] = json.loads(os.environ.get("SLUICE_POD_ENV", "{}"))
SCHEDULER_PORT = 50050

CONFIG_DIR = "/etc/sluice"
# The chart's ConfigMap with training.yaml and inference.yaml.
PIPELINES_CONFIG_MAP = f"{RELEASE}-pipelines"
# uid/gid of the image's `sluice` user (Dockerfile), as in the chart.
SLUICE_UID = 10001

# Published by the training DAG's deploy task; the inference DAG's model_ready
# task checks the registry itself, so a model deployed by `sluice submit` counts too.
MODEL_ASSET = Asset(name=f"sluice-model-{MODEL_NAME}", uri=f"sluice://models/{MODEL_NAME}")

DEFAULT_ARGS = {
    "owner": "sluice",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(hours=3),
}


# `sluice run` exits with this code when the inference input drifted and the
# config sets `drift: {exit_on_drift: true}` (docs/MONITORING.md).
EXIT_DRIFTED = 3
# The daily partition each inference step reads (raw/<table>/date=<ds>/) and
# writes (predictions/date=<ds>/).
DAILY_PARTITION = ["--partition", "date={{ ds }}"]


def sluice_run_id(airflow_run_id: str) -> str:
    """Turn an Airflow run id into a Sluice run id (letters, digits, '-', '_')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", airflow_run_id).strip("-")[:100]


def _pod_security_context() -> k8s.V1PodSecurityContext:
    return k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=SLUICE_UID,
        run_as_group=SLUICE_UID,
        fs_group=SLUICE_UID,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def _container_security_context() -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        privileged=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
    )


def _env() -> list[k8s.V1EnvVar]:
    """The step pods' environment: the chart's (RUST_LOG, storage account,
    SLUICE_LAKE) plus the release's scheduler and SLUICE_POD_ENV."""
    env = [k8s.V1EnvVar(name="RUST_LOG", value="info")]
    if STORAGE_ACCOUNT:
        env.append(k8s.V1EnvVar(name="AZURE_STORAGE_ACCOUNT_NAME", value=STORAGE_ACCOUNT))
    env.append(k8s.V1EnvVar(name="SLUICE_LAKE", value="{{ params.lake }}"))
    env.append(k8s.V1EnvVar(name="SLUICE_SCHEDULER", value=f"df://{RELEASE}-scheduler:{SCHEDULER_PORT}"))
    env.extend(k8s.V1EnvVar(name=k, value=str(v)) for k, v in sorted(POD_ENV.items()))
    return env


def sluice_pod(
    dag: DAG,
    task_id: str,
    arguments: list[str],
    cpu: str = "2",
    memory: str = "8Gi",
    timeout: timedelta = timedelta(hours=3),
    **kwargs,
) -> KubernetesPodOperator:
    """One `sluice` command as a hardened pod of this release."""
    pipeline = dag.dag_id.removeprefix("sluice_")
    labels = {
        # The chart's selector labels: the release's NetworkPolicies admit
        # exactly these pods to the scheduler and executors.
        "app.kubernetes.io/name": "sluice",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "pipeline",
        "app.kubernetes.io/part-of": "sluice",
        "sluice.dev/pipeline": pipeline,
        "sluice.dev/step": task_id.replace("_", "-"),
    }
    if WORKLOAD_IDENTITY:
        # The Azure workload identity webhook injects the federated token.
        labels["azure.workload.identity/use"] = "true"
    return KubernetesPodOperator(
        dag=dag,
        task_id=task_id,
        name=f"sluice-{pipeline}-{task_id.replace('_', '-')}",
        namespace="{{ params.namespace }}",
        image="{{ params.image }}",
        cmds=["sluice"],
        arguments=arguments,
        labels=labels,
        service_account_name=SERVICE_ACCOUNT,
        automount_service_account_token=False,
        env_vars=_env(),
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": cpu, "memory": memory},
            limits={"cpu": cpu, "memory": memory},
        ),
        security_context=_pod_security_context(),
        container_security_context=_container_security_context(),
        volumes=[
            k8s.V1Volume(
                name="config",
                config_map=k8s.V1ConfigMapVolumeSource(name=PIPELINES_CONFIG_MAP),
            ),
            k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="2Gi")),
        ],
        volume_mounts=[
            k8s.V1VolumeMount(name="config", mount_path=CONFIG_DIR, read_only=True),
            k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),
        ],
        node_selector={"agentpool": NODE_POOL},
        get_logs=True,
        log_events_on_failure=True,
        on_finish_action="delete_succeeded_pod",
        startup_timeout_seconds=600,
        active_deadline_seconds=int(timeout.total_seconds()),
        execution_timeout=timeout,
        **kwargs,
    )


def sluice_step(
    dag: DAG,
    task_id: str,
    step: str,
    extra_args: list[str] | None = None,
    **kwargs,
) -> KubernetesPodOperator:
    """One pipeline step as a pod running ``sluice run ... --steps <step> --run-id <run>``."""
    return sluice_pod(
        dag,
        task_id,
        [
            "run",
            "{{ params.config }}",
            "--steps",
            step,
            "--run-id",
            "{{ dag_run.run_id | sluice_run_id }}",
            *(extra_args or []),
        ],
        **kwargs,
    )


def _params(pipeline: str) -> dict[str, Param]:
    return {
        "image": Param(IMAGE, type="string", description="Sluice image (ACR repository:tag or @digest)."),
        "config": Param(
            f"{CONFIG_DIR}/{pipeline}.yaml",
            type="string",
            description=f"Pipeline config inside the pod (key {pipeline}.yaml of ConfigMap {PIPELINES_CONFIG_MAP}).",
        ),
        "namespace": Param(NAMESPACE, type="string", description="Namespace of the Sluice release."),
        "lake": Param(LAKE, type="string", minLength=1, description="Lake URL (SLUICE_LAKE), e.g. abfss://lake@<account>.dfs.core.windows.net/."),
    }


with DAG(
    dag_id="sluice_training",
    description="Sluice training: ingest, features, GBT and RF in parallel, evaluate, deploy.",
    schedule="@weekly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=4,
    dagrun_timeout=timedelta(hours=12),
    default_args=DEFAULT_ARGS,
    params=_params("training"),
    user_defined_filters={"sluice_run_id": sluice_run_id},
    tags=["sluice", "training"],
) as training:
    t_ingest = sluice_step(training, "ingest", "ingest", timeout=timedelta(hours=1))
    t_features = sluice_step(training, "features", "features", timeout=timedelta(hours=1))
    t_train_gbt = sluice_step(training, "train_gbt", "train", ["--model", "gbt"], cpu="4", memory="16Gi")
    t_train_rf = sluice_step(training, "train_rf", "train", ["--model", "rf"], cpu="4", memory="16Gi")
    t_evaluate = sluice_step(training, "evaluate", "evaluate", timeout=timedelta(hours=1))
    t_deploy = sluice_step(training, "deploy", "deploy", timeout=timedelta(minutes=30), outlets=[MODEL_ASSET])

    t_ingest >> t_features >> [t_train_gbt, t_train_rf] >> t_evaluate >> t_deploy


with DAG(
    dag_id="sluice_inference",
    description="Sluice inference: ingest, features, predict with the latest deployed model.",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    default_args=DEFAULT_ARGS,
    params=_params("inference"),
    user_defined_filters={"sluice_run_id": sluice_run_id},
    tags=["sluice", "inference"],
) as inference:
    # A sensor in pod form: fails until the registry has a deployed model,
    # retried every 10 minutes for up to 6 hours.
    i_model_ready = sluice_pod(
        inference,
        "model_ready",
        ["models", "show", MODEL_NAME, "latest"],
        cpu="250m",
        memory="512Mi",
        timeout=timedelta(minutes=10),
        retries=36,
        retry_delay=timedelta(minutes=10),
        retry_exponential_backoff=False,
    )
    # Every step gets the same filter: it is part of the pipeline's config,
    # which the steps' manifests fingerprint.
    i_ingest = sluice_step(inference, "ingest", "ingest", DAILY_PARTITION, timeout=timedelta(hours=1))
    i_features = sluice_step(inference, "features", "features", DAILY_PARTITION, timeout=timedelta(hours=1))
    # Exit 3 = drifted: predictions committed, the task is skipped, not retried.
    i_predict = sluice_step(
        inference, "predict", "predict", DAILY_PARTITION, timeout=timedelta(hours=2), skip_on_exit_code=EXIT_DRIFTED
    )
    # Runs only when predict was skipped, i.e. the input drifted.
    i_retrain = TriggerDagRunOperator(
        task_id="retrain_on_drift",
        trigger_dag_id=training.dag_id,
        trigger_run_id="drift__{{ dag_run.run_id | sluice_run_id }}",
        conf={"reason": "drift", "inference_run": "{{ dag_run.run_id }}", "partition": "date={{ ds }}"},
        trigger_rule="all_skipped",
        wait_for_completion=False,
        retries=1,
        execution_timeout=timedelta(minutes=5),
    )

    i_model_ready >> i_ingest >> i_features >> i_predict >> i_retrain
