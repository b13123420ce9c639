"""The momentum (EMA) teacher of MoCo / BYOL-style methods and its momentum schedule.

The key ("momentum") encoder is an exponential moving average of the online encoder:

    theta_k <- m * theta_k + (1 - m) * theta_q          (He et al. 2020, eq. 2)

with ``m`` fixed (MoCo v1/v2: 0.999) or increased from ``m_0`` to ``m_final`` on a half cosine
over training (MoCo v3 ``adjust_moco_momentum``; BYOL):

    m(t) = m_final - (m_final - m_0) * (1 + cos(pi * t / T)) / 2,   t = 0 .. T (steps)

MoCo v3 uses ``m_final = 1``: ``1 - (1 + cos(pi t / T)) / 2 * (1 - m_0)``. Only parameters
are averaged; the teacher's BatchNorm running statistics are its own (``encoder_q
.parameters()`` in the reference excludes buffers), updated by its own forward passes.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

SCHEDULES = ("constant", "cosine")


def momentum_schedule(base: float, final: float, total_steps: int,
                      kind: str = "cosine") -> Callable[[Any], jax.Array]:
    """``step -> m`` (float32 scalar), for int or traced int32 ``step``.

    Args:
      base: ``m_0``, the momentum at step 0 (and for every step when ``kind='constant'``).
      final: ``m_final``, reached at ``step = total_steps`` by the cosine schedule (ignored
        when constant). Steps beyond ``total_steps`` keep ``m_final``.
      total_steps: ``T``, the length of training in optimizer steps (> 0).
      kind: 'constant' (MoCo v2) or 'cosine' (MoCo v3's half cosine).
    """
    if kind not in SCHEDULES:
        raise ValueError(f"config field moco.momentum_schedule={kind!r} is invalid: use one of "
                         f"{SCHEDULES}")
    if not 0.0 <= base <= 1.0 or not 0.0 <= final <= 1.0:
        raise ValueError(f"config fields moco.momentum={base!r} / moco.momentum_final={final!r} "
                         "are invalid: momenta must lie in [0, 1]")
    if total_steps <= 0:
        raise ValueError(f"momentum_schedule: total_steps={total_steps} must be positive")

    def schedule(step):
        t = jnp.asarray(step, jnp.float32)
        if kind == "constant":
            return jnp.full((), base, jnp.float32)
        progress = jnp.clip(t / total_steps, 0.0, 1.0)
        return jnp.asarray(final - (final - base) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress)),
                           jnp.float32)

    return schedule


def ema_update(teacher: Any, online: Any, momentum) -> Any:
    """``m * teacher + (1 - m) * online`` leaf by leaf (same tree structure, float leaves).

    The online leaves pass through ``stop_gradient``: the teacher never carries a gradient.
    """
    m = jnp.asarray(momentum, jnp.float32)

    def update(t, o):
        o = jax.lax.stop_gradient(o)
        return (m * t.astype(jnp.float32) + (1.0 - m) * o.astype(jnp.float32)).astype(t.dtype)

    return jax.tree.map(update, teacher, online)


__all__ = ["momentum_schedule", "ema_update", "SCHEDULES"]
