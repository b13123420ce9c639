"""Throughput and MFU of the training loop, measured between logged steps."""
from __future__ import annotations

import dataclasses
import time

from jaxssl import flops as flops_lib


@dataclasses.dataclass(frozen=True)
class Rate:
    """What a progress line shows: ``steps_per_s``, ``items_per_s`` (img/s or tok/s) and
    ``mfu`` (``None`` where the device's peak FLOP/s or the step's FLOPs are unknown)."""
    steps_per_s: float
    items_per_s: float
    mfu: float | None


class ThroughputMeter:
    """Steps per second over every timed interval since the start, the first left out.

    ``tick(step)`` is called when ``step`` has finished on the device (its metrics were read),
    so an interval is the wall time of the steps between two ticks. The first interval holds
    the compilation and is only used until a second one exists. ``restart(step)`` starts a new
    interval without timing the one that ended (a rollback jumps the step).
    """

    def __init__(self, step: int, items_per_step: int, flops_per_step: float | None,
                 num_devices: int):
        self.items_per_step = items_per_step
        self.flops_per_step = flops_per_step
        self.num_devices = num_devices
        self._compiled = False          # has the first (compiling) interval ended?
        self._timed_steps, self._timed_time = 0, 0.0
        self.restart(step)

    def restart(self, step: int) -> None:
        self._t_last, self._step_last = time.perf_counter(), step

    def tick(self, step: int) -> Rate:
        now = time.perf_counter()
        dt, ds = now - self._t_last, step - self._step_last
        if not self._compiled:
            self._compiled = True
        else:
            self._timed_steps += ds
            self._timed_time += dt
        rate = (self._timed_steps / self._timed_time if self._timed_time > 0
                else ds / max(dt, 1e-9))
        self._t_last, self._step_last = now, step
        return Rate(rate, rate * self.items_per_step,
                    flops_lib.mfu(self.flops_per_step, rate, num_devices=self.num_devices))
