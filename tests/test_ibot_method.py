"""The iBOT method: its loss is DINO's [CLS] loss plus the masked patch loss of the student's
masked global crops against the teacher's unmasked ones, recomputed here in numpy from the
networks' outputs (bytedance/ibot ``iBOTLoss``); masks keyed by (seed, step); the teacher
gets no gradient; the patch center is the EMA of every teacher patch output; a resumed run is
bit-identical (teacher, both centers and the mask stream included)."""
from __future__ import annotations

import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drill_helpers
from jaxssl import train
from jaxssl.config import load_preset
from test_joint_embedding_losses import np_dino, np_dino_update_center, np_softmax
from test_latent_masking_losses import np_ibot_patch_loss

TINY = dict(train__batch_size=16, train__num_steps=3, train__num_epochs=0.0,
            mesh__num_devices=1, optim__warmup_epochs=0.0, eval__enabled=False,
            dino__out_dim=32, dino__head_hidden_dim=32, dino__head_bottleneck_dim=16,
            model__vit_hidden_dim=32, model__vit_depth=1, model__vit_num_heads=2,
            dino__local_crops_number=2, dino__head_use_bn=False)


@pytest.fixture(scope="module")
def setup():
    return train.Setup(load_preset("ibot_digits", **TINY))


def test_masks_are_a_function_of_seed_and_step(setup):
    method = setup.method
    masks = jax.jit(method.masks, static_argnums=(1,))
    a, b, c = masks(jnp.int32(4), 32), masks(jnp.int32(4), 32), masks(jnp.int32(5), 32)
    assert a.shape == (32, 16) and a.dtype == jnp.bool_
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert int((np.asarray(a).sum(axis=1) > 0).sum()) == 16     # mask_prob 0.5 of 2 x 16 crops


def test_loss_is_dino_cls_plus_masked_patch_loss_against_the_unmasked_teacher(setup):
    method = setup.method
    params, ms = jax.jit(method.init)(jax.random.key(0))
    # a teacher that differs from the student, and nonzero centers
    ms = {**ms, "teacher": {**ms["teacher"], "params": jax.tree.map(
        lambda p: p + 0.05 * jax.random.normal(jax.random.key(1), p.shape), params)},
        "center": 0.1 * jax.random.normal(jax.random.key(2), ms["center"].shape),
        "patch_center": 0.1 * jax.random.normal(jax.random.key(3), ms["patch_center"].shape)}
    batch = setup.feeder(0)
    step = jnp.int32(2)
    loss, (new_state, metrics) = jax.jit(method.loss)(params, ms, batch, step)

    globals_, locals_ = jax.jit(method.crops)(batch, step)
    mask = method.masks(step, globals_.shape[0])
    s_cls, s_patch, _ = method.net.apply({"params": params}, globals_, locals_, mask, None,
                                         train=True)
    t_cls, t_patch, _ = method.net.apply({"params": ms["teacher"]["params"]}, globals_, None,
                                         None, None, train=True)
    # The teacher's patches really are unmasked: masking changes them.
    _, t_masked, _ = method.net.apply({"params": ms["teacher"]["params"]}, globals_, None,
                                      mask, None, train=True)
    assert not np.allclose(np.asarray(t_masked), np.asarray(t_patch))
    n, k, grid = 16, 32, 16
    temp, temp2 = float(method.teacher_temp(step)), float(method.patch_teacher_temp(step))
    want_cls = np_dino(np.asarray(s_cls).reshape(-1, n, k), np.asarray(t_cls).reshape(2, n, k),
                       np.asarray(ms["center"]), 0.1, temp)
    t_probs = np_softmax((np.asarray(t_patch, np.float64).reshape(2 * n, grid, k)
                          - np.asarray(ms["patch_center"])[None]) / temp2)
    want_patch = np_ibot_patch_loss(np.asarray(s_patch).reshape(2 * n, grid, k), t_probs,
                                    np.asarray(mask))
    np.testing.assert_allclose(float(metrics["cls_loss"]), want_cls, rtol=1e-4)
    np.testing.assert_allclose(float(metrics["patch_loss"]), want_patch, rtol=1e-4)
    np.testing.assert_allclose(float(loss), want_cls + want_patch, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(new_state["center"]),
                               np_dino_update_center(np.asarray(ms["center"]),
                                                     np.asarray(t_cls).reshape(2, n, k), 0.9),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(new_state["patch_center"]),
                               0.9 * np.asarray(ms["patch_center"])
                               + 0.1 * np.asarray(t_patch).reshape(-1, k).mean(0, keepdims=True),
                               rtol=1e-4, atol=1e-6)
    # No gradient reaches the teacher.
    grads = jax.jit(jax.grad(lambda tp: method.loss(
        params, {**ms, "teacher": {**ms["teacher"], "params": tp}}, batch, step)[0]))(
        ms["teacher"]["params"])
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads))
    # The student's mask token gets a gradient (masked tokens reach the loss).
    g = jax.jit(jax.grad(lambda p: method.loss(p, ms, batch, step)[0]))(params)
    assert float(jnp.max(jnp.abs(g["backbone"]["mask_token"]))) > 0


def _resume_is_bit_identical(tmp_path, monkeypatch, config_path, overrides):
    from jaxssl import checkpoint
    from jaxssl.data import feeder as feeder_lib
    config = drill_helpers.load_config(
        {"train.num_steps": 6, "train.num_epochs": 0.0, "train.checkpoint_every_steps": 5,
         "train.log_every_steps": 3, "train.batch_size": 32, "optim.warmup_epochs": 0.0,
         "eval.enabled": False, **overrides}, path=os.path.join(drill_helpers.ROOT, "configs", config_path))
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
    train.run(config, split)
    a, _ = checkpoint.load_tree(full)
    b, _ = checkpoint.load_tree(split)
    fa, fb = checkpoint.flat_leaves(a), checkpoint.flat_leaves(b)
    assert fa.keys() == fb.keys()
    assert "model_state/center" in fa and "model_state/patch_center" in fa
    assert any(k.startswith("model_state/teacher/") for k in fa)
    for k in fa:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)


SMALL = {"dino.out_dim": 64, "dino.head_hidden_dim": 32, "dino.head_bottleneck_dim": 16,
         "model.vit_hidden_dim": 32, "model.vit_depth": 1, "model.vit_num_heads": 2,
         "dino.local_crops_number": 2}


@pytest.mark.slow
def test_ibot_resume_is_bit_identical_including_centers_teacher_and_masks(tmp_path, monkeypatch):
    _resume_is_bit_identical(tmp_path, monkeypatch, "ibot_digits.py", SMALL)


# One step of each ImageNet preset shrunk to CPU size (a 1-block ViT, 32 px globals, 16 px
# locals, 64 prototypes, batch 8 on 2 devices) under tfds.testing.mock_data: the host path
# delivers the 2 global crops as ``image`` and the locals as ``image_1``.
IMAGENET_TINY = dict(data__image_size=32, model__patch_size=8, model__vit_depth=1,
                     model__vit_hidden_dim=32, model__vit_num_heads=2, dino__out_dim=64,
                     dino__head_hidden_dim=32, dino__head_bottleneck_dim=16,
                     dino__local_crops_number=2, dino__local_crop_size=16, ibot__patch_out_dim=48,
                     train__batch_size=8, train__num_steps=1, train__num_epochs=0.0,
                     train__log_every_steps=1, train__checkpoint_every_steps=1,
                     optim__warmup_epochs=0.0, eval__enabled=False, mesh__num_devices=2)


def one_imagenet_step(tmp_path, name, arg=None, **extra):
    import json
    tfds = pytest.importorskip("tensorflow_datasets")
    config = load_preset(name, arg, **dict(IMAGENET_TINY, **extra))
    with tfds.testing.mock_data(num_examples=16):
        setup = train.Setup(config)
        assert setup.data.host_cropped
        batch = setup.data.source.get(np.arange(8), seed=0, step=0)
        assert batch["image"].shape == (8, 2, 32, 32, 3) and batch["image_1"].shape == (8, 2, 16, 16, 3)
        train.run(config, str(tmp_path))
    rows = [json.loads(line) for line in open(os.path.join(tmp_path, "metrics.jsonl"))]
    values = [r["loss"] for r in rows if "loss" in r]
    assert values and all(np.isfinite(values)), rows


@pytest.mark.slow
@pytest.mark.parametrize("arg", ["vit_s16", "vit_b16"])
def test_ibot_imagenet_runs_one_step_on_mocked_imagenet(tmp_path, arg):
    one_imagenet_step(tmp_path, "ibot_imagenet", arg)
