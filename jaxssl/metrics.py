"""Process-0 metric writers: progress lines on stdout, JSON lines, and TensorBoard events.

``WORKDIR/metrics.jsonl`` gets one JSON object per logged step (``{"step": ..., "loss": ...}``)
and is appended to on resume. TensorBoard event files go to ``WORKDIR/tensorboard`` when the
``tensorboard`` package is installed (its pure-Python writer; TensorFlow is not needed).

The workdir may be a URL (``gs://...``, :mod:`jaxssl.paths`): an object cannot be appended
to, so both files are then kept in memory and uploaded whole by a background thread every
few seconds (``JAXSSL_REMOTE_FLUSH_S``, default 5) and at every :meth:`MetricWriter.flush`
(SIGTERM, abort, the end of the run): a SIGKILLed run loses at most those last seconds.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import socket
import sys
import time
from typing import Mapping

import jax

from jaxssl import paths

_EVENT_FILES = itertools.count()  # the uid suffix TensorBoard's writer adds, per process


class _RemoteEventFile:
    """TensorBoard's record format (``RecordWriter``) into an object rewritten at each flush:
    the ``EventFileWriter`` API (``add_event``, ``flush``, ``close``) for a URL logdir, whose
    own writer would go through ``tf.io.gfile`` rather than :mod:`jaxssl.paths`."""

    def __init__(self, logdir, flush_every_s: float | None):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{next(_EVENT_FILES)}")
        self._file = paths.AppendFile(logdir / name, flush_every_s, binary=True)
        self._records = RecordWriter(self._file)
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def add_event(self, event) -> None:
        self._records.write(event.SerializeToString())

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _tensorboard_writer(logdir, flush_every_s: float | None):
    try:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        from tensorboard.compat.proto import summary_pb2
    except ImportError:
        return None
    if paths.is_remote(logdir):
        return _RemoteEventFile(logdir, flush_every_s), summary_pb2
    return EventFileWriter(os.fspath(logdir)), summary_pb2


class MetricWriter:
    """Writes scalars from process 0; a no-op on other processes.

    ``workdir`` is a local folder or a URL (:func:`jaxssl.paths.resolve`); for a URL
    ``flush_every_s`` (default :func:`jaxssl.paths.remote_flush_s`) bounds how long written
    rows wait in memory before being uploaded.
    """

    def __init__(self, workdir: paths.PathLike, tensorboard: bool = True,
                 flush_every_s: float | None = None):
        self.active = jax.process_index() == 0
        workdir = paths.resolve(workdir)
        self.path = workdir / "metrics.jsonl"
        self._tb = None
        if self.active:
            paths.makedirs(workdir)
            self._file = paths.AppendFile(self.path, flush_every_s)
            if tensorboard:
                self._tb = _tensorboard_writer(workdir / "tensorboard", flush_every_s)

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
