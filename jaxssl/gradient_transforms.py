"""Optax transformations the recipes need beyond optax's own (a weight-decay schedule is
optax's: ``optax.adamw(..., weight_decay=schedule)`` since 0.2.7).

* :func:`clip_by_parameter_norm` -- DINO's ``utils.clip_gradients``: each parameter tensor's
  gradient scaled by ``min(1, c / (||g|| + 1e-6))`` (not one global norm).
* :func:`freeze_for_steps` -- zero the updates of some leaves for the first ``n`` steps (DINO
  freezes its last layer in the first epoch: ``cancel_gradients_last_layer``).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


def clip_by_parameter_norm(max_norm: float) -> optax.GradientTransformation:
    """``g <- g * min(1, max_norm / (||g||_2 + 1e-6))`` for every leaf separately."""
    if not max_norm > 0:
        raise ValueError(f"optim.grad_clip_per_param={max_norm} must be > 0 (0 turns it off)")

    def update(updates, state, params=None):
        del params

        def clip(g):
            norm = jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.float32))))
            coef = jnp.minimum(1.0, max_norm / (norm + 1e-6))
            return (g * coef).astype(g.dtype)

        return jax.tree.map(clip, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class _CountState(NamedTuple):
    count: jax.Array


def freeze_for_steps(num_steps: int, mask: Callable[[Any], Any]) -> optax.GradientTransformation:
    """Zero the updates of the leaves ``mask(params)`` selects while ``count < num_steps``."""

    def init(params):
        del params
        return _CountState(jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        frozen = state.count < num_steps
        chosen = mask(updates)
        new = jax.tree.map(lambda u, m: jnp.where(frozen, jnp.zeros_like(u), u) if m else u,
                           updates, chosen)
        return new, _CountState(state.count + 1)

    return optax.GradientTransformation(init, update)


__all__ = ["clip_by_parameter_norm", "freeze_for_steps"]
