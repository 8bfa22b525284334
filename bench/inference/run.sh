#!/usr/bin/env bash
# The inference pipeline end to end on a large generated lake (default: the
# thesis' 38 million samples): seven-table join -> features -> predict ->
# Parquet, with wall time, samples/s, peak memory (max RSS of the process)
# and the per-step timings of the run report (where the time goes).
#
# Baseline measured in the same run: the validated rewrite of the `samples`
# table alone (`sluice ingest --input table --table samples`), the I/O floor
# of any pipeline over this lake. Ratio = pipeline time / baseline time.
#
#   bench/inference/run.sh                  # 38M samples (about 4 GB of lake)
#   SAMPLES=5000000 bench/inference/run.sh  # smaller
#   EXPLAIN=3 SAMPLES=2000000 bench/inference/run.sh
#       # also the same pipeline with `explain: 3` (top-3 TreeSHAP
#       # contributions per prediction), and its ratio to the run without
#   MODEL_CONFIG=path.yaml ...  # the training config of the deployed model
#                               # (default: config/quickstart-training.yaml)
#
# The lake and a model trained on it (quickstart training config) are built
# once under $BENCH_DIR (default /tmp/sluice-bench) and reused.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}
# SLUICE_BIN: use an already built binary instead of building one.
if [ -z "${SLUICE_BIN:-}" ]; then
  cargo build --release -p sluice --bin sluice >/dev/null
fi
SLUICE=${SLUICE_BIN:-$CARGO_TARGET_DIR/release/sluice}
SAMPLES=${SAMPLES:-38000000}
WORK=${BENCH_DIR:-/tmp/sluice-bench}/inference
LAKE="$WORK/lake-$SAMPLES"
mkdir -p "$WORK"

if [ ! -d "$LAKE/raw/samples" ]; then
  echo "generating $SAMPLES samples into $LAKE"
  "$SLUICE" --quiet datagen --out "$LAKE" --samples "$SAMPLES" --train-rows 544500
fi
MODEL_CONFIG=${MODEL_CONFIG:-config/quickstart-training.yaml}
if [ ! -f "$LAKE/models/indoor-outdoor/latest" ] || [ -n "${RETRAIN:-}" ]; then
  echo "training the model to deploy ($MODEL_CONFIG)"
  "$SLUICE" --quiet run "$MODEL_CONFIG" --lake "$LAKE" >/dev/null
fi
"$SLUICE" --quiet models show indoor-outdoor --lake "$LAKE" | sed -n 1,3p

measure() { # name, command...: writes "seconds maxrss_kib" to $WORK/name.time; stops the bench on failure
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/$name.time" "$@" >"$WORK/$name.log" 2>&1 || {
    echo "$name failed; see $WORK/$name.log" >&2; tail -20 "$WORK/$name.log" >&2; exit 1; }
}

measure baseline "$SLUICE" --quiet ingest --lake "$LAKE" --input table --table samples --out bench/samples-copy
read -r tb mb < "$WORK/baseline.time"
# Each run commits a unified table and predictions (2.4 GB at 38M): keep
# only the newest earlier run (to compare predictions with), not all of them.
for d in "$LAKE/runs/indoor-outdoor-inference" "$LAKE/predictions"; do
  [ -d "$d" ] && { ls -1d "$d"/*/ 2>/dev/null || true; } | sort | head -n -1 | xargs -r rm -rf
done
measure pipeline "$SLUICE" --log-format json run config/inference.yaml --lake "$LAKE"
read -r tp mp < "$WORK/pipeline.time"

printf "%-34s %12s %9s %14s %10s %7s\n" bench samples seconds samples/s peak_MiB ratio
printf "%-34s %12d %9.1f %14.0f %10.0f %7s\n" "baseline: samples table rewrite" "$SAMPLES" "$tb" "$(echo "$SAMPLES / $tb" | bc -l)" "$(echo "$mb / 1024" | bc -l)" "1.00"
printf "%-34s %12d %9.1f %14.0f %10.0f %7.2f\n" "inference pipeline (join+feat+pred)" "$SAMPLES" "$tp" "$(echo "$SAMPLES / $tp" | bc -l)" "$(echo "$mp / 1024" | bc -l)" "$(echo "$tp / $tb" | bc -l)"

# Per-step timings from the newest inference run's report.
report=$(ls -t "$LAKE"/runs/indoor-outdoor-inference/*/report.json | head -1)
python3 - "$report" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("\nwhere the time goes (run %s):" % r["run_id"])
for s in r["steps"]:
    print("  %-10s %8.1f s  rows out %s" % (s["name"], s.get("seconds") or 0, s.get("rows_out")))
if r.get("scoring"):
    print("scored against truth: accuracy %.4f  auc %.4f" % (r["scoring"]["accuracy"], r["scoring"]["auc"]))
PY

if [ -n "${EXPLAIN:-}" ]; then
  sed "s/^    version: latest$/    version: latest\n    explain: $EXPLAIN/" config/inference.yaml >"$WORK/inference-explain.yaml"
  grep -q "explain: $EXPLAIN" "$WORK/inference-explain.yaml" || { echo "could not add explain to the config"; exit 1; }
  measure explain "$SLUICE" --log-format json run "$WORK/inference-explain.yaml" --lake "$LAKE"
  read -r te me < "$WORK/explain.time"
  printf "%-34s %12d %9.1f %14.0f %10.0f %7.2f\n" "same with explain: $EXPLAIN" "$SAMPLES" "$te" "$(echo "$SAMPLES / $te" | bc -l)" "$(echo "$me / 1024" | bc -l)" "$(echo "$te / $tb" | bc -l)"
  printf "explain cost: %.2fx the pipeline without\n" "$(echo "$te / $tp" | bc -l)"
fi
