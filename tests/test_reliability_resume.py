"""The SimCLR command line under SIGKILL, SIGTERM and damaged checkpoints (docs/reliability.md).

``python -m jaxssl.main`` runs in subprocesses (2 fake CPU devices each) on a 40-step
SimCLR-on-digits config; ``drill_helpers`` holds the drills (``scripts/fault_drill.py`` runs
the same ones). One uninterrupted run is the reference; a second run of the same command is
SIGKILLed at a random step, rerun, SIGTERMed a few steps after it resumed (exit code 75), and
rerun to the end. Its final state must hash bit-identically to the reference.
"""
from __future__ import annotations

import os
import signal

import pytest

import drill_helpers
from jaxssl import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "reliability_jax_cache"
    path.mkdir(exist_ok=True)
    return str(path)


@pytest.fixture(scope="module")
def kill_drill(tmp_path_factory, cache):
    tmp = str(tmp_path_factory.mktemp("kill_drill"))
    kill_row, term_row = drill_helpers.drill_kill_and_resume(tmp, cache)
    return tmp, kill_row, term_row


def test_sigkill_at_a_random_step_then_rerun_is_bit_identical(kill_drill):
    tmp, row, _ = kill_drill
    f = row.facts
    assert f["final_rc"] == 0, drill_helpers.tail(f["final_log"])
    # Every group of the state: params, BN statistics (model_state), optimizer state, step.
    assert {"params", "model_state", "opt_state", "step"} <= set(f["hashes_ref"])
    assert f["hashes_split"] == f["hashes_ref"]
    assert f["resumed_from"] <= f["kill_at"] + 1 and f["resumed_from"] % 4 == 0
    assert row.passed, row.figure


def test_sigterm_writes_the_current_step_and_exits_75(kill_drill):
    tmp, _, row = kill_drill
    f = row.facts
    assert f["rc"] == train.EXIT_PREEMPTED == 75, drill_helpers.tail(f["log"])
    assert f["step"] >= f["signalled_after"]
    assert f"checkpoint {tmp}/interrupted/checkpoints/{f['step']} written" in f["log"]
    assert row.passed, row.figure


def test_damaged_checkpoints_on_the_command_line(kill_drill, cache, tmp_path):
    tmp, _, _ = kill_drill
    row = drill_helpers.drill_damaged_checkpoint(str(tmp_path), cache,
                                                 os.path.join(tmp, "uninterrupted"))
    f = row.facts
    assert f["rc_fail"] == 1 and "is damaged" in f["out_fail"], drill_helpers.tail(f["out_fail"])
    assert "removing unfinished save" in f["out_fail"]
    assert f["rc_ok"] == 0 and "restore_fallback: moving" in f["out_ok"], drill_helpers.tail(f["out_ok"])
    assert row.passed, row.figure


def test_moco_v2_resume_is_bit_identical_including_teacher_and_queue(tmp_path, monkeypatch):
    """MoCo's extra state (EMA teacher, key queue and its pointer) resumes bit for bit too.

    In-process on 8 fake devices: 6 steps straight, vs the same run preempted (SIGTERM while
    step 3's batch is fed; checkpoint of step 4; exit 75) and run again."""
    pytest.importorskip("jaxssl.methods.moco")
    import numpy as np

    from jaxssl import checkpoint
    from jaxssl.data import feeder as feeder_lib

    config = drill_helpers.load_config(
        {"train.num_steps": 6, "train.checkpoint_every_steps": 5, "train.log_every_steps": 3,
         "moco.queue_size": 64, "optim.warmup_epochs": 0.0},
        path=os.path.join(drill_helpers.ROOT, "configs", "moco_digits.py"))
    full, split = str(tmp_path / "full"), str(tmp_path / "split")
    train.run(config, full)

    real_call = feeder_lib.DeviceFeeder.__call__

    def feed_and_signal(self, step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_call(self, step)

    with monkeypatch.context() as mp:
        mp.setattr(feeder_lib.DeviceFeeder, "__call__", feed_and_signal)
        with pytest.raises(SystemExit, match=str(train.EXIT_PREEMPTED)):
            train.run(config, split)
    assert drill_helpers.finished_steps(split) == [4]
    train.run(config, split)
    a, _ = checkpoint.load_tree(full)
    b, _ = checkpoint.load_tree(split)
    fa, fb = checkpoint.flat_leaves(a), checkpoint.flat_leaves(b)
    assert fa.keys() == fb.keys()
    assert any(k.startswith("model_state/queue") for k in fa)
    assert any(k.startswith("model_state/teacher/") for k in fa)
    for k in fa:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)
    assert int(np.asarray(fa["step"])) == 6
