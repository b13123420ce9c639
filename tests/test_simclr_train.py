"""SimCLR end to end through ``jaxssl.train.run``: sharded training, resume, tfds presets."""
from __future__ import annotations

import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from jaxssl import checkpoint, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# train.run feeds and dispatches each step under jax.transfer_guard('disallow') (conftest.py).
pytestmark = pytest.mark.usefixtures("step_transfer_guard")


def load_config(name: str, arg: str | None = None, **overrides):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg)
    with config.unlocked():
        for key, value in overrides.items():
            node = config
            *path, leaf = key.split(".")
            for p in path:
                node = node[p]
            node[leaf] = value
    return config


def tiny_digits(**overrides):
    base = {"train.batch_size": 64, "train.num_epochs": 0.0, "train.num_steps": 6,
            "train.checkpoint_every_steps": 3, "train.log_every_steps": 3, "eval.enabled": False,
            "optim.warmup_epochs": 0.1}
    base.update(overrides)
    return load_config("simclr_digits", **base)


def restore_final(workdir, config):
    setup = train.Setup(config)
    ckpt = checkpoint.Checkpointer(workdir, async_save=False)
    state = ckpt.restore(ckpt.latest_step(), setup.abstract_state)
    ckpt.close()
    return state


def test_quickstart_config_trains_sharded_over_8_devices_and_resumes_bitwise(tmp_path):
    assert jax.device_count() == 8
    config = tiny_digits()
    full_dir, split_dir = str(tmp_path / "full"), str(tmp_path / "split")
    train.run(config, full_dir)
    # The same run, stopped after its first checkpoint (step 3) and started again.
    train.run(tiny_digits(**{"train.num_steps": 3}), split_dir)
    assert checkpoint.Checkpointer(split_dir).latest_step() == 3
    train.run(config, split_dir, allow_config_change=True)

    a, b = restore_final(full_dir, config), restore_final(split_dir, config)
    assert int(a.step) == int(b.step) == 6
    assert a.params["backbone"]  # non-empty
    # The batch was sharded over all 8 devices.
    assert train.Setup(config).mesh.devices.size == 8
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    rows = [json.loads(line) for line in open(os.path.join(split_dir, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [3, 6]
    assert all(np.isfinite(r["loss"]) for r in rows)


def test_quickstart_writes_eval_results_with_all_representations(tmp_path):
    config = tiny_digits(**{"eval.enabled": True, "train.num_steps": 3})
    results = train.run(config, str(tmp_path))
    with open(tmp_path / "eval_results.json") as f:
        written = json.load(f)
    assert written == results
    assert set(written) == {"simclr", "random_init", "raw_pixels"}
    for group in written.values():
        assert set(group) == {"knn_10", "knn_all", "linear_10", "linear_all"}
        assert all(0.0 <= v <= 1.0 for v in group.values())
    with open(tmp_path / "eval_protocol.json") as f:   # the monitor names its protocol
        described = json.load(f)
    assert set(described) == {"knn", "linear", "few_labels"}
    assert f"'{config.eval.linear_protocol}'" in described["linear"]
    assert "un-augmented" in described["linear"] and "not a paper's" in described["linear"]
    # Raw pixels of digits are a strong baseline: an independent sanity check of the protocol.
    assert written["raw_pixels"]["linear_all"] > 0.9


@pytest.mark.slow
def test_simclr_cifar10_preset_runs_under_tfds_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    config = load_config("simclr_cifar10", **{
        "train.batch_size": 16, "train.num_epochs": 0.0, "train.num_steps": 2,
        "train.log_every_steps": 1, "eval.enabled": False, "data.image_size": 16,
        "model.head_hidden_dim": 64, "optim.warmup_epochs": 0.0})
    with tfds.testing.mock_data(num_examples=48):
        train.run(config, str(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)


@pytest.mark.slow
def test_simclr_imagenet_preset_runs_under_tfds_mock_data(tmp_path):
    """v1 runs a step through the host (decode + crop) pipeline; v2 builds its full state."""
    tfds = pytest.importorskip("tensorflow_datasets")
    shrink = {"train.batch_size": 8, "train.num_epochs": 0.0, "train.num_steps": 1,
              "train.log_every_steps": 1, "data.image_size": 32, "model.head_hidden_dim": 64,
              "optim.warmup_fraction": 0.0, "optim.warmup_epochs": 0.0, "mesh.num_devices": 2}
    with tfds.testing.mock_data(num_examples=24):
        train.run(load_config("simclr_imagenet", "v1", **shrink), str(tmp_path))
        setup_v2 = train.Setup(load_config("simclr_imagenet", "v2", **shrink))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert rows[-1]["step"] == 1 and np.isfinite(rows[-1]["loss"])
    # v2's head: 3 layers with BN in every layer (SimCLR v2 / tf2 code default).
    head = setup_v2.abstract_state.params["head"]
    assert sum(k.startswith("dense") for k in head) == 3
    assert setup_v2.tx is not None
