#!/usr/bin/env bash
# Creates (once) a virtualenv with a requirements file installed and prints
# the path of its python. Reused while the requirements file and the
# interpreter version are unchanged (hash stamp in the venv). Used by the
# Python test suites (tests/models, tests/deploy).
#
#   PY=$(bash tests/tools/venv.sh DIR REQUIREMENTS)
#
# Env: PYTHON (default python3).
set -euo pipefail
dir="$1" req="$2"
PYTHON="${PYTHON:-python3}"
want="$( (cat "$req"; "$PYTHON" --version) | sha256sum | cut -d' ' -f1)"
have="$(cat "$dir/.sluice-stamp" 2>/dev/null || true)"
if [[ "$want" != "$have" || ! -x "$dir/bin/python" ]]; then
    echo "installing $(basename "$req") into $dir (slow the first time)" >&2
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir" >&2
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
    echo "$want" > "$dir/.sluice-stamp"
fi
echo "$dir/bin/python"
