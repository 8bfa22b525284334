#!/usr/bin/env bash
# What users see, tested as they see it:
#  1. the command line as the README and `--help` describe it (global --lake,
#     runs/models/report, --dry-run, validate = run's checks, no lake created
#     by a typo, cluster status without a cluster, completions);
#  2. the run reports in headless Chromium (Debian's `chromium`, installed
#     here when missing): a training run with a grid, an inference run scored
#     against truth labels and a failed run; screenshots in $OUT;
#  3. the README as a test: every shell block of README.md runs as written.
# Usage: bash tests/ux/run.sh [--no-readme]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
OUT="${SLUICE_UX_OUT:-${SLUICE_CACHE:-$HOME/.cache/sluice}/ux}"
mkdir -p "$OUT"
README=1
[ "${1:-}" = --no-readme ] && README=0

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian package) for the report browser test"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

cargo build --release -q -p sluice --bin sluice
SLUICE="$CARGO_TARGET_DIR/release/sluice"
WORK=$(mktemp -d /tmp/sluice-ux.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
LAKE="$WORK/lake"
fail() { echo "FAIL: $*"; exit 1; }
expect() { # expect <what> <pattern> <text>
  grep -qE -- "$2" <<<"$3" || fail "$1: no /$2/ in: $3"
}

echo "== command line"
out=$("$SLUICE" models list --lake "$WORK/typo" 2>&1) && fail "models list on a missing lake succeeded"
expect "missing lake" "no lake directory at $WORK/typo" "$out"
[ -e "$WORK/typo" ] && fail "a mistyped --lake was created"
"$SLUICE" -q datagen --out "$LAKE" --samples 30000 --devices 60 --train-rows 24000 --seed 7 >/dev/null
printf 'name: x\nkind: training\nlake: %s\nengine:\n  memory_limit: banana\nsteps:\n  - step: ingest\n' "$LAKE" >"$WORK/banana.yaml"
out=$("$SLUICE" validate "$WORK/banana.yaml" 2>&1) && fail "validate passed memory_limit: banana"
expect "validate banana" "banana.yaml:5:3: engine.memory_limit" "$out"
out=$("$SLUICE" run "$WORK/banana.yaml" 2>&1) && fail "run passed memory_limit: banana"
expect "run banana" "banana.yaml:5:3: engine.memory_limit" "$out"
out=$("$SLUICE" run tests/ux/grid-training.yaml --lake "$LAKE" --model xgb 2>&1) && fail "--model xgb passed"
expect "unknown model" "no model .xgb.*gbt, rf" "$out"
[ -d "$LAKE/runs" ] && fail "a rejected run wrote to the lake"
out=$("$SLUICE" run tests/ux/inference.yaml --lake "$LAKE" 2>&1) && fail "inference without a deployed model passed"
expect "missing model" "predict.model_name.*ux-model" "$out"
out=$("$SLUICE" run tests/ux/grid-training.yaml --lake "$LAKE" --dry-run)
expect "dry run" "4 grid points × 3 folds \+ 1 refit = 13 fits" "$out"
expect "dry run" "model fits in total: 14" "$out"
expect "dry run" "nothing was read or written" "$out"
[ -d "$LAKE/runs" ] && fail "--dry-run wrote to the lake"
out=$("$SLUICE" cluster status --dir "$WORK/no-cluster" 2>&1) && fail "cluster status without a cluster exited 0"
expect "cluster status" "^no local cluster in" "$out"
[ "$(grep -c 'No such file' <<<"$out")" = 0 ] || fail "cluster status printed an I/O error: $out"
for sh in bash zsh fish; do
  out=$("$SLUICE" completions "$sh")
  expect "$sh completions" "models" "$out"
done

echo "== runs (training with a grid, inference with truth labels, a failed run)"
"$SLUICE" --log-format json run tests/ux/grid-training.yaml --lake "$LAKE" >"$WORK/train.out" 2>"$WORK/train.log"
grep -q '"message":"progress"' "$WORK/train.log" || fail "no progress events in the JSON log"
grep -q '"task":"train gbt"' "$WORK/train.log" || fail "no grid progress for gbt in the JSON log"
grep -qE 'Some\(|seconds":"?[0-9]+\.[0-9]{5,}' "$WORK/train.log" && fail "debug values in the log: $(grep -m3 -E 'Some\(|[0-9]\.[0-9]{5,}' "$WORK/train.log")"
"$SLUICE" -q run tests/ux/inference.yaml --lake "$LAKE" >"$WORK/infer.out"
expect "inference output" "predictions: .*/predictions/run=" "$(cat "$WORK/infer.out")"
if "$SLUICE" -q run tests/ux/failing-training.yaml --lake "$LAKE" >"$WORK/failed.out" 2>&1; then
  fail "the failing run succeeded"
fi
out=$("$SLUICE" models list --lake "$LAKE")
expect "models list" "ux-model +v0001 +\* +gbt|ux-model +v0001 +\* +rf" "$out"
out=$("$SLUICE" models show ux-model --lake "$LAKE")
expect "models show" "held-out" "$out"
"$SLUICE" models compare ux-model --lake "$LAKE" --json | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r[0]["metrics"]["auc"] > 0.8, r'
runs=$("$SLUICE" runs list --lake "$LAKE" --json)
run_of() { python3 -c 'import json,sys; print([r["run_id"] for r in json.load(sys.stdin) if r["pipeline"]==sys.argv[1]][-1])' "$1" <<<"$runs"; }
state_of() { python3 -c 'import json,sys; print([r["state"] for r in json.load(sys.stdin) if r["pipeline"]==sys.argv[1]][-1])' "$1" <<<"$runs"; }
[ "$(state_of ux-failing-training)" = failed ] || fail "runs list: the failed run is not failed: $runs"
[ "$(state_of ux-grid-training)" = succeeded ] || fail "runs list: training not succeeded: $runs"
out=$("$SLUICE" runs show "$(run_of ux-failing-training)" --lake "$LAKE")
expect "runs show" "failed at step deploy" "$out"

echo "== reports in headless chromium"
for kind in training inference failed; do
  case $kind in
    training) p=ux-grid-training ;;
    inference) p=ux-inference ;;
    failed) p=ux-failing-training ;;
  esac
  report=$("$SLUICE" report "$(run_of $p)" --lake "$LAKE")
  cp "$report" "$OUT/report-$kind.html"
  python3 tests/ux/check_report.py --kind "$kind" "$report" "$OUT"
done

if [ "$README" = 1 ]; then
  echo "== README.md as a test"
  python3 tests/ux/readme_test.py README.md
fi
echo "ux checks passed (screenshots and reports in $OUT)"
