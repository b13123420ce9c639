"""MoCo v2 / v3: EMA teacher, queue, shuffle BN, device invariance, resume, presets.

References are independent of the code under test: the EMA and momentum schedule as plain
numpy formulas (moco builder.py, moco-v3 ``adjust_moco_momentum``), the queue as slot
arithmetic, shuffle BN as a Python loop that runs the key encoder on each group separately.
"""
import json
import os
import shutil
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import methods
from jaxssl import checkpoint as checkpoint_lib
from jaxssl import losses, optim, train, train_state
from jaxssl.config import load_preset
from jaxssl.methods import momentum as momentum_lib
from jaxssl.methods import shuffle_bn
from jaxssl.methods.moco import enqueue


def tiny_config(variant="v2", num_devices=1, batch=16, **moco):
    """The digits preset shrunk: 8x8 views, batch 16, narrow heads, no eval."""
    c = load_preset("moco_digits", variant)
    with c.unlocked():
        c.data.image_size = 8
        c.mesh.num_devices = num_devices
        c.train.update(dict(batch_size=batch, num_epochs=0.0, num_steps=4, log_every_steps=1,
                            checkpoint_every_steps=2))
        c.model.update(dict(head_hidden_dim=32, head_output_dim=16))
        c.eval.enabled = False
        c.augment.jitter_prob = 0.0  # crops only: a smaller program to compile
        if variant == "v2":
            c.moco.queue_size = 3 * batch
        else:
            c.moco.predictor_hidden_dim = 32
        c.moco.update(moco)
    return c


def build(config):
    setup = train.Setup(config)
    state = train_state.create(setup.init_fn, setup.tx, setup.mesh)
    return setup, state


def np_tree(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def assert_trees(a, b, **tol):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol), a, b)


# --------------------------------------------------------------------------- momentum

def test_momentum_schedule_matches_moco_v3_formula():
    base, total = 0.99, 100
    fn = momentum_lib.momentum_schedule(base, 1.0, total, "cosine")
    for t in (0, 1, 37, 50, 99, 100, 150):
        expected = 1.0 - 0.5 * (1.0 + np.cos(np.pi * min(t, total) / total)) * (1.0 - base)
        np.testing.assert_allclose(float(fn(t)), expected, rtol=1e-6)
    assert float(momentum_lib.momentum_schedule(0.999, 1.0, 10, "constant")(7)) == np.float32(0.999)
    with pytest.raises(ValueError, match="moco.momentum_schedule='linear'"):
        momentum_lib.momentum_schedule(0.99, 1.0, 10, "linear")


@pytest.fixture(scope="module")
def v2_groups():
    """A tiny MoCo v2 run on one device, shuffle BN by 4 groups, with its jitted functions."""
    config = tiny_config("v2", shuffle_bn="groups", bn_groups=4)  # K = 3 B
    setup, state = build(config)
    method = setup.method
    return SimpleNamespace(
        config=config, setup=setup, state=state, method=method,
        step_fn=jax.jit(train.make_train_step(method, setup.tx, setup.lr_fn)),
        keys_fn=jax.jit(method.keys),
        key_view_fn=jax.jit(lambda batch, s: method.two_views(batch, s)[1]))


def test_teacher_is_ema_of_new_params_and_gets_no_gradient(v2_groups):
    run = v2_groups
    state, method = run.state, run.method
    # Move the teacher away from the query encoder so that the EMA is not trivially either.
    teacher0 = jax.tree.map(lambda p: p + 0.1, state.model_state["teacher"]["params"])
    state = state.replace(model_state={**state.model_state,
                                       "teacher": {**state.model_state["teacher"], "params": teacher0}})
    batch = run.setup.feeder(0)

    def loss_of_teacher(teacher_params, queue):
        ms = {**state.model_state, "queue": queue,
              "teacher": {**state.model_state["teacher"], "params": teacher_params}}
        return method.loss(state.params, ms, batch, jnp.int32(0))[0]

    g_teacher, g_queue = jax.jit(jax.grad(loss_of_teacher, argnums=(0, 1)))(
        teacher0, state.model_state["queue"])
    for g in jax.tree.leaves(g_teacher) + [g_queue]:
        assert np.all(np.asarray(g) == 0)

    new, _ = run.step_fn(state, batch)
    m = float(method.momentum_at(1))
    assert m == np.float32(0.99)
    expected = jax.tree.map(lambda t, p: m * np.asarray(t) + (1 - m) * np.asarray(p),
                            np_tree(teacher0), np_tree(new.params))
    assert_trees(new.model_state["teacher"]["params"], expected, rtol=1e-6, atol=1e-7)
    # the query encoder did move, so the check above is not vacuous
    assert not np.allclose(np.asarray(jax.tree.leaves(new.params)[0]),
                           np.asarray(jax.tree.leaves(state.params)[0]))


# --------------------------------------------------------------------------- queue

def test_enqueue_writes_slots_and_wraps():
    k_size, b_size, dim = 6, 2, 3
    queue = jnp.zeros((k_size, dim))
    ptr = jnp.int32(0)
    expected = np.zeros((k_size, dim), np.float32)
    for step in range(4):
        keys = jnp.full((b_size, dim), step + 1.0)
        queue, ptr = enqueue(queue, ptr, keys)
        start = (step * b_size) % k_size
        expected[start:start + b_size] = step + 1.0
        np.testing.assert_array_equal(np.asarray(queue), expected)
        assert int(ptr) == ((step + 1) * b_size) % k_size
    with pytest.raises(ValueError, match="moco.queue_size=5 .*multiple"):
        enqueue(jnp.zeros((5, dim)), jnp.int32(0), jnp.ones((2, dim)))


def test_queue_holds_each_steps_global_keys_at_its_slots(v2_groups):
    run = v2_groups
    state, batch_size, k_size = run.state, run.config.train.batch_size, run.config.moco.queue_size
    for s in range(4):  # the 4th step wraps around to slots [0, B)
        batch = run.setup.feeder(s)
        old_queue = np.asarray(state.model_state["queue"])
        keys, _ = run.keys_fn(state.model_state["teacher"], run.key_view_fn(batch, jnp.int32(s)),
                              jnp.int32(s))
        state, _ = run.step_fn(state, batch)
        queue = np.asarray(state.model_state["queue"])
        start = (s * batch_size) % k_size
        slots = np.zeros(k_size, bool)
        slots[start:start + batch_size] = True
        np.testing.assert_allclose(queue[slots], np.asarray(keys), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(queue[~slots], old_queue[~slots])
        np.testing.assert_allclose(np.linalg.norm(queue[slots], axis=1), 1.0, rtol=1e-5)
        assert int(state.model_state["queue_ptr"]) == ((s + 1) * batch_size) % k_size


def test_queue_size_not_a_multiple_of_the_batch_is_refused():
    config = tiny_config("v2")
    with config.unlocked():
        config.moco.queue_size = 40
    with pytest.raises(ValueError, match=r"moco\.queue_size=40 .*multiple of the global batch "
                                         r"train\.batch_size=16.*use e\.g\. 32"):
        methods.validate_config(config)


# --------------------------------------------------------------------------- devices

def _loss_and_grads(config):
    setup, state = build(config)
    method = setup.method
    fn = jax.jit(jax.value_and_grad(method.loss, has_aux=True))
    (loss, (model_state, _)), grads = fn(state.params, state.model_state, setup.feeder(0),
                                         jnp.int32(0))
    return float(loss), np_tree(grads), np_tree(model_state)


def test_moco_v2_step_is_the_same_on_1_and_8_devices_without_shuffle_bn():
    loss1, grads1, ms1 = _loss_and_grads(tiny_config("v2", num_devices=1, shuffle_bn="off"))
    loss8, grads8, ms8 = _loss_and_grads(tiny_config("v2", num_devices=8, shuffle_bn="off"))
    np.testing.assert_allclose(loss8, loss1, rtol=1e-5)
    assert_trees(grads8, grads1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ms8["queue"], ms1["queue"], rtol=1e-5, atol=1e-6)
    assert int(ms8["queue_ptr"]) == int(ms1["queue_ptr"]) == 16
    assert_trees(ms8["teacher"]["batch_stats"], ms1["teacher"]["batch_stats"], rtol=1e-4, atol=1e-6)


def _reference_group_keys(method, teacher, view_k, seed, step, groups):
    """Key encoder run separately on each group of the shuffled batch (a Python loop)."""
    perm = np.asarray(shuffle_bn.shuffle_permutation(seed, step, view_k.shape[0])[0])
    assert sorted(perm.tolist()) == list(range(view_k.shape[0]))
    x = np.asarray(view_k)[perm]
    out = np.zeros((x.shape[0], method.config.model.head_output_dim), np.float32)
    size = x.shape[0] // groups
    for g in range(groups):
        z, _ = method.encoder.apply(teacher, x[g * size:(g + 1) * size], train=True,
                                    mutable=["batch_stats"])
        out[perm[g * size:(g + 1) * size]] = np.asarray(z)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_shuffle_permutation_is_a_function_of_seed_and_step():
    a = np.asarray(shuffle_bn.shuffle_permutation(0, 5, 64)[0])
    np.testing.assert_array_equal(np.asarray(shuffle_bn.shuffle_permutation(0, 5, 64)[0]), a)
    assert not np.array_equal(np.asarray(shuffle_bn.shuffle_permutation(0, 6, 64)[0]), a)
    assert not np.array_equal(np.asarray(shuffle_bn.shuffle_permutation(1, 5, 64)[0]), a)
    perm, inverse = shuffle_bn.shuffle_permutation(0, 5, 64)
    np.testing.assert_array_equal(np.asarray(perm)[np.asarray(inverse)], np.arange(64))


def _check_shuffled_keys(run, groups):
    method, state = run.method, run.state
    step = jnp.int32(1)
    batch = run.setup.feeder(1)
    view_k = run.key_view_fn(batch, step)
    teacher = state.model_state["teacher"]
    keys, stats = run.keys_fn(teacher, view_k, step)
    reference = _reference_group_keys(method, teacher, view_k, run.config.seed, 1, groups)
    np.testing.assert_allclose(np.asarray(keys), reference, rtol=1e-4, atol=1e-5)
    # the keys' BN statistics are not the global batch's (those the queries use)
    global_z, global_stats = method.encoder.apply(teacher, view_k, train=True, mutable=["batch_stats"])
    global_keys = np.asarray(losses.l2_normalize(global_z))
    assert np.max(np.abs(np.asarray(keys) - global_keys)) > 1e-2
    var_shuffled = np.asarray(stats["backbone"]["bn1"]["var"])
    var_global = np.asarray(global_stats["batch_stats"]["backbone"]["bn1"]["var"])
    assert np.max(np.abs(var_shuffled - var_global)) > 1e-6
    # the step's loss and new state are a function of (seed, step): two runs agree bit for bit
    loss_fn = jax.jit(method.loss)
    loss_a, (ms_a, _) = loss_fn(state.params, state.model_state, batch, step)
    loss_b, (ms_b, _) = loss_fn(state.params, state.model_state, batch, step)
    assert float(loss_a) == float(loss_b)
    jax.tree.map(np.testing.assert_array_equal, np_tree(ms_a), np_tree(ms_b))


def test_shuffle_bn_groups_on_one_device(v2_groups):
    _check_shuffled_keys(v2_groups, groups=4)


def test_shuffle_bn_across_8_devices():
    config = tiny_config("v2", num_devices=8, shuffle_bn="devices")
    setup, state = build(config)
    method = setup.method
    run = SimpleNamespace(
        config=config, setup=setup, state=state, method=method, keys_fn=jax.jit(method.keys),
        key_view_fn=jax.jit(lambda batch, s: method.two_views(batch, s)[1]))
    _check_shuffled_keys(run, groups=8)


def test_shuffle_bn_devices_mode_needs_several_devices():
    with pytest.raises(ValueError, match="moco.shuffle_bn='devices'.*'groups'"):
        train.Setup(tiny_config("v2", num_devices=1, shuffle_bn="devices"))


# --------------------------------------------------------------------------- optim

def test_frozen_and_decay_all_options():
    params = {"patch_embed": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))},
              "blocks_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))},
              "cls_token": jnp.ones((1, 1, 2))}
    cfg = optim.default_config()
    cfg.update(dict(name="adamw", base_lr=1.0, lr_scaling="none", weight_decay=0.5,
                    warmup_epochs=0.0, schedule="constant", decay_all_params=True,
                    no_decay_names=("cls_token",), frozen_params=("patch_embed",)))
    tx, _ = optim.build_optimizer(cfg, global_batch=256, total_steps=10, steps_per_epoch=1)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    # zero gradient: AdamW's update is -lr * wd * w on decayed leaves and 0 elsewhere
    np.testing.assert_array_equal(updates["patch_embed"]["kernel"], 0.0)
    np.testing.assert_array_equal(updates["patch_embed"]["bias"], 0.0)
    np.testing.assert_array_equal(updates["cls_token"], 0.0)
    np.testing.assert_allclose(updates["blocks_0"]["kernel"], -0.5)
    np.testing.assert_allclose(updates["blocks_0"]["bias"], -0.5)  # decay_all: biases too


def test_lars_without_classic_momentum_matches_moco_v3_optimizer():
    """moco-v3 optimizer.LARS: dp = g + wd w; dp *= eta ||w|| / ||dp|| (ndim > 1 only);
    mu = m mu + dp; w -= lr mu -- with an lr that changes between the two steps."""
    wd, eta, m, lrs = 0.1, 0.001, 0.9, (0.5, 2.0)
    rs = np.random.RandomState(0)
    params = {"kernel": rs.randn(3, 2).astype(np.float32), "bias": rs.randn(2).astype(np.float32)}
    grads = [{k: rs.randn(*v.shape).astype(np.float32) for k, v in params.items()} for _ in lrs]
    tx = optim.lars(lambda step: jnp.asarray(lrs)[step], momentum=m, weight_decay=wd,
                    trust_coefficient=eta, classic_momentum=False)
    state, p = tx.init(params), dict(params)
    ref, mu = {k: v.copy() for k, v in params.items()}, {k: np.zeros_like(v) for k, v in params.items()}
    for lr, g in zip(lrs, grads):
        updates, state = tx.update(g, state, p)
        p = {k: p[k] + updates[k] for k in p}
        for k in ref:
            dp = g[k].copy()
            if ref[k].ndim > 1:
                dp = dp + wd * ref[k]
                dp = dp * (eta * np.linalg.norm(ref[k]) / np.linalg.norm(dp))
            mu[k] = m * mu[k] + dp
            ref[k] = ref[k] - lr * mu[k]
    for k in ref:
        np.testing.assert_allclose(np.asarray(p[k]), ref[k], rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- resume

@pytest.mark.slow
def test_killed_run_resumes_teacher_and_queue_exactly(tmp_path):
    config = tiny_config("v2", shuffle_bn="groups", bn_groups=4)
    with config.unlocked():
        config.train.num_steps = 6
        config.train.checkpoint_every_steps = 3
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    train.run(config, full)
    shutil.copytree(full, killed)
    shutil.rmtree(os.path.join(killed, "checkpoints", "6"))  # as if killed after step 3's save
    train.run(config, killed)  # the same command again: resumes from step 3
    abstract = train.Setup(config).abstract_state
    states = []
    for workdir in (full, killed):
        ckpt = checkpoint_lib.Checkpointer(workdir, 3)
        assert ckpt.latest_step() == 6
        states.append(np_tree(ckpt.restore(6, abstract)))
        ckpt.close()
    a, b = states
    for part in ("teacher", "queue", "queue_ptr", "batch_stats"):
        jax.tree.map(np.testing.assert_array_equal, a.model_state[part], b.model_state[part])
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)


# --------------------------------------------------------------------------- MoCo v3

@pytest.mark.slow
def test_moco_v3_tiny_vit_loss_falls_on_digits():
    config = load_preset("moco_digits", "v3_vit")
    with config.unlocked():
        config.data.image_size = 8
        config.model.update(dict(patch_size=4, vit_depth=1, head_hidden_dim=64, head_output_dim=32))
        config.moco.predictor_hidden_dim = 64
        config.train.update(dict(batch_size=64, num_epochs=0.0, num_steps=300))
        config.optim.warmup_epochs = 2.0
        config.eval.enabled = False
    setup, state = build(config)
    step_fn = jax.jit(train.make_train_step(setup.method, setup.tx, setup.lr_fn), donate_argnums=0)
    patch0 = np.asarray(state.params["encoder"]["backbone"]["patch_embed"]["kernel"])
    history = []
    for s in range(300):
        state, metrics = step_fn(state, setup.feeder(s))
        history.append(float(metrics["loss"]))
    first, last = np.mean(history[:20]), np.mean(history[-20:])
    assert np.isfinite(history).all() and last < first - 0.2, (first, last)
    # the frozen patch projection never moved (stop-grad conv1 + frozen_params)
    np.testing.assert_array_equal(
        np.asarray(state.params["encoder"]["backbone"]["patch_embed"]["kernel"]), patch0)


# --------------------------------------------------------------------------- presets

@pytest.mark.slow
@pytest.mark.parametrize("preset,arg,shrink", [
    # ViT-B's fields with 1 block of width 64 (the preset's optimizer, heads and views).
    ("mocov3_imagenet", "vit_base", dict(vit_depth=1, vit_hidden_dim=64, vit_num_heads=2)),
    # ResNet-18 for ResNet-50, shuffle BN across 2 devices: a program a CPU compiles quickly.
    ("mocov2_imagenet", None, dict(backbone="resnet18")),
    ("mocov2_cifar10", None, {}),
])
def test_preset_runs_one_step_under_mock_data(preset, arg, shrink, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    config = load_preset(preset, arg)
    with config.unlocked():
        config.data.image_size = 32
        config.model.update(dict(head_hidden_dim=64, **shrink))
        if preset == "mocov3_imagenet":
            config.moco.predictor_hidden_dim = 64
        else:
            config.moco.queue_size = 64
        config.mesh.num_devices = 2
        config.train.update(dict(batch_size=16, num_epochs=0.0, num_steps=1, log_every_steps=1))
        config.optim.warmup_epochs = 0.0
        config.eval.enabled = False
    with tfds.testing.mock_data(num_examples=32):
        results = train.run(config, str(tmp_path))
    assert results == {}
    with open(os.path.join(str(tmp_path), "metrics.jsonl")) as f:
        assert np.isfinite(json.loads(f.readline())["loss"])
    ckpt = checkpoint_lib.Checkpointer(str(tmp_path), 1)
    assert ckpt.latest_step() == 1
    ckpt.close()
