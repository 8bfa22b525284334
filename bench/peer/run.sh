#!/usr/bin/env bash
# Sluice side by side with PySpark (local[THREADS]) on the same generated lake,
# in one run: the seven-table join, the training (fixed params, no grid) and
# the inference (join + features + predict + Parquet), with the ratios
# Spark time / Sluice time.
#
#   bench/peer/run.sh                                   # 1M samples, 544,500 training rows
#   SAMPLES=200000 TRAIN_ROWS=100000 bench/peer/run.sh  # quick check
#
# Sluice:  sluice ingest --input inference (join), sluice run
#          bench/peer/training.yaml (ingest → features → GBT → evaluate →
#          deploy), sluice run config/inference.yaml (ingest → features →
#          predict), each timed as a process (/usr/bin/time: wall s, peak RSS).
# Spark:   bench/peer/spark_pipeline.py, one session; its phases are timed
#          inside the session (the JVM start is reported on its own), the
#          whole process too.
# Installs: Java from Debian when missing and PySpark into a cached venv
# (tests/tools/spark-venv.sh). SLUICE_BIN: an already built sluice binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}
if [ -z "${SLUICE_BIN:-}" ]; then
  cargo build --release -p sluice --bin sluice >/dev/null
fi
SLUICE=${SLUICE_BIN:-$CARGO_TARGET_DIR/release/sluice}
SAMPLES=${SAMPLES:-1000000}
TRAIN_ROWS=${TRAIN_ROWS:-544500}
THREADS=${THREADS:-2}
WORK=${BENCH_DIR:-/tmp/sluice-bench}/peer
LAKE="$WORK/lake-$SAMPLES-$TRAIN_ROWS"
PY=$(bash tests/tools/spark-venv.sh)
mkdir -p "$WORK"

if [ ! -d "$LAKE/raw/samples" ]; then
  echo "generating $SAMPLES samples and $TRAIN_ROWS training rows into $LAKE"
  "$SLUICE" --quiet datagen --out "$LAKE" --samples "$SAMPLES" --train-rows "$TRAIN_ROWS"
fi
rm -rf "$LAKE/models" "$LAKE/runs" "$LAKE/predictions" "$LAKE/bench" "$WORK/spark"

measure() { # name, command...: prints "seconds maxrss_kib"
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/$name.time" "$@" >"$WORK/$name.log" 2>&1 || {
    echo "$name failed; see $WORK/$name.log" >&2; tail -20 "$WORK/$name.log" >&2; exit 1; }
  cat "$WORK/$name.time"
}

echo "sluice: join, training, inference on $LAKE ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
read -r sj mj < <(measure sluice-join "$SLUICE" --quiet ingest --lake "$LAKE" --input inference --out bench/joined)
read -r st mt < <(measure sluice-train "$SLUICE" --quiet run bench/peer/training.yaml --lake "$LAKE")
read -r si mi < <(measure sluice-infer "$SLUICE" --quiet run config/inference.yaml --lake "$LAKE")

echo "spark: the same three phases (local[$THREADS])"
read -r sp ms < <(measure spark "$PY" bench/peer/spark_pipeline.py --lake "$LAKE" --out "$WORK/spark" --threads "$THREADS")

"$PY" - "$WORK" "$LAKE" "$SAMPLES" "$TRAIN_ROWS" "$sj" "$st" "$si" "$sp" "$mj" "$mt" "$mi" "$ms" <<'PY'
import glob, json, os, sys
work, lake = sys.argv[1], sys.argv[2]
samples, train_rows = int(sys.argv[3]), int(sys.argv[4])
sj, st, si, sp = map(float, sys.argv[5:9])
mj, mt, mi, ms = (int(v) / 1024 for v in sys.argv[9:13])
spark = {}
for line in open(os.path.join(work, "spark.log")):
    if line.startswith("{"):
        ev = json.loads(line)
        spark[ev["phase"]] = ev
def report(pipeline):
    paths = sorted(glob.glob(os.path.join(lake, "runs", pipeline, "*", "report.json")), key=os.path.getmtime)
    return json.load(open(paths[-1])) if paths else {}
train_r, infer_r = report("peer-training"), report("indoor-outdoor-inference")
print(f"\nlake: {samples:,} samples, {train_rows:,} training rows; Spark {spark['session_start']['spark']} "
      f"local[{spark['session_start']['threads']}] (session start {spark['session_start']['seconds']:.1f} s, "
      f"whole Spark process {sp:.1f} s, peak RSS {ms:.0f} MiB)")
print(f"{'phase':34}{'sluice s':>10}{'spark s':>10}{'spark/sluice':>14}{'sluice MiB':>12}")
for name, ours, mib, rows in [("join (7 tables -> Parquet)", sj, mj, samples),
                              ("training (ingest..GBT 20x5)", st, mt, train_rows),
                              ("inference (join+features+predict)", si, mi, samples)]:
    key = name.split()[0]
    theirs = spark[key]["seconds"]
    print(f"{name:34}{ours:10.1f}{theirs:10.1f}{theirs / ours:14.2f}{mib:12.0f}   "
          f"sluice {rows / ours:,.0f} rows/s, spark {rows / theirs:,.0f} rows/s")
steps = lambda r: ", ".join(f"{s['name']} {s.get('seconds') or 0:.1f}" for s in r.get("steps", []))
print(f"\nsluice training steps (s): {steps(train_r)}")
print(f"sluice inference steps (s): {steps(infer_r)}")
ours_acc = (infer_r.get("scoring") or {}).get("accuracy")
print(f"inference accuracy vs truth labels: sluice {ours_acc if ours_acc is None else round(ours_acc, 4)}, "
      f"spark {spark['check']['accuracy']:.4f} ({spark['check']['predictions']:,} predictions)")
print(f"held-out AUC of the training run: spark {spark['training_check']['test_auc']:.4f}")
if spark["check"]["predictions"] != samples:
    sys.exit(f"spark wrote {spark['check']['predictions']} predictions for {samples} samples")
PY
