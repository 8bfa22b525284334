"""Fixtures of the bad-input catalogue: the `sluice` binary, one small lake
generated and trained once per session, and a fresh copy of it per case."""

import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "tools"))

from sluice_cli import generate_lake, run  # noqa: E402  (tests/tools)

__all__ = ["run"]

TRAINING = """
name: cat-train
kind: training
lake: {lake}
engine:
  target_partitions: 2
steps:
  - step: ingest
  - step: features
  - step: train
    test_fraction: 0.25
    seed: 7
    models:
      - name: gbt
        type: gbt
        params: {{maxIter: 10, maxDepth: 4, stepSize: 0.3}}
  - step: evaluate
    metric: auc
  - step: deploy
    model_name: io
"""

INFERENCE = """
name: cat-infer
kind: inference
lake: {lake}
engine:
  target_partitions: 2
steps:
  - step: ingest
  - step: features
    materialize: false
  - step: predict
    model_name: io
"""


@pytest.fixture(scope="session")
def base_lake(tmp_path_factory):
    """A small generated lake with a deployed model `io`."""
    d = tmp_path_factory.mktemp("base")
    lake = str(d / "lake")
    generate_lake(lake, 3000, 30, 3000, "--chunk-samples", 1000)
    cfg = d / "train.yaml"
    cfg.write_text(TRAINING.format(lake=lake))
    r = run("run", str(cfg))
    assert r.code == 0, r
    return lake


class Lake:
    """A private copy of the base lake and its configs."""

    def __init__(self, root):
        self.root = root
        self.train_cfg = os.path.join(os.path.dirname(root), "train.yaml")
        self.infer_cfg = os.path.join(os.path.dirname(root), "infer.yaml")
        with open(self.train_cfg, "w") as f:
            f.write(TRAINING.format(lake=root))
        with open(self.infer_cfg, "w") as f:
            f.write(INFERENCE.format(lake=root))

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def parts(self, table):
        d = self.path("raw", table)
        return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".parquet"))

    def manifests(self, pipeline, step):
        """Committed manifests of `step` over all runs of `pipeline`."""
        d = self.path("runs", pipeline)
        if not os.path.isdir(d):
            return []
        return [
            os.path.join(d, run, step, "_manifest.json")
            for run in os.listdir(d)
            if os.path.exists(os.path.join(d, run, step, "_manifest.json"))
        ]


@pytest.fixture
def lake(base_lake, tmp_path):
    root = str(tmp_path / "lake")
    shutil.copytree(base_lake, root, ignore=shutil.ignore_patterns("runs"))
    return Lake(root)
