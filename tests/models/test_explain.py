"""`predict` with `explain: k`: the top-k exact TreeSHAP contributions
written beside each prediction equal `shap.TreeExplainer` on the exported
LightGBM model, to 1e-6 (GBT: log-odds; forest: shap's sum over LightGBM
trees divided by the number of trees, since Sluice averages)."""

import lightgbm as lgb
import numpy as np
import pytest
import shap

from conftest import EXPLAIN_K, MODELS, feature_matrix, sluice

TOL = 1e-6
ROWS = 2000


@pytest.mark.parametrize("family", list(MODELS))
def test_top_contributions_equal_shap_tree_explainer(lake, scored, tmp_path, family):
    out = tmp_path / f"{family}.txt"
    sluice("models", "export", f"export-{family}", "--format", "lightgbm", "--out", out, "--lake", lake)
    booster = lgb.Booster(model_file=str(out))
    names = booster.feature_name()
    df = scored[family].head(ROWS)
    x = feature_matrix(df, names)
    values = np.asarray(shap.TreeExplainer(booster).shap_values(x))
    if family == "rf":
        values = values / booster.num_trees()
    assert values.shape == (len(df), len(names))
    checked = 0
    for r, entries in enumerate(df["explanation"]):
        assert len(entries) == EXPLAIN_K
        order = sorted(range(len(names)), key=lambda j: (-abs(values[r, j]), j))
        for (want_j, e) in zip(order, entries):
            j = names.index(e["feature"])
            assert abs(e["contribution"] - values[r, j]) <= TOL, (r, e, values[r, j])
            # Same ranking, up to ties in absolute value.
            assert abs(abs(values[r, j]) - abs(values[r, want_j])) <= TOL, (r, e["feature"], names[want_j])
            checked += 1
    assert checked == len(df) * EXPLAIN_K
