"""Shared fixtures: a small generated lake, one training run per model family
(each deploying its own registry name) and one inference run per model with
the feature table kept (`materialize: true`), so tests can compare what
Sluice predicted with what an exported model computes on the same rows."""

import glob
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from sluice_cli import SLUICE, generate_lake, run, sluice  # noqa: E402,F401  (tests/tools; re-exported to the tests)

# Small but real: every feature of the reference chain, nulls included.
# 50 samples per device, so the few thousand rows still cover hundreds of
# devices (device attributes are what the drift check's sampling unit is).
SAMPLES = 40_000
DEVICES = 800
TRAIN_ROWS = 40_000

# Top contributions the inference runs write beside each prediction.
EXPLAIN_K = 3

MODELS = {
    "gbt": ("gbt", "{maxIter: 25, maxDepth: 5, stepSize: 0.3}"),
    "rf": ("random_forest", "{numTrees: 12, maxDepth: 8, minInstancesPerNode: 2}"),
}


def training_config(path: Path, family: str) -> Path:
    kind, params = MODELS[family]
    path.write_text(
        f"""name: export-train-{family}
kind: training
lake: ./unused
steps:
  - step: ingest
  - step: features
  - step: train
    test_fraction: 0.2
    seed: 42
    models:
      - name: {family}
        type: {kind}
        params: {params}
  - step: evaluate
    metric: auc
  - step: deploy
    model_name: export-{family}
"""
    )
    return path


def inference_config(path: Path, family: str, name: str = "", explain: int = 0, exit_on_drift: bool = False) -> Path:
    path.write_text(
        f"""name: {name or f"export-infer-{family}"}
kind: inference
lake: ./unused
steps:
  - step: ingest
  - step: features
    materialize: true
  - step: predict
    model_name: export-{family}
"""
        + (f"    explain: {explain}\n" if explain else "")
        + ("    drift: {psi_warn: 0.1, psi_fail: 0.25, exit_on_drift: true}\n" if exit_on_drift else "")
    )
    return path


def read_parquet_dir(pattern: str) -> pd.DataFrame:
    files = sorted(glob.glob(pattern, recursive=True))
    assert files, f"no parquet file matches {pattern}"
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


@pytest.fixture(scope="session")
def lake(tmp_path_factory) -> Path:
    """A generated lake with both model families trained and deployed."""
    root = tmp_path_factory.mktemp("models")
    lake = root / "lake"
    generate_lake(lake, SAMPLES, DEVICES, TRAIN_ROWS, "--seed", 11)
    for family in MODELS:
        cfg = training_config(root / f"train-{family}.yaml", family)
        sluice("run", cfg, "--lake", lake, "--run-id", f"train-{family}")
    return lake


@pytest.fixture(scope="session")
def scored(lake):
    """Per family: (model feature table of the inference run, Sluice's predictions),
    row-aligned on sample_id."""
    out = {}
    for family in MODELS:
        cfg = inference_config(lake.parent / f"infer-{family}.yaml", family, explain=EXPLAIN_K)
        run_id = f"infer-{family}"
        sluice("run", cfg, "--lake", lake, "--run-id", run_id)
        feats = read_parquet_dir(str(lake / f"runs/export-infer-{family}/{run_id}/features/**/*.parquet"))
        preds = read_parquet_dir(str(lake / f"predictions/run={run_id}/**/*.parquet"))
        assert len(preds) == SAMPLES and len(feats) == SAMPLES
        merged = feats.merge(
            preds[["sample_id", "indoor_probability", "explanation"]], on="sample_id", validate="1:1"
        )
        out[family] = merged
    return out


def feature_matrix(df: pd.DataFrame, names) -> np.ndarray:
    """The model's feature columns as float64, nulls as NaN (what Sluice scores)."""
    return np.column_stack(
        [pd.to_numeric(df[n].astype("float64"), errors="raise").to_numpy(dtype=np.float64, na_value=np.nan) for n in names]
    )
