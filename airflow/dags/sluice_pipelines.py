"""Sluice pipelines on Airflow: one KubernetesPodOperator pod per pipeline step.

Two DAGs:

* ``sluice_training``: ingest -> features -> (train GBT || train RF) -> evaluate -> deploy.
  The two trainings are independent tasks (separate pods, no edge between
  them), so Airflow runs them at the same time.
* ``sluice_inference``: ingest -> features -> predict.

Every pod runs ``sluice run <config> --steps <step> --run-id <run id>``: the run id
is derived from the Airflow run, so the step pods of one DAG run share one
Sluice run in the lake (`--run-id` creates the run or continues it) and a
retried task resumes instead of recomputing
finished steps. The pods use the same hardening and identity as the chart's
pipeline Job (helm/sluice/files/pipeline-job.yaml): non-root, read-only root
filesystem, no privilege escalation, Azure workload identity, no secrets.

The image, config path and namespace are DAG params (change them per trigger);
the ConfigMap holding the pipeline YAML is created once per environment
(docs/DEPLOY.md). Drift-triggered retraining is left for a later issue: the
``sluice_training`` DAG is the entry point such a trigger will call.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG, Param
from kubernetes.client import models as k8s

# Deployment-wide settings come from the Airflow environment, not from code.
IMAGE = os.environ.get("SLUICE_IMAGE", "sluiceacr.azurecr.io/sluice:0.1.0")
NAMESPACE = os.environ.get("SLUICE_NAMESPACE", "sluice")
SERVICE_ACCOUNT = os.environ.get("SLUICE_SERVICE_ACCOUNT", "sluice")
STORAGE_ACCOUNT = os.environ.get("SLUICE_STORAGE_ACCOUNT", "")
NODE_POOL = os.environ.get("SLUICE_DRIVER_NODE_POOL", "system")

CONFIG_DIR = "/etc/sluice"
# uid/gid of the image's `sluice` user (Dockerfile), as in the chart.
SLUICE_UID = 10001

DEFAULT_ARGS = {
    "owner": "sluice",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(hours=3),
}


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


def sluice_step(
    dag: DAG,
    task_id: str,
    step: str,
    config_map: str,
    extra_args: list[str] | None = None,
    cpu: str = "2",
    memory: str = "8Gi",
    timeout: timedelta = timedelta(hours=3),
) -> KubernetesPodOperator:
    """One pipeline step as a pod running ``sluice run ... --steps <step>``."""
    env = [k8s.V1EnvVar(name="RUST_LOG", value="info")]
    if STORAGE_ACCOUNT:
        env.append(k8s.V1EnvVar(name="AZURE_STORAGE_ACCOUNT_NAME", value=STORAGE_ACCOUNT))
    return KubernetesPodOperator(
        dag=dag,
        task_id=task_id,
        name=f"sluice-{dag.dag_id.removeprefix('sluice_')}-{task_id.replace('_', '-')}",
        namespace="{{ params.namespace }}",
        image="{{ params.image }}",
        cmds=["sluice"],
        arguments=[
            "run",
            "{{ params.config }}",
            "--steps",
            step,
            "--run-id",
            "{{ dag_run.run_id | sluice_run_id }}",
            *(extra_args or []),
        ],
        labels={
            "app.kubernetes.io/name": "sluice",
            "app.kubernetes.io/component": "pipeline",
            "sluice.dev/pipeline": dag.dag_id.removeprefix("sluice_"),
            "sluice.dev/step": task_id.replace("_", "-"),
            # The Azure workload identity webhook injects the federated token.
            "azure.workload.identity/use": "true",
        },
        service_account_name=SERVICE_ACCOUNT,
        automount_service_account_token=False,
        env_vars=env,
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": cpu, "memory": memory},
            limits={"cpu": cpu, "memory": memory},
        ),
        security_context=_pod_security_context(),
        container_security_context=_container_security_context(),
        volumes=[
            k8s.V1Volume(
                name="config",
                config_map=k8s.V1ConfigMapVolumeSource(name=config_map),
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
    )


def _params(pipeline: str) -> dict[str, Param]:
    return {
        "image": Param(IMAGE, type="string", description="Sluice image (ACR repository:tag or @digest)."),
        "config": Param(
            f"{CONFIG_DIR}/config.yaml",
            type="string",
            description=f"Pipeline config inside the pod (ConfigMap sluice-{pipeline}-config).",
        ),
        "namespace": Param(NAMESPACE, type="string", description="Namespace of the Sluice release."),
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
    cm = "sluice-training-config"
    t_ingest = sluice_step(training, "ingest", "ingest", cm, timeout=timedelta(hours=1))
    t_features = sluice_step(training, "features", "features", cm, timeout=timedelta(hours=1))
    t_train_gbt = sluice_step(training, "train_gbt", "train", cm, ["--model", "gbt"], cpu="4", memory="16Gi")
    t_train_rf = sluice_step(training, "train_rf", "train", cm, ["--model", "rf"], cpu="4", memory="16Gi")
    t_evaluate = sluice_step(training, "evaluate", "evaluate", cm, timeout=timedelta(hours=1))
    t_deploy = sluice_step(training, "deploy", "deploy", cm, timeout=timedelta(minutes=30))

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
    cm = "sluice-inference-config"
    i_ingest = sluice_step(inference, "ingest", "ingest", cm, timeout=timedelta(hours=1))
    i_features = sluice_step(inference, "features", "features", cm, timeout=timedelta(hours=1))
    i_predict = sluice_step(inference, "predict", "predict", cm, timeout=timedelta(hours=2))

    i_ingest >> i_features >> i_predict
