#!/usr/bin/env python3
"""Compare sluice-ml against LightGBM and scikit-learn on identical data.

Runs the Rust driver (`ml/examples/ml_bench.rs`), which generates the
synthetic 40-feature dataset, writes it as Arrow IPC and times our GBT /
random forest / prediction; then fits LightGBM and scikit-learn on the same
files with the same hyperparameters and thread count, in the same run.

With --pipeline-rows N it also compares the random forest on the
pipeline's own features: `sluice datagen` writes N labelled training rows,
`sluice run config/quickstart-training.yaml --steps ingest,features` computes
the features, the rows are split by device as the pipeline's train step does
(test_fraction 0.2, seed 42), and our forest (20 trees, depth 5, the
pipeline's defaults) is compared with scikit-learn's RandomForestClassifier
with the same parameters, mean of 5 seeds each.

Prints the numbers side by side and exits non-zero when quality is outside
tolerance (GBT AUC within 0.002 of LightGBM; RF accuracy within 0.5 points of
scikit-learn, on both datasets) or, with --check-speed, when our GBT fit
takes more than 1.5x LightGBM's time.

Binaries: `SLUICE_ML_BENCH_BIN` (default
`$CARGO_TARGET_DIR/release/examples/ml_bench`) and `SLUICE_BIN` (default
`$CARGO_TARGET_DIR/release/sluice`); when one is missing, the workspace is
built once with `cargo build --release --workspace --all-targets` (the
feature set tests/run-all.sh builds, so nothing is rebuilt twice).

Usage (see bench/ml/run.sh, which prepares the virtualenv):
  python bench/ml/compare.py [--rows 544500] [--threads 2] [--grid] [--check-speed] [--pipeline-rows 150000]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
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


def binaries(repo, env):
    """Paths of the prebuilt ml_bench example and sluice binary (built once when missing)."""
    target = env["CARGO_TARGET_DIR"]
    bench = env.get("SLUICE_ML_BENCH_BIN") or os.path.join(target, "release", "examples", "ml_bench")
    sluice = env.get("SLUICE_BIN") or os.path.join(target, "release", "sluice")
    if not (os.access(bench, os.X_OK) and os.access(sluice, os.X_OK)):
        cmd = ["cargo", "build", "--quiet", "--release", "--workspace", "--all-targets"]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=repo, env=env, check=True)
    for path in (bench, sluice):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} is not an executable (set SLUICE_ML_BENCH_BIN / SLUICE_BIN)")
    return bench, sluice


def run_bench(bench, args, repo, env):
    """Runs ml_bench and returns its JSON events by name."""
    cmd = [bench] + args
    print("+", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, cwd=repo, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def pipeline_features(sluice, rows, work, repo, env):
    """Generates `rows` labelled rows, runs the pipeline's ingest and features
    steps and writes the features (sample_id order) with `indoor` and
    `device_id` as Arrow IPC; returns the file."""
    lake = os.path.join(work, "lake")
    for cmd in (
        [sluice, "datagen", "--out", lake, "--samples", "1000", "--train-rows", str(rows)],
        [sluice, "run", "config/quickstart-training.yaml", "--lake", lake, "--steps", "ingest,features"],
    ):
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=repo, env=env, check=True, stdout=subprocess.DEVNULL)
    manifests = sorted(glob.glob(os.path.join(lake, "runs", "*", "*", "features", "_manifest.json")))
    if not manifests:
        sys.exit(f"no committed features output under {lake}/runs")
    with open(manifests[-1]) as f:
        man = json.load(f)
    names = man["extra"]["feature_names"]
    files = [os.path.join(lake, e["path"]) for e in man["files"] if e["path"].endswith(".parquet")]
    t = pa.concat_tables(pq.read_table(p, columns=names + ["indoor", "device_id", "sample_id"]) for p in files)
    t = t.sort_by("sample_id").drop(["sample_id"])
    t = t.set_column(t.schema.get_field_index("indoor"), "indoor", pc.cast(t["indoor"], pa.uint8()))
    t = t.set_column(t.schema.get_field_index("device_id"), "device_id", pc.cast(t["device_id"], pa.int64()))
    path = os.path.join(work, "pipeline_features.arrow")
    with ipc.new_file(path, t.schema) as w:
        w.write_table(t)
    return path


def pipeline_forest(a, bench, sluice, work, repo, env):
    """Our forest vs scikit-learn's on the pipeline's features; returns (ours, sklearn, lines)."""
    feats = pipeline_features(sluice, a.pipeline_rows, work, repo, env)
    events = run_bench(bench, ["--pipeline-features", feats, "--threads", str(a.threads), "--out", work], repo, env)
    data = next(e for e in events if e["event"] == "pipeline_data")
    ours = [e for e in events if e["event"] == "pipeline_rf"]
    xtr, ytr = load(os.path.join(work, "pipeline_train.arrow"))
    xte, yte = load(os.path.join(work, "pipeline_test.arrow"))
    sk = []
    for seed in range(5):
        rf = RandomForestClassifier(n_estimators=20, max_depth=5, max_features="sqrt", bootstrap=True,
                                    min_samples_leaf=1, n_jobs=a.threads, random_state=seed)
        rf.fit(xtr, ytr)
        p = rf.predict_proba(xte)[:, 1]
        sk.append((accuracy_score(yte, (p > 0.5).astype(int)), roc_auc_score(yte, p)))
    our_acc = float(np.mean([e["accuracy"] for e in ours]))
    our_auc = float(np.mean([e["auc"] for e in ours]))
    sk_acc = float(np.mean([s[0] for s in sk]))
    sk_auc = float(np.mean([s[1] for s in sk]))
    seed42 = next((e for e in ours if e["seed"] == 42), ours[0])
    lines = [
        f"\npipeline features: {data['train_rows']} train / {data['test_rows']} test rows (split by device), "
        f"{data['features']} features, RF 20 trees depth 5",
        f"{'':34}{'sluice':>14}{'scikit-learn':>14}{'diff':>9}",
        f"{'RF accuracy, mean of 5 seeds':34}{our_acc:14.5f}{sk_acc:14.5f}{our_acc - sk_acc:+9.5f}",
        f"{'RF AUC, mean of 5 seeds':34}{our_auc:14.5f}{sk_auc:14.5f}{our_auc - sk_auc:+9.5f}",
        f"{'RF accuracy, pipeline seed 42':34}{seed42['accuracy']:14.5f}",
        "  per seed, sluice:       " + " ".join(f"{e['accuracy']:.5f}" for e in ours),
        "  per seed, scikit-learn: " + " ".join(f"{s[0]:.5f}" for s in sk),
    ]
    return our_acc, sk_acc, lines


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
    ap.add_argument("--pipeline-rows", type=int, default=0,
                    help="also compare the forest on the pipeline's features of this many labelled rows")
    a = ap.parse_args()

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    work = a.workdir or tempfile.mkdtemp(prefix="sluice-mlbench-")
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/sluice-target"))
    bench, sluice = binaries(repo, env)
    args = ["--rows", str(a.rows), "--test-rows", str(a.test_rows), "--threads", str(a.threads), "--out", work]
    if a.grid:
        args.append("--grid")
    ours = {}
    for ev in run_bench(bench, args, repo, env):
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
    if a.pipeline_rows:
        p_ours, p_sk, lines = pipeline_forest(a, bench, sluice, work, repo, env)
        print("\n".join(lines))
        if abs(p_ours - p_sk) > RF_ACC_TOL:
            failures.append(f"RF accuracy on the pipeline's features {p_ours:.5f} differs from scikit-learn "
                            f"{p_sk:.5f} by more than {RF_ACC_TOL}")

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
