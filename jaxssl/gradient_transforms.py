"""Optax transformations the recipes need beyond optax's own (a weight-decay schedule is
optax's: ``optax.adamw(..., weight_decay=schedule)`` since 0.2.7).

* :func:`clip_by_parameter_norm` -- DINO's ``utils.clip_gradients``: each parameter tensor's
  gradient scaled by ``min(1, c / (||g|| + 1e-6))`` (not one global norm).
* :func:`freeze_for_steps` -- zero the updates of some leaves for the first ``n`` steps (DINO
  freezes its last layer in the first epoch: ``cancel_gradients_last_layer``).
* :func:`scale_by_clipped_lars_trust` -- solo-learn's LARS direction (``solo/utils/lars.py``,
  ``clip_lr=True``): weight decay and a trust ratio clipped by the learning rate.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class _CountState(NamedTuple):
    count: jax.Array


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


def scale_by_clipped_lars_trust(trust_coefficient: float, weight_decay: float,
                                learning_rate: float | Callable[[Any], jax.Array],
                                mask: Any, eps: float = 1e-8) -> optax.GradientTransformation:
    """solo-learn's ``LARS.step`` before the momentum (``clip_lr=True``,
    ``exclude_bias_n_norm=True``), per leaf ``w`` with gradient ``g`` at step ``t``::

        r  = eta * ||w|| / (||g|| + wd * ||w|| + eps)      (apex LARC's denominator)
        r  = min(r / lr_t, 1)                               (clip_lr)
        d  = (g + wd * w) * r        if mask(w) and ||w|| > 0 and ||g|| > 0
        d  = g                       otherwise (no decay, no scaling: biases and norms)

    followed by the PyTorch momentum ``buf = m buf + d`` and ``w -= lr_t * buf`` (chain
    ``optax.trace`` and ``optax.scale_by_learning_rate``): a masked layer's step is
    ``min(r, lr_t)`` times its direction, never larger than plain SGD's.
    """

    def init(params):
        del params
        return _CountState(jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("scale_by_clipped_lars_trust needs the params")
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        chosen = mask(params) if callable(mask) else mask

        def one(g, w, m):
            if not m:
                return g
            w_norm = jnp.linalg.norm(w.astype(jnp.float32).reshape(-1))
            g_norm = jnp.linalg.norm(g.astype(jnp.float32).reshape(-1))
            ratio = trust_coefficient * w_norm / (g_norm + w_norm * weight_decay + eps)
            ratio = jnp.minimum(ratio / lr, 1.0)
            scaled = ((g + weight_decay * w) * ratio).astype(g.dtype)
            return jnp.where((w_norm > 0) & (g_norm > 0), scaled, g)

        return jax.tree.map(one, updates, params, chosen), _CountState(state.count + 1)

    return optax.GradientTransformation(init, update)


__all__ = ["clip_by_parameter_norm", "freeze_for_steps", "scale_by_clipped_lars_trust"]
