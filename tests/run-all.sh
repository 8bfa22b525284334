#!/usr/bin/env bash
# The one test command: formatting, lints, every Rust test (unit, integration,
# real Ballista processes, Azurite), the ML quality comparison against
# LightGBM/scikit-learn, and the deployment checks (Helm, Kubernetes schemas,
# checkov, Terraform, Airflow DAGs, Dockerfile), and what users see (the CLI
# as documented, the run reports in headless Chromium, README.md as a test).
#
# Installs what it needs (npm: azurite; pip: venvs under ~/.cache) and reuses a
# build cache outside the clone, so it works on a fresh machine and is quick on
# a warm one. Usage: bash tests/run-all.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
export CARGO_TERM_COLOR=never
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
mkdir -p "$CACHE"
FAILED=()
section() { printf '\n=== %s ===\n' "$*"; }
run() { local name=$1; shift; section "$name"; if "$@"; then echo "[ok] $name"; else echo "[FAILED] $name"; FAILED+=("$name"); fi; }

# --- Azurite (Azure Storage emulator) for the ADLS tests -------------------
start_azurite() {
  local dir="$CACHE/npm-azurite"
  if [ ! -x "$dir/node_modules/.bin/azurite-blob" ]; then
    mkdir -p "$dir" && (cd "$dir" && npm init -y >/dev/null 2>&1; npm install --no-audit --no-fund azurite@3 >/dev/null) || return 1
  fi
  local port=${AZURITE_PORT:-10000}
  "$dir/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" --inMemoryPersistence --skipApiVersionCheck --loose --silent >"$CACHE/azurite.log" 2>&1 &
  AZURITE_PID=$!
  for _ in $(seq 1 50); do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
      export SLUICE_TEST_AZURITE="http://127.0.0.1:$port"
      echo "azurite listening on 127.0.0.1:$port (pid $AZURITE_PID)"
      return 0
    fi
    sleep 0.2
  done
  echo "azurite did not start; see $CACHE/azurite.log"; return 1
}
AZURITE_PID=
cleanup() { [ -n "$AZURITE_PID" ] && kill "$AZURITE_PID" 2>/dev/null; true; }
trap cleanup EXIT

# One build of every target (lib, bins, tests, benches, examples) with one
# profile and one feature set. Clippy runs inside that build as the rustc
# wrapper of the workspace's own crates (what `cargo clippy` does), so the
# dependencies are compiled once, with codegen, instead of a second time in
# check mode (10 min of a cold CI run on 2 cores). Lints are reported as
# warnings and then counted, so a lint fails the clippy check without
# stopping the tests. The same environment stays set for every later cargo
# command, so nothing rebuilds.
export RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
BUILD_LOG="$CACHE/build.log"
build_all() {
  cargo build --release --workspace --all-targets 2>&1 | tee "$BUILD_LOG"
  return "${PIPESTATUS[0]}"
}
no_lint_warnings() {
  # cargo prints "warning: `crate` (target) generated N warnings" per target
  # with lints (replayed from its cache on a warm build); dependencies' lints
  # are capped by cargo and never reach this log.
  if grep -E '^warning: `[^`]+` \(.*\) generated [0-9]+ warnings?' "$BUILD_LOG"; then
    echo "clippy/rustc warnings above: fix them (cargo clippy --release --workspace --all-targets)"
    return 1
  fi
}
run "cargo fmt --check" cargo fmt --all --check
run "build (all targets)" build_all
run "clippy: no warnings" no_lint_warnings
servers_carry_no_cli_code() {
  # cli/tests/architecture.rs checks the dependency graph; this checks what
  # the linker kept: no code of the command line, Kubernetes or the report.
  local b hits
  for b in sluice-scheduler sluice-executor; do
    hits=$(nm -C "$CARGO_TARGET_DIR/release/$b" | grep -E '\b(kube|kube_client|k8s_openapi|plotters|indicatif|clap_complete|sluice_cli|sluice_engine|sluice_report|sluice_cluster)::' | head -3)
    if [ -n "$hits" ]; then echo "$b links code it must not: $hits"; return 1; fi
    echo "$b: no CLI, Kubernetes or report code ($(nm "$CARGO_TARGET_DIR/release/$b" | wc -l) symbols)"
  done
}
run "scheduler and executor: core only" servers_carry_no_cli_code
run "start azurite" start_azurite

section "cargo test (workspace)"
LOG="$CACHE/cargo-test.log"
cargo test --release --workspace --no-fail-fast 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
passed=$(grep -Eo 'test result: .*' "$LOG" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo 'test result: .*' "$LOG" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
ignored=$(grep -Eo 'test result: .*' "$LOG" | grep -Eo '[0-9]+ ignored' | awk '{s+=$1} END {print s+0}')
echo "cargo test summary: $passed passed, $failed failed, $ignored ignored"
[ "$rc" -eq 0 ] || FAILED+=("cargo test")

# Quality (not speed) against LightGBM and scikit-learn on the same features
# and hyperparameters; installs both from PyPI into a cached virtualenv.
run "ML quality vs LightGBM/scikit-learn" bash bench/ml/run.sh --rows 150000 --test-rows 50000 --threads 2
# The 38M inference benchmark's script on a small lake (docs/PERFORMANCE.md):
# datagen, the model it deploys, the baseline and the pipeline, with the
# binary built above.
inference_bench_small() {
  local dir rc
  dir=$(mktemp -d)
  SLUICE_BIN="$CARGO_TARGET_DIR/release/sluice" SAMPLES=200000 BENCH_DIR="$dir" \
    bash bench/inference/run.sh
  rc=$?
  rm -rf "$dir"
  return "$rc"
}
run "inference benchmark script (200,000 samples)" inference_bench_small
# The distributed grid search benchmark of docs/PERFORMANCE.md on a small
# table: the driver's search, the embedded and a 2-executor cluster search
# (it fails if a distributed search picks another grid point).
run "grid search benchmark (20,000 rows, 2 executors)" env SLUICE_BENCH_ROWS=20000 \
  SLUICE_BENCH_TREES=3 SLUICE_BENCH_GRID_FOLDS=2 SLUICE_BENCH_EXECUTORS=2 \
  cargo bench --workspace --bench dtrain
# Bad inputs and real writers (pyarrow, pandas, PySpark) through the sluice binary.
run "bad-input catalogue" bash tests/catalogue/run.sh
# Model export (LightGBM, onnxruntime), drift detection on shifted lakes and
# TreeSHAP explanations against shap, through the real CLI on small lakes.
run "model export, drift and explanations" bash tests/models/run.sh
# What users see: the CLI as documented, every report opened in headless
# Chromium (installed through apt-get when missing), README.md as a test.
run "CLI, reports in Chromium, README" bash tests/ux/run.sh
if [ -x tests/deploy/run.sh ]; then
  run "deployment checks" bash tests/deploy/run.sh
fi

section "summary"
if [ ${#FAILED[@]} -eq 0 ]; then
  echo "ALL CHECKS PASSED ($passed Rust tests passed)"
  exit 0
fi
printf 'FAILED: %s\n' "${FAILED[@]}"
exit 1
