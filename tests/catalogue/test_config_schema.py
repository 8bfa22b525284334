"""`sluice config schema` against the config parser: every shipped config
validates under the JSON Schema, and a broken config is refused by both the
schema and `sluice validate`, naming the same key. The schema is what
editors read (yaml-language-server), so it must agree with the parser."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import TRAINING
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


@pytest.fixture(scope="module")
def shipped_lake(base_lake, tmp_path_factory):
    """The base lake with the shipped configs' model, `indoor-outdoor`,
    deployed: `sluice validate` checks an inference config's model."""
    d = tmp_path_factory.mktemp("shipped")
    lake = str(d / "lake")
    shutil.copytree(base_lake, lake, ignore=shutil.ignore_patterns("runs", "models"))
    cfg = d / "train.yaml"
    cfg.write_text(TRAINING.format(lake=lake).replace("model_name: io", "model_name: indoor-outdoor"))
    sluice("run", cfg)
    return lake


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(validator, shipped_lake, path):
    errors = [e.message for e in validator.iter_errors(load(path))]
    assert errors == [], f"{path.name}: {errors}"
    r = sluice("validate", "--lake", shipped_lake, path)
    assert f"{path}: ok" in r.out, r


def test_validate_names_the_missing_model(base_lake):
    """An inference config whose model was never deployed is refused with the
    model's name and the way out."""
    r = run("validate", "--lake", base_lake, ROOT / "config" / "inference.yaml")
    assert r.code == 2, r
    assert "model `indoor-outdoor` has no deployed version" in r.err, r
    assert "sluice models list" in r.err, r


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
