"""``train.nonfinite_policy``: what the loop does after a step with a NaN/Inf loss or gradient.

The step itself never applies such an update (``jaxssl.train.make_train_step``: params,
optimizer and model state stay, the step counter advances, ``nonfinite_steps`` counts it and
``last_nonfinite_step`` records it). :class:`NonFinitePolicy` reads those two counters, as the
step returned them for a checked step, and decides:

* ``skip``: log a warning, :class:`Continue`.
* ``abort``: :class:`Abort` -- the loop writes the metrics row, flushes, keeps the last good
  checkpoint (nothing after the bad step is saved) and raises ``NonFiniteError`` (exit 3).
* ``rollback``: :class:`Rollback` -- the loop restores the last checkpoint (or the initial
  state) with :func:`restore_for_rollback` and continues at ``bad_step + 1``: the updates
  since that checkpoint are discarded and their batches skipped (the PaLM recipe for loss
  spikes). The batch, learning rate and augmentation keys follow the step, so "moving past the
  bad batch" is setting the step; replaying such a run after a kill is deterministic.

Which steps are checked is the loop's business (every logged step and every checkpoint
step); a decision always names the checked step it concerns.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxssl import metrics as metrics_lib
from jaxssl import sharding as sharding_lib

POLICIES = ("skip", "abort", "rollback")
EXIT_NONFINITE = 3  # the process exit code of an abort (jaxssl.main)


class NonFiniteError(RuntimeError):
    """A run aborted on a NaN/Inf loss or gradient (``train.nonfinite_policy='abort'``)."""
    exit_code = EXIT_NONFINITE


@dataclasses.dataclass(frozen=True)
class Continue:
    """Nothing new, or a new bad step under ``skip`` (already warned about)."""


@dataclasses.dataclass(frozen=True)
class Abort:
    message: str          # what was found, where, and when it was checked


@dataclasses.dataclass(frozen=True)
class Rollback:
    message: str
    bad_step: int         # the last non-finite step: the run continues at bad_step + 1
    bad_total: int        # non-finite steps so far (carried into the restored state)


Decision = Continue | Abort | Rollback


class NonFinitePolicy:
    """``check(step, nonfinite_steps, last_nonfinite_step) -> Continue | Abort | Rollback``.

    ``seen``: the counter's value when the run (re)started; only an increase is news.
    """

    def __init__(self, policy: str, seen: int):
        if policy not in POLICIES:
            raise ValueError(f"train.nonfinite_policy={policy!r}; use one of {list(POLICIES)}")
        self.policy = policy
        self.seen = int(seen)

    def check(self, step: int, nonfinite_steps: int, last_nonfinite_step: int) -> Decision:
        """The decision at checked ``step``, given the counters the step returned."""
        if nonfinite_steps <= self.seen:
            return Continue()
        message = (f"non-finite loss or gradient at step {last_nonfinite_step} "
                   f"({nonfinite_steps} such steps so far; checked at step {step})")
        if self.policy == "abort":
            return Abort(message)
        self.seen = nonfinite_steps
        if self.policy == "rollback":
            return Rollback(message, last_nonfinite_step, nonfinite_steps)
        metrics_lib.log(f"warning: {message}; update skipped (train.nonfinite_policy='skip')")
        return Continue()


def restore_for_rollback(ckpt, abstract_state, fresh_state, restore_fallback: bool,
                         decision: Rollback, mesh):
    """``(state, restored_step, label)``: the last checkpoint (or ``fresh_state()``, step 0)
    with the step set past ``decision.bad_step`` and the non-finite counters carried over."""
    ckpt.wait()
    restored_step, state = ckpt.restore_latest(abstract_state, fallback=restore_fallback)
    if state is None:
        state, restored_step, label = fresh_state(), 0, "the initial state"
    else:
        label = ckpt.step_path(restored_step)

    def scalar(value: int) -> jax.Array:
        return jax.device_put(np.int32(value), sharding_lib.replicated(mesh))

    state = state.replace(step=scalar(decision.bad_step + 1),
                          nonfinite_steps=scalar(decision.bad_total),
                          last_nonfinite_step=scalar(decision.bad_step))
    return state, restored_step, label
