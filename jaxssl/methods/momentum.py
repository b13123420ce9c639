"""The momentum (EMA) teacher of MoCo / BYOL-style methods and its momentum schedule.

The key ("momentum") encoder is an exponential moving average of the online encoder:

    theta_k <- m * theta_k + (1 - m) * theta_q          (He et al. 2020, eq. 2)

with ``m`` fixed (MoCo v1/v2: 0.999) or increased from ``m_0`` to ``m_final`` on a half cosine
over training (MoCo v3 ``adjust_moco_momentum``; BYOL):

    m(t) = m_final + (m_0 - m_final) * (1 + cos(pi * t / T)) / 2,   t = 0 .. T (steps)

(:func:`jaxssl.optim.half_cosine`)

MoCo v3 uses ``m_final = 1``: ``1 - (1 + cos(pi t / T)) / 2 * (1 - m_0)``. Only parameters
are averaged; the teacher's BatchNorm running statistics are its own (``encoder_q
.parameters()`` in the reference excludes buffers), updated by its own forward passes.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxssl import optim

SCHEDULES = ("constant", "cosine")


def momentum_schedule(base: float, final: float, total_steps: int,
                      kind: str = "cosine", section: str = "moco") -> Callable[[Any], jax.Array]:
    """``step -> m`` (float32 scalar), for int or traced int32 ``step``.

    Args:
      base: ``m_0``, the momentum at step 0 (and for every step when ``kind='constant'``).
      final: ``m_final``, reached at ``step = total_steps`` by the cosine schedule (ignored
        when constant). Steps beyond ``total_steps`` keep ``m_final``.
      total_steps: ``T``, the length of training in optimizer steps (> 0).
      kind: 'constant' (MoCo v2) or 'cosine' (MoCo v3's half cosine).
      section: the config section holding these fields, for error messages.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"config field {section}.momentum_schedule={kind!r} is invalid: use one of "
                         f"{SCHEDULES}")
    if not 0.0 <= base <= 1.0 or not 0.0 <= final <= 1.0:
        raise ValueError(f"config fields {section}.momentum={base!r} / {section}.momentum_final="
                         f"{final!r} are invalid: momenta must lie in [0, 1]")
    if total_steps <= 0:
        raise ValueError(f"momentum_schedule: total_steps={total_steps} must be positive")

    def schedule(step):
        t = jnp.asarray(step, jnp.float32)
        if kind == "constant":
            return jnp.full((), base, jnp.float32)
        progress = jnp.clip(t / total_steps, 0.0, 1.0)
        return jnp.asarray(optim.half_cosine(progress, base, final), jnp.float32)

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


def teacher_config(momentum: float = 0.996, momentum_final: float = 1.0,
                   momentum_schedule: str = "cosine"):
    """The ``config.teacher`` section of EMA-teacher methods (BYOL, DINO): ``momentum`` m_0,
    ``momentum_final`` (the cosine's end value), ``momentum_schedule`` ('constant' | 'cosine')."""
    import ml_collections
    return ml_collections.ConfigDict(dict(momentum=momentum, momentum_final=momentum_final,
                                          momentum_schedule=momentum_schedule))


class EmaTeacher:
    """A momentum teacher: a copy of (part of) the online variables, averaged after each step.

    ``update(teacher_params, online_params, step)`` runs in the method's ``after_update`` at
    the end of step ``s`` with ``m(s + 1)``: the value the references use at the start of
    step ``s + 1`` (MoCo v3 ``adjust_moco_momentum``, BYOL, DINO ``momentum_schedule[it]``),
    for the same forward pass. The teacher's BatchNorm statistics are its own, updated by its
    own forward passes; the method keeps them beside the params. The teacher never receives
    a gradient: its parameters live in ``model_state`` and every read goes through
    ``stop_gradient``.
    """

    def __init__(self, base: float, final: float, total_steps: int, kind: str = "cosine",
                 section: str = "teacher"):
        if kind == "cosine" and not base <= final:
            raise ValueError(f"config field {section}.momentum_final={final!r} is invalid: it must "
                             f"be >= {section}.momentum={base!r} (BYOL / DINO / MoCo v3: 1.0)")
        self.momentum_at = momentum_schedule(base, final, total_steps, kind, section=section)

    @classmethod
    def from_config(cls, section_cfg, total_steps: int, section: str = "teacher") -> "EmaTeacher":
        return cls(float(section_cfg.momentum), float(section_cfg.momentum_final), total_steps,
                   str(section_cfg.momentum_schedule), section=section)

    @staticmethod
    def init(online_params: Any) -> Any:
        """The teacher at step 0: a copy of the online params."""
        return jax.tree.map(jnp.copy, online_params)

    @staticmethod
    def read(teacher_params: Any) -> Any:
        """The teacher's params for a forward pass (no gradient flows into them)."""
        return jax.lax.stop_gradient(teacher_params)

    def update(self, teacher_params: Any, online_params: Any, step) -> Any:
        """``m(step + 1) * teacher + (1 - m) * online``, at the end of step ``step``."""
        return ema_update(teacher_params, online_params, self.momentum_at(step + 1))

    @staticmethod
    def init_state(params: Any, batch_stats: Any, keys: tuple[str, ...] | None = None) -> dict:
        """The teacher entry of ``model_state`` at step 0: ``{"params", "batch_stats"}``,
        copies of the online ``params`` and BatchNorm statistics (only their top-level
        ``keys`` when given, e.g. ``("backbone", "projector")``)."""
        def pick(tree):
            return tree if keys is None else {k: tree[k] for k in keys if k in tree}
        return {"params": EmaTeacher.init(pick(params)),
                "batch_stats": EmaTeacher.init(pick(batch_stats))}

    def after_update(self, state, online_params: Any):
        """``state`` whose ``model_state["teacher"]["params"]`` took the EMA step towards
        ``online_params`` (the teacher's layout), at the end of step ``state.step``: the
        method's ``after_update``."""
        ms = state.model_state
        teacher = {**ms["teacher"],
                   "params": self.update(ms["teacher"]["params"], online_params, state.step)}
        return state.replace(model_state={**ms, "teacher": teacher})


__all__ = ["momentum_schedule", "ema_update", "SCHEDULES", "EmaTeacher", "teacher_config"]
