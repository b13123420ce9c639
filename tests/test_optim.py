"""Optimizers and schedules against plain numpy versions of the reference update rules."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxssl import optim


def _params(seed=0):
    r = np.random.default_rng(seed)
    f = lambda *s: r.normal(size=s).astype(np.float32)
    return {
        "conv": {"kernel": f(3, 3, 2, 4)},
        "dense": {"kernel": f(4, 3), "bias": f(3)},
        "bn": {"scale": f(4), "bias": f(4)},
        "zero_kernel": np.zeros((2, 2), np.float32),   # ||w|| = 0 -> trust ratio 1
        "still_kernel": f(3, 2),                       # gets zero gradients
    }


def _grads(step, seed=100):
    r = np.random.default_rng(seed + step)
    g = jax.tree.map(lambda x: r.normal(size=x.shape).astype(np.float32), _params())
    g["still_kernel"] = np.zeros_like(g["still_kernel"])
    return g


def _run(tx, params, steps):
    state = tx.init(params)
    params = jax.tree.map(jnp.asarray, params)
    for t in range(steps):
        updates, state = tx.update(jax.tree.map(jnp.asarray, _grads(t)), state, params)
        params = optax.apply_updates(params, updates)
    return params


def _assert_tree_close(got, want, **kw):
    for path_got, leaf_want in zip(jax.tree.leaves_with_path(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(path_got[1]), leaf_want, err_msg=str(path_got[0]), **kw)


# --------------------------------------------------------------------------- masks

def test_decay_mask_excludes_ndim_le_1():
    mask = optim.decay_mask(_params())
    assert mask == {"conv": {"kernel": True}, "dense": {"kernel": True, "bias": False},
                    "bn": {"scale": False, "bias": False}, "zero_kernel": True, "still_kernel": True}
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _params())
    assert optim.decay_mask(abstract) == mask


# --------------------------------------------------------------------------- LARS

def np_lars_reference(params, lrs, wd, eta, momentum, nesterov=False):
    """SimCLR tf2/lars_optimizer.py, classic momentum, BN/bias (ndim <= 1) excluded from both."""
    params = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    flat, treedef = jax.tree.flatten(params)
    v = [np.zeros_like(w) for w in flat]
    for t, lr in enumerate(lrs):
        grads = jax.tree.leaves(_grads(t))
        for i, (w, g) in enumerate(zip(flat, grads)):
            g = np.asarray(g, np.float64)
            adapt = w.ndim > 1
            if adapt and wd:
                g = g + wd * w
            trust = 1.0
            if adapt:
                w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
                trust = eta * w_norm / g_norm if (w_norm > 0 and g_norm > 0) else 1.0
            scaled_lr = lr * trust
            v[i] = momentum * v[i] + scaled_lr * g
            update = momentum * v[i] + scaled_lr * g if nesterov else v[i]
            flat[i] = w - update
    return jax.tree.unflatten(treedef, flat)


@pytest.mark.parametrize("wd,nesterov", [(0.1, False), (0.0, False), (1e-3, True)])
def test_lars_matches_numpy_reference(wd, nesterov):
    lrs = [0.5, 2.0, 1.0]  # a changing lr: classic momentum keeps lr inside the buffer
    schedule = lambda count: jnp.asarray(lrs)[count]
    tx = optim.lars(schedule, momentum=0.9, weight_decay=wd, trust_coefficient=0.001, nesterov=nesterov)
    got = _run(tx, _params(), 3)
    want = np_lars_reference(_params(), lrs, wd, 0.001, 0.9, nesterov)
    _assert_tree_close(got, want, rtol=1e-5, atol=1e-7)
    # The zero-gradient kernel without decay keeps g' = 0 -> trust ratio 1, update 0.
    if wd == 0.0:
        np.testing.assert_array_equal(np.asarray(got["still_kernel"]), _params()["still_kernel"])


def test_build_optimizer_lars_is_the_reference_update():
    cfg = optim.default_config()
    cfg.update(base_lr=0.3, lr_scaling="linear", weight_decay=1e-4, warmup_epochs=1.0,
               schedule="cosine")
    tx, schedule = optim.build_optimizer(cfg, global_batch=512, total_steps=10, steps_per_epoch=2)
    lrs = [float(schedule(t)) for t in range(3)]
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(0.3) and lrs[2] == pytest.approx(0.6)
    want = np_lars_reference(_params(), lrs, 1e-4, 0.001, 0.9)
    _assert_tree_close(_run(tx, _params(), 3), want, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- other optimizers

def _cfg(**kw):
    cfg = optim.default_config()
    cfg.update(warmup_epochs=0.0, schedule="constant", lr_scaling="none")
    cfg.update(**kw)
    return cfg


def test_sgd_matches_pytorch_update_rule():
    """torch.optim.SGD: buf = m*buf + (g + wd*w); w -= lr * (g' + m*buf if nesterov else buf)."""
    wd, lr, m = 0.05, 0.1, 0.9
    for nesterov in (False, True):
        tx, _ = optim.build_optimizer(_cfg(name="sgd", base_lr=lr, weight_decay=wd, momentum=m,
                                           nesterov=nesterov), global_batch=256, total_steps=3,
                                      steps_per_epoch=1)
        flat, treedef = jax.tree.flatten(jax.tree.map(lambda x: np.asarray(x, np.float64), _params()))
        buf = [np.zeros_like(w) for w in flat]
        for t in range(3):
            for i, (w, g) in enumerate(zip(flat, jax.tree.leaves(_grads(t)))):
                g = g + (wd * w if w.ndim > 1 else 0.0)
                buf[i] = m * buf[i] + g
                flat[i] = w - lr * (g + m * buf[i] if nesterov else buf[i])
        _assert_tree_close(_run(tx, _params(), 3), jax.tree.unflatten(treedef, flat), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_weight_decay_never_touches_ndim_le_1_leaves(name):
    """With zero gradients only decay moves parameters: kernels shrink, BN params and biases don't."""
    tx, _ = optim.build_optimizer(_cfg(name=name, base_lr=0.1, weight_decay=0.5), global_batch=256,
                                  total_steps=10, steps_per_epoch=1)
    params = jax.tree.map(jnp.asarray, _params())
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    for (path, u), w in zip(jax.tree.leaves_with_path(updates), jax.tree.leaves(params)):
        if w.ndim <= 1 or not np.any(np.asarray(w)):
            assert not np.any(np.asarray(u)), path
        else:
            # decay pulls every kernel entry towards 0
            assert np.all(np.asarray(u) * np.asarray(w) < 0), path


def test_adamw_is_optax_adamw_with_decay_mask():
    cfg = _cfg(name="adamw", base_lr=1e-2, weight_decay=0.05, b1=0.9, b2=0.95, eps=1e-8)
    tx, _ = optim.build_optimizer(cfg, global_batch=256, total_steps=10, steps_per_epoch=1)
    mask = optim.decay_mask(_params())
    want = _run(optax.adamw(1e-2, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.05, mask=mask), _params(), 3)
    _assert_tree_close(_run(tx, _params(), 3), jax.tree.map(np.asarray, want), rtol=1e-6)


def test_grad_clip_norm_clips_global_norm():
    cfg = _cfg(name="sgd", base_lr=1.0, weight_decay=0.0, momentum=0.0, grad_clip_norm=0.5)
    tx, _ = optim.build_optimizer(cfg, global_batch=256, total_steps=10, steps_per_epoch=1)
    params = jax.tree.map(jnp.asarray, _params())
    grads = jax.tree.map(jnp.asarray, _grads(0))
    updates, _ = tx.update(grads, tx.init(params), params)
    norm = math.sqrt(sum(float(jnp.sum(g ** 2)) for g in jax.tree.leaves(grads)))
    _assert_tree_close(updates, [-np.asarray(g) * 0.5 / norm for g in jax.tree.leaves(grads)], rtol=1e-5)


# --------------------------------------------------------------------------- schedules

def _schedule(**kw):
    cfg = optim.default_config()
    cfg.update(**kw)
    total = kw.pop("total_steps", 100)
    _, schedule = optim.build_optimizer(cfg, global_batch=512, total_steps=total, steps_per_epoch=10)
    return lambda t: float(schedule(t))


def test_warmup_cosine_schedule_values():
    lr = _schedule(base_lr=0.3, lr_scaling="linear", warmup_epochs=2.0, schedule="cosine")
    peak = 0.3 * 512 / 256
    assert lr(0) == 0.0
    assert lr(10) == pytest.approx(peak / 2)       # middle of the 20 warmup steps
    assert lr(20) == pytest.approx(peak)           # end of warmup
    assert lr(60) == pytest.approx(peak / 2)       # half-way through the cosine
    assert lr(40) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 20 / 80)))
    assert lr(100) == pytest.approx(0.0, abs=1e-9) and lr(150) == pytest.approx(0.0, abs=1e-9)


def test_warmup_fraction_overrides_warmup_epochs():
    cfg = optim.default_config()
    cfg.update(warmup_epochs=5.0, warmup_fraction=0.05)
    assert optim.warmup_steps_from_config(cfg, total_steps=200, steps_per_epoch=10) == 10
    cfg.warmup_fraction = 0.0
    assert optim.warmup_steps_from_config(cfg, total_steps=200, steps_per_epoch=10) == 50


def test_warmup_linear_decay_schedule_values():
    lr = _schedule(base_lr=1e-4, lr_scaling="none", warmup_epochs=1.0, schedule="linear")
    assert lr(0) == 0.0 and lr(5) == pytest.approx(0.5e-4) and lr(10) == pytest.approx(1e-4)
    assert lr(55) == pytest.approx(0.5e-4) and lr(100) == pytest.approx(0.0, abs=1e-12)


def test_step_schedule_boundaries():
    lr = _schedule(base_lr=30.0, lr_scaling="none", warmup_epochs=0.0, schedule="step",
                   step_boundaries_epochs=[6, 8], step_factor=0.1)
    assert lr(0) == pytest.approx(30.0) and lr(59) == pytest.approx(30.0)
    assert lr(60) == pytest.approx(3.0) and lr(79) == pytest.approx(3.0)
    assert lr(80) == pytest.approx(0.3) and lr(99) == pytest.approx(0.3)


def test_constant_schedule_with_and_without_warmup():
    assert _schedule(base_lr=0.1, lr_scaling="none", warmup_epochs=0.0, schedule="constant")(0) == \
        pytest.approx(0.1)
    lr = _schedule(base_lr=0.1, lr_scaling="none", warmup_epochs=1.0, schedule="constant")
    assert lr(5) == pytest.approx(0.05) and lr(10) == pytest.approx(0.1) and lr(99) == pytest.approx(0.1)


@pytest.mark.parametrize("scaling,want", [
    ("linear", 0.3 * 4096 / 256), ("sqrt", 0.075 * 64.0), ("none", 0.3)])
def test_lr_scaling_rules(scaling, want):
    base = 0.075 if scaling == "sqrt" else 0.3
    assert optim.scaled_learning_rate(base, 4096, scaling) == pytest.approx(want)
    cfg = _cfg(base_lr=base, lr_scaling=scaling)
    _, schedule = optim.build_optimizer(cfg, global_batch=4096, total_steps=10, steps_per_epoch=1)
    assert float(schedule(3)) == pytest.approx(want)


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("field,value,allowed", [
    ("name", "adam", "lars"), ("schedule", "poly", "cosine"), ("lr_scaling", "quadratic", "sqrt")])
def test_unknown_choices_raise_naming_field_value_and_options(field, value, allowed):
    cfg = optim.default_config()
    cfg[field] = value
    with pytest.raises(ValueError, match=rf"optim\.{field}='{value}'.*{allowed}"):
        optim.build_optimizer(cfg, global_batch=256, total_steps=10, steps_per_epoch=1)


@pytest.mark.parametrize("base_lr", [0.0, -0.1])
def test_non_positive_base_lr_raises(base_lr):
    cfg = optim.default_config()
    cfg.base_lr = base_lr
    with pytest.raises(ValueError, match=r"optim\.base_lr=.*must be > 0"):
        optim.build_optimizer(cfg, global_batch=256, total_steps=10, steps_per_epoch=1)


def test_missing_field_is_named():
    cfg = ml_collections.ConfigDict(dict(name="adamw", base_lr=1e-3, lr_scaling="none", weight_decay=0.1,
                                         warmup_epochs=0.0, schedule="constant", b1=0.9, b2=0.999))
    with pytest.raises(ValueError, match=r"optim\.eps is missing"):
        optim.build_optimizer(cfg, global_batch=256, total_steps=10, steps_per_epoch=1)
