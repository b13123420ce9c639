"""Checkpoint faults (docs/reliability.md, and the NaN save guard).

One finished in-process run (``drill_helpers.TinyMethod``, 8 steps, a checkpoint every 2 on
8 fake devices) is copied and damaged per test. The same faults on the SimCLR command line
are drilled in test_reliability_resume.py.
"""
from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drill_helpers
from jaxssl import checkpoint, train
from jaxssl import train_state as state_lib


@pytest.fixture(autouse=True)
def _tiny_method(monkeypatch):
    drill_helpers.register_tiny_method(monkeypatch)


def tiny(**overrides):
    return drill_helpers.tiny_method_config(overrides)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 8-step run: checkpoints 2, 4, 6, 8, and its final state on the host."""
    with pytest.MonkeyPatch.context() as mp:
        drill_helpers.register_tiny_method(mp)
        workdir = str(tmp_path_factory.mktemp("finished"))
        train.run(tiny(), workdir)
        # The final save was awaited: step 8 is finished (renamed from its tmp folder).
        assert drill_helpers.finished_steps(workdir) == [2, 4, 6, 8]
        assert not [n for n in os.listdir(os.path.join(workdir, "checkpoints")) if "tmp" in n]
        tree, meta = checkpoint.load_tree(workdir)
    return workdir, tree, meta


def copy_run(src, tmp_path) -> str:
    dst = str(tmp_path / "run")
    shutil.copytree(src, dst)
    return dst


def abstract_state(config=None):
    return train.Setup(config or tiny()).abstract_state


def host(tree):
    return {k: np.asarray(v) for k, v in checkpoint.flat_leaves(tree).items()}


# ----------------------------------------------------------------------------- item 3
def test_unfinished_save_is_ignored_cleaned_and_that_step_is_saved_again(finished_run, tmp_path, capsys):
    src, final_tree, _ = finished_run
    wd = copy_run(src, tmp_path)
    ckpts = os.path.join(wd, "checkpoints")
    # A crash between writing step 8 and finalising it leaves the write in a tmp folder.
    tmp_dir = os.path.join(ckpts, "8.orbax-checkpoint-tmp-1700000000000000")
    os.rename(os.path.join(ckpts, "8"), tmp_dir)
    ckpt = checkpoint.Checkpointer(wd)
    assert ckpt.latest_step() == 6 and not os.path.exists(tmp_dir)
    ckpt.close()
    assert "removing unfinished save" in capsys.readouterr().out
    train.run(tiny(), wd)
    assert f"resuming from {ckpts}/6" in capsys.readouterr().out
    assert drill_helpers.finished_steps(wd) == [2, 4, 6, 8]
    redone = host(checkpoint.load_tree(wd)[0])
    want = host(final_tree)
    assert redone.keys() == want.keys()
    for k in want:  # replayed bit for bit
        np.testing.assert_array_equal(redone[k], want[k], err_msg=k)


def test_truncated_checkpoint_fails_naming_the_path_and_falls_back_when_asked(finished_run, tmp_path):
    src, _, _ = finished_run
    wd = copy_run(src, tmp_path)
    step8 = os.path.join(wd, "checkpoints", "8")
    assert drill_helpers.truncate_arrays(step8)
    ckpt = checkpoint.Checkpointer(wd)
    with pytest.raises(checkpoint.CheckpointCorruptError, match=f"checkpoint {step8} is damaged"):
        ckpt.restore_latest(abstract_state())
    with pytest.raises(checkpoint.CheckpointCorruptError, match=f"checkpoint {step8} is damaged"):
        train.run(tiny(), wd)  # the trainer does not fall back on its own
    step, state = ckpt.restore_latest(abstract_state(), fallback=True)
    ckpt.close()
    assert step == 6 and int(state.step) == 6
    want = host(checkpoint.load_tree(os.path.join(src, "checkpoints", "6"))[0])
    got = host(state)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert not os.path.exists(step8)  # moved aside, kept for inspection
    assert os.listdir(os.path.join(wd, "corrupt_checkpoints"))[0].startswith("8-")


def test_flipped_bytes_fail_naming_the_path(finished_run, tmp_path):
    src, _, _ = finished_run
    wd = copy_run(src, tmp_path)
    step6 = os.path.join(wd, "checkpoints", "6")
    assert drill_helpers.flip_bytes(step6)
    ckpt = checkpoint.Checkpointer(wd)
    with pytest.raises(checkpoint.CheckpointCorruptError, match=f"checkpoint {step6} is damaged"):
        ckpt.restore(6, abstract_state())
    ckpt.close()


def test_values_that_differ_from_what_was_saved_are_detected_and_not_restored(finished_run, tmp_path):
    """Readable, well-formed arrays with other values (bit rot inside an array chunk, which
    zstd does not checksum): the per-leaf fingerprints recorded at save time catch it."""
    import orbax.checkpoint as ocp
    src, _, _ = finished_run
    wd = copy_run(src, tmp_path)
    step6 = os.path.join(wd, "checkpoints", "6")
    ckpt = checkpoint.Checkpointer(wd)
    state = ckpt.restore(6, abstract_state())
    kernel = state.params["backbone"]["kernel"]
    tampered = state.replace(params={**state.params, "backbone": {"kernel": kernel.at[3, 5].add(1e-3)}})
    with ocp.StandardCheckpointer() as writer:
        writer.save(os.path.join(str(tmp_path), "tampered"), tampered)
    shutil.rmtree(os.path.join(step6, "state"))
    shutil.copytree(os.path.join(str(tmp_path), "tampered"), os.path.join(step6, "state"))
    with pytest.raises(checkpoint.CheckpointCorruptError,
                       match=rf"checkpoint {step6} is damaged: 1 leaves differ from what was saved "
                             r"\(params/backbone/kernel\)"):
        ckpt.restore(6, abstract_state())
    ckpt.close()


# ----------------------------------------------------------------------------- item 4
def test_mismatched_checkpoint_fails_before_compiling_listing_keys_and_shapes(
        finished_run, tmp_path, monkeypatch):
    src, _, _ = finished_run
    wd = copy_run(src, tmp_path)

    def no_compile(*a, **k):
        raise AssertionError("the train step was built before the mismatch was found")

    monkeypatch.setattr(train, "make_train_step", no_compile)
    with pytest.raises(checkpoint.CheckpointMismatchError) as err:
        train.run(tiny(**{"model.head_output_dim": 6}), wd, allow_config_change=True)
    msg = str(err.value)
    assert f"checkpoint {wd}/checkpoints/8 does not match" in msg
    assert "params/head/kernel: checkpoint (16, 4) float32, config (16, 6) float32" in msg
    assert "opt_state/" in msg and "init_from" in msg
    assert "params/backbone" not in msg  # only the differing leaves are listed


def test_init_from_loads_the_matching_backbone_and_initialises_the_new_head(
        finished_run, tmp_path, capsys):
    src, final_tree, _ = finished_run
    config = tiny(**{"model.head_output_dim": 6})
    setup = train.Setup(config)
    fresh = state_lib.create(setup.init_fn, setup.tx, setup.mesh)
    state, loaded, initialised = checkpoint.init_from(src, fresh, setup.mesh)
    assert loaded == ["params/backbone/kernel", "model_state/batch_stats/mean"]
    assert initialised == ["params/head/kernel"]
    np.testing.assert_array_equal(np.asarray(state.params["backbone"]["kernel"]),
                                  np.asarray(final_tree["params"]["backbone"]["kernel"]))
    np.testing.assert_array_equal(np.asarray(state.params["head"]["kernel"]),
                                  np.asarray(fresh.params["head"]["kernel"]))
    assert int(state.step) == 0
    # The trainer uses it only when asked, for a new run, and says what it did.
    with config.unlocked():
        config.train.init_from = src
        config.train.num_steps = 2
    train.run(config, str(tmp_path / "new"))
    out = capsys.readouterr().out
    assert (f"init_from {src}: loaded 2 leaves (params/backbone/kernel, "
            "model_state/batch_stats/mean); newly initialised 1 leaves (params/head/kernel)") in out


# ----------------------------------------------------------------------------- item 5 (save guard)
def test_a_state_with_nan_is_never_saved(finished_run, tmp_path):
    src, _, _ = finished_run
    wd = copy_run(src, tmp_path)
    ckpt = checkpoint.Checkpointer(wd)
    state = ckpt.restore(8, abstract_state())
    bad = state.replace(params={**state.params, "head": {"kernel": state.params["head"]["kernel"]
                                                        .at[0, 0].set(jnp.inf)}})
    with pytest.raises(checkpoint.NonFiniteStateError, match=r"step 10 .*params/head/kernel"):
        ckpt.save(10, bad)
    ckpt.close()
    assert drill_helpers.finished_steps(wd) == [2, 4, 6, 8]


# ----------------------------------------------------------------------------- item 9
def test_failed_async_save_surfaces_at_the_next_save_and_at_exit(finished_run, tmp_path):
    src, _, _ = finished_run
    wd = copy_run(src, tmp_path)
    ckpt = checkpoint.Checkpointer(wd)
    state = ckpt.restore(8, abstract_state())
    ckpt.save(10, state)
    ckpt.wait()
    # The checkpoint directory becomes unusable (root ignores permissions, so: a file).
    ckpts = os.path.join(wd, "checkpoints")
    shutil.rmtree(ckpts)
    with open(ckpts, "w") as f:
        f.write("not a directory")
    with pytest.raises(checkpoint.CheckpointSaveError, match=r"step 12"):
        ckpt.save(12, state)
        ckpt.save(14, state)  # if the first save's failure was asynchronous
    with pytest.raises(checkpoint.CheckpointSaveError, match=r"step 16"):
        ckpt.save(16, state)
        ckpt.close()  # the exit path awaits the last save and raises its error


# ----------------------------------------------------------------------------- item 8
def test_resume_on_fewer_devices_reshards_and_warns(finished_run, tmp_path, capsys):
    src, final_tree, _ = finished_run
    wd = copy_run(src, tmp_path)
    shutil.rmtree(os.path.join(wd, "checkpoints", "8"))
    config4 = tiny(**{"mesh.num_devices": 4})
    train.run(config4, wd)  # written on 8 devices, resumed on 4
    out = capsys.readouterr().out
    assert ("was written on 8 devices and is restored onto 4" in out
            and "bitwise replay of the uninterrupted run no longer holds" in out)
    ckpt = checkpoint.Checkpointer(wd)
    assert ckpt.metadata(8)["device_count"] == 4
    state = ckpt.restore(8, abstract_state(config4))
    ckpt.close()
    assert all(len(x.sharding.device_set) == 4 for x in jax.tree.leaves(state))
    got, want = host(state), host(final_tree)
    for k in want:  # the same run up to float reassociation
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
