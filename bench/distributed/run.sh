#!/usr/bin/env bash
# Distributed execution benchmark: embedded (1 and 2 partitions) vs local
# Ballista clusters of 1 and 2 executors (one task slot each), same data, same
# run. Prints a Markdown table of median seconds; see docs/PERFORMANCE.md.
#
#   bench/distributed/run.sh                 # 2,000,000 rows, 3 reps
#   SLUICE_BENCH_ROWS=500000 bench/distributed/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
cargo build --release --workspace --bins
cargo bench --workspace --bench distributed
# Per-level time of distributed histogram training (GBT and RF, 20 trees of
# depth 5, embedded vs 1 and 2 executors, local trainer baseline, ratios):
# SLUICE_BENCH_ROWS (544,500), SLUICE_BENCH_FEATURES (40),
# SLUICE_BENCH_EXECUTORS (1,2), SLUICE_BENCH_TREES (20), SLUICE_BENCH_EMBEDDED (1).
cargo bench --workspace --bench dtrain
