#!/usr/bin/env bash
# The bad-input catalogue (tests/catalogue): runs the real `sluice` binary on
# small lakes rewritten with pyarrow. Uses the PySpark virtualenv of
# tests/tools/spark-venv.sh (pyarrow, pandas; pytest added here) and the
# release binary in $CARGO_TARGET_DIR (build it first:
# cargo build --release --workspace --bins).
#   bash tests/catalogue/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=$(bash tests/tools/spark-venv.sh)
if ! "$PY" -c "import pytest, jsonschema, yaml" 2>/dev/null; then
  "$PY" -m pip install --quiet --disable-pip-version-check pytest jsonschema pyyaml >&2
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
exec "$PY" -m pytest -q -p no:cacheprovider tests/catalogue "$@"
