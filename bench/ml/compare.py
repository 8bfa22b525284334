#!/usr/bin/env python3
"""Compare sluice-ml against LightGBM and scikit-learn on identical data.

Runs the Rust driver (`ml/examples/ml_bench.rs`), which generates the
synthetic 40-feature dataset, writes it as Arrow IPC and times our GBT /
random forest / prediction; then fits LightGBM and scikit-learn on the same
files with the same hyperparameters and thread count, in the same run.

Prints the numbers side by side and exits non-zero when quality is outside
tolerance (GBT AUC within 0.002 of LightGBM; RF accuracy within 0.5 points of
scikit-learn) or, with --check-speed, when our GBT fit takes more than 1.5x
LightGBM's time.

Usage (see bench/ml/run.sh, which prepares the virtualenv):
  python bench/ml/compare.py [--rows 544500] [--threads 2] [--grid] [--check-speed]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import lightgbm as lgb
import numpy as np
import pyarrow.ipc as ipc
import sklearn
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, roc_auc_score

GBT_AUC_TOL = 0.002
RF_ACC_TOL = 0.005
SPEED_RATIO = 1.5


def load(path):
    with ipc.open_file(path) as f:
        t = f.read_all()
    df = t.to_pandas()
    y = df.pop("label").to_numpy()
    return df.to_numpy(dtype=np.float64), y


def best_of(n, f):
    best, out = float("inf"), None
    for _ in range(n):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=544_500)
    ap.add_argument("--test-rows", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grid", action="store_true", help="also time the thesis grid with 10-fold CV")
    ap.add_argument("--check-speed", action="store_true")
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    work = a.workdir or tempfile.mkdtemp(prefix="sluice-mlbench-")
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/sluice-target"))
    cmd = ["cargo", "run", "--quiet", "--release", "-p", "sluice-ml", "--example", "ml_bench", "--",
           "--rows", str(a.rows), "--test-rows", str(a.test_rows), "--threads", str(a.threads), "--out", work]
    if a.grid:
        cmd.append("--grid")
    print("+", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, cwd=repo, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    ours = {}
    for line in out.splitlines():
        if line.startswith("{"):
            ev = json.loads(line)
            ours[ev["event"] if ev["event"] != "grid" else "grid_" + ev["model"]] = ev
    xtr, ytr = load(os.path.join(work, "train.arrow"))
    xte, yte = load(os.path.join(work, "test.arrow"))

    params = dict(objective="binary", num_iterations=20, learning_rate=0.1, max_depth=5, num_leaves=32,
                  min_data_in_leaf=1, min_sum_hessian_in_leaf=1e-3, lambda_l2=0.0, min_gain_to_split=0.0,
                  max_bin=255, num_threads=a.threads, verbose=-1, seed=1, deterministic=True, force_col_wise=True)

    def fit_lgb():
        return lgb.train(params, lgb.Dataset(xtr, label=ytr, params={"max_bin": 255}))

    lgb_secs, booster = best_of(3, fit_lgb)
    lgb_p = booster.predict(xte)
    lgb_auc = roc_auc_score(yte, lgb_p)
    one = dict(params, num_threads=1)
    booster1 = lgb.Booster(model_str=booster.model_to_string(), params=one)
    lgb_pred_secs, _ = best_of(3, lambda: booster1.predict(xtr, num_threads=1))

    rf = RandomForestClassifier(n_estimators=50, max_depth=10, max_features="sqrt", bootstrap=True,
                                min_samples_leaf=1, n_jobs=a.threads, random_state=0)
    t = time.perf_counter()
    rf.fit(xtr, ytr)
    sk_secs = time.perf_counter() - t
    sk_p = rf.predict_proba(xte)[:, 1]
    sk_acc = accuracy_score(yte, (sk_p > 0.5).astype(int))
    sk_auc = roc_auc_score(yte, sk_p)

    g, p, r = ours["gbt_fit"], ours["predict"], ours["rf_fit"]
    print(f"\nrows={a.rows} features={xtr.shape[1]} threads={a.threads} lightgbm={lgb.__version__} sklearn={sklearn.__version__}")
    print(f"{'':34}{'sluice':>14}{'reference':>14}{'ratio':>9}")
    print(f"{'GBT fit 20x depth5 (s)':34}{g['seconds']:14.3f}{lgb_secs:14.3f}{g['seconds'] / lgb_secs:9.2f}")
    print(f"{'GBT test AUC':34}{g['auc']:14.5f}{lgb_auc:14.5f}{g['auc'] - lgb_auc:+9.5f}")
    print(f"{'predict rows/s, 1 core':34}{p['rows_per_sec']:14.0f}{a.rows / lgb_pred_secs:14.0f}{p['rows_per_sec'] * lgb_pred_secs / a.rows:9.2f}")
    print(f"{'  (row-at-a-time baseline)':34}{p['baseline_row_at_a_time_rows_per_sec']:14.0f}")
    print(f"{'RF fit 50x depth10 (s)':34}{r['seconds']:14.3f}{sk_secs:14.3f}{r['seconds'] / sk_secs:9.2f}")
    print(f"{'RF test accuracy':34}{r['accuracy']:14.5f}{sk_acc:14.5f}{r['accuracy'] - sk_acc:+9.5f}")
    print(f"{'RF test AUC':34}{r['auc']:14.5f}{sk_auc:14.5f}{r['auc'] - sk_auc:+9.5f}")
    for k in ("grid_gbt", "grid_random_forest"):
        if k in ours:
            e = ours[k]
            print(f"{k + ' ' + str(e['points']) + 'pts x ' + str(e['folds']) + ' folds (s)':34}{e['seconds']:14.1f}   best={e['best']} cv_auc={e['best_cv_auc']:.5f}")
    if "grid_total" in ours:
        print(f"{'grid total (s)':34}{ours['grid_total']['seconds']:14.1f}  (target < 300)")

    failures = []
    if abs(g["auc"] - lgb_auc) > GBT_AUC_TOL:
        failures.append(f"GBT AUC {g['auc']:.5f} differs from LightGBM {lgb_auc:.5f} by more than {GBT_AUC_TOL}")
    if abs(r["accuracy"] - sk_acc) > RF_ACC_TOL:
        failures.append(f"RF accuracy {r['accuracy']:.5f} differs from scikit-learn {sk_acc:.5f} by more than {RF_ACC_TOL}")
    if a.check_speed and g["seconds"] > SPEED_RATIO * lgb_secs:
        failures.append(f"GBT fit {g['seconds']:.3f}s > {SPEED_RATIO} x LightGBM {lgb_secs:.3f}s")
    for f in failures:
        print("FAIL:", f)
    if not failures:
        print("OK: within tolerance")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
