"""The log action of the loop: one metrics row, one progress line, the collapse monitor."""
from __future__ import annotations

from typing import Mapping

from jaxssl import metrics as metrics_lib
from jaxssl.train_loop.throughput import ThroughputMeter


class StepLog:
    """``write(step, scalars)`` for a logged step whose metrics are on the host.

    The row holds the step's scalars (loss, lr, grad_norm, the method's own, and
    ``nonfinite_steps``), ``{unit}_per_s`` and ``mfu`` (when known); the progress line shows
    loss, lr, throughput, MFU and the time left; the collapse monitor warns with the step.
    """

    def __init__(self, writer: metrics_lib.MetricWriter, meter: ThroughputMeter, collapse,
                 unit: str, total: int):
        self.writer, self.meter, self.collapse = writer, meter, collapse
        self.unit, self.total = unit, total

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        rate = self.meter.tick(step)
        self.writer.write(step, {**scalars, f"{self.unit}_per_s": rate.items_per_s,
                                 **({"mfu": rate.mfu} if rate.mfu is not None else {})})
        shown = {k: scalars[k] for k in ("loss", "lr") if k in scalars}
        eta_s = (self.total - step) / max(rate.steps_per_s, 1e-9)
        metrics_lib.log(metrics_lib.progress_line(
            step, self.total, shown, rate.items_per_s, self.unit, eta_s, rate.mfu))
        for line in self.collapse.update(step, scalars):
            metrics_lib.log(line)
