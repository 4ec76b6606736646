#!/usr/bin/env bash
# Create .venv, install the project with its locked test dependencies, run pytest.
# Extra arguments go to pytest, for example: scripts/test.sh -k ingest
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ required"'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c requirements.lock -e '.[test]'
exec .venv/bin/python -m pytest "$@"
