#!/usr/bin/env bash
# Builds the peer environments that scripts/benchmark.py compares jaxssl's steps with.
#
#   bash scripts/setup_peers.sh              # both peers (~3 GB, several minutes)
#   bash scripts/setup_peers.sh torch        # only PyTorch + torchvision + lightly + transformers
#   bash scripts/setup_peers.sh flax         # only Hugging Face FlaxBertForMaskedLM (transformers<5)
#   PEERS_DIR=/some/dir bash scripts/setup_peers.sh   # elsewhere (then: benchmark.py --peers /some/dir)
#
# Each peer gets its own virtual environment under $PEERS_DIR (default: .peers/ in this
# checkout, git-ignored): torch/ and flax/. The peer step scripts themselves are part of the
# package (jaxssl/benchmarks/peers/); they run with these environments' python.
# PyTorch comes from its CPU wheel index (no CUDA libraries); where that index cannot be
# reached, from the default index (CUDA wheels, which also run on a CPU). Another source:
#   TORCH_INDEX= TORCH_PACKAGES="torch==2.13.0 torchvision==0.28.0" bash scripts/setup_peers.sh torch
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
P=${PEERS_DIR:-$ROOT/.peers}
WHICH=${1:-all}
PY=${PYTHON:-python3}
TORCH_INDEX=${TORCH_INDEX-https://download.pytorch.org/whl/cpu}
TORCH_PACKAGES=${TORCH_PACKAGES:-torch==2.14.1 torchvision==0.29.1}
case "$WHICH" in all|torch|flax) ;; *) echo "usage: $0 [all|torch|flax]" >&2; exit 2;; esac
mkdir -p "$P"
if [[ $WHICH == all || $WHICH == torch ]] && ! "$P/torch/bin/python" -c "import torch, torchvision, lightly, transformers" 2>/dev/null; then
  "$PY" -m venv "$P/torch"
  "$P/torch/bin/pip" install -q --upgrade pip
  # shellcheck disable=SC2086
  if ! "$P/torch/bin/pip" install -q $TORCH_PACKAGES ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}; then
    # the CPU index is unreachable (a mirror-only network): PyPI's wheels (CUDA builds, ~5 GB)
    # run on the CPU as well
    echo "setup_peers: $TORCH_INDEX failed; installing $TORCH_PACKAGES from the default index" >&2
    "$P/torch/bin/pip" install -q $TORCH_PACKAGES
  fi
  # lightly's own requirements pull in pytorch-lightning; its loss, heads and transforms need none of it
  "$P/torch/bin/pip" install -q --no-deps lightly
  "$P/torch/bin/pip" install -q lightning_utilities "transformers>=4.46,<6" tqdm numpy Pillow
fi
if [[ $WHICH == all || $WHICH == flax ]] && ! "$P/flax/bin/python" -c "from transformers import FlaxBertForMaskedLM" 2>/dev/null; then
  "$PY" -m venv "$P/flax"
  "$P/flax/bin/pip" install -q --upgrade pip
  # the last transformers with Flax models; the jax/flax range jaxssl itself installs
  "$P/flax/bin/pip" install -q "transformers>=4.46,<5" "jax>=0.10,<0.12" "flax>=0.12,<0.14" optax numpy
fi
echo "peers ready in $P ($WHICH): run python scripts/benchmark.py --cpu-quick"
