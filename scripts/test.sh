#!/usr/bin/env bash
# Install jaxssl with its test extra and run the whole test suite on the CPU
# (8 fake devices are forced by tests/conftest.py).
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[test]'
python -m pytest -q "$@"
