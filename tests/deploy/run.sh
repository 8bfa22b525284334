#!/usr/bin/env bash
# Deployment test suite: Helm chart, Terraform, Airflow DAGs, Dockerfile and the
# Job template shared with `sluice submit`. Idempotent: installs its Python
# tooling into venvs under $HOME/.cache, reused while the requirements files
# are unchanged (hash stamp). Prints a pytest summary; exits non-zero on failure.
#
#   tests/deploy/run.sh [extra pytest args]
#
# Environment:
#   SLUICE_DEPLOY_VENV   main venv (default $HOME/.cache/sluice-venv-deploy)
#   SLUICE_CHECKOV_VENV  checkov venv (default $HOME/.cache/sluice-venv-deploy-checkov)
#   SLUICE_BIN           a built `sluice` binary for the submit-template test
#                        (default: $CARGO_TARGET_DIR/release/sluice if present)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${SLUICE_DEPLOY_VENV:-$HOME/.cache/sluice-venv-deploy}"
CHECKOV_VENV="${SLUICE_CHECKOV_VENV:-$HOME/.cache/sluice-venv-deploy-checkov}"

bash "$ROOT/tests/tools/venv.sh" "$VENV" "$HERE/requirements.txt" >/dev/null
bash "$ROOT/tests/tools/venv.sh" "$CHECKOV_VENV" "$HERE/requirements-checkov.txt" >/dev/null
export SLUICE_CHECKOV="$CHECKOV_VENV/bin/checkov"

# Helm: helm-python-sdk bundles Helm's Go SDK as libhelm_c.so (no helm binary,
# no download). Terraform: used for `fmt -check` when a binary is on PATH;
# none is installable offline from PyPI/npm, so otherwise that one test skips
# with its reason and checkov + the HCL parse tests still run.
if ! command -v terraform >/dev/null 2>&1; then
    echo "deploy tests: no terraform binary on PATH: 'terraform fmt -check' will be skipped"
fi

if [[ -z "${SLUICE_BIN:-}" ]]; then
    for candidate in "${CARGO_TARGET_DIR:-}/release/sluice" "$HOME/.cache/sluice-target/release/sluice" "$ROOT/target/release/sluice"; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then
            export SLUICE_BIN="$candidate"
            break
        fi
    done
fi

cd "$HERE"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$(mktemp -d)}"
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider -rs "$@" "$HERE"
status=$?
set -e
exit "$status"
