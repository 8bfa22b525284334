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
#                       built with `cargo build --release -p sluice-engine --bin sluice`)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${SLUICE_MODELS_VENV:-$HOME/.cache/sluice-venv-models}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
export SLUICE_BIN="${SLUICE_BIN:-$CARGO_TARGET_DIR/release/sluice}"

want="$( (cat "$HERE/requirements.txt"; "$PYTHON" --version) | sha256sum | cut -d' ' -f1)"
have="$(cat "$VENV/.sluice-stamp" 2>/dev/null || true)"
if [[ "$want" != "$have" || ! -x "$VENV/bin/python" ]]; then
    echo "model tests: installing requirements.txt into $VENV (slow the first time)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
    echo "$want" > "$VENV/.sluice-stamp"
fi
if [[ ! -x "$SLUICE_BIN" ]]; then
    echo "model tests: building the sluice binary"
    (cd "$ROOT" && cargo build --release -q -p sluice-engine --bin sluice)
fi
cd "$HERE"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
