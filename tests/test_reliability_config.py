"""Reliability without training: config validation, workdir reuse, padded evaluation, the
collapse monitor and progress lines (docs/reliability.md)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import drill_helpers
from jaxssl import methods
from jaxssl import losses, metrics, monitor, run_info, train
from jaxssl import sharding as sharding_lib
from jaxssl.data.feeder import DeviceReader
from jaxssl.evaluators import features, protocol, representation


def tiny(**overrides):
    return drill_helpers.load_config(overrides)


class _DeviceWork(AssertionError):
    pass


@pytest.fixture
def no_device_work(monkeypatch):
    """Fail loudly if the trainer gets past validation to the mesh / model / data setup."""
    def boom(*a, **k):
        raise _DeviceWork("device work started before the config was rejected")
    monkeypatch.setattr(train, "Setup", boom)
    monkeypatch.setattr(sharding_lib, "make_mesh", boom)


def _with_section(name, **fields):
    c = tiny()
    with c.unlocked():
        c[name] = ml_collections.ConfigDict(fields)
    return c


# (config, field named in the error, value named in the error)
BAD_CONFIGS = {
    "steps_negative": (lambda: tiny(**{"train.num_steps": -5}), "train.num_steps", "-5"),
    "steps_and_epochs_zero": (lambda: tiny(**{"train.num_steps": 0}), "train.num_steps", "0"),
    "epochs_negative": (lambda: tiny(**{"train.num_steps": 0, "train.num_epochs": -1.0}),
                        "train.num_epochs", "-1.0"),
    "lr_zero": (lambda: tiny(**{"optim.base_lr": 0.0}), "optim.base_lr", "0.0"),
    "lr_negative": (lambda: tiny(**{"optim.base_lr": -0.1}), "optim.base_lr", "-0.1"),
    "temperature_zero": (lambda: tiny(**{"loss.temperature": 0.0}), "loss.temperature", "0.0"),
    "mlm_rate_one": (lambda: _with_section("mlm", rate=1.0), "mlm.rate", "1.0"),
    "mae_ratio_zero": (lambda: _with_section("mae", mask_ratio=0.0), "mae.mask_ratio", "0.0"),
    "mae_ratio_above_one": (lambda: _with_section("mae", mask_ratio=1.5), "mae.mask_ratio", "1.5"),
    "batch_not_divisible_by_devices": (lambda: tiny(**{"train.batch_size": 12}),
                                       "train.batch_size", "12"),
    "more_devices_than_visible": (lambda: tiny(**{"mesh.num_devices": 64}), "mesh.num_devices", "64"),
    "unknown_method": (lambda: tiny(method="simclrr"), "method", "simclrr"),
    "unknown_dataset": (lambda: tiny(**{"data.name": "cifar11"}), "data.name", "cifar11"),
    "unknown_model": (lambda: tiny(**{"model.backbone": "resnet51"}), "model.backbone", "resnet51"),
    "unknown_nonfinite_policy": (lambda: tiny(**{"train.nonfinite_policy": "ignore"}),
                                 "train.nonfinite_policy", "ignore"),
    "checkpoint_every_zero": (lambda: tiny(**{"train.checkpoint_every_steps": 0}),
                              "train.checkpoint_every_steps", "0"),
    "conv_batch_chunk_negative": (lambda: tiny(**{"model.conv_batch_chunk": -4}),
                                  "model.conv_batch_chunk", "-4"),
    # the 8 fake devices of the tests: slices would cut across the sharded batch
    "conv_batch_chunk_on_8_devices": (lambda: tiny(**{"model.conv_batch_chunk": 16}),
                                      "model.conv_batch_chunk", "16"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_rejected_before_device_work_naming_field_and_value(
        case, tmp_path, no_device_work):
    make, field, value = BAD_CONFIGS[case]
    workdir = tmp_path / "run"
    with pytest.raises(ValueError) as err:
        train.run(make(), str(workdir))
    msg = str(err.value)
    assert field in msg and value in msg, msg
    assert not workdir.exists(), "the workdir was created before validation"


def test_moco_queue_not_a_multiple_of_the_batch_is_rejected():
    c = tiny(method="moco_v2")
    with c.unlocked():
        c.moco = ml_collections.ConfigDict(dict(queue_size=100))
    with pytest.raises(ValueError, match=r"moco\.queue_size=100.*multiple of the global batch.*32"):
        methods.validate_config(c)


def test_batch_split_over_processes_is_checked():
    # 3 processes x 4 devices: a global batch of 8 splits over the devices, not the processes.
    with pytest.raises(ValueError, match=r"train\.batch_size=8.*4 devices and 3 processes.*multiple of 12"):
        methods.validate_config(tiny(**{"train.batch_size": 8}), num_devices=4, num_processes=3)
    methods.validate_config(tiny(**{"train.batch_size": 24}), num_devices=4, num_processes=3)


def test_valid_tiny_config_passes():
    methods.validate_config(tiny())


def test_misspelt_key_on_the_command_line_fails_clearly(tmp_path):
    env = drill_helpers.child_env(1)
    out = subprocess.run([sys.executable, "-m", "jaxssl.main", f"--config={drill_helpers.CONFIG}",
                          f"--workdir={tmp_path / 'run'}", "--config.train.batch_szie=1"],
                         env=env, cwd=drill_helpers.ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    assert "batch_szie" in out.stderr and "batch_size" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- workdir reuse
def test_workdir_with_a_different_config_is_refused_unless_allowed(tmp_path, monkeypatch):
    workdir = str(tmp_path)
    run_info.record_start(workdir, tiny())

    class Reached(Exception):
        pass

    def reached(config, **unused):
        raise Reached

    monkeypatch.setattr(train, "Setup", reached)
    with pytest.raises(ValueError, match=r"optim\.base_lr: 1\.0 -> 0\.5.*--allow_config_change"):
        train.run(tiny(**{"optim.base_lr": 0.5}), workdir)
    with pytest.raises(Reached):  # explicitly allowed: goes on to set up the run
        train.run(tiny(**{"optim.base_lr": 0.5}), workdir, allow_config_change=True)
    with pytest.raises(Reached):  # the same config resumes
        train.run(tiny(), workdir)
    with pytest.raises(Reached):  # another device count is a resume, not a new run
        train.run(tiny(**{"mesh.num_devices": 4}), workdir)
    recorded = json.load(open(os.path.join(workdir, "config.json")))
    assert recorded["optim"]["base_lr"] == 1.0


# ----------------------------------------------------------------------------- padded eval
@pytest.mark.parametrize("num_examples,batch_size", [(37, 8), (5, 16), (64, 8)])
def test_eval_features_count_every_example_once_on_1_3_8_devices(num_examples, batch_size):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(num_examples, 4, 4, 1)).astype(np.float32)
    w = rng.normal(size=(16, 3)).astype(np.float32)
    want = images.reshape(num_examples, -1) @ w  # plain numpy, row by row

    def embed(x):
        return x.reshape(x.shape[0], -1) @ jnp.asarray(w)

    results = []
    for n_dev in (1, 3, 8):
        mesh = sharding_lib.make_mesh(devices=jax.devices()[:n_dev])
        reader = DeviceReader({"image": images,
                               "label": np.zeros((num_examples,), np.int32)}, mesh)
        got, _ = features.extract_split(embed, reader, num_examples, batch_size, mesh)
        assert got.shape == (num_examples, 3)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        results.append(got)
    for got in results[1:]:
        np.testing.assert_allclose(got, results[0], rtol=1e-6, atol=1e-6)


def test_knn_and_linear_inputs_have_exactly_the_split_sizes(monkeypatch):
    """The kNN / linear probe receive N rows for N labelled examples (digits: 1257 / 540)."""
    config = tiny(**{"eval.batch_size": 100})  # neither split is a multiple of 100 (or of 8)
    seen = {}

    def capture(f_train, y_train, f_test, y_test, num_classes, cfg):
        seen.update(train=f_train.shape, test=f_test.shape, y_train=y_train.shape,
                    y_test=y_test.shape)
        return {}

    monkeypatch.setattr(protocol, "evaluate_features", capture)
    for n_dev in (1, 8):
        mesh = sharding_lib.make_mesh(devices=jax.devices()[:n_dev])
        evaluator = representation.RepresentationEvaluator(
            config, mesh, features=None, init=None)
        evaluator.evaluate_embedding(
            lambda s: lambda x: x.reshape(x.shape[0], -1).astype(jnp.float32))
        train_src, test_src = (s.source for s in evaluator.splits)
        assert seen["train"][0] == seen["y_train"][0] == len(train_src.images)
        assert seen["test"][0] == seen["y_test"][0] == len(test_src.images)
        assert len(train_src.images) % 100 and len(test_src.images) % 100


# ----------------------------------------------------------------------------- collapse monitor
def test_chance_losses_equal_the_losses_of_identical_embeddings():
    """Each method's ``chance_loss`` (the one home of the formula) is its loss on identical
    embeddings."""
    from jaxssl.methods.moco import MoCoV2, MoCoV3
    from jaxssl.methods.simclr import SimCLR
    n, d = 16, 8
    z = jnp.ones((n, d))  # every embedding the same: all similarities equal
    config = tiny(**{"train.batch_size": n, "loss.temperature": 0.2})
    simclr = types.SimpleNamespace(config=config, loss_scale=1.0)
    assert SimCLR.chance_loss(simclr) == pytest.approx(float(losses.nt_xent(z, z, 0.5)), rel=1e-5)
    assert SimCLR.chance_loss(simclr) == pytest.approx(math.log(2 * n - 1))
    queue = jnp.ones((64, d)) / math.sqrt(d)
    assert MoCoV2.chance_loss(types.SimpleNamespace(queue_size=64)) == pytest.approx(
        float(losses.info_nce(z, z, queue, 0.2)), rel=1e-5)
    sym = 2 * float(losses.mocov3_contrastive(z, z, 0.2))
    assert MoCoV3.chance_loss(types.SimpleNamespace(config=config, temperature=0.2)) == \
        pytest.approx(sym, rel=1e-5)


def test_collapse_monitor_warns_with_the_step_when_loss_stays_at_chance():
    chance = math.log(63)
    mon = monitor.CollapseMonitor(chance, rel_tol=0.01, patience=3)
    assert mon.update(10, {"loss": chance * 0.9}) == []   # learning: far from chance
    assert mon.update(20, {"loss": chance * 1.001}) == []
    assert mon.update(30, {"loss": chance * 0.999}) == []
    warned = mon.update(40, {"loss": chance})
    assert len(warned) == 1 and "step 40" in warned[0] and f"{chance:.4f}" in warned[0]
    assert mon.update(50, {"loss": chance}) == []          # once per episode
    assert mon.update(60, {"loss": chance * 0.5}) == []    # recovered
    assert [mon.update(s, {"loss": chance}) for s in (70, 80)] == [[], []]
    assert "step 90" in mon.update(90, {"loss": chance})[0]  # a new episode warns again


def test_collapse_monitor_warns_when_embedding_std_collapses():
    mon = monitor.CollapseMonitor(None, std_floor=0.05)
    assert mon.update(1, {"loss": 1.0, "embedding_std": 0.9}) == []
    warned = mon.update(2, {"embedding_std": 0.01})
    assert len(warned) == 1 and "step 2" in warned[0] and "embedding_std 0.0100" in warned[0]
    assert mon.update(3, {"embedding_std": 0.0}) == []


def test_progress_line_has_throughput_and_mfu():
    line = metrics.progress_line(100, 1000, {"loss": 5.0, "lr": 0.3}, 812.4, "img", 70, 0.4131)
    assert "812 img/s" in line and "mfu 41.3%" in line
    assert "mfu n/a" in metrics.progress_line(1, 2, {}, 10.0, "tok", 1.0, None)
