#!/usr/bin/env bash
# Ingestion throughput at 1M and 10M samples (override with SIZES="...").
#
# For each size: generate a lake, then time
#   * baseline: `sluice ingest --input table --table samples` (validated scan
#     + Parquet rewrite of the samples table alone),
#   * inference: the seven-table join Parquet -> Parquet (target >= 1M samples/s),
#   * training: the four CSVs (544,500 rows) -> Parquet.
# The ratio is join throughput / baseline throughput (both in samples/s).
#
#   bench/ingest/run.sh
#   SIZES=1000000 bench/ingest/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}
[ -n "${SLUICE_BIN:-}" ] || cargo build --release -p sluice --bin sluice >/dev/null
SLUICE=${SLUICE_BIN:-$CARGO_TARGET_DIR/release/sluice}
WORK=${BENCH_DIR:-/tmp/sluice-bench}/ingest
SIZES=${SIZES:-"1000000 10000000"}
mkdir -p "$WORK"

timed() {
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

printf "%-30s %10s %10s %14s %8s\n" bench rows seconds rows/s ratio
for n in $SIZES; do
  lake="$WORK/lake-$n"
  [ -d "$lake/raw/samples" ] || "$SLUICE" --quiet datagen --out "$lake" --samples "$n" --train-rows 544500 >/dev/null
  tb=$(timed "$SLUICE" --quiet ingest --lake "$lake" --input table --table samples --out bench/samples-copy)
  tj=$(timed "$SLUICE" --quiet ingest --lake "$lake" --input inference --out bench/unified)
  tt=$(timed "$SLUICE" --quiet ingest --lake "$lake" --input training --out bench/training)
  printf "%-30s %10d %10.2f %14.0f %8s\n" "ingest-samples-copy-$n" "$n" "$tb" "$(echo "$n / $tb" | bc -l)" "1.00"
  printf "%-30s %10d %10.2f %14.0f %8.2f\n" "ingest-join7-$n" "$n" "$tj" "$(echo "$n / $tj" | bc -l)" "$(echo "$tb / $tj" | bc -l)"
  printf "%-30s %10d %10.2f %14.0f %8s\n" "ingest-training-csv-544500" 544500 "$tt" "$(echo "544500 / $tt" | bc -l)" "-"
done
