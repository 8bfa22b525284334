"""One source of truth for every command line: the args the chart's
Deployments, the Airflow DAGs' step pods and `sluice submit`'s Jobs pass are
parsed by the binaries' own clap definitions (SchedulerArgs, ExecutorArgs,
the sluice CLI), by running the built binaries with SLUICE_CHECK_ARGS=1
(parse, check, print, exit 0). A flag a binary does not know fails here
with clap's exit code 2, as it would crash-loop the pod."""

from __future__ import annotations

import copy
import os
import subprocess

import pytest
import yaml

from conftest import container_env, expand_k8s_vars, load_values, manifests_of, render_chart


def check_args(binaries, command: list[str], args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    assert len(command) == 1, command
    full_env = {"PATH": os.environ["PATH"], "SLUICE_CHECK_ARGS": "1", **env}
    args = [expand_k8s_vars(a, env) for a in args]
    return subprocess.run([str(binaries / command[0]), *args], env=full_env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("value_set", ["default", "production"])
def test_chart_args_parse_with_the_binaries(binaries, value_set):
    docs = manifests_of(render_chart(load_values(value_set)))
    checked = set()
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            proc = check_args(binaries, c["command"], c["args"], container_env(c, "10.0.0.7"))
            assert proc.returncode == 0, f"{doc['metadata']['name']}: {c['command']} {c['args']}: {proc.stderr}"
            checked.add(c["command"][0])
            if c["command"] == ["sluice-executor"]:
                ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                # The parsed values are the ports the pod declares and probes.
                assert f"port: {ports['flight']}," in proc.stdout, proc.stdout
                assert f"grpc_port: {ports['grpc']}," in proc.stdout, proc.stdout
                assert f"health_port: {ports['health']}," in proc.stdout, proc.stdout
                assert 'external_host: Some("10.0.0.7")' in proc.stdout, proc.stdout
                # The training cache sizes are set (and checked) from the values.
                sizes = dict(a.split("=", 1) for a in c["args"] if a.startswith("--train-"))
                assert f'train_cache: Some("{sizes["--train-cache"]}")' in proc.stdout, proc.stdout
                assert f'train_spill: Some("{sizes["--train-spill"]}")' in proc.stdout, proc.stdout
            else:
                assert f"port: {c['ports'][0]['containerPort']}," in proc.stdout, proc.stdout
    assert checked == {"sluice-scheduler", "sluice-executor"}


def test_a_flag_the_binary_does_not_know_fails_the_check(binaries):
    """The check is real: the flags the chart used to pass are rejected."""
    for command, bad in (("sluice-scheduler", "--bind-port=50050"), ("sluice-executor", "--bind-grpc-port=50052")):
        proc = check_args(binaries, [command], [bad], {})
        assert proc.returncode == 2, proc
        assert bad.split("=")[0] in proc.stderr, proc.stderr


def test_extra_args_values_are_checked_too(binaries):
    values = load_values("production")
    values["executor"]["extraArgs"] = ["--memory-limit=12GiB"]
    docs = manifests_of(render_chart(values))
    exe = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-executor"))
    c = exe["spec"]["template"]["spec"]["containers"][0]
    proc = check_args(binaries, c["command"], c["args"], container_env(c, "10.0.0.7"))
    assert proc.returncode == 0 and 'memory_limit: Some("12GiB")' in proc.stdout, proc.stderr
    values["executor"]["extraArgs"] = ["--memory=12GiB"]
    docs = manifests_of(render_chart(values))
    exe = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-executor"))
    c = exe["spec"]["template"]["spec"]["containers"][0]
    assert check_args(binaries, c["command"], c["args"], container_env(c, "10.0.0.7")).returncode == 2


def test_training_cache_sizes_are_checked(binaries):
    """A size the executor cannot parse is refused by the chart's schema and
    by the binary's check (naming the flag), not at the first training job."""
    values = load_values("production")
    values["executor"]["trainSpill"] = "lots"
    with pytest.raises(Exception, match="trainSpill"):
        render_chart(values)
    proc = check_args(binaries, ["sluice-executor"], ["--train-spill=lots"], {})
    assert proc.returncode != 0 and "--train-spill" in proc.stderr, proc
    proc = check_args(binaries, ["sluice-executor"], ["--train-cache=512MiB", "--train-spill=0"], {})
    assert proc.returncode == 0 and 'train_cache: Some("512MiB")' in proc.stdout, proc


def test_dag_task_args_parse_with_the_cli(binaries, dagbag):
    from test_airflow import _render_pod, pod_tasks

    seen = 0
    for dag_id in ("sluice_training", "sluice_inference"):
        dag = dagbag.dags[dag_id]
        for original in pod_tasks(dag):
            pod = _render_pod(dag, copy.deepcopy(original))
            c = pod["spec"]["containers"][0]
            proc = check_args(binaries, c["command"], c["args"], container_env(c, "10.0.0.8"))
            assert proc.returncode == 0, f"{dag_id}.{original.task_id}: {c['args']}: {proc.stderr}"
            if c["args"][0] == "run":
                assert 'run_id: Some("scheduled__2026-11-26T00-00-00-00-00")' in proc.stdout, proc.stdout
                # SLUICE_SCHEDULER and SLUICE_LAKE reach `sluice run` through clap's env.
                assert 'scheduler: Some("df://sluice-scheduler:50050")' in proc.stdout, proc.stdout
                assert 'lake: Some("abfss://' in proc.stdout, proc.stdout
            seen += 1
    assert seen == 10


def test_submitted_job_args_parse_with_the_cli(binaries, tmp_path):
    config = tmp_path / "training.yaml"
    config.write_text((__import__("conftest").CHART / "files" / "pipelines" / "training.yaml").read_text())
    proc = subprocess.run(
        [str(binaries / "sluice"), "submit", str(config), "--dry-run", "--namespace", "sluice", "--image", "acr.io/sluice:0.1.0",
         "--steps", "train", "--model", "gbt", "--lake", "abfss://lake@sluicelake.dfs.core.windows.net/", "--workload-identity"],
        capture_output=True, text=True, check=True,
    )
    job = next(d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "Job")
    c = job["spec"]["template"]["spec"]["containers"][0]
    checked = check_args(binaries, c["command"], c["args"], container_env(c, "10.0.0.9"))
    assert checked.returncode == 0, checked.stderr
    assert f'run_id: Some("{job["metadata"]["name"]}")' in checked.stdout, checked.stdout
    assert 'model: Some(["gbt"])' in checked.stdout, checked.stdout


@pytest.mark.parametrize("pipeline", ["training", "inference"])
def test_cluster_configs_validate_and_match_the_reference_configs(binaries, pipeline):
    """The chart's pipeline configs are config/<pipeline>.yaml on the cluster:
    same steps, lake from SLUICE_LAKE, Ballista on SLUICE_SCHEDULER; and the
    CLI's own config loader accepts them."""
    from conftest import CHART, ROOT

    cluster_file = CHART / "files" / "pipelines" / f"{pipeline}.yaml"
    proc = subprocess.run(
        [str(binaries / "sluice"), "validate", str(cluster_file)],
        env={"PATH": os.environ["PATH"], "SLUICE_LAKE": "abfss://lake@acct.dfs.core.windows.net/",
             "SLUICE_SCHEDULER": "df://sluice-scheduler:50050"},
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    cluster = yaml.safe_load(cluster_file.read_text())
    reference = yaml.safe_load((ROOT / "config" / f"{pipeline}.yaml").read_text())
    assert cluster.pop("lake") == "${SLUICE_LAKE}"
    assert cluster.pop("engine") == {"mode": "ballista", "scheduler": "${SLUICE_SCHEDULER}"}
    reference.pop("lake")
    reference.pop("engine", None)
    # On the cluster a drifted input exits with code 3 (the Airflow DAG skips
    # and triggers retraining on it, docs/MONITORING.md); on a laptop it warns.
    for step in cluster["steps"]:
        if step["step"] == "predict":
            assert step.pop("drift")["exit_on_drift"] is True
    assert cluster == reference, "the cluster config drifted from config/%s.yaml" % pipeline
