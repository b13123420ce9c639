#!/usr/bin/env bash
# Install jaxssl with its test extra and run its tests on the CPU (8 fake devices are forced by
# tests/conftest.py).
#   bash scripts/test.sh [--slow | --all] [pytest args...]
# Two tiers:
#   (default)  every module: unit tests, 1-vs-8-device checks and one short end-to-end run per
#              method family; budget: 15 minutes on 2 cores. The tests not marked slow or
#              multiprocess (a test over ~20 s on 2 cores is marked slow).
#   --slow     the slow tier only: fault drills, multi-process runs, mocked-ImageNet protocol
#              runs, remote storage, longer convergence checks (marked slow or multiprocess).
#   --all      both tiers (what .ci/run runs, one tier after the other).
# Tests run in 2 worker processes (pytest-xdist, one per core of a 2-core machine), each taking
# whole test files (--dist loadfile: a file's module fixtures, e.g. a pretrained workdir, are
# built once, not once per worker); pass -n 0 to run them in one process. A -m EXPR of your own
# replaces the tier's selection. Compiled programs are shared by the workers through a
# per-session JAX compilation cache (tests/conftest.py).
# Python: $PYTHON, else python, else python3; installed into the active virtual/conda
# environment, else into .venv in this checkout (created once, reused; scripts/python_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
TIER=(-m "not slow and not multiprocess")
case "${1:-}" in
  --slow) TIER=(-m "slow or multiprocess"); shift ;;
  --all) TIER=(); shift ;;
esac
source scripts/python_env.sh
jaxssl_install test
"$JAXSSL_PY" -m pytest -q -n 2 --dist loadfile ${TIER[@]+"${TIER[@]}"} "$@"
