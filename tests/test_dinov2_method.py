"""The DINOv2 method: its loss recomputed in numpy from the networks' outputs as dinov2
``SSLMetaArch.forward_backward`` composes it (Sinkhorn-Knopp targets for [CLS] and the
masked patches, DINO pairs, KoLeo per global crop, ``forward_masked`` on the masked patches
only, separate heads); the per-step teacher temperature; layer-wise LR scales; the teacher
gets no gradient; a resumed run is bit-identical."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import train
from jaxssl.config import load_preset
from test_ibot_method import SMALL, _resume_is_bit_identical
from test_joint_embedding_losses import np_log_softmax, np_softmax
from test_latent_masking_losses import np_ibot_forward_masked, np_koleo, np_sinkhorn_knopp

TINY = dict(train__batch_size=16, train__num_steps=3, train__num_epochs=0.0,
            mesh__num_devices=1, optim__warmup_epochs=0.0, eval__enabled=False,
            dino__out_dim=32, dino__head_hidden_dim=32, dino__head_bottleneck_dim=16,
            ibot__patch_out_dim=24, model__vit_hidden_dim=32, model__vit_depth=2,
            model__vit_num_heads=2, dino__local_crops_number=2)


def np_dinov2_dino(student_cls, teacher_probs, n_local, temp=0.1):
    """``forward_backward``'s DINO terms: locals against both teacher globals, globals against
    the swapped teacher globals, each divided by ``n_global_terms + n_local_terms``."""
    s = np.asarray(student_cls, np.float64)
    t = np.asarray(teacher_probs, np.float64)                    # [2, n, K]
    n_terms = 2 + 2 * n_local
    total = 0.0
    for v in range(2, s.shape[0]):                               # local crops
        for q in range(2):
            total -= np.mean(np.sum(t[q] * np_log_softmax(s[v] / temp), -1))
    swapped = np.concatenate([t[1], t[0]])
    glob = np.concatenate([s[0], s[1]])
    total -= np.mean(np.sum(swapped * np_log_softmax(glob / temp), -1)) * 2
    return total / n_terms


@pytest.fixture(scope="module")
def setup():
    return train.Setup(load_preset("dinov2_digits", **TINY))


@pytest.mark.parametrize("centering", ["sinkhorn_knopp", "centering"])
def test_loss_matches_dinov2_forward_backward(centering):
    setup = train.Setup(load_preset("dinov2_digits", dinov2__centering=centering, **TINY))
    method = setup.method
    params, ms = jax.jit(method.init)(jax.random.key(0))
    ms = {**ms, "teacher": {**ms["teacher"], "params": jax.tree.map(
        lambda p: p + 0.05 * jax.random.normal(jax.random.key(1), p.shape), params)},
        "center": 0.1 * jax.random.normal(jax.random.key(2), ms["center"].shape),
        "patch_center": 0.1 * jax.random.normal(jax.random.key(3), ms["patch_center"].shape)}
    batch = setup.feeder(0)
    step = jnp.int32(3)
    loss, (new_state, metrics) = jax.jit(method.loss)(params, ms, batch, step)

    globals_, locals_ = jax.jit(method.crops)(batch, step)
    mask = np.asarray(method.masks(step, globals_.shape[0]))
    rows = jnp.asarray(np.nonzero(mask.reshape(-1))[0], jnp.int32)
    s_cls, s_patch, s_g = method.net.apply({"params": params}, globals_, locals_,
                                           jnp.asarray(mask), rows, train=True)
    t_cls, t_patch, _ = method.net.apply({"params": ms["teacher"]["params"]}, globals_, None,
                                         None, rows, train=True)
    n = 16
    temp = float(method.teacher_temp(step))
    if centering == "sinkhorn_knopp":
        t_probs = np_sinkhorn_knopp(np.asarray(t_cls), temp)
        t2 = np_sinkhorn_knopp(np.asarray(t_patch), temp)
    else:
        t_probs = np_softmax((np.asarray(t_cls, np.float64) - np.asarray(ms["center"])) / temp)
        t2 = np_softmax((np.asarray(t_patch, np.float64) - np.asarray(ms["patch_center"])) / temp)
    want_dino = np_dinov2_dino(np.asarray(s_cls).reshape(-1, n, 32), t_probs.reshape(2, n, 32), 2)
    g = np.asarray(s_g).reshape(2, n, -1)
    want_koleo = np_koleo(g[0]) + np_koleo(g[1])
    # forward_masked on the masked rows (scattered back to dense [2n, N, K] for the helper)
    dense_s = np.zeros((2 * n * 16, 24)); dense_t = np.zeros((2 * n * 16, 24))
    dense_s[np.asarray(rows)] = np.asarray(s_patch)[:len(rows)]
    dense_t[np.asarray(rows)] = t2
    want_ibot = np_ibot_forward_masked(dense_s.reshape(2 * n, 16, 24), dense_t.reshape(2 * n, 16, 24), mask)
    np.testing.assert_allclose(float(metrics["dino_loss"]), want_dino, rtol=1e-4)
    np.testing.assert_allclose(float(metrics["koleo_loss"]), want_koleo, rtol=1e-4)
    np.testing.assert_allclose(float(metrics["ibot_loss"]), want_ibot, rtol=1e-4)
    np.testing.assert_allclose(float(loss), want_dino + 0.1 * want_koleo + want_ibot, rtol=1e-4)
    if centering == "centering":
        np.testing.assert_allclose(np.asarray(new_state["patch_center"]),
                                   0.9 * np.asarray(ms["patch_center"])
                                   + 0.1 * np.asarray(t_patch).mean(0, keepdims=True),
                                   rtol=1e-4, atol=1e-6)
    else:
        np.testing.assert_array_equal(np.asarray(new_state["center"]), np.asarray(ms["center"]))
    grads = jax.jit(jax.grad(lambda tp: method.loss(
        params, {**ms, "teacher": {**ms["teacher"], "params": tp}}, batch, step)[0]))(
        ms["teacher"]["params"])
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads))


def test_separate_heads_layerscale_and_per_step_teacher_temperature(setup):
    method = setup.method
    params, _ = jax.eval_shape(method.init, jax.random.key(0))
    assert "patch_head" in params and "head" in params
    assert params["patch_head"]["last_layer"]["kernel_v"].shape[-1] == 24
    assert "ls1" in params["backbone"]["blocks_0"]
    spe = method.steps_per_epoch
    w = int(method.d.warmup_teacher_temp_epochs) * spe   # the digits config: 10 epochs
    want = np.linspace(0.04, 0.07, w)
    for s in (0, 1, w // 2, w - 1):
        np.testing.assert_allclose(float(method.teacher_temp(s)), want[s], rtol=1e-6)
    np.testing.assert_allclose(float(method.teacher_temp(w + 5)), 0.07, rtol=1e-6)


def test_lr_scales_are_layerwise_decay_with_patch_embed_multiplier(setup):
    scales = setup.method.lr_scales()
    depth = 2
    assert scales["head"]["last_layer"]["kernel_v"] == 1.0
    np.testing.assert_allclose(scales["backbone"]["blocks_1"]["ls1"]["gamma"], 0.9, rtol=1e-9)
    np.testing.assert_allclose(scales["backbone"]["blocks_0"]["ls1"]["gamma"], 0.81, rtol=1e-9)
    np.testing.assert_allclose(scales["backbone"]["patch_embed"]["kernel"],
                               0.2 * 0.9 ** (depth + 1), rtol=1e-9)
    np.testing.assert_allclose(scales["backbone"]["cls_token"], 0.9 ** (depth + 1), rtol=1e-9)
    np.testing.assert_allclose(scales["backbone"]["mask_token"], 0.9 ** (depth + 1), rtol=1e-9)


@pytest.mark.slow
def test_dinov2_resume_is_bit_identical(tmp_path, monkeypatch):
    _resume_is_bit_identical(tmp_path, monkeypatch, "dinov2_digits.py",
                             dict(SMALL, **{"ibot.patch_out_dim": 48}))


def test_clip_by_module_norm_is_clip_grad_norm_per_module():
    from jaxssl.methods.dinov2 import clip_by_module_norm
    g = {"backbone": {"a": jnp.array([3.0, 4.0]), "b": jnp.array([12.0])},
         "head": {"c": jnp.array([0.3, 0.4])}}
    out, _ = clip_by_module_norm(3.0).update(g, None)
    np.testing.assert_allclose(np.asarray(out["backbone"]["a"]), np.array([3.0, 4.0]) * 3 / (13 + 1e-6),
                               rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out["backbone"]["b"]), np.array([12.0]) * 3 / (13 + 1e-6),
                               rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(out["head"]["c"]), np.asarray(g["head"]["c"]))


@pytest.mark.slow
def test_dinov2_imagenet_runs_one_step_on_mocked_imagenet(tmp_path):
    from test_ibot_method import one_imagenet_step
    one_imagenet_step(tmp_path, "dinov2_imagenet", None, dinov2__koleo_group_size=4,
                      train__checkpoint_every_steps=1)
