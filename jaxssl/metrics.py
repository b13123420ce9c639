"""Process-0 metric writers: progress lines on stdout, JSON lines, and TensorBoard events.

``WORKDIR/metrics.jsonl`` gets one JSON object per logged step (``{"step": ..., "loss": ...}``)
and is appended to on resume. TensorBoard event files go to ``WORKDIR/tensorboard`` when the
``tensorboard`` package is installed (its pure-Python writer; TensorFlow is not needed).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Mapping

import jax


def _tensorboard_writer(logdir: str):
    try:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        from tensorboard.compat.proto import summary_pb2
    except ImportError:
        return None
    return EventFileWriter(logdir), summary_pb2


class MetricWriter:
    """Writes scalars from process 0; a no-op on other processes."""

    def __init__(self, workdir: str, tensorboard: bool = True):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if self.active:
            os.makedirs(workdir, exist_ok=True)
            self._file = open(self.path, "a", buffering=1)
            if tensorboard:
                self._tb = _tensorboard_writer(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.active:
            return
        row = {"step": int(step), "time": time.time()}
        row.update({k: float(v) for k, v in scalars.items()})
        self._file.write(json.dumps(row) + "\n")
        if self._tb is not None:
            writer, summary_pb2 = self._tb
            from tensorboard.compat.proto import event_pb2
            summary = summary_pb2.Summary(value=[
                summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()
                if math.isfinite(float(v))])
            writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def flush(self) -> None:
        if self.active:
            self._file.flush()
            if self._tb is not None:
                self._tb[0].flush()

    def close(self) -> None:
        if self.active:
            self.flush()
            self._file.close()
            if self._tb is not None:
                self._tb[0].close()


def log(message: str) -> None:
    """Print a line from process 0 only, flushed at once (progress must show under buffering)."""
    if jax.process_index() == 0:
        print(message, flush=True, file=sys.stdout)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def progress_line(step: int, total: int, scalars: Mapping[str, float], items_per_s: float,
                  unit: str, eta_s: float, mfu: float | None = None) -> str:
    """``step 100/1000 | loss 5.1234 | lr 3.00e-01 | 812 img/s | mfu 41.3% | eta 1m10s``.

    ``mfu`` is the model-FLOP utilisation in [0, 1] (``jaxssl.flops.mfu``); ``None`` prints
    ``mfu n/a`` (unknown device peak, e.g. CPU, or a method without a FLOP count).
    """
    parts = [f"step {step}/{total}"]
    for k, v in scalars.items():
        parts.append(f"{k} {v:.3e}" if k == "lr" else f"{k} {v:.4f}")
    parts.append(f"{items_per_s:,.0f} {unit}/s")
    parts.append("mfu n/a" if mfu is None else f"mfu {100 * mfu:.1f}%")
    parts.append(f"eta {format_duration(eta_s)}")
    return " | ".join(parts)
