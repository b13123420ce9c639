#!/usr/bin/env bash
# Install jaxssl and run the quickstart: SimCLR on scikit-learn's digits (no download), then
# kNN / linear-probe evaluation against random-init and raw-pixel baselines.
#   bash scripts/quickstart.sh [WORKDIR] [--config.KEY=VALUE ...]
# Writes WORKDIR/eval_results.json (default WORKDIR: runs/simclr_digits) and prints the table.
# Python: $PYTHON, else python, else python3; installed into the active virtual/conda
# environment, else into .venv in this checkout (created once, reused; scripts/python_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
WORKDIR=runs/simclr_digits
if [[ $# -gt 0 && "$1" != --* ]]; then WORKDIR=$1; shift; fi
source scripts/python_env.sh
jaxssl_install plots
"$JAXSSL_PY" -m jaxssl.main --config=configs/simclr_digits.py --workdir="$WORKDIR" "$@"
echo "results: $WORKDIR/eval_results.json"
jaxssl_where
