#!/usr/bin/env bash
# Install jaxssl with its test extra and run the whole test suite on the CPU
# (8 fake devices are forced by tests/conftest.py).
#   bash scripts/test.sh [pytest args...]
# Tests run in 2 worker processes (pytest-xdist, one per core of a 2-core machine); pass
# -n 0 to run them in one process.
# Python: $PYTHON, else python, else python3; installed into the active virtual/conda
# environment, else into .venv in this checkout (created once, reused; scripts/python_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh
jaxssl_install test
"$JAXSSL_PY" -m pytest -q -n 2 "$@"
