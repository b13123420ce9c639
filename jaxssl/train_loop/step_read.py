"""The host side of a checked step: read its metrics, log them, carry out the policy."""
from __future__ import annotations

from typing import Any, Callable

import jax

from jaxssl import metrics as metrics_lib
from jaxssl.train_loop import nonfinite
from jaxssl.train_loop.step_log import StepLog


class StepReader:
    """``read(checked, metrics, log_row=, now=) -> None | (state, step)``.

    ``metrics`` are the device metrics of step ``checked`` (with the state's non-finite
    counters, ``nonfinite_steps`` and ``last_nonfinite_step``); ``now`` is the number of
    steps dispatched so far (``checked`` or, for a read one step late, ``checked + 1``). The
    read writes the step's row if ``log_row`` and applies :class:`NonFinitePolicy`:
    ``Continue`` returns None; ``Abort`` writes the counters (if no row was), flushes and
    raises :class:`NonFiniteError`; ``Rollback`` restores with ``restore(decision) -> (state,
    restored_step, label)``, logs and records it, and returns the state and the step to
    continue from (``bad_step + 1``).
    """

    def __init__(self, step_log: StepLog, policy: nonfinite.NonFinitePolicy,
                 restore: Callable[[nonfinite.Rollback], tuple[Any, int, str]],
                 latest_checkpoint: Callable[[], int | None]):
        self.step_log, self.writer, self.policy = step_log, step_log.writer, policy
        self.restore, self.latest_checkpoint = restore, latest_checkpoint

    def read(self, checked: int, metrics, *, log_row: bool, now: int):
        scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
        last_bad = int(scalars.pop("last_nonfinite_step"))
        bad_total = int(scalars["nonfinite_steps"])
        if log_row:
            self.step_log.write(checked, scalars)
        decision = self.policy.check(checked, bad_total, last_bad)
        if isinstance(decision, nonfinite.Abort):
            if not log_row:
                self.writer.write(checked, {"nonfinite_steps": float(bad_total)})
            self.writer.flush()
            raise nonfinite.NonFiniteError(
                f"{decision.message}; aborting (train.nonfinite_policy='abort'); the last good "
                f"checkpoint ({self.latest_checkpoint()}) is kept")
        if isinstance(decision, nonfinite.Rollback):
            return self._roll_back(decision, checked, now)
        return None

    def _roll_back(self, decision: nonfinite.Rollback, checked: int, now: int):
        state, restored, label = self.restore(decision)
        resume_at = decision.bad_step + 1
        metrics_lib.log(
            f"warning: {decision.message}; rolled back to {label} (step {restored}) and "
            f"continuing at step {resume_at} (train.nonfinite_policy='rollback': the updates "
            f"of steps {restored}..{now - 1} are discarded and the batches of steps "
            f"{restored}..{decision.bad_step} skipped)")
        self.writer.write(checked, {"rollback_to_step": float(restored),
                                    "nonfinite_steps": float(decision.bad_total)})
        self.step_log.meter.restart(resume_at)
        return state, resume_at
