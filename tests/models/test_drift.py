"""Drift monitoring end to end: the deployed model carries a reference
profile; inference on a lake of the same generator (other seeds) is not
flagged, inference on each known shift (`sluice datagen --shift`) is, with
exit code 3 (`drift: {exit_on_drift: true}`), `drift.json` and the shifted
features named."""

import json
import shutil

import pytest

from conftest import DEVICES, SAMPLES, inference_config, sluice

DRIFTED_EXIT = 3


def infer_on(base_lake, tmp_path, name, seed, shift=None):
    """Generates a raw lake (optionally shifted), copies the registry of
    `base_lake` into it and runs the GBT inference pipeline; returns
    (process, drift.json)."""
    lake = tmp_path / name / "lake"
    args = ["datagen", "--out", lake, "--samples", SAMPLES, "--devices", DEVICES, "--train-rows", 0, "--seed", seed]
    if shift:
        args += ["--shift", shift]
    sluice(*args)
    shutil.copytree(base_lake / "models", lake / "models")
    cfg = inference_config(tmp_path / name / "infer.yaml", "gbt", name=f"drift-{name}", exit_on_drift=True)
    p = sluice("run", cfg, "--lake", lake, "--run-id", "r1", check=False)
    drift_file = lake / f"runs/drift-{name}/r1/drift.json"
    assert drift_file.exists(), f"no drift.json\n{p.stdout}\n{p.stderr}"
    return p, json.loads(drift_file.read_text())


def test_same_generator_is_not_flagged(lake, scored, tmp_path):
    # The fixture's own inference run (seed 11) and three more seeds.
    runs = [json.loads((lake / f"runs/export-infer-{f}/infer-{f}/drift.json").read_text()) for f in ("gbt", "rf")]
    for seed in (1, 2, 3):
        p, d = infer_on(lake, tmp_path, f"seed{seed}", seed)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "drift: none" in p.stdout
        runs.append(d)
    for d in runs:
        worst = d["features"][0]
        assert d["drifted"] is False, f"false alarm: {worst['name']} PSI {worst['psi']:.3f}"
        assert all(f["status"] != "fail" for f in d["features"])
        assert d["prediction"]["psi"] < d["thresholds"]["psi_fail"]
        assert d["current_rows"] == SAMPLES


@pytest.mark.parametrize(
    "shift,expected",
    [
        ("rsrp", ("rsrp", "rssi", "signal_level")),
        ("manufacturer", ("manufacturer",)),
        ("night", ("hour", "minute_of_day")),
    ],
)
def test_shifted_lake_is_flagged_with_the_shifted_features(lake, tmp_path, shift, expected):
    p, d = infer_on(lake, tmp_path, f"shift-{shift}", 11, shift)
    assert p.returncode == DRIFTED_EXIT, p.stdout + p.stderr
    assert "drift: DRIFTED" in p.stdout
    assert d["drifted"] is True
    failed = [f["name"] for f in d["features"] if f["status"] == "fail"]
    assert failed, d["features"][:3]
    # The most drifted feature is one the shift acts on.
    top = d["features"][0]["name"]
    assert any(e in top for e in expected), [(f["name"], round(f["psi"], 3)) for f in d["features"][:5]]
    # The predictions were still written and the report shows the drift table.
    report = (lake_of(tmp_path, shift) / f"runs/drift-shift-{shift}/r1/report.html").read_text()
    assert 'id="drift"' in report and "drifted" in report


def lake_of(tmp_path, shift):
    return tmp_path / f"shift-{shift}" / "lake"
