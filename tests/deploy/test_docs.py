"""docs/DEPLOY.md is a runbook: every `sluice` command in its shell blocks
parses with the CLI's own parser (SLUICE_CHECK_ARGS=1), and every `helm
install`/`upgrade` of the chart renders with the values it sets."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import yaml

from conftest import CHART, ROOT, manifests_of

DEPLOY = ROOT / "docs" / "DEPLOY.md"
# What the runbook's shell variables hold by then (terraform outputs etc.).
SHELL_VARS = {
    "ACR": "sluiceacr1234.azurecr.io",
    "ACCOUNT": "sluicelake1234",
    "CLIENT_ID": "11111111-2222-3333-4444-555555555555",
    "LAKE": "abfss://lake@sluicelake1234.dfs.core.windows.net/",
    "DIGEST": "sha256:" + "a" * 64,
}


def _expand(line: str) -> list[str]:
    for name, value in SHELL_VARS.items():
        line = line.replace(f'"${name}"', value).replace(f"${name}", value)
    return shlex.split(line)


def shell_commands(program: str, inline: bool = False) -> list[list[str]]:
    """The runbook's `program` command lines: from its shell blocks, and with
    `inline` also from inline code spans that are complete commands."""
    text = DEPLOY.read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith(program + " "):
                commands.append(_expand(line))
    if inline:
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        for span in re.findall(r"`([^`]+)`", prose):
            span = " ".join(span.split())
            # Complete commands only: no placeholders, no "submit / scale" lists.
            if span.startswith(program + " ") and len(span.split()) >= 3 and not re.search(r"[<>]|\.\.\.| / |/status", span):
                commands.append(_expand(span))
    return commands


def test_every_sluice_command_in_the_runbook_parses(binaries):
    commands = shell_commands("sluice", inline=True)
    assert len(commands) >= 6, commands
    assert {c[1] for c in commands} >= {"submit", "scale", "status", "models", "datagen"}, commands
    for argv in commands:
        proc = subprocess.run([str(binaries / "sluice"), *argv[1:]], env={"PATH": os.environ["PATH"], "SLUICE_CHECK_ARGS": "1"},
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"{shlex.join(argv)}: {proc.stderr}"


def _set(values: dict, dotted: str, value: str) -> None:
    keys = re.split(r"\.(?![^\[]*\])", dotted)
    node = values
    for i, key in enumerate(keys):
        m = re.fullmatch(r"(\w+)\[(\d+)\]", key)
        last = i == len(keys) - 1
        if m:
            items = node.setdefault(m.group(1), [])
            while len(items) <= int(m.group(2)):
                items.append({})
            if last:
                items[int(m.group(2))] = yaml.safe_load(value)
            node = items[int(m.group(2))]
        elif last:
            node[key] = yaml.safe_load(value) if value not in ("", None) else value
            if isinstance(node[key], (int, float)) and key in ("tag",):
                node[key] = value
        else:
            node = node.setdefault(key, {})


def test_every_helm_install_in_the_runbook_renders():
    import helm_python as helm

    chart = helm.Chart.load(str(CHART))
    installed: dict = {}
    commands = [c for c in shell_commands("helm") if c[1] in ("install", "upgrade")]
    assert commands, "the runbook installs the chart"
    for argv in commands:
        values = dict(installed) if "--reuse-values" in argv else {}
        it = iter(argv[4:])
        for arg in it:
            if arg == "-f":
                values = {**yaml.safe_load((ROOT / next(it)).read_text()), **values}
            elif arg == "--set":
                key, _, value = next(it).partition("=")
                _set(values, key, value)
        docs = manifests_of(chart.render(values, name=argv[2], namespace="sluice", is_install=argv[1] == "install"))
        names = {(d["kind"], d["metadata"]["name"]) for d in docs}
        assert ("Deployment", "sluice-executor") in names
        installed = values
    binding = next(d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == "sluice-airflow")
    assert binding["subjects"][0]["name"] == "airflow-worker"
    exe = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "sluice-executor")
    container = exe["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"{SHELL_VARS['ACR']}/sluice@{SHELL_VARS['DIGEST']}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SLUICE_LAKE"] == SHELL_VARS["LAKE"]
