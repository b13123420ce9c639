"""BYOL, SimSiam, Barlow Twins, VICReg and DINO on the trainer: views as a spec (multi-crop
included), the EMA teacher, DINO's center / last-layer freeze, and the optimizer pieces.

The losses themselves are checked against numpy transcriptions of the reference code in
``test_joint_embedding_losses.py``; the first three losses of each digits config are pinned in
``test_pinned_losses.py``.
"""
from __future__ import annotations

import io
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import drill_helpers
from jaxssl import gradient_transforms, optim, rng, train
from jaxssl import train_state as state_lib
from jaxssl.augment import image as aug
from jaxssl.augment import views as views_lib
from jaxssl.config import load_preset
from jaxssl.data import tfds_images

TINY = dict(train__batch_size=16, train__num_steps=3, train__num_epochs=0.0,
            mesh__num_devices=1, optim__warmup_epochs=0.0, eval__enabled=False)


def setup_of(name, **overrides):
    return train.Setup(load_preset(name, **dict(TINY, **overrides)))


# --------------------------------------------------------------------------- views

def test_one_group_of_two_views_is_augment_two_views():
    cfg = aug.ViewConfig(16, crop_scale=(0.4, 1.0), blur_prob=0.0)
    spec = views_lib.ViewSpec((views_lib.ViewGroup("views", 2, cfg),))
    images = jax.random.randint(jax.random.key(0), (6, 8, 8, 1), 0, 255).astype(jnp.uint8)
    key = rng.step_key(0, "augment", 3)
    got = views_lib.make_views(spec, key, {"image": images}, host_cropped=False)["views"]
    a, b = aug.two_views(key, images, cfg, cfg)
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(a))
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(b))


def test_crop_groups_merge_equal_geometry_only():
    spec = load_preset("dino_digits")
    from jaxssl.methods.dino import DINO
    groups = DINO.view_spec(spec).crop_groups()
    assert [(g.key, g.count, g.size, g.members) for g in groups] == [
        ("image", 2, 16, ("global_1", "global_2")), ("image_1", 4, 8, ("local",))]
    assert groups[1].crop_scale == (0.1, 0.4) and groups[0].crop_scale == (0.4, 1.0)


def test_multicrop_views_are_distinct_per_view_and_a_function_of_seed_and_step():
    setup = setup_of("dino_digits")
    method = setup.method
    batch = setup.feeder(0)
    make = jax.jit(method.make_views)
    v0, again, other = make(batch, jnp.int32(0)), make(batch, jnp.int32(0)), make(batch, jnp.int32(1))
    assert v0["global_1"].shape == (1, 16, 16, 16, 1) and v0["local"].shape == (4, 16, 8, 8, 1)
    for name in v0:
        np.testing.assert_array_equal(np.asarray(v0[name]), np.asarray(again[name]))
        assert not np.allclose(np.asarray(v0[name]), np.asarray(other[name]))
    flat = [np.asarray(v0["global_1"][0]), np.asarray(v0["global_2"][0])]
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            assert not np.allclose(flat[i][0], flat[j][0])
    locals_ = np.asarray(v0["local"])
    assert all(not np.allclose(locals_[i, 0], locals_[j, 0]) for i in range(4) for j in range(i + 1, 4))


class _JpegSource:
    """A random-access source of JPEG records, as ``builder.as_data_source`` with SkipDecoding."""

    def __init__(self, n=6, size=(40, 56)):
        from PIL import Image
        gen = np.random.default_rng(0)
        self.records = []
        for i in range(n):
            img = Image.fromarray(gen.integers(0, 255, size + (3,), dtype=np.uint8))
            buf = io.BytesIO()
            img.save(buf, format="JPEG")
            self.records.append({"image": buf.getvalue(), "label": i % 3})

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]


def test_host_reader_returns_one_entry_per_crop_group_keyed_by_seed_step_row():
    pytest.importorskip("PIL")
    groups = ((2, 24, (0.4, 1.0), (3 / 4, 4 / 3), "bicubic"),
              (3, 12, (0.05, 0.4), (3 / 4, 4 / 3), "bicubic"))
    reader = tfds_images.HostCropReader(_JpegSource(), image_size=24, mode="random",
                                        crop_groups=groups, num_threads=1)
    out = reader(np.array([0, 1, 2]), seed=0, step=5)
    assert out["image"].shape == (3, 2, 24, 24, 3) and out["image_1"].shape == (3, 3, 12, 12, 3)
    again = reader(np.array([1, 2]), seed=0, step=5, row_offset=1)  # a process's slice
    np.testing.assert_array_equal(again["image_1"], out["image_1"][1:])
    later = reader(np.array([0]), seed=0, step=6)
    assert not np.array_equal(later["image"][0], out["image"][0])
    assert not np.array_equal(out["image_1"][0, 0], out["image_1"][0, 1])
    # one group equal to the plain fields gives exactly the plain crops
    plain = tfds_images.HostCropReader(_JpegSource(), image_size=24, mode="random", num_views=2,
                                       crop_scale=(0.4, 1.0), num_threads=1)
    one = tfds_images.HostCropReader(_JpegSource(), image_size=24, mode="random",
                                     crop_groups=groups[:1], num_threads=1)
    np.testing.assert_array_equal(plain(np.array([3]), seed=1, step=2)["image"],
                                  one(np.array([3]), seed=1, step=2)["image"])
    reader.close(), plain.close(), one.close()


# --------------------------------------------------------------------------- teacher

@pytest.mark.parametrize("name", ["byol_digits", "dino_digits"])
def test_teacher_receives_no_gradient_and_follows_the_ema(name):
    setup = setup_of(name)
    method = setup.method
    params, ms = jax.jit(method.init)(jax.random.key(0))
    batch = setup.feeder(0)

    def loss_of_teacher(teacher_params):
        state = {**ms, "teacher": {**ms["teacher"], "params": teacher_params}}
        return method.loss(params, state, batch, jnp.int32(0))[0]

    grads = jax.jit(jax.grad(loss_of_teacher))(ms["teacher"]["params"])
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads))
    state = state_lib.create(setup.init_fn, setup.tx, setup.mesh)
    step_fn = jax.jit(train.make_train_step(method, setup.tx, setup.lr_fn))
    new, _ = step_fn(state, batch)
    m = float(method.teacher.momentum_at(1))
    online = new.params if name == "dino_digits" else {k: new.params[k] for k in ("backbone", "projector")}
    want = jax.tree.map(lambda t, o: m * t + (1 - m) * o, state.model_state["teacher"]["params"], online)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(new.model_state["teacher"]["params"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_dino_center_is_the_ema_of_teacher_outputs_and_last_layer_is_frozen_in_epoch_one():
    setup = setup_of("dino_digits", train__num_steps=0, train__num_epochs=2.0,
                     dino__freeze_last_layer_epochs=1)
    method = setup.method
    spe = setup.steps_per_epoch
    state = state_lib.create(setup.init_fn, setup.tx, setup.mesh)
    step_fn = jax.jit(train.make_train_step(method, setup.tx, setup.lr_fn))
    last0 = np.asarray(state.params["head"]["last_layer"]["kernel_v"])
    assert float(jnp.abs(state.model_state["center"]).max()) == 0.0
    for s in range(spe):
        state, _ = step_fn(state, setup.feeder(s))
    np.testing.assert_array_equal(np.asarray(state.params["head"]["last_layer"]["kernel_v"]), last0)
    assert float(jnp.abs(state.model_state["center"]).max()) > 0.0
    other0 = np.asarray(state.params["head"]["mlp_0"]["kernel"])
    state, _ = step_fn(state, setup.feeder(spe))
    assert not np.array_equal(np.asarray(state.params["head"]["last_layer"]["kernel_v"]), last0)
    assert not np.array_equal(np.asarray(state.params["head"]["mlp_0"]["kernel"]), other0)


def test_dino_teacher_temperature_warms_up_linearly_by_epoch():
    from jaxssl.methods.dino import teacher_temperature
    want = np.concatenate([np.linspace(0.04, 0.07, 30), np.full(10, 0.07)])
    got = [float(teacher_temperature(e, 0.04, 0.07, 30)) for e in range(40)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_dino_resume_is_bit_identical_including_center_and_teacher(tmp_path, monkeypatch):
    from jaxssl import checkpoint
    from jaxssl.data import feeder as feeder_lib
    config = drill_helpers.load_config(
        {"train.num_steps": 6, "train.num_epochs": 0.0, "train.checkpoint_every_steps": 5,
         "train.log_every_steps": 3, "train.batch_size": 32, "optim.warmup_epochs": 0.0,
         "dino.out_dim": 64, "eval.enabled": False},
        path=os.path.join(drill_helpers.ROOT, "configs", "dino_digits.py"))
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
    assert fa.keys() == fb.keys() and "model_state/center" in fa
    assert any(k.startswith("model_state/teacher/") for k in fa)
    for k in fa:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)


# --------------------------------------------------------------------------- optimizer pieces

def test_per_parameter_clipping_is_dino_clip_gradients():
    g = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([[0.1, 0.2]])}
    out, _ = gradient_transforms.clip_by_parameter_norm(1.0).update(g, optax.EmptyState())
    np.testing.assert_allclose(np.asarray(out["a"]), np.array([3.0, 4.0]) * (1.0 / (5.0 + 1e-6)),
                               rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(out["b"]), np.asarray(g["b"]))  # norm < 1: unchanged


def test_weight_decay_schedule_is_a_cosine_from_start_to_end():
    wd = optim.weight_decay_cosine(0.04, 0.4, 100)
    t = np.arange(101)
    want = 0.4 + 0.5 * (0.04 - 0.4) * (1 + np.cos(np.pi * t / 100))
    np.testing.assert_allclose([float(wd(s)) for s in t], want, rtol=1e-5)
    tx = optax.add_decayed_weights(wd)  # optax >= 0.2.7 takes the schedule
    params = {"w": jnp.ones((2,))}
    state = tx.init(params)
    u, state = tx.update({"w": jnp.zeros((2,))}, state, params)
    np.testing.assert_allclose(np.asarray(u["w"]), 0.04, rtol=1e-6)


def test_simsiam_predictor_keeps_the_initial_learning_rate():
    setup = setup_of("simsiam_digits", train__num_steps=20)
    params, _ = jax.jit(setup.method.init)(jax.random.key(0))
    grads = jax.tree.map(jnp.ones_like, params)
    state = setup.tx.init(params)
    steps = []
    for _ in range(20):
        updates, state = jax.jit(setup.tx.update)(grads, state, params)
        steps.append(updates)
    pred = [float(u["predictor"]["dense_1"]["bias"][0]) for u in (steps[0], steps[-1])]
    back = [float(jax.tree.leaves(u["backbone"])[0].ravel()[0]) for u in (steps[0], steps[-1])]
    peak = optim.scaled_learning_rate(setup.config.optim.base_lr, 16, "linear")
    assert pred[0] == pytest.approx(-peak, rel=1e-5)  # SGD step 1: -lr * g (no weight decay on biases)
    assert abs(back[-1]) < abs(back[0]) * 20  # the backbone's lr decays (its momentum grows)
    assert float(setup.lr_fn(19)) < 0.1 * peak


def test_barlow_scales_the_learning_rate_of_vectors_only():
    setup = setup_of("barlow_digits", barlow__bias_lr_scale=0.024)
    scales = setup.method.lr_scales()
    flat = jax.tree_util.tree_flatten_with_path(scales)[0]
    params = jax.eval_shape(lambda: setup.method.init(jax.random.key(0))[0])
    shapes = {jax.tree_util.keystr(p): s.ndim for p, s in jax.tree_util.tree_flatten_with_path(params)[0]}
    for path, value in flat:
        assert float(value) == pytest.approx(0.024 if shapes[jax.tree_util.keystr(path)] <= 1 else 1.0)


def test_online_probe_trains_on_labels_without_touching_the_representation():
    plain = setup_of("byol_digits")
    probed = setup_of("byol_digits", byol__online_probe=True)
    params, ms = jax.jit(probed.method.init)(jax.random.key(0))
    assert params["online_probe"]["kernel"].shape[-1] == 10
    batch = probed.feeder(0)
    assert "label" in batch
    step = jnp.int32(0)

    def grads(method, p):
        return jax.jit(jax.grad(lambda q: method.loss(q, ms, batch, step)[0]))(p)

    g_probe = grads(probed.method, params)
    g_plain = grads(plain.method, {k: v for k, v in params.items() if k != "online_probe"})
    for a, b in zip(jax.tree.leaves(g_probe["backbone"]), jax.tree.leaves(g_plain["backbone"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(g_probe["online_probe"]["kernel"]).max()) > 0
    _, (_, metrics) = jax.jit(probed.method.loss)(params, ms, batch, step)
    assert float(metrics["online_probe_loss"]) == pytest.approx(np.log(10), rel=1e-5)  # zero init


@pytest.mark.slow
@pytest.mark.parametrize("name", ["byol_digits", "dino_digits"])
def test_linear_eval_loads_the_pretrained_backbone_of_the_new_methods(name, tmp_path):
    from jaxssl.checkpoint import load_tree
    from jaxssl.methods.classifier import classifier_config
    pre = load_preset(name, **dict(TINY, train__num_steps=2, train__checkpoint_every_steps=2))
    train.run(pre, str(tmp_path / "pre"))
    c = classifier_config(load_preset(name), "linear_eval")
    with c.unlocked():
        c.train.update(dict(init_from=str(tmp_path / "pre"), batch_size=16, num_steps=2,
                            num_epochs=0.0))
        c.optim.update(dict(warmup_epochs=0.0, warmup_fraction=0.0))
        c.mesh.num_devices = 1
        c.eval.enabled = False
    train.run(c.lock(), str(tmp_path / "lin"))
    stored, _ = load_tree(str(tmp_path / "pre"))
    probe, _ = load_tree(str(tmp_path / "lin"))
    # DINO evaluates its EMA teacher (eval_linear.py --checkpoint_key teacher), BYOL its online net
    network = stored["model_state"]["teacher"] if name == "dino_digits" else stored
    if name == "dino_digits":  # after 2 steps the teacher is not the student
        assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
            jax.tree.leaves(network["params"]["backbone"]),
            jax.tree.leaves(stored["params"]["backbone"])))
    for a, b in zip(jax.tree.leaves(network["params"]["backbone"]),
                    jax.tree.leaves(probe["params"]["backbone"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # frozen, loaded
