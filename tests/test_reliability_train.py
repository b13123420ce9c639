"""The non-finite policy of the trainer (docs/reliability.md) and what every progress line carries.

NaN is injected with the ``train.debug_nan_at_step`` test hook (the loss of that step times
NaN, so the loss and every gradient are NaN, as in a diverged step). In-process runs on the 8
fake CPU devices of conftest.py, batch 16, 8 steps, of ``drill_helpers.TinyMethod`` (the policy
is method-independent; it compiles in a second). The SimCLR command line is drilled in
test_reliability_resume.py.
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

import drill_helpers
from jaxssl import checkpoint, train
from jaxssl import train_state as state_lib

BAD = 5  # the injected step (0-based: the 6th optimizer step)

# train.run feeds and dispatches each step under jax.transfer_guard('disallow') (conftest.py).
pytestmark = pytest.mark.usefixtures("step_transfer_guard")


@pytest.fixture(autouse=True)
def _tiny_method(monkeypatch):
    drill_helpers.register_tiny_method(monkeypatch)


def tiny(**overrides):
    return drill_helpers.tiny_method_config(overrides)


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def metrics_rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_a_nonfinite_step_changes_nothing_but_the_step_and_counters():
    setup = train.Setup(tiny())
    state = state_lib.create(setup.init_fn, setup.tx, setup.mesh)
    step = jax.jit(train.make_train_step(setup.method, setup.tx, setup.lr_fn, debug_nan_at_step=0))
    before = jax.device_get(state)
    new, metrics = step(state, setup.feeder(0))
    assert np.isnan(float(metrics["loss"]))
    assert int(new.step) == 1 and int(new.nonfinite_steps) == 1 and int(new.last_nonfinite_step) == 0
    for field in ("params", "opt_state", "model_state"):
        assert leaves_equal(getattr(new, field), getattr(before, field)), field
    # The next (finite) step updates again.
    newer, metrics = step(new, setup.feeder(1))
    assert np.isfinite(float(metrics["loss"])) and int(newer.nonfinite_steps) == 1
    assert not leaves_equal(newer.params, before.params)


def test_skip_policy_counts_logs_and_goes_on(tmp_path, capsys):
    # The collapse thresholds are set so that this healthy run trips both warnings: the
    # monitor's wiring (a warning with the step) is checked here without another run.
    config = tiny(**{"train.debug_nan_at_step": BAD, "monitor.collapse_std_floor": 10.0,
                     "monitor.collapse_loss_rel_tol": 0.9, "monitor.collapse_patience": 2})
    train.run(config, str(tmp_path))
    out = capsys.readouterr().out
    state = drill_helpers_restore(tmp_path, config)
    assert int(state.step) == 8 and int(state.nonfinite_steps) == 1
    assert int(state.last_nonfinite_step) == BAD
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
    counts = {r["step"]: r["nonfinite_steps"] for r in metrics_rows(tmp_path)}
    assert counts == {2: 0, 4: 0, 6: 1, 8: 1}
    assert f"non-finite loss or gradient at step {BAD}" in out and "nonfinite_policy='skip'" in out
    # Progress lines carry throughput and MFU ('n/a': no peak FLOP/s known for CPU).
    progress = [ln for ln in out.splitlines() if ln.startswith("step ")]
    assert progress and all(" img/s | mfu n/a | " in ln for ln in progress)
    # Collapse monitor: warnings name the step.
    assert "possible collapse at step 2: embedding_std" in out
    assert "possible collapse at step 4: the loss" in out


def drill_helpers_restore(workdir, config):
    setup = train.Setup(config)
    ckpt = checkpoint.Checkpointer(str(workdir), async_save=False)
    try:
        return ckpt.restore(ckpt.latest_step(), setup.abstract_state)
    finally:
        ckpt.close()


def test_abort_policy_flushes_metrics_keeps_last_good_checkpoint(tmp_path):
    config = tiny(**{"train.debug_nan_at_step": BAD, "train.nonfinite_policy": "abort",
                     "train.log_every_steps": 4})
    with pytest.raises(train.NonFiniteError, match=rf"step {BAD} .*checkpoint \(4\) is kept") as err:
        train.run(config, str(tmp_path))
    assert err.value.exit_code == train.EXIT_NONFINITE == 3
    # Detected at the checkpoint of step 6 (not a log step): no checkpoint after the bad step,
    # and the row of the detection step was written and flushed.
    assert drill_helpers.finished_steps(str(tmp_path)) == [2, 4]
    rows = metrics_rows(tmp_path)
    assert rows[-1]["step"] == 6 and rows[-1]["nonfinite_steps"] == 1


def test_rollback_restores_the_last_checkpoint_and_continues_after_the_bad_batch(tmp_path, capsys):
    config = tiny(**{"train.debug_nan_at_step": BAD, "train.nonfinite_policy": "rollback"})
    train.run(config, str(tmp_path))
    out = capsys.readouterr().out
    assert f"rolled back to {tmp_path}/checkpoints/4 (step 4) and continuing at step {BAD + 1}" in out
    final = drill_helpers_restore(tmp_path, config)
    assert int(final.step) == 8 and int(final.nonfinite_steps) == 1

    # Reference: checkpoint 4 (written before the NaN), then the updates of steps 6 and 7,
    # computed with the plain step function outside the trainer.
    setup = train.Setup(config)
    ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
    state = ckpt.restore(4, setup.abstract_state)
    ckpt.close()
    step = jax.jit(train.make_train_step(setup.method, setup.tx, setup.lr_fn))
    state = state.replace(step=jax.numpy.asarray(BAD + 1, jax.numpy.int32))
    for s in range(BAD + 1, 8):
        state, _ = step(state, setup.feeder(s))
    for field in ("params", "opt_state", "model_state"):
        assert leaves_equal(getattr(final, field), getattr(state, field)), field


# ----------------------------------------------------------------------------- exit codes
def test_sigterm_saves_the_current_step_and_exits_75(tmp_path, monkeypatch):
    """Item 2, one process without jax.distributed: SIGTERM arrives while step 4's batch is
    being fed (i.e. in the middle of the run); the trainer finishes that step, saves step 5
    (not a periodic checkpoint step), awaits it and exits with code 75."""
    import signal

    from jaxssl.data import feeder as feeder_lib
    real_call = feeder_lib.DeviceFeeder.__call__

    def feed_and_signal(self, step):
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_call(self, step)

    monkeypatch.setattr(feeder_lib.DeviceFeeder, "__call__", feed_and_signal)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_info:
        train.run(tiny(), str(tmp_path))
    assert exit_info.value.code == train.EXIT_PREEMPTED == 75
    assert drill_helpers.finished_steps(str(tmp_path)) == [2, 4, 5]
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is restored


@pytest.mark.parametrize("error,code", [
    (train.NonFiniteError("non-finite loss at step 5"), 3),
    (checkpoint.CheckpointCorruptError("checkpoint /x/checkpoints/8 is damaged"), 1),
])
def test_main_maps_errors_to_documented_exit_codes(tmp_path, monkeypatch, capsys, error, code):
    """``jaxssl.main`` turns an abort into exit code 3 and a checkpoint error into 1, printing
    the message (the abort itself is tested above, the SIGTERM exit code 75 too)."""
    from absl import flags

    from jaxssl import main as main_lib

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(train, "run", fail)
    flags.FLAGS(["jaxssl.main", f"--config={drill_helpers.CONFIG}", f"--workdir={tmp_path}"])
    try:
        with pytest.raises(SystemExit) as exit_info:
            main_lib.main([])
    finally:
        flags.FLAGS.unparse_flags()
    assert exit_info.value.code == code
    assert f"error: {error}" in capsys.readouterr().err
