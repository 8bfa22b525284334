"""The deployment, rehearsed end to end without Kubernetes (tests/deploy/
rehearsal.py): the chart's scheduler and executor pods and every Airflow DAG
task's pod run as local processes with their rendered command, args, env,
volumes and security context, each in its own network namespace on a bridge,
resolving the scheduler Service through a hosts file; probes are polled at
their rendered paths and ports; the lake is Azurite.

In order: the scheduler and 2 executors become ready; the inference DAG's
model gate fails while no model is deployed; the training DAG's tasks run in
DAG order (GBT and RF at the same time), then the inference DAG's on its
day's partition (`--partition date={{ ds }}`: predictions in
`predictions/date=<ds>/`, the other day untouched); `sluice scale executors
3` against the fake API server (authorized by the rendered Role) is
reconciled into a third executor that registers with the scheduler; `sluice
submit --wait` of one step runs the Job's pod to completion; the predictions
equal an embedded run's on the same day; and a second inference DAG run
whose input counts as drifted (thresholds set near zero) exits 3 in predict,
which the task skips, so `retrain_on_drift` triggers the training DAG, whose
run deploys a second model version. The trigger rule is evaluated the way
Airflow does for `all_skipped` over the tasks' states (pods exiting with a
`skip_on_exit_code` are skipped). Needs root and the built binaries; a lake
of 20k samples keeps it to a few minutes."""

from __future__ import annotations

import copy
import io
from types import SimpleNamespace
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from conftest import DAGS, NAMESPACE, RELEASE, load_values, manifests_of, render_chart

SAMPLES = 20_000
LAKE = "abfss://lake@devstoreaccount1.dfs.core.windows.net/rehearsal"
IMAGE = "sluice:rehearsal"
DAG_RUN = "manual__2026-11-29T00:00:00+00:00"
SLUICE_RUN = "manual__2026-11-29T00-00-00-00-00"
DRIFT_DAG_RUN = "manual__2026-11-29T01:00:00+00:00"
DRIFT_SLUICE_RUN = "manual__2026-11-29T01-00-00-00-00"
# The `ds` that test_airflow._render_pod renders, and the lake's other day.
DAY, OTHER_DAY = "2026-11-26", "2026-11-25"
PER_SAMPLE_TABLES = ["samples", "locations", "radio", "activity", "environment"]
EMULATOR_ENV = {"AZURE_STORAGE_USE_EMULATOR": "true", "AZURITE_BLOB_STORAGE_URL": "http://azurite:10000"}

# A small training config for the rehearsal (the shipped one runs a 10-fold
# grid search for hours); it replaces files/pipelines/training.yaml through the
# chart's `pipelines.training` value. Lake and engine as in the shipped one.
TRAINING = {
    "name": "indoor-outdoor-training",
    "kind": "training",
    "lake": "${SLUICE_LAKE}",
    "engine": {"mode": "ballista", "scheduler": "${SLUICE_SCHEDULER}"},
    "steps": [
        {"step": "ingest"},
        {"step": "features"},
        {"step": "train", "test_fraction": 0.2, "seed": 42, "models": [
            {"name": "gbt", "type": "gbt", "params": {"maxIter": 15, "maxDepth": 4, "stepSize": 0.2}},
            {"name": "rf", "type": "random_forest", "params": {"numTrees": 8, "maxDepth": 6}},
        ]},
        {"step": "evaluate", "metric": "auc"},
        {"step": "deploy", "model_name": "indoor-outdoor"},
    ],
}


def rehearsal_values() -> dict:
    values = load_values("default")
    values["image"] = {"repository": "sluice", "tag": "rehearsal"}
    values["lake"] = {"url": LAKE}
    values["extraEnv"] = [{"name": k, "value": v} for k, v in EMULATOR_ENV.items()]
    values["pipelines"] = {"training": TRAINING}
    return values


def topological_waves(dag) -> list[list]:
    done, waves = set(), []
    while len(done) < len(dag.tasks):
        wave = [t for t in dag.tasks if t.task_id not in done and t.upstream_task_ids <= done]
        assert wave, "cycle"
        waves.append(sorted(wave, key=lambda t: t.task_id))
        done |= {t.task_id for t in wave}
    return waves


@pytest.fixture(scope="module")
def rehearsal(binaries):
    if os.geteuid() != 0:
        pytest.skip("the rehearsal needs root (network and mount namespaces)")
    import rehearsal as rh

    base = Path(tempfile.mkdtemp(prefix="sluice-rehearsal-", dir="/var/tmp"))
    cluster = rh.Cluster(base, binaries)
    azurite = None
    try:
        azurite = rh.Azurite(cluster.net.gateway, base / "azurite.log")
        cluster.net.add_host("azurite", cluster.net.gateway)
        azurite.service().create_container("lake")
        yield rh, cluster, azurite, base
    finally:
        cluster.close()
        if azurite is not None:
            azurite.close()
        if os.environ.get("SLUICE_REHEARSAL_KEEP") is None:
            import shutil

            shutil.rmtree(base, ignore_errors=True)


def host_env(azurite) -> dict[str, str]:
    """The operator's shell: emulator settings pointing at the bridge address."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "RUST_LOG": "warn",
            "AZURE_STORAGE_USE_EMULATOR": "true", "AZURITE_BLOB_STORAGE_URL": f"http://{azurite.host}:{azurite.port}"}


def with_drift(pipelines: dict, psi_warn: float, psi_fail: float) -> dict:
    """The pipelines ConfigMap data with the inference config's drift thresholds set."""
    config = yaml.safe_load(pipelines["inference.yaml"])
    [predict] = [s for s in config["steps"] if s["step"] == "predict"]
    assert predict["drift"]["exit_on_drift"] is True, "the shipped cluster config exits 3 on drift"
    predict["drift"] = {**predict["drift"], "psi_warn": psi_warn, "psi_fail": psi_fail}
    return {**pipelines, "inference.yaml": yaml.safe_dump(config, sort_keys=False)}


def partition_by_day(azurite) -> int:
    """Moves the two part files of each per-sample table into date=OTHER_DAY/
    and date=DAY/ (a daily-partitioned lake as Spark writes it); returns the
    samples of DAY."""
    import pyarrow.parquet as pq

    container = azurite.service().get_container_client("lake")
    day_rows = 0
    for table in PER_SAMPLE_TABLES:
        parts = sorted(b.name for b in container.list_blobs(name_starts_with=f"rehearsal/raw/{table}/"))
        assert len(parts) == 2, parts
        for day, name in zip((OTHER_DAY, DAY), parts):
            data = container.download_blob(name).readall()
            if table == "samples" and day == DAY:
                day_rows = pq.read_metadata(io.BytesIO(data)).num_rows
            container.upload_blob(f"rehearsal/raw/{table}/date={day}/{name.rsplit('/', 1)[1]}", data)
            container.delete_blob(name)
    assert 0 < day_rows < SAMPLES
    return day_rows


def read_blob_json(azurite, name: str):
    return json.loads(azurite.service().get_container_client("lake").download_blob(f"rehearsal/{name}").readall())


def read_predictions(azurite, directory: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    container = azurite.service().get_container_client("lake")
    prefix = f"rehearsal/predictions/{directory}/"
    tables = [pq.read_table(io.BytesIO(container.download_blob(b.name).readall()))
              for b in container.list_blobs(name_starts_with=prefix) if b.name.endswith(".parquet")]
    assert tables, f"no predictions under {prefix}"
    return pa.concat_tables(tables).sort_by("sample_id")


def test_the_deployment_runs_as_rendered(rehearsal, binaries, monkeypatch):
    rh, cluster, azurite, base = rehearsal
    env = host_env(azurite)
    sluice = str(binaries / "sluice")

    # The lake: raw tables and labelled training CSVs (the data contract).
    subprocess.run([sluice, "datagen", "--out", LAKE, "--samples", str(SAMPLES), "--train-rows", str(SAMPLES),
                    "--chunk-samples", str(SAMPLES // 2)],
                   env=env, check=True, capture_output=True, timeout=300)
    day_rows = partition_by_day(azurite)

    # --- helm install: the long-lived parts ------------------------------
    docs = manifests_of(render_chart(rehearsal_values()))
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    # The daily run's drift thresholds out of reach (this lake's few devices
    # are no reference population): the DAG's normal path, no retraining.
    pipelines = with_drift(kinds[("ConfigMap", f"{RELEASE}-pipelines")]["data"], 1000.0, 1000.0)
    config_maps = {f"{RELEASE}-pipelines": pipelines}
    scheduler_dep = kinds[("Deployment", f"{RELEASE}-scheduler")]
    executor_dep = kinds[("Deployment", f"{RELEASE}-executor")]
    service = kinds[("Service", f"{RELEASE}-scheduler")]

    def start_from(deployment: dict, name: str) -> "rh.Pod":
        template = deployment["spec"]["template"]
        return rh.Pod(name, copy.deepcopy(template["spec"]), template["metadata"]["labels"], cluster, config_maps).start()

    scheduler = start_from(scheduler_dep, f"{RELEASE}-scheduler-0")
    # The Service selects the scheduler pod: its name resolves to the pod.
    assert all(scheduler.labels[k] == v for k, v in service["spec"]["selector"].items())
    cluster.net.add_host(service["metadata"]["name"], scheduler.ip)
    scheduler.wait_ready(60)
    executors = [start_from(executor_dep, f"{RELEASE}-executor-{i}") for i in range(executor_dep["spec"]["replicas"])]
    assert len(executors) == 2
    for e in executors:
        e.wait_ready(90)
    sched_port = scheduler.port("grpc")
    code, body = rh.http_probe(scheduler.ip, sched_port, "/readyz")
    assert code == 200 and "2 executors registered" in body, body

    # --- Airflow: the DAGs as the workers import them ----------------------
    monkeypatch.setenv("SLUICE_LAKE", LAKE)
    monkeypatch.setenv("SLUICE_IMAGE", IMAGE)
    monkeypatch.setenv("SLUICE_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("SLUICE_RELEASE", RELEASE)
    monkeypatch.setenv("SLUICE_WORKLOAD_IDENTITY", "false")
    monkeypatch.setenv("SLUICE_POD_ENV", json.dumps(EMULATOR_ENV))
    from airflow.dag_processing.dagbag import DagBag
    from test_airflow import _render_pod

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}

    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    def task_pod(dag, task, run_id=DAG_RUN, maps=None, tag="") -> "rh.Pod":
        pod = _render_pod(dag, copy.deepcopy(task), run_id=run_id)
        assert pod["spec"]["containers"][0]["image"] == IMAGE
        name = f"{dag.dag_id}-{task.task_id}{tag}".replace("_", "-")
        return rh.Pod(name, pod["spec"], pod["metadata"]["labels"], cluster, maps or config_maps)

    def run_dag(dag_id: str, run_id: str = DAG_RUN, maps=None, tag=""):
        """Runs the DAG's tasks wave by wave: (order, task states, triggered
        (dag id, run id) pairs). A pod exiting with one of its task's
        `skip_on_exit_code`s is skipped, as Airflow does; a trigger task
        fires under its trigger rule over its upstream states."""
        dag = bag.dags[dag_id]
        order, states, triggered = [], {}, []
        for wave in topological_waves(dag):
            pods = []
            for t in wave:
                if isinstance(t, KubernetesPodOperator):
                    pods.append((t, task_pod(dag, t, run_id, maps, tag).start()))
                    continue
                assert isinstance(t, TriggerDagRunOperator), t
                upstream = [states[u] for u in t.upstream_task_ids]
                assert t.trigger_rule == "all_skipped", t.trigger_rule
                if all(s == "skipped" for s in upstream):
                    states[t.task_id] = "success"
                    rendered = dag.get_template_env().from_string(t.trigger_run_id).render(
                        dag_run=SimpleNamespace(run_id=run_id))
                    triggered.append((t.trigger_dag_id, rendered))
                else:
                    states[t.task_id] = "skipped"
            for t, pod in pods:
                rc = pod.wait_exit(900)
                if rc in (t.skip_on_exit_code or []):
                    states[t.task_id] = "skipped"
                    continue
                assert rc == 0, f"{pod.name} failed ({rc}):\n{pod.output()[-6000:]}"
                states[t.task_id] = "success"
            order.append(sorted(t.task_id for t in wave))
        return order, states, triggered

    # The inference DAG waits for a deployed model: its gate fails before training.
    inference = bag.dags["sluice_inference"]
    gate = task_pod(inference, inference.get_task("model_ready")).start()
    assert gate.wait_exit(120) != 0, gate.output()
    assert "indoor-outdoor" in gate.output(), gate.output()

    training_order, _, _ = run_dag("sluice_training")
    assert training_order == [["ingest"], ["features"], ["train_gbt", "train_rf"], ["evaluate"], ["deploy"]]
    inference_order, states, triggered = run_dag("sluice_inference")
    assert inference_order == [["model_ready"], ["ingest"], ["features"], ["predict"], ["retrain_on_drift"]]
    assert states["predict"] == "success" and states["retrain_on_drift"] == "skipped", states
    assert triggered == []
    drift = read_blob_json(azurite, f"runs/indoor-outdoor-inference/{SLUICE_RUN}/drift.json")
    assert drift["drifted"] is False
    # The day's partition only, written beside the input's layout.
    cluster_preds = read_predictions(azurite, f"date={DAY}")
    assert cluster_preds.num_rows == day_rows

    # --- sluice scale executors 3, reconciled by the "cluster" --------------
    role = kinds[("Role", f"{RELEASE}-submitter")]
    started: list = []

    def on_scale(name: str, replicas: int) -> None:
        if name == executor_dep["metadata"]["name"]:
            while len(executors) + len(started) < replicas:
                started.append(start_from(executor_dep, f"{RELEASE}-executor-{len(executors) + len(started)}"))

    def on_job(job: dict) -> None:
        template = job["spec"]["template"]
        labels = {**template["metadata"]["labels"], "batch.kubernetes.io/job-name": job["metadata"]["name"]}
        cms = {name: cm["data"] for name, cm in api.config_maps.items()}
        pod = rh.Pod(rh.job_pod_name(job["metadata"]["name"], 0), copy.deepcopy(template["spec"]), labels, cluster, cms)
        api.job_pods[job["metadata"]["name"]].append(pod)
        pod.start()

    api = rh.FakeKube(cluster, NAMESPACE, role, {d["metadata"]["name"]: d for d in (scheduler_dep, executor_dep)}, on_scale, on_job)
    api.ready = {scheduler_dep["metadata"]["name"]: 1, executor_dep["metadata"]["name"]: 2}
    kubeconfig = api.kubeconfig(base / "kubeconfig")
    cli = [sluice, "--quiet"]
    k8s = ["--kubeconfig", str(kubeconfig), "--namespace", NAMESPACE, "--release", RELEASE]
    try:
        scaled = subprocess.run(cli + ["scale", "executors", "3", *k8s], env=env, capture_output=True, text=True, timeout=60)
        assert scaled.returncode == 0, scaled.stderr
        assert "2 -> 3 executors" in scaled.stdout, scaled.stdout
        assert len(started) == 1
        started[0].wait_ready(90)
        api.ready[executor_dep["metadata"]["name"]] = 3
        code, body = rh.http_probe(scheduler.ip, sched_port, "/readyz")
        assert code == 200 and "3 executors registered" in body, body
        status = subprocess.run(cli + ["status", *k8s], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "3/3 ready" in status.stdout, status.stdout + status.stderr

        # --- sluice submit --wait of one step ------------------------------
        config = base / "inference.yaml"
        config.write_text(pipelines["inference.yaml"])
        submit = subprocess.run(
            cli + ["submit", str(config), *k8s, "--image", IMAGE, "--steps", "ingest", "--name", "sluice-inference-ingest",
                   "--lake", LAKE, *[a for k, v in EMULATOR_ENV.items() for a in ("--env", f"{k}={v}")], "--wait", "--timeout", "600"],
            env=env, capture_output=True, text=True, timeout=700,
        )
        assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-4000:]
        assert "job/sluice-inference-ingest in namespace sluice succeeded" in submit.stderr, submit.stderr
        assert "run sluice-inference-ingest" in submit.stdout, "the pod's logs are followed"
        assert not [r for r in api.requests if r[2] == 403], api.requests
    finally:
        api.close()

    # --- predictions equal an embedded run on the same lake ----------------
    embedded = yaml.safe_load(pipelines["inference.yaml"])
    embedded["engine"] = {"mode": "embedded"}
    emb_config = base / "inference-embedded.yaml"
    emb_config.write_text(yaml.safe_dump(embedded))
    proc = subprocess.run(cli + ["run", str(emb_config), "--run-id", "embedded-check", "--partition", f"date={DAY}"],
                          env={**env, "SLUICE_LAKE": LAKE}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # The embedded run of the same day replaced the day's predictions.
    embedded_preds = read_predictions(azurite, f"date={DAY}")
    assert embedded_preds.num_rows == day_rows
    assert cluster_preds.column("sample_id").to_pylist() == embedded_preds.column("sample_id").to_pylist()
    assert cluster_preds.column("indoor").to_pylist() == embedded_preds.column("indoor").to_pylist()
    for a, b in zip(cluster_preds.column("indoor_probability").to_pylist(), embedded_preds.column("indoor_probability").to_pylist()):
        assert abs(a - b) <= 1e-9, (a, b)

    # --- drift: predict exits 3, the task is skipped, training is triggered --
    strict = {f"{RELEASE}-pipelines": with_drift(pipelines, 1e-9, 1e-9)}
    order, states, triggered = run_dag("sluice_inference", DRIFT_DAG_RUN, strict, "-drift")
    assert states["predict"] == "skipped" and states["retrain_on_drift"] == "success", states
    drift = read_blob_json(azurite, f"runs/indoor-outdoor-inference/{DRIFT_SLUICE_RUN}/drift.json")
    assert drift["drifted"] is True
    # Drifted, but predicted: the day's predictions are committed all the same.
    assert read_predictions(azurite, f"date={DAY}").num_rows == day_rows
    assert triggered == [("sluice_training", f"drift__{DRIFT_SLUICE_RUN}")]
    [(dag_id, retrain_run)] = triggered
    order, states, _ = run_dag(dag_id, retrain_run, tag="-retrain")
    assert states["deploy"] == "success"
    models = subprocess.run(cli + ["models", "list", "--json", "--lake", LAKE], env=env, capture_output=True, text=True, timeout=60)
    assert models.returncode == 0, models.stderr
    latest = [m["version"] for m in json.loads(models.stdout) if m["latest"]]
    assert latest == ["v0002"], models.stdout

    # Every long-lived pod stayed alive and ready throughout.
    for pod in [scheduler, *executors, *started]:
        assert pod.phase == "Running", pod.output()[-2000:]
        assert pod.liveness_failures == 0, pod.name
        assert pod.probe("readinessProbe"), pod.name
