"""`sluice models export`: LightGBM text and ONNX files that LightGBM and
onnxruntime load and that predict what Sluice predicted, to 1e-6, on the
held-out (inference) features, and on the same features with holes (missing
values routed as Sluice routes them)."""

import json

import lightgbm as lgb
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest

from conftest import MODELS, feature_matrix, sluice

TOL = 1e-6


@pytest.mark.parametrize("family", list(MODELS))
def test_lightgbm_export_predicts_like_sluice(lake, scored, tmp_path, family):
    out = tmp_path / f"{family}.txt"
    p = sluice("models", "export", f"export-{family}", "--format", "lightgbm", "--out", out, "--lake", lake)
    assert f"to {out}" in p.stdout
    booster = lgb.Booster(model_file=str(out))
    names = booster.feature_name()
    df = scored[family]
    x = feature_matrix(df, names)
    got = booster.predict(x)
    want = df["indoor_probability"].to_numpy()
    err = np.abs(got - want)
    assert err.max() <= TOL, f"max |lightgbm - sluice| = {err.max():.3g} at row {err.argmax()}"
    # Not a constant model: the comparison means something.
    assert want.std() > 0.05


@pytest.mark.parametrize("family", list(MODELS))
def test_onnx_export_predicts_like_sluice(lake, scored, tmp_path, family):
    out = tmp_path / f"{family}.onnx"
    sluice("models", "export", f"export-{family}", "--format", "onnx", "--out", out, "--lake", lake)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    names = json.loads(meta["feature_names"])
    assert [i.name for i in sess.get_inputs()] == ["features"]
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert [(n.domain, n.op_type) for n in model.graph.node] == [("ai.onnx.ml", "TreeEnsembleClassifier")]
    df = scored[family]
    x = feature_matrix(df, names)
    label, proba = sess.run(["label", "probabilities"], {"features": x})
    want = df["indoor_probability"].to_numpy()
    err = np.abs(proba[:, 1].astype(np.float64) - want)
    assert err.max() <= TOL, f"max |onnx - sluice| = {err.max():.3g} at row {err.argmax()}"
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert ((label == 1) == (want > 0.5)).mean() > 0.999


def test_export_errors_name_the_problem(lake, tmp_path):
    p = sluice("models", "export", "export-gbt", "--format", "pmml", "--out", tmp_path / "m", "--lake", lake, check=False)
    assert p.returncode != 0 and "pmml" in p.stderr and "lightgbm" in p.stderr
    p = sluice("models", "export", "no-such-model", "--format", "onnx", "--out", tmp_path / "m", "--lake", lake, check=False)
    assert p.returncode != 0 and "no-such-model" in p.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("family", list(MODELS))
def test_missing_values_route_like_sluice(lake, scored, tmp_path, family):
    """The feature chain imputes every value, so the held-out table has no
    missing value: blank a third of the cells of the held-out features,
    score them with Sluice (`sluice models predict`) and with both exports."""
    txt, onx = tmp_path / "m.txt", tmp_path / "m.onnx"
    sluice("models", "export", f"export-{family}", "--format", "lightgbm", "--out", txt, "--lake", lake)
    sluice("models", "export", f"export-{family}", "--format", "onnx", "--out", onx, "--lake", lake)
    booster = lgb.Booster(model_file=str(txt))
    names = booster.feature_name()
    x = feature_matrix(scored[family].head(5000), names)
    rng = np.random.default_rng(7)
    x[rng.random(x.shape) < 0.33] = np.nan
    inp, out = tmp_path / "holes.parquet", tmp_path / "scored.parquet"
    pd.DataFrame(x, columns=names).to_parquet(inp)
    p = sluice("models", "predict", f"export-{family}", "--input", inp, "--out", out, "--lake", lake)
    assert "scored 5000 rows" in p.stdout
    want = pd.read_parquet(out)["indoor_probability"].to_numpy()
    got = booster.predict(x)
    assert np.abs(got - want).max() <= TOL
    sess = ort.InferenceSession(str(onx), providers=["CPUExecutionProvider"])
    _, proba = sess.run(["label", "probabilities"], {"features": x})
    assert np.abs(proba[:, 1] - want).max() <= TOL
    # The holes change predictions: the missing branches were exercised.
    full = scored[family].head(5000)["indoor_probability"].to_numpy()
    assert np.abs(want - full).max() > 0.05
