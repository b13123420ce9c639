"""SimCLR and MoCo v2 recipe fidelity: the presets against docs/recipes.md, and the recipe
mechanisms against independent transcriptions of the reference code.

* Every SimCLR / MoCo v2 preset (every config argument) is loaded and compared with the
  ``jaxssl value`` column of its table in docs/recipes.md (the ``field`` column is the config
  path), so the document and the presets cannot drift apart.
* SimCLR's objective: one LARS step of a preset (``loss.scale = 2``) equals a numpy
  transcription of google-research/simclr ``tf2/lars_optimizer.py`` applied to the gradient of
  ``tf2/objective.py``'s ``mean(loss_a + loss_b)``; BN / bias updates at scale 1 are half.
* MoCo V2+ (solo-learn): the symmetric two-queue loss against a per-direction Python loop of
  ``mocov2plus_loss_func``, and the queue update.
* PIL's GaussianBlur (solo-learn / moco ``GaussianBlur``), the host crop's PIL resample,
  ResNet's zero-init / stem padding / input normalisation against plain numpy.
"""
from __future__ import annotations

import ast
import io
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from view_helpers import given_views, use_given_views
import pytest

from jaxssl import train
from jaxssl.config import load_preset
from jaxssl.augment import image as aug
from jaxssl.augment.blur import blur_kernel_size_for_sigma, gaussian_blur
from jaxssl.models import heads, resnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES_MD = os.path.join(ROOT, "docs", "recipes.md")

# preset file -> the config arguments it accepts (None: the default).
PRESETS = {
    "simclr_imagenet": (None, "v1", "readme", "v2"),
    "simclr_cifar10": (None,),
    "mocov2_imagenet": (None,),
    "mocov2_cifar10": (None,),
}


# ------------------------------------------------------------------ docs/recipes.md tables

def recipe_tables(path=RECIPES_MD):
    """``{preset heading: [(field, jaxssl value text), ...]}`` from docs/recipes.md.

    A table belongs to the nearest ``### `configs/FILE.py[:ARG]` `` heading above it; its rows
    are ``| field | jaxssl value | reference value | source |`` with the field and the value in
    backticks (rows whose field cell is not a backticked config path are prose rows).
    """
    tables, current = {}, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            heading = re.match(r"^###\s+`configs/(\w+)\.py(?::(\w+))?`", line)
            if heading:
                current = (heading.group(1), heading.group(2))
                tables.setdefault(current, [])
                continue
            if line.startswith("#"):  # any other heading ends the table
                current = None
                continue
            row = re.match(r"^\|\s*`([\w.]+)`\s*\|\s*`([^`]*)`\s*\|", line)
            if row and current is not None:
                tables[current].append((row.group(1), row.group(2)))
    return tables


def config_value(config, path):
    node = config
    for part in path.split("."):
        node = node[part]
    return node


def same(actual, documented_text):
    expected = ast.literal_eval(documented_text)
    if isinstance(actual, (list, tuple)):
        return (isinstance(expected, (list, tuple)) and len(actual) == len(expected)
                and all(same(a, repr(e)) for a, e in zip(actual, expected)))
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)):
        return math.isclose(actual, expected, rel_tol=1e-6, abs_tol=1e-12)
    return actual == expected


def test_every_preset_has_a_table_in_docs_recipes():
    tables = recipe_tables()
    for name, args in PRESETS.items():
        for arg in args:
            if arg is None:
                continue
            assert (name, arg) in tables, f"docs/recipes.md has no table for configs/{name}.py:{arg}"
            assert len(tables[(name, arg)]) >= 10, (name, arg)
    for name in ("simclr_cifar10", "mocov2_imagenet", "mocov2_cifar10"):
        assert (name, None) in tables, f"docs/recipes.md has no table for configs/{name}.py"


@pytest.mark.parametrize("name,arg", [(n, a) for n, args in PRESETS.items() for a in args])
def test_preset_matches_its_docs_recipes_table(name, arg):
    tables = recipe_tables()
    key = (name, arg) if (name, arg) in tables else (name, None)
    if arg is None and name == "simclr_imagenet":
        key = (name, "v1")  # the default argument
    rows = tables[key]
    config = load_preset(name, arg)
    wrong = []
    for field, text in rows:
        try:
            actual = config_value(config, field)
        except (KeyError, AttributeError):
            wrong.append(f"{field}: not a config field")
            continue
        if not same(actual, text):
            wrong.append(f"{field}: preset {actual!r}, docs/recipes.md {text}")
    assert not wrong, f"configs/{name}.py:{arg} drifted from docs/recipes.md:\n" + "\n".join(wrong)


def test_table_parser_catches_a_drift(tmp_path):
    doc = tmp_path / "recipes.md"
    doc.write_text("### `configs/mocov2_cifar10.py`\n\n| field | jaxssl | ref | src |\n|---|---|---|---|\n"
                   "| `loss.temperature` | `0.3` | 0.2 | x |\n| `moco.symmetric` | `True` | y | z |\n")
    rows = recipe_tables(str(doc))[("mocov2_cifar10", None)]
    config = load_preset("mocov2_cifar10")
    assert [same(config_value(config, f), t) for f, t in rows] == [False, True]


# ------------------------------------------------------------------ SimCLR objective under LARS

def reference_contrastive_loss(hidden, temperature):
    """google-research/simclr tf2/objective.py ``add_contrastive_loss`` (one replica), in jnp."""
    large_num = 1e9
    hidden = hidden / jnp.maximum(jnp.linalg.norm(hidden, axis=-1, keepdims=True), 1e-6)
    hidden1, hidden2 = jnp.split(hidden, 2, 0)
    n = hidden1.shape[0]
    labels = jax.nn.one_hot(jnp.arange(n), 2 * n)
    masks = jax.nn.one_hot(jnp.arange(n), n)
    hp = jax.lax.Precision.HIGHEST
    logits_aa = jnp.matmul(hidden1, hidden1.T, precision=hp) / temperature - masks * large_num
    logits_bb = jnp.matmul(hidden2, hidden2.T, precision=hp) / temperature - masks * large_num
    logits_ab = jnp.matmul(hidden1, hidden2.T, precision=hp) / temperature
    logits_ba = jnp.matmul(hidden2, hidden1.T, precision=hp) / temperature

    def softmax_ce(lab, logits):
        return -jnp.sum(lab * jax.nn.log_softmax(logits, axis=1), axis=1)

    loss_a = softmax_ce(labels, jnp.concatenate([logits_ab, logits_aa], 1))
    loss_b = softmax_ce(labels, jnp.concatenate([logits_ba, logits_bb], 1))
    return jnp.mean(loss_a + loss_b)


def params_at(tree, path):
    for k in path:
        tree = tree[getattr(k, "key", k)]
    return tree


def reference_lars_step(params, grads, lr, momentum, weight_decay, eeta):
    """tf2/lars_optimizer.py ``_resource_apply_dense`` (classic momentum, zero momentum slot),
    with ``exclude_from_weight_decay=['batch_normalization', 'bias', ...]`` (tf2/model.py) by
    variable name: Flax's BN modules are ``bn*`` (or ``BatchNorm_*``), biases are ``bias``."""
    flat_p = jax.tree_util.tree_flatten_with_path(params)[0]
    flat_g = jax.tree.leaves(grads)
    new = {}
    for (path, w), g in zip(flat_p, flat_g):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        w, g = np.asarray(w, np.float64), np.asarray(g, np.float64)
        excluded = bool(re.search(r"(^|/)(bn\w*|BatchNorm_\d+)/", name)) or name.endswith("bias")
        if not excluded:
            g = g + weight_decay * w
        trust = 1.0
        if not excluded:
            w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
            trust = eeta * w_norm / g_norm if (w_norm > 0 and g_norm > 0) else 1.0
        next_v = momentum * 0.0 + lr * trust * g
        new[name] = (w - next_v, excluded)
    return new


def simclr_setup(scale, preset="simclr_imagenet", arg="v1"):
    """The digits data and small CNN, with the optimizer, temperature, head and loss scale of
    ``preset`` (warm-up off so the first step has the peak learning rate)."""
    recipe = load_preset(preset, arg)
    c = load_preset("simclr_digits")
    with c.unlocked():
        c.data.image_size = 8
        c.mesh.num_devices = 1
        c.train.update(dict(batch_size=16, num_epochs=0.0, num_steps=4))
        c.model.update(dict(head=recipe.model.head, head_hidden_dim=16, head_output_dim=8))
        c.optim.update(recipe.optim.to_dict())
        c.optim.update(dict(warmup_epochs=0.0, warmup_fraction=0.0))
        c.loss.temperature = recipe.loss.temperature
        c.loss.scale = scale
        c.eval.enabled = False
        c.augment.jitter_prob = 0.0
    return train.Setup(c)


@pytest.fixture(scope="module")
def lars_steps():
    out = {}
    for scale in (1.0, 2.0):
        setup = simclr_setup(scale)
        method = use_given_views(setup.method)
        params, model_state = jax.jit(method.init)(jax.random.key(0))
        batch = given_views(16, 8, 1)
        step = jnp.int32(0)
        grads = jax.jit(jax.grad(lambda p: method.loss(p, model_state, batch, step)[0]))(params)
        opt_state = setup.tx.init(params)
        updates, _ = jax.jit(setup.tx.update)(grads, opt_state, params)
        new_params = jax.tree.map(lambda p, u: p + u, params, updates)
        out[scale] = dict(setup=setup, method=method, params=params, model_state=model_state,
                          batch=batch, new_params=new_params, updates=updates)
    return out


def test_simclr_preset_scale_is_the_reference_objective():
    for arg in ("v1", "readme", "v2"):
        assert load_preset("simclr_imagenet", arg).loss.scale == 2.0
    assert load_preset("simclr_cifar10").loss.scale == 2.0


@pytest.mark.slow
def test_one_lars_step_with_scale_2_equals_the_simclr_reference_step(lars_steps):
    run = lars_steps[2.0]
    method, params, model_state, batch = run["method"], run["params"], run["model_state"], run["batch"]
    config = run["setup"].config
    view_a, view_b = method.two_views(batch, jnp.int32(0))
    x = jnp.concatenate([view_a, view_b], axis=0)

    def ref_loss(p):
        (_, z), _ = method.model.apply({"params": p, **model_state}, x, train=True,
                                       mutable=list(model_state.keys()))
        return reference_contrastive_loss(z.astype(jnp.float32), config.loss.temperature)

    # The two objectives agree in value ...
    ours = float(jax.jit(lambda p: method.loss(p, model_state, batch, jnp.int32(0))[0])(params))
    np.testing.assert_allclose(ours, float(jax.jit(ref_loss)(params)), rtol=1e-5)
    # ... and one LARS step of the preset's optimizer equals the reference's step.
    grads = jax.jit(jax.grad(ref_loss))(params)
    lr = float(run["setup"].lr_fn(0))
    assert lr > 0
    o = config.optim
    expected = reference_lars_step(params, grads, lr, o.momentum, o.weight_decay, o.trust_coefficient)
    flat = jax.tree_util.tree_flatten_with_path(run["new_params"])[0]
    assert len(flat) == len(expected)
    kinds = set()
    for path, value in flat:
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        want, excluded = expected[name]
        kinds.add(excluded)
        # Updates compared with a tolerance of 0.5% of the leaf's largest update (float32
        # gradients of two formulations); a wrongly scaled objective is off by 2x on BN / bias.
        w0 = np.asarray(params_at(run["params"], path), np.float64)
        got, ref = np.asarray(value, np.float64) - w0, want - w0
        np.testing.assert_allclose(got, ref, rtol=0, atol=5e-3 * np.abs(ref).max(), err_msg=name)
        assert np.abs(ref).max() > 0, name
    assert kinds == {True, False}  # both BN/bias and adapted kernels were compared


@pytest.mark.slow
def test_bn_and_bias_updates_halve_at_scale_1(lars_steps):
    u1, u2 = lars_steps[1.0]["updates"], lars_steps[2.0]["updates"]
    flat1 = jax.tree_util.tree_flatten_with_path(u1)[0]
    flat2 = jax.tree.leaves(u2)
    halved = kept = 0
    for (path, a), b in zip(flat1, flat2):
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim <= 1:  # BN scale / bias: no trust ratio, the step is proportional to the loss
            np.testing.assert_allclose(a, 0.5 * b, rtol=1e-5, atol=1e-12)
            halved += 1
        else:  # adapted kernels: the trust ratio cancels the scale (up to the decay's share)
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-9)
            assert not np.allclose(a, 0.5 * b, rtol=0.1)
            kept += 1
    assert halved and kept


def test_simclr_chance_loss_is_scaled():
    from jaxssl.methods.simclr import SimCLR
    for scale in (1.0, 2.0):
        fake = type("F", (), {"loss_scale": scale,
                              "config": load_preset("simclr_cifar10")})()
        assert SimCLR.chance_loss(fake) == pytest.approx(scale * math.log(2 * 512 - 1))


# ------------------------------------------------------------------ SimCLR v1 head

def test_simclr_v1_head_output_bn_has_gamma_and_no_beta():
    head = heads.simclr_v1_head(16, 8)
    variables = head.init(jax.random.key(0), jnp.zeros((4, 6)), train=False)
    params = jax.tree.map(np.shape, variables["params"])
    assert params == {"dense_0": {"kernel": (6, 16)}, "bn_0": {"scale": (16,), "bias": (16,)},
                      "dense_1": {"kernel": (16, 8)}, "bn_1": {"scale": (8,)}}
    x = jax.random.normal(jax.random.key(1), (32, 6)) * 3 + 1
    out, _ = head.apply(variables, x, train=True, mutable=["batch_stats"])
    # BN(center=False) with gamma 1 at init: zero mean, unit variance per output unit (up to
    # BN's eps against the small pre-BN variance of the 0.01-std kernels).
    np.testing.assert_allclose(np.mean(np.asarray(out), 0), 0, atol=1e-5)
    np.testing.assert_allclose(np.var(np.asarray(out), 0), 1, atol=0.05)


# ------------------------------------------------------------------ MoCo V2+ (solo-learn)

def moco_tiny(symmetric, shuffle="off"):
    c = load_preset("mocov2_cifar10")
    d = load_preset("moco_digits")
    with d.unlocked():
        d.data.image_size = 8
        d.mesh.num_devices = 1
        d.train.update(dict(batch_size=16, num_epochs=0.0, num_steps=4))
        d.model.update(dict(head_hidden_dim=32, head_output_dim=16))
        d.eval.enabled = False
        d.augment.jitter_prob = 0.0
        d.moco.update(dict(queue_size=48, shuffle_bn=shuffle, bn_groups=4, symmetric=symmetric))
        d.loss.temperature = c.loss.temperature
    return train.Setup(d)


def np_normalize(x):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def solo_mocov2plus_loss(query, key, queue_DxK, temperature):
    """solo-learn ``mocov2plus_loss_func``: CE of ``[q.k, q.queue] / T`` with target 0."""
    pos = np.einsum("nc,nc->n", query, key)[:, None]
    neg = np.einsum("nc,ck->nk", query, queue_DxK)
    logits = np.concatenate([pos, neg], axis=1) / temperature
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    return np.mean(lse - logits[:, 0])


def test_mocov2_cifar10_preset_is_symmetric():
    assert load_preset("mocov2_cifar10").moco.symmetric is True
    assert load_preset("mocov2_imagenet").moco.symmetric is False


@pytest.mark.slow
def test_mocov2_symmetric_loss_and_two_queues_match_a_per_direction_loop():
    setup = moco_tiny(symmetric=True)
    method = use_given_views(setup.method)
    params, ms = jax.jit(method.init)(jax.random.key(0))
    k_size, batch_size, dim = 48, 16, 16
    assert ms["queue"].shape == (2, k_size, dim)
    # distinct, non-trivial queues and a pointer in the middle
    queue = jax.random.normal(jax.random.key(5), (2, k_size, dim))
    queue = queue / jnp.linalg.norm(queue, axis=-1, keepdims=True)
    teacher = jax.tree.map(lambda p: p * 0.9, ms["teacher"]["params"])
    ms = {**ms, "queue": queue, "queue_ptr": jnp.int32(batch_size),
          "teacher": {**ms["teacher"], "params": teacher}}
    batch = given_views(batch_size, 8, 1)
    step = jnp.int32(0)
    loss, (new_state, _) = jax.jit(method.loss)(params, ms, batch, step)

    views = method.two_views(batch, step)
    q, k = [], []
    for view in views:
        zq, _ = method.encoder.apply({"params": params, "batch_stats": ms["batch_stats"]}, view,
                                     train=True, mutable=["batch_stats"])
        zk, _ = method.encoder.apply({"params": teacher, "batch_stats": ms["teacher"]["batch_stats"]},
                                     view, train=True, mutable=["batch_stats"])
        q.append(np_normalize(zq))
        k.append(np_normalize(zk))
    queue_np = np.asarray(queue, np.float64)
    t = setup.config.loss.temperature
    # solo-learn: nce = (f(q1, k2, queue[1]) + f(q2, k1, queue[0])) / 2, queue stored [2, D, K]
    directions = [(q[0], k[1], queue_np[1].T), (q[1], k[0], queue_np[0].T)]
    expected = sum(solo_mocov2plus_loss(qq, kk, qu, t) for qq, kk, qu in directions) / 2
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    # each queue takes its own view's keys at the shared pointer
    new_queue = np.asarray(new_state["queue"])
    for v in range(2):
        np.testing.assert_allclose(new_queue[v, batch_size:2 * batch_size], k[v], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(new_queue[v, :batch_size], np.asarray(queue[v, :batch_size]))
        np.testing.assert_array_equal(new_queue[v, 2 * batch_size:], np.asarray(queue[v, 2 * batch_size:]))
    assert int(new_state["queue_ptr"]) == 2 * batch_size
    # the swapped pairing (q1 against view 1's queue) is a different number: the test can fail
    swapped = sum(solo_mocov2plus_loss(qq, kk, qu, t) for qq, kk, qu in
                  [(q[0], k[1], queue_np[0].T), (q[1], k[0], queue_np[1].T)]) / 2
    assert abs(swapped - expected) > 1e-3


@pytest.mark.slow
def test_mocov2_symmetric_trains_with_shuffle_bn_groups():
    setup = moco_tiny(symmetric=True, shuffle="groups")
    use_given_views(setup.method)
    from jaxssl import train_state
    state = train_state.create(setup.init_fn, setup.tx, setup.mesh)
    step_fn = jax.jit(train.make_train_step(setup.method, setup.tx, setup.lr_fn))
    state, metrics = step_fn(state, given_views(16, 8, 1))
    assert np.isfinite(float(metrics["loss"]))
    assert state.model_state["queue"].shape == (2, 48, 16)
    assert int(state.model_state["queue_ptr"]) == 16


# ------------------------------------------------------------------ PIL Gaussian blur

def smooth_image(seed=0, side=32):
    from PIL import Image
    rng = np.random.default_rng(seed)
    small = Image.fromarray((rng.random((side // 4, side // 4, 3)) * 255).astype(np.uint8))
    return np.asarray(small.resize((side, side), Image.Resampling.BICUBIC))


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5, 2.0])
def test_sigma_blur_matches_pil_gaussian_blur(sigma):
    from PIL import Image, ImageFilter
    img = smooth_image()
    ref = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius=sigma)), np.float64)
    x = jnp.asarray(img, jnp.float32) / 255.0
    size = blur_kernel_size_for_sigma(2.0)
    assert size == 17
    ours = np.asarray(gaussian_blur(x, sigma, size, padding="symmetric"), np.float64) * 255.0
    err = np.abs(ours - ref)
    assert err.mean() < 1.0 and err.max() < 6.0, (err.mean(), err.max())
    if sigma >= 1.0:  # SimCLR's 3-tap kernel at 32 px is far from PIL's blur
        simclr = np.asarray(gaussian_blur(x, sigma, 3), np.float64) * 255.0
        assert np.abs(simclr - ref).mean() > 2.0 * err.mean() + 1.0


def test_view_blur_kernel_sigma_is_used_by_augment_view():
    img = jnp.asarray(smooth_image(), jnp.float32) / 255.0
    common = dict(crop=False, flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=1.0,
                  blur_sigma=(2.0, 2.0))
    pil_like = aug.augment_view(jax.random.key(0), img, aug.ViewConfig(32, blur_kernel="sigma", **common))
    expected = np.clip(np.asarray(gaussian_blur(img, 2.0, 17, padding="symmetric")), 0, 1)
    np.testing.assert_allclose(np.asarray(pil_like), expected, atol=1e-6)
    simclr = aug.augment_view(jax.random.key(0), img, aug.ViewConfig(32, **common))
    assert not np.allclose(np.asarray(simclr), expected, atol=1e-3)
    with pytest.raises(ValueError, match="augment.blur_kernel='box'"):
        aug.ViewConfig(32, blur_kernel="box")


# ------------------------------------------------------------------ host crop resample

def test_host_crop_uses_the_presets_pil_resample():
    from PIL import Image
    from jaxssl.data.tfds_images import HostCropReader, center_crop_box
    rng = np.random.default_rng(0)
    pil = Image.fromarray((rng.random((50, 70, 3)) * 255).astype(np.uint8))
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    source = [{"image": buf.getvalue(), "label": 3}]
    top, left, h, w = center_crop_box(50, 70, 0.875)
    for method, resample in (("bilinear", Image.Resampling.BILINEAR),
                             ("bicubic", Image.Resampling.BICUBIC)):
        reader = HostCropReader(source, image_size=24, mode="center", resize_method=method,
                                num_threads=1)
        got = reader(np.array([0]), seed=0, step=0)["image"][0]
        reader.close()
        want = np.asarray(pil.resize((24, 24), resample, box=(left, top, left + w, top + h)))
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="data.resize_method='nearest'"):
        HostCropReader(source, image_size=24, mode="center", resize_method="nearest")


def test_data_resize_method_follows_augment_resize_method():
    assert load_preset("mocov2_imagenet").data.resize_method == "bilinear"
    assert load_preset("simclr_imagenet", "v1").data.resize_method == "bicubic"


# ------------------------------------------------------------------ ResNet recipe options

def test_zero_init_residual_per_recipe():
    x = jnp.zeros((2, 4, 4, 8))
    for block_cls, last in ((resnet.BasicBlock, "bn2"), (resnet.Bottleneck, "bn3")):
        for flag, gamma in ((True, 0.0), (False, 1.0)):
            block = block_cls(filters=8, zero_init_last_bn=flag)
            params = block.init(jax.random.key(0), x, train=False)["params"]
            np.testing.assert_array_equal(np.asarray(params[last]["scale"]), gamma)
            np.testing.assert_array_equal(np.asarray(params["bn1"]["scale"]), 1.0)
    assert load_preset("simclr_imagenet").model.zero_init_residual is True
    assert load_preset("simclr_cifar10").model.zero_init_residual is True
    assert load_preset("mocov2_imagenet").model.zero_init_residual is False
    assert load_preset("mocov2_cifar10").model.zero_init_residual is False


def tiny_resnet(**kwargs):
    """One BasicBlock stage of width 8 with the CIFAR stem: the stem under test, cheaply."""
    return resnet.ResNet(stage_sizes=(1,), block_cls=resnet.BasicBlock, num_filters=8,
                         stem="cifar", **kwargs)


def numpy_conv2d(x_HWC, k_hwio, padding):
    """torch Conv2d(stride 1, zero padding ``padding``, no bias) on one image."""
    x = np.pad(np.asarray(x_HWC, np.float64), ((padding, padding), (padding, padding), (0, 0)))
    kh, kw, _, cout = k_hwio.shape
    out_h, out_w = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    out = np.zeros((out_h, out_w, cout))
    for i in range(out_h):
        for j in range(out_w):
            out[i, j] = np.tensordot(x[i:i + kh, j:j + kw], k_hwio, axes=3)
    return out


def test_cifar_stem_padding_2_is_solo_learns_conv1():
    x = jax.random.uniform(jax.random.key(0), (1, 6, 6, 3))
    model = tiny_resnet(cifar_stem_padding=2)
    variables = model.init(jax.random.key(1), x, train=False)
    _, inter = model.apply(variables, x, train=False, capture_intermediates=True,
                           mutable=["intermediates"])
    conv1 = np.asarray(inter["intermediates"]["conv1"]["__call__"][0])[0]
    assert conv1.shape == (8, 8, 8)  # 6 + 2 * 2 - 3 + 1
    want = numpy_conv2d(np.asarray(x[0]), np.asarray(variables["params"]["conv1"]["kernel"]), 2)
    np.testing.assert_allclose(conv1, want, rtol=1e-4, atol=1e-5)
    out = model.apply(variables, x, train=False)
    assert out.shape == (1, 8)


def test_input_normalisation_equals_normalising_the_images():
    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.2435, 0.2616)
    x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
    plain = tiny_resnet()
    normed = tiny_resnet(input_mean=mean, input_std=std)
    variables = plain.init(jax.random.key(1), x, train=False)
    want = plain.apply(variables, (np.asarray(x) - np.array(mean)) / np.array(std), train=False)
    got = normed.apply(variables, x, train=False)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="model.input_mean"):
        tiny_resnet(input_mean=mean).init(jax.random.key(1), x, train=False)


def test_resnet_options_reach_the_backbones():
    from jaxssl.methods import moco
    c = load_preset("mocov2_cifar10")
    backbone = moco.build_backbone(c.model)
    assert (backbone.zero_init_last_bn, backbone.cifar_stem_padding) == (False, 2)
    assert tuple(backbone.input_mean) == tuple(c.model.input_mean) != ()
    s = load_preset("simclr_cifar10")
    backbone = moco.build_backbone(s.model)
    assert backbone.zero_init_last_bn is True and backbone.cifar_stem_padding == 1
