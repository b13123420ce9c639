"""The prefetching feeder (jaxssl.data.prefetch) and the loop parts of jaxssl.train_loop.

A prefetched batch must equal the unprefetched one for any order of steps (resume and
rollback jump), the wrapped feeder is never called twice at once, a reader's exception
reaches the caller with its message, and close() stops the thread. End to end: a run whose
feeder reads on the host trains bit-identically with and without prefetch, through a
rollback read one step late, under the step transfer guard.
"""
from __future__ import annotations

import json
import os
import threading
import time

import jax
import numpy as np
import pytest

import drill_helpers
from jaxssl import checkpoint, train
from jaxssl.data import prefetch
from jaxssl.data.feeder import HostFeeder
from jaxssl.data.pipeline import TrainData, register_data_kind
from jaxssl.train_loop import nonfinite
from jaxssl.train_loop.periodic import Every
from jaxssl.train_loop.throughput import ThroughputMeter


class RecordingFeeder:
    """A pure ``feeder(step)`` (host numpy) that records its calls and checks none overlap."""

    steps_per_epoch = 10

    def __init__(self, fail_at: int | None = None):
        self.calls, self.threads, self.fail_at = [], set(), fail_at
        self._busy = threading.Lock()

    def __call__(self, step):
        assert self._busy.acquire(blocking=False), "the feeder was called twice at once"
        try:
            self.calls.append(step)
            self.threads.add(threading.current_thread().name)
            time.sleep(0.002)
            if step == self.fail_at:
                raise ValueError(f"corrupt JPEG in the batch of step {step}")
            return {"x": np.random.default_rng(step).normal(size=(4, 3)), "step": step}
        finally:
            self._busy.release()


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name.startswith("jaxssl-prefetch")]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_prefetched_batches_equal_unprefetched_ones_across_jumps(depth):
    inner, reference = RecordingFeeder(), RecordingFeeder()
    order = [0, 1, 2, 3, 7, 8, 9, 2, 3, 4, 4, 0]  # a resume jump, a rollback, a repeat
    with prefetch.PrefetchingFeeder(inner, depth, end=10) as feeder:
        assert feeder.steps_per_epoch == 10  # the feeder's attributes read through
        for step in order:
            got, want = feeder(step), reference(step)
            assert got["step"] == step
            np.testing.assert_array_equal(got["x"], want["x"])
        assert feeder.discards == 3  # at 7, 4 (again), 0; after 9 nothing was prepared
    assert inner.threads == {t for t in inner.threads if t.startswith("jaxssl-prefetch")}
    assert max(inner.calls) <= 9  # nothing at or past `end` was prepared
    assert not prefetch_threads()


def test_a_reader_exception_surfaces_in_the_caller_with_its_message():
    feeder = prefetch.PrefetchingFeeder(RecordingFeeder(fail_at=3), depth=2)
    try:
        for step in range(3):
            feeder(step)  # step 3 is being prepared in the background meanwhile
        with pytest.raises(ValueError, match="corrupt JPEG in the batch of step 3"):
            feeder(3)
        assert feeder(4)["step"] == 4  # the feeder goes on after the caller handled it
    finally:
        feeder.close()
    assert not prefetch_threads()
    with pytest.raises(RuntimeError, match="closed"):
        feeder(5)


def test_an_error_in_a_step_never_asked_for_is_dropped():
    with prefetch.PrefetchingFeeder(RecordingFeeder(fail_at=1), depth=1) as feeder:
        assert feeder(0)["step"] == 0  # step 1 (failing) is being prepared
        assert feeder(5)["step"] == 5  # a jump: step 1 is discarded with its error


def test_prefetching_wraps_host_feeders_only_and_checks_the_depth():
    class DeviceHeld(RecordingFeeder):
        reads_on_host = False

    device_held = DeviceHeld()
    assert prefetch.prefetching(device_held, 2) is device_held
    host = RecordingFeeder()
    assert prefetch.prefetching(host, 0) is host
    wrapped = prefetch.prefetching(host, 2)
    assert isinstance(wrapped, prefetch.PrefetchingFeeder)
    wrapped.close()
    with pytest.raises(ValueError, match=r"data\.prefetch=-1"):
        prefetch.prefetching(host, -1)


# ----------------------------------------------------------------------------- loop parts
def test_every_is_due_every_n_and_at_the_last_step_when_asked():
    assert [s for s in range(1, 11) if Every(4, 10, at_last=True).due(s)] == [4, 8, 10]
    assert [s for s in range(1, 11) if Every(5, 10).due(s)] == [5]
    assert [s for s in range(1, 11) if Every(0, 10, at_last=True).due(s)] == [10]


def test_nonfinite_policy_decides_on_new_bad_steps_only():
    skip = nonfinite.NonFinitePolicy("skip", seen=0)
    assert skip.check(2, 0, -1) == nonfinite.Continue()
    assert skip.check(4, 1, 3) == nonfinite.Continue() and skip.seen == 1
    abort = nonfinite.NonFinitePolicy("abort", seen=1)
    assert abort.check(6, 1, 3) == nonfinite.Continue()  # seen before the restart
    decision = abort.check(8, 2, 7)
    assert isinstance(decision, nonfinite.Abort) and "at step 7" in decision.message
    rollback = nonfinite.NonFinitePolicy("rollback", seen=0)
    decision = rollback.check(6, 1, 5)
    assert isinstance(decision, nonfinite.Rollback) and (decision.bad_step, decision.bad_total) == (5, 1)
    assert rollback.check(6, 1, 5) == nonfinite.Continue()
    with pytest.raises(ValueError, match=r"train\.nonfinite_policy='retry'"):
        nonfinite.NonFinitePolicy("retry", seen=0)


def test_throughput_meter_leaves_the_compiling_interval_out():
    meter = ThroughputMeter(0, items_per_step=16, flops_per_step=None, num_devices=1)
    time.sleep(0.05)
    first = meter.tick(1)  # compilation: used only until a timed interval exists
    assert first.steps_per_s < 40 and first.mfu is None
    time.sleep(0.01)
    rate = meter.tick(11)
    assert rate.steps_per_s > 100 and rate.items_per_s == pytest.approx(16 * rate.steps_per_s)


# ----------------------------------------------------------------------------- end to end
class PointsSource:
    """256 fixed 8-d points read on the host, like an image source's ``get``."""

    name, split, num_examples = "points", "train", 256
    data = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)

    def get(self, indices, *, seed, step, row_offset=0):
        del seed, step, row_offset
        return {"x": self.data[np.asarray(indices)]}


class HostTinyMethod(drill_helpers.TinyMethod):
    data_kind = "tiny_points_host"


def host_points_data(config, mesh, method_cls):
    del method_cls
    return TrainData(HostFeeder(PointsSource(), int(config.train.batch_size), int(config.seed),
                                mesh, keys=("x",)))


@pytest.fixture
def host_tiny_method(monkeypatch):
    from jaxssl import methods
    register_data_kind("tiny_points_host", host_points_data)
    monkeypatch.setitem(methods._METHODS, "tiny_host", HostTinyMethod)  # noqa: SLF001


def test_host_fed_run_is_identical_with_and_without_prefetch_through_a_late_rollback(
        tmp_path, capsys, host_tiny_method, step_transfer_guard):
    # Log every step (read one step late), checkpoint every 4; the NaN of step 5 is seen at
    # the logged step 6, read after step 7 was dispatched, and rolled back to checkpoint 4.
    base = {"method": "tiny_host", "train.log_every_steps": 1, "train.checkpoint_every_steps": 4,
            "train.debug_nan_at_step": 5, "train.nonfinite_policy": "rollback"}
    states, rows = {}, {}
    for depth in (0, 2):
        config = drill_helpers.tiny_method_config({**base, "data.prefetch": depth})
        workdir = str(tmp_path / f"prefetch{depth}")
        train.run(config, workdir)
        out = capsys.readouterr().out
        assert (f"rolled back to {workdir}/checkpoints/4 (step 4) and continuing at step 6"
                in out)
        ckpt = checkpoint.Checkpointer(workdir, async_save=False)
        states[depth] = ckpt.restore(8, train.Setup(config).abstract_state)
        ckpt.close()
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            rows[depth] = [{k: v for k, v in json.loads(line).items()
                            if k in ("step", "loss", "nonfinite_steps", "rollback_to_step")}
                           for line in f]
    assert not prefetch_threads()
    for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[2])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert rows[0] == rows[2]
    # Every logged step has its row, the rollback row at the step it was decided on.
    assert [r["step"] for r in rows[2]] == [1, 2, 3, 4, 5, 6, 6, 7, 8]
