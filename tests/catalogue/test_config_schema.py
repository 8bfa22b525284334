"""`sluice config schema` against the config parser: every shipped config
validates under the JSON Schema, and a broken config is refused by both the
schema and `sluice validate`, naming the same key. The schema is what
editors read (yaml-language-server), so it must agree with the parser."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from sluice_cli import run, sluice

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(sluice("config", "schema").out)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def load(path: Path) -> dict:
    # ${VAR:-default} as `sluice` substitutes it with VAR unset.
    text = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", path.read_text())
    return yaml.safe_load(text)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(validator, path):
    errors = [e.message for e in validator.iter_errors(load(path))]
    assert errors == [], f"{path.name}: {errors}"
    sluice("validate", path)


def step(cfg: dict, name: str) -> dict:
    return next(s for s in cfg["steps"] if s["step"] == name)


BROKEN = {
    "unknown key in a step": (lambda c: step(c, "train").update(bogus=1), "bogus"),
    "unknown engine mode": (lambda c: c["engine"].update(mode="spark"), "spark"),
    "batch size not a number": (lambda c: c["engine"].update(batch_size="many"), "batch_size"),
    "negative tree count": (lambda c: step(c, "train")["models"][1]["params"].update(numTrees=-3), "numTrees"),
    "unknown model parameter": (lambda c: step(c, "train")["models"][0]["params"].update(maxTrees=3), "maxTrees"),
    "unknown step": (lambda c: c["steps"].append({"step": "publish"}), "publish"),
    "drift threshold not a number": (
        lambda c: c["steps"].append({"step": "predict", "model_name": "m", "drift": {"psi_fail": "high"}}),
        "psi_fail",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_configs_are_refused_by_schema_and_parser(validator, tmp_path, case):
    breaker, key = BROKEN[case]
    cfg = copy.deepcopy(load(ROOT / "config" / "training.yaml"))
    breaker(cfg)
    assert list(validator.iter_errors(cfg)), f"schema accepted {case}"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = run("validate", path)
    assert r.code == 2, r
    assert key in r.err, r
