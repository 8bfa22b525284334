#!/usr/bin/env bash
# Prepares the comparison virtualenv (once) and runs bench/ml/compare.py.
# Usage: bench/ml/run.sh [--rows N] [--threads T] [--grid] [--check-speed]
set -euo pipefail
VENV="${SLUICE_ML_VENV:-$HOME/.cache/sluice-venv-ml}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet lightgbm scikit-learn numpy pandas pyarrow
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
exec "$VENV/bin/python" "$(dirname "$0")/compare.py" "$@"
