"""The Dockerfile cannot be built here (no Docker engine); this parses it and
checks the structure the issue asks for: multi-stage, release build of the
three binaries, a slim runtime without build tools, non-root USER, labels and
a health check."""

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


def test_is_multi_stage_with_a_slim_runtime(parser):
    froms = [i["value"] for i in parser.structure if i["instruction"] == "FROM"]
    assert len(froms) >= 2, froms
    assert re.match(r"rust:\S+ AS build", froms[0]), froms[0]
    runtime = froms[-1]
    assert "slim" in runtime or "distroless" in runtime, runtime
    assert "rust" not in runtime.split()[0]


def test_builds_the_three_binaries_in_release(parser):
    build = " ".join(i["value"] for i in stages(parser)[0] if i["instruction"] == "RUN")
    assert "cargo build --release --locked" in build
    for pkg in ("sluice-engine", "sluice-scheduler", "sluice-executor"):
        assert f"-p {pkg}" in build, pkg
    runtime = stages(parser)[-1]
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert any("--from=build" in c and "/usr/local/bin/" in c for c in copies), copies
    build_copy = " ".join(i["value"] for i in stages(parser)[0])
    for binary in ("target/release/sluice ", "target/release/sluice-scheduler", "target/release/sluice-executor"):
        assert binary in build_copy + " ", binary


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
