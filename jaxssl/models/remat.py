"""Activation rematerialisation of repeated blocks (``model.remat``): trade compute for memory.

``jax.checkpoint`` (Flax ``nn.remat``) around a block keeps only what the policy names for the
backward pass and recomputes the rest from the block's input:

=========  =================================================  =============================
name       saved per block for the backward pass              recompute cost
=========  =================================================  =============================
``none``   everything (no remat)                              0
``full``   the block's input only                             one more forward of the block
``dots``   matmul outputs (``jax.checkpoint_policies.         the elementwise ops (GELU,
           dots_with_no_batch_dims_saveable``)                 LayerNorm, softmax, dropout)
=========  =================================================  =============================

Convolutions are not "dots" to JAX's policies, so for ResNets ``dots`` saves almost nothing
more than ``full``. The measured memory/time effect per model is in docs/performance.md
(``python scripts/benchmark.py --remat-table``). Parameter names do not change.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def check_remat(name: str, field: str = "model.remat") -> str:
    """``name`` if it is a known policy, else ValueError naming the field and the choices."""
    if name not in REMAT_POLICIES:
        raise ValueError(f"config field {field}={name!r} is invalid: use one of "
                         f"{list(REMAT_POLICIES)} (see jaxssl/models/remat.py)")
    return name


def remat_block(block_cls: type[nn.Module], policy: str,
                static_argnums: Sequence[int] = ()) -> type[nn.Module]:
    """``block_cls`` itself for ``'none'``, else ``nn.remat(block_cls, policy=...)``.

    ``static_argnums`` counts ``self`` as 0 (e.g. ``(2,)`` for ``block(x, train)``).
    """
    check_remat(policy)
    if policy == "none":
        return block_cls
    return nn.remat(block_cls, policy=REMAT_POLICIES[policy], static_argnums=tuple(static_argnums))


__all__ = ["REMAT_POLICIES", "check_remat", "remat_block"]
