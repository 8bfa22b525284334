#!/usr/bin/env bash
# Prepares (once) the PySpark virtualenv used by the peer benchmarks and prints
# the path of its python. Idempotent: a second call only prints the path.
#
#   PY=$(bash tests/tools/spark-venv.sh)      # then: "$PY" my_spark_script.py
#
# Java: PySpark 4 needs a Java 17+ runtime; when `java` is missing it is
# installed from Debian's packages (openjdk-17-jre-headless, needs root).
# Env: SLUICE_SPARK_VENV (default ~/.cache/sluice-venv-spark),
#      SLUICE_PYSPARK_VERSION (default 4.3.0).
set -euo pipefail
VENV="${SLUICE_SPARK_VENV:-$HOME/.cache/sluice-venv-spark}"
VERSION="${SLUICE_PYSPARK_VERSION:-4.3.0}"
log() { echo "spark-venv: $*" >&2; }

if ! command -v java >/dev/null 2>&1; then
  log "java not found: installing openjdk-17-jre-headless with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq openjdk-17-jre-headless >&2
fi

stamp="$VENV/.sluice-pyspark-$VERSION"
if [ ! -f "$stamp" ]; then
  log "creating $VENV with pyspark $VERSION"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "pyspark==$VERSION" pyarrow pandas numpy >&2
  touch "$stamp"
fi
echo "$VENV/bin/python"
