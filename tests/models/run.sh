#!/usr/bin/env bash
# Model interoperability tests: a real `sluice` pipeline on a small generated
# lake, its models exported (`sluice models export`) and run by LightGBM and
# onnxruntime. Installs its Python packages into a venv under $HOME/.cache,
# reused while requirements.txt is unchanged (hash stamp).
#
#   tests/models/run.sh [extra pytest args]
#
# Environment:
#   SLUICE_MODELS_VENV  venv (default $HOME/.cache/sluice-venv-models)
#   SLUICE_BIN          the `sluice` binary (default $CARGO_TARGET_DIR/release/sluice,
#                       built with `cargo build --release -p sluice --bin sluice`)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${SLUICE_MODELS_VENV:-$HOME/.cache/sluice-venv-models}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
export SLUICE_BIN="${SLUICE_BIN:-$CARGO_TARGET_DIR/release/sluice}"

PY=$(bash "$ROOT/tests/tools/venv.sh" "$VENV" "$HERE/requirements.txt")
if [[ ! -x "$SLUICE_BIN" ]]; then
    echo "model tests: building the sluice binary"
    (cd "$ROOT" && cargo build --release -q -p sluice --bin sluice)
fi
cd "$HERE"
exec "$PY" -m pytest -q -p no:cacheprovider "$@"
