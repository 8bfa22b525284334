#!/usr/bin/env bash
# Datagen throughput at 1M and 10M samples (override with SIZES="...").
# Baseline in the same run: the same generation on one rayon thread
# (RAYON_NUM_THREADS=1); the ratio is the parallel speed-up. The two lakes
# are also compared file by file: the output must not depend on threads.
#
#   bench/datagen/run.sh            # sizes 1000000 10000000
#   SIZES=200000 bench/datagen/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}
cargo build --release -p sluice --bin sluice >/dev/null
SLUICE=$CARGO_TARGET_DIR/release/sluice
WORK=${BENCH_DIR:-/tmp/sluice-bench}/datagen
SIZES=${SIZES:-"1000000 10000000"}
mkdir -p "$WORK"

run() { # threads samples dir -> seconds
  local start end
  start=$(date +%s.%N)
  RAYON_NUM_THREADS=$1 "$SLUICE" --quiet datagen --out "$3" --samples "$2" --train-rows 544500 --seed 42 >/dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

printf "%-26s %10s %14s %14s %8s %s\n" bench samples "rows/s(2thr)" "rows/s(1thr)" ratio same-output
for n in $SIZES; do
  rows=$((n + 544500))
  t2=$(run 2 "$n" "$WORK/lake-2")
  t1=$(run 1 "$n" "$WORK/lake-1")
  same=yes
  if ! diff -r -q "$WORK/lake-1" "$WORK/lake-2" >/dev/null; then same=NO; fi
  printf "%-26s %10d %14.0f %14.0f %8.2f %s\n" "datagen-${n}" "$n" \
    "$(echo "$rows / $t2" | bc -l)" "$(echo "$rows / $t1" | bc -l)" "$(echo "$t1 / $t2" | bc -l)" "$same"
  printf "%-26s %10d %14.0f samples/s (raw tables only, excl. training rows)\n" "" "$n" "$(echo "$n / $t2" | bc -l)"
  rm -rf "$WORK/lake-1" "$WORK/lake-2"
done
