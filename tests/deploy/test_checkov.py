"""checkov passes on the rendered chart and on terraform/, offline, with each
skipped check listed with its reason in checkov-skips.yaml."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import TERRAFORM, VALUE_SETS, load_values, render_chart


def run_checkov(checkov_bin: str, directory, framework: str, skips: dict[str, str]) -> dict:
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false")
    cmd = [
        checkov_bin,
        "--directory",
        str(directory),
        "--framework",
        framework,
        "--skip-download",
        "--quiet",
        "--compact",
        "--output",
        "json",
    ]
    if skips:
        cmd += ["--skip-check", ",".join(sorted(skips))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.stdout.strip(), f"checkov printed nothing (exit {proc.returncode}): {proc.stderr[-2000:]}"
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    assert len(reports) == 1, [r.get("check_type") for r in reports]
    return reports[0]


def failures(report: dict) -> list[str]:
    return [
        f"{f['check_id']} {f['check_name']}: {f['resource']} ({f['file_path']}:{f['file_line_range']})"
        for f in report["results"]["failed_checks"]
    ]


def test_every_skip_has_a_reason(checkov_skips):
    assert set(checkov_skips) == {"kubernetes", "terraform"}
    for framework, skips in checkov_skips.items():
        for check_id, reason in skips.items():
            assert check_id.startswith("CKV"), check_id
            assert len(reason.split()) >= 8, f"{framework} {check_id}: give a real reason"


@pytest.fixture(scope="module")
def rendered_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rendered")
    for name in sorted(VALUE_SETS):
        rendered = render_chart(load_values(name))
        text = "\n---\n".join(v for k, v in sorted(rendered.items()) if k.endswith(".yaml"))
        (out / f"{name}.yaml").write_text(text)
    return out


def test_checkov_passes_on_the_rendered_chart(checkov_bin, checkov_skips, rendered_dir):
    skips = checkov_skips["kubernetes"]
    report = run_checkov(checkov_bin, rendered_dir, "kubernetes", skips)
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 100, report["summary"]
    assert not failures(report), "\n".join(failures(report))


def test_checkov_passes_on_terraform(checkov_bin, checkov_skips):
    skips = checkov_skips["terraform"]
    report = run_checkov(checkov_bin, TERRAFORM, "terraform", skips)
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 30, report["summary"]
    assert not failures(report), "\n".join(failures(report))


@pytest.mark.parametrize("framework", ["kubernetes", "terraform"])
def test_no_stale_skips(checkov_bin, checkov_skips, rendered_dir, framework):
    """Every listed skip still fires without it: a fixed finding loses its skip."""
    target = rendered_dir if framework == "kubernetes" else TERRAFORM
    report = run_checkov(checkov_bin, target, framework, {})
    fired = {f["check_id"] for f in report["results"]["failed_checks"]}
    stale = set(checkov_skips[framework]) - fired
    assert not stale, f"{framework}: skips that no longer fire, remove them: {sorted(stale)}"
