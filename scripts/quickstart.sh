#!/usr/bin/env bash
# Install jaxssl and run the quickstart: SimCLR on scikit-learn's digits (no download), then
# kNN / linear-probe evaluation against random-init and raw-pixel baselines.
#   bash scripts/quickstart.sh [WORKDIR] [--config.KEY=VALUE ...]
# Writes WORKDIR/eval_results.json (default WORKDIR: runs/simclr_digits) and prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKDIR=${1:-runs/simclr_digits}
shift || true
python -m pip install -q -e '.[plots]'
python -m jaxssl.main --config=configs/simclr_digits.py --workdir="$WORKDIR" "$@"
