#!/usr/bin/env bash
# Reading a lake as ordinary writers store it costs what reading the
# generator's lake costs (issue 16): the same generated lake, its raw tables
# rewritten by pyarrow (every column nullable, ns timestamps) and by pandas
# (also float64 for integer columns with nulls), each run through the
# shipped inference config with the same deployed model. Runs alternate
# (generator, pyarrow, pandas, generator, ...) so the box's drift hits each
# alike; the baseline is the generator's lake, measured in the same run.
#
#   bench/writers/run.sh                   # 2M samples, 3 rounds
#   SAMPLES=5000000 ROUNDS=2 bench/writers/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}
if [ -z "${SLUICE_BIN:-}" ]; then
  cargo build --release --workspace --bin sluice >/dev/null
fi
SLUICE=${SLUICE_BIN:-$CARGO_TARGET_DIR/release/sluice}
SAMPLES=${SAMPLES:-2000000}
ROUNDS=${ROUNDS:-3}
WORK=${BENCH_DIR:-/tmp/sluice-bench}/writers-$SAMPLES
PY=$(bash tests/tools/spark-venv.sh)
mkdir -p "$WORK"

GEN="$WORK/generator"
if [ ! -f "$GEN/models/indoor-outdoor/latest" ]; then
  rm -rf "$GEN"
  echo "generating $SAMPLES samples and training the model to deploy"
  "$SLUICE" --quiet datagen --out "$GEN" --samples "$SAMPLES" --train-rows 100000
  "$SLUICE" --quiet run config/quickstart-training.yaml --lake "$GEN" >/dev/null
fi
for w in pyarrow pandas; do
  if [ ! -d "$WORK/$w/raw/samples" ]; then
    echo "rewriting the raw tables with $w"
    rm -rf "$WORK/$w"
    "$PY" tests/tools/rewrite_lake.py "$GEN" "$WORK/$w" --writer "$w" >/dev/null
    # Same deployed model: the registry is copied beside the new tables.
    cp -r "$GEN/models" "$WORK/$w/models"
  fi
done

declare -A total
for lake in generator pyarrow pandas; do total[$lake]=0; done
for r in $(seq 1 "$ROUNDS"); do
  for lake in generator pyarrow pandas; do
    /usr/bin/time -f "%e" -o "$WORK/time" "$SLUICE" --quiet run config/inference.yaml --lake "$WORK/$lake" >"$WORK/$lake.log" 2>&1 || {
      echo "$lake run failed; see $WORK/$lake.log"; tail -20 "$WORK/$lake.log"; exit 1; }
    t=$(cat "$WORK/time")
    echo "round $r  $lake  ${t}s"
    total[$lake]=$(echo "${total[$lake]} + $t" | bc -l)
  done
done
base=$(echo "${total[generator]} / $ROUNDS" | bc -l)
printf "\n%-12s %12s %10s %12s %7s\n" lake samples mean_s samples/s ratio
for lake in generator pyarrow pandas; do
  m=$(echo "${total[$lake]} / $ROUNDS" | bc -l)
  printf "%-12s %12d %10.2f %12.0f %7.3f\n" "$lake" "$SAMPLES" "$m" "$(echo "$SAMPLES / $m" | bc -l)" "$(echo "$m / $base" | bc -l)"
done
