"""I-JEPA: the padded (static-shape) step against the reference's exact-length computation,
the key-padding attention, the target encoder's EMA, the loss pieces, resume, presets."""
from __future__ import annotations

import json
import os
import signal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drill_helpers
from jaxssl import rng, train
from jaxssl import train_state as state_lib
from jaxssl.augment import patch_masking as pm
from jaxssl.config import load_preset
from jaxssl.methods import ijepa as ijepa_lib
from jaxssl.models.ijepa_predictor import JointEmbeddingPredictive, key_padding_attention
from jaxssl.models.vit import VisionTransformer

TINY = dict(train__batch_size=8, train__num_steps=3, train__num_epochs=0.0,
            mesh__num_devices=1, optim__warmup_epochs=0.0, eval__enabled=False,
            model__vit_hidden_dim=32, model__vit_depth=1, model__vit_num_heads=2,
            ijepa__predictor_dim=16, ijepa__predictor_depth=1, ijepa__predictor_heads=2)


def setup_of(**overrides):
    return train.Setup(load_preset("ijepa_digits", **dict(TINY, **overrides)))


# --------------------------------------------------------------------------- model pieces

def test_key_padding_attention_ignores_padded_rows_and_is_the_vit_when_all_valid():
    vit = VisionTransformer(patch_size=2, hidden_dim=32, depth=2, num_heads=4, pool="gap")
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
    variables = vit.init(jax.random.key(1), x)
    tokens = vit.apply(variables, x, method=VisionTransformer.embed_patches)      # [3, 16, 32]
    plain = vit.apply(variables, tokens, method=VisionTransformer.encode_tokens)

    def masked(module, t, valid):
        with key_padding_attention(valid):
            return module.encode_tokens(t)

    all_valid = jnp.ones((3, 17), bool)
    np.testing.assert_allclose(np.asarray(vit.apply(variables, tokens, all_valid, method=masked)),
                               np.asarray(plain), rtol=1e-5, atol=1e-5)
    # the first 10 patch rows valid, the rest garbage: rows 0..10 equal the 10-token sequence
    k = 10
    garbage = tokens.at[:, k:].set(1e3 * jax.random.normal(jax.random.key(2), (3, 6, 32)))
    valid = jnp.broadcast_to(jnp.arange(17) < 1 + k, (3, 17))
    out = vit.apply(variables, garbage, valid, method=masked)
    short = vit.apply(variables, tokens[:, :k], method=VisionTransformer.encode_tokens)
    np.testing.assert_allclose(np.asarray(out[:, :1 + k]), np.asarray(short), rtol=1e-5,
                               atol=1e-5)


def test_smooth_l1_and_layer_norm_are_torchs():
    x = np.linspace(-3, 3, 61).astype(np.float32)
    want = np.where(np.abs(x) < 1, 0.5 * x ** 2, np.abs(x) - 0.5)    # F.smooth_l1_loss, beta 1
    np.testing.assert_allclose(np.asarray(ijepa_lib.smooth_l1(jnp.asarray(x))), want, rtol=1e-6)
    h = np.random.default_rng(0).normal(size=(2, 5, 7)).astype(np.float32) * 3 + 1
    ln = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(np.asarray(ijepa_lib.layer_norm(jnp.asarray(h))), ln, rtol=1e-5,
                               atol=1e-5)
    pred, tgt = (np.random.default_rng(s).normal(size=(2, 3, 4, 5)).astype(np.float32)
                 for s in (1, 2))
    valid = np.ones((2, 3, 4), bool)
    valid[:, :, 3] = False
    got = ijepa_lib.ijepa_loss(jnp.asarray(pred), jnp.asarray(tgt), jnp.asarray(valid))
    d = pred[:, :, :3] - tgt[:, :, :3]
    want = np.mean(np.where(np.abs(d) < 1, 0.5 * d ** 2, np.abs(d) - 0.5))
    np.testing.assert_allclose(float(got), want, rtol=1e-6)
    got = ijepa_lib.ijepa_loss(jnp.asarray(pred), jnp.asarray(tgt), jnp.asarray(valid), "mse")
    np.testing.assert_allclose(float(got), np.mean(d ** 2), rtol=1e-6)


# --------------------------------------------------------------------------- the step

def _exact_loss(method, params, model_state, batch, step):
    """The reference's computation (src/train.py): index lists of the step's exact lengths, the
    encoder on exactly the context tokens, no padding anywhere, ``F.smooth_l1_loss`` mean."""
    x = method.normalize(method.view(batch, step))
    context, targets = pm.multiblock_masks(rng.step_key(method.config.seed, "mask", step),
                                           x.shape[0], method.grid, **method.mask_kwargs)
    context, targets = np.asarray(context), np.asarray(targets)
    ctx_ids = jnp.asarray(np.stack([np.nonzero(c)[0] for c in context]))          # [B, K_c]
    tgt_ids = jnp.asarray(np.stack([[np.nonzero(t)[0] for t in ts] for ts in targets]))
    b, t, k = tgt_ids.shape
    h = method.model.apply({"params": {"encoder": model_state["teacher"]["params"]}}, x,
                           method=JointEmbeddingPredictive.patch_features)
    h = ijepa_lib.layer_norm(h)
    h = jnp.take_along_axis(h, tgt_ids.reshape(b, t * k)[:, :, None], axis=1).reshape(b, t, k, -1)

    def forward(module, images):
        tokens = module.encoder.embed_patches(images)
        out = module.encoder.encode_tokens(pm.gather_patches(tokens, ctx_ids), True)[:, 1:]
        return module.predictor(out, ctx_ids, jnp.ones(ctx_ids.shape, bool), tgt_ids,
                                jnp.ones(tgt_ids.shape, bool))

    z = method.model.apply({"params": params}, x, method=forward)
    d = z - h
    return jnp.mean(jnp.where(jnp.abs(d) < 1, 0.5 * d * d, jnp.abs(d) - 0.5)), (ctx_ids, tgt_ids)


def test_padded_step_equals_the_exact_length_reference_computation_values_and_gradients():
    setup = setup_of()
    method = setup.method
    params, ms = method.init(jax.random.key(0))
    # a teacher different from the student, as after some steps
    ms = {"teacher": {"params": jax.tree.map(lambda p: p * 0.9 + 0.01, ms["teacher"]["params"])}}
    batch = setup.feeder(0)
    step = jnp.int32(4)
    (loss, (_, metrics)), grads = jax.value_and_grad(method.loss, has_aux=True)(
        params, ms, batch, step)
    (ref, (ctx_ids, tgt_ids)), ref_grads = jax.value_and_grad(
        lambda p: _exact_loss(method, p, ms, batch, step), has_aux=True)(params)
    # the padded sequences really are longer than the step's exact ones
    assert method.context_budget > ctx_ids.shape[1] and method.target_budget >= tgt_ids.shape[2]
    assert float(metrics["context_patches"]) == ctx_ids.shape[1]
    assert float(metrics["target_patches"]) == tgt_ids.shape[2]
    np.testing.assert_allclose(float(loss), float(ref), rtol=1e-5)
    for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=2e-4, atol=2e-6,
                                   err_msg=jax.tree_util.keystr(path))


def test_target_encoder_gets_no_gradient_and_follows_the_linear_ema():
    setup = setup_of(train__num_steps=10, teacher__momentum=0.996)
    method = setup.method
    params, ms = method.init(jax.random.key(0))
    batch = setup.feeder(0)

    def loss_of_teacher(teacher_params):
        return method.loss(params, {"teacher": {"params": teacher_params}}, batch,
                           jnp.int32(0))[0]

    grads = jax.grad(loss_of_teacher)(ms["teacher"]["params"])
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads))
    # m_s = 0.996 + s (1 - 0.996) / T, step s uses m_s (the reference's momentum_scheduler)
    np.testing.assert_allclose([float(method.teacher.momentum_at(s)) for s in (0, 5, 10, 20)],
                               [0.996, 0.998, 1.0, 1.0], rtol=1e-7)
    state = state_lib.create(setup.init_fn, setup.tx, setup.mesh)
    state = state.replace(step=jnp.int32(5))
    new, _ = jax.jit(train.make_train_step(method, setup.tx, setup.lr_fn))(state, batch)
    m = 0.998
    want = jax.tree.map(lambda t, o: m * t + (1 - m) * o,
                        state.model_state["teacher"]["params"], new.params["encoder"])
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(new.model_state["teacher"]["params"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    assert set(new.params) == {"encoder", "predictor"}


def test_features_are_the_target_encoders_mean_patch_token():
    setup = setup_of()
    method = setup.method
    params, ms = method.init(jax.random.key(0))
    teacher = jax.tree.map(lambda p: p + 0.05, ms["teacher"]["params"])
    images = jax.random.uniform(jax.random.key(3), (4, 16, 16, 1))
    got = method.features(params, {"teacher": {"params": teacher}}, images)
    patches = method.model.apply({"params": {"encoder": teacher}}, method.normalize(images),
                                 method=JointEmbeddingPredictive.patch_features)
    np.testing.assert_allclose(np.asarray(got), np.asarray(patches.mean(1)), rtol=1e-5, atol=1e-6)


def test_config_errors_name_the_field():
    from jaxssl.methods import validate_config
    with pytest.raises(ValueError, match="model.pool"):
        validate_config(load_preset("ijepa_digits", model__pool="cls"))
    with pytest.raises(ValueError, match="ijepa.min_keep"):
        validate_config(load_preset("ijepa_digits", ijepa__min_keep=40))
    with pytest.raises(ValueError, match="ijepa.loss"):
        validate_config(load_preset("ijepa_digits", ijepa__loss="l1"))
    with pytest.raises(ValueError, match="teacher.momentum_schedule"):
        validate_config(load_preset("ijepa_digits", teacher__momentum_schedule="step"))


# --------------------------------------------------------------------------- resume, presets

@pytest.mark.slow
def test_ijepa_resume_is_bit_identical_including_teacher_and_masks(tmp_path, monkeypatch):
    from jaxssl import checkpoint
    from jaxssl.data import feeder as feeder_lib
    config = drill_helpers.load_config(
        {"train.num_steps": 6, "train.num_epochs": 0.0, "train.checkpoint_every_steps": 5,
         "train.log_every_steps": 3, "train.batch_size": 16, "optim.warmup_epochs": 0.0,
         "model.vit_hidden_dim": 32, "model.vit_depth": 1, "model.vit_num_heads": 2,
         "ijepa.predictor_dim": 16, "ijepa.predictor_depth": 1, "ijepa.predictor_heads": 2,
         "eval.enabled": False},
        path=os.path.join(drill_helpers.ROOT, "configs", "ijepa_digits.py"))
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
    assert any(k.startswith("model_state/teacher/") for k in fa)
    assert any(k.startswith("params/predictor/") for k in fa)
    for k in fa:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)


def test_imagenet_preset_has_the_reference_values():
    c = load_preset("ijepa_imagenet")
    assert (c.model.backbone, c.model.patch_size, c.data.image_size) == ("vit_huge", 14, 224)
    assert c.train.batch_size == 2048 and c.train.num_epochs == 300.0
    assert (c.optim.base_lr, c.optim.lr_scaling, c.optim.min_lr) == (0.001, "none", 1e-6)
    assert (c.optim.weight_decay, c.optim.weight_decay_end, c.optim.warmup_epochs) == (0.04, 0.4, 40.0)
    assert (c.teacher.momentum, c.teacher.momentum_final) == (0.996, 1.0)
    i = c.ijepa
    assert (i.num_targets, tuple(i.target_scale), tuple(i.target_aspect),
            tuple(i.context_scale), i.min_keep) == (4, (0.15, 0.2), (0.75, 1.5), (0.85, 1.0), 10)
    assert (i.predictor_dim, i.predictor_depth) == (384, 12)
    assert tuple(c.augment.crop_scale) == (0.3, 1.0) and c.augment.flip_prob == 0.0
    # the static lengths of the 16 x 16 grid
    t_max, c_max = pm.multiblock_budgets(16)
    assert c_max == 15 * 15 and 0.15 * 256 <= t_max <= 0.2 * 256 + 16


@pytest.mark.slow
def test_imagenet_preset_runs_one_step_under_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    c = load_preset("ijepa_imagenet")
    with c.unlocked():
        c.data.image_size = 112         # an 8 x 8 grid of the preset's 14 px patches
        c.model.update(dict(vit_hidden_dim=64, vit_depth=1, vit_num_heads=4, dtype="float32"))
        c.ijepa.update(dict(predictor_dim=32, predictor_depth=1, min_keep=4))
        c.train.update(dict(batch_size=8, num_steps=1, num_epochs=0.0, log_every_steps=1))
        c.optim.warmup_epochs = 0.0
        c.mesh.num_devices = 2
    with tfds.testing.mock_data(num_examples=16):
        results = train.run(c, str(tmp_path))
    assert results == {}
    with open(tmp_path / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert rows[-1]["step"] == 1 and np.isfinite(rows[-1]["loss"])


def test_method_is_registered():
    from jaxssl.methods import get_method_class, known_methods
    assert "ijepa" in known_methods() and get_method_class("ijepa") is ijepa_lib.IJEPA
    assert isinstance(nn.Module, type)


@pytest.mark.slow
def test_linear_eval_loads_the_target_encoder(tmp_path):
    from jaxssl.checkpoint import load_tree
    from jaxssl.methods.classifier import classifier_config
    small = dict(model__vit_hidden_dim=32, model__vit_depth=1, model__vit_num_heads=2,
                 ijepa__predictor_dim=16, ijepa__predictor_depth=1, ijepa__predictor_heads=2)
    pre = load_preset("ijepa_digits", **dict(TINY, train__num_steps=2,
                                             train__checkpoint_every_steps=2))
    train.run(pre, str(tmp_path / "pre"))
    c = classifier_config(load_preset("ijepa_digits", **small), "linear_eval")
    with c.unlocked():
        c.train.update(dict(init_from=str(tmp_path / "pre"), batch_size=16, num_steps=2,
                            num_epochs=0.0))
        c.optim.update(dict(name="sgd", weight_decay_end=-1.0, warmup_epochs=0.0,
                            warmup_fraction=0.0))
        c.mesh.num_devices = 1
        c.eval.enabled = False
    train.run(c.lock(), str(tmp_path / "lin"))
    stored, _ = load_tree(str(tmp_path / "pre"))
    probe, _ = load_tree(str(tmp_path / "lin"))
    teacher = stored["model_state"]["teacher"]["params"]
    assert not all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                   zip(jax.tree.leaves(teacher), jax.tree.leaves(stored["params"]["encoder"])))
    for a, b in zip(jax.tree.leaves(teacher), jax.tree.leaves(probe["params"]["backbone"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the target encoder, frozen


def test_predictor_remat_keeps_values_gradients_and_parameter_names():
    """``model.remat`` reaches the predictor's blocks (at ViT-H scale its activations are a large
    part of the step's memory) without changing what it computes."""
    from jaxssl.models.ijepa_predictor import IJEPAPredictor
    rng = np.random.default_rng(0)
    batch, targets, k_c, k_t, dim = 2, 3, 6, 4, 16
    ctx = jnp.asarray(rng.normal(size=(batch, k_c, dim)), jnp.float32)
    ctx_ids = jnp.asarray(rng.integers(0, 16, (batch, k_c)), jnp.int32)
    ctx_valid = jnp.ones((batch, k_c), bool).at[0, -1].set(False)
    tgt_ids = jnp.asarray(rng.integers(0, 16, (batch, targets, k_t)), jnp.int32)
    tgt_valid = jnp.ones((batch, targets, k_t), bool).at[1, 0, -1].set(False)
    args = (ctx, ctx_ids, ctx_valid, tgt_ids, tgt_valid)
    plain = IJEPAPredictor((4, 4), dim, hidden_dim=8, depth=2, num_heads=2)
    params = plain.init(jax.random.key(0), *args)
    for policy in ("full", "dots"):
        remat = plain.clone(remat=policy)
        assert (jax.tree.structure(remat.init(jax.random.key(0), *args))
                == jax.tree.structure(params))

        def loss(module):
            return lambda p: jnp.sum(module.apply(p, *args) ** 2)
        want, want_g = jax.value_and_grad(loss(plain))(params)
        got, got_g = jax.value_and_grad(loss(remat))(params)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        for a, b in zip(jax.tree.leaves(got_g), jax.tree.leaves(want_g)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    setup = setup_of(model__remat="full")
    assert setup.method.model.predictor.remat == "full"
