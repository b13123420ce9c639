"""solo-learn's LARS (``solo/utils/lars.py``, ``clip_lr=True, exclude_bias_n_norm=True``)
against jaxssl's ``optim.lars_clip_lr``: a numpy transcription of ``LARS.step``."""
import numpy as np
import pytest

from jaxssl import optim
from jaxssl.config import load_preset


def solo_lars_step(params, grads, bufs, lr, *, momentum, weight_decay, eta, eps=1e-8,
                   clip_lr=True, exclude_bias_n_norm=True, nesterov=False):
    """solo/utils/lars.py ``LARS.step`` for one param group, in numpy (in place on copies)."""
    new_params, new_bufs = {}, {}
    for name, p in params.items():
        d_p = grads[name].astype(np.float64)
        p = p.astype(np.float64)
        p_norm, g_norm = np.linalg.norm(p), np.linalg.norm(d_p)
        if p.ndim != 1 or not exclude_bias_n_norm:
            if p_norm != 0 and g_norm != 0:
                lars_lr = p_norm / (g_norm + p_norm * weight_decay + eps)
                lars_lr *= eta
                if clip_lr:  # lr 0 (the warm-up's first step): torch gives inf -> 1
                    lars_lr = min(lars_lr / lr, 1) if lr else 1
                d_p = d_p + weight_decay * p
                d_p = d_p * lars_lr
        if momentum != 0:
            if name not in bufs:
                buf = d_p.copy()
            else:
                buf = bufs[name] * momentum + d_p
            new_bufs[name] = buf
            d_p = d_p + momentum * buf if nesterov else buf
        new_params[name] = p - lr * d_p
    return new_params, new_bufs


@pytest.mark.parametrize("base_lr, wd", [(0.3, 1e-4), (1.0, 1e-5), (0.02, 1e-6)])
def test_lars_clip_lr_is_solo_learn_lars_step(base_lr, wd):
    import jax
    import jax.numpy as jnp
    import ml_collections
    cfg = ml_collections.ConfigDict(optim.default_config().to_dict())
    cfg.update(dict(name="lars", base_lr=base_lr, lr_scaling="none", weight_decay=wd,
                    momentum=0.9, trust_coefficient=0.02, warmup_epochs=2.0, schedule="cosine",
                    lars_classic_momentum=False, lars_clip_lr=True))
    tx, lr_fn = optim.build_optimizer(cfg, global_batch=256, total_steps=12, steps_per_epoch=2)
    rng = np.random.default_rng(0)
    # layers whose trust ratio lands on either side of the lr: big / small weights and grads
    params = {"w_small": rng.normal(size=(6, 5)) * 0.01, "w_big": rng.normal(size=(4, 3, 2)) * 3.0,
              "bias": rng.normal(size=(5,)), "zero": np.zeros((3, 3))}
    jparams = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    state = tx.init(jparams)
    ref, bufs = dict(params), {}
    for step in range(6):
        grads = {k: rng.normal(size=v.shape) * (0.001 if k == "w_big" else 1.0)
                 for k, v in params.items()}
        lr = float(lr_fn(step))
        ref, bufs = solo_lars_step(ref, grads, bufs, lr, momentum=0.9, weight_decay=wd,
                                   eta=0.02)
        updates, state = tx.update(jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), grads),
                                   state, jparams)
        jparams = jax.tree.map(lambda p, u: p + u, jparams, updates)
        for k in params:
            np.testing.assert_allclose(np.asarray(jparams[k]), ref[k], rtol=2e-5, atol=1e-6,
                                       err_msg=f"{k} at step {step}")


def test_clip_changes_the_step_where_the_trust_ratio_exceeds_the_lr():
    import jax.numpy as jnp
    import ml_collections
    cfg = ml_collections.ConfigDict(optim.default_config().to_dict())
    cfg.update(dict(name="lars", base_lr=0.3, lr_scaling="none", weight_decay=0.0, momentum=0.0,
                    trust_coefficient=0.02, warmup_epochs=0.0, schedule="constant",
                    lars_classic_momentum=False))
    w = {"k": jnp.ones((4, 4)) * 10.0}
    g = {"k": jnp.ones((4, 4)) * 1e-3}                       # trust 0.02 * 40 / 0.004 = 200
    plain, _ = optim.build_optimizer(cfg, global_batch=256, total_steps=5, steps_per_epoch=1)
    cfg.lars_clip_lr = True
    clipped, _ = optim.build_optimizer(cfg, global_batch=256, total_steps=5, steps_per_epoch=1)
    u_plain, _ = plain.update(g, plain.init(w), w)
    u_clip, _ = clipped.update(g, clipped.init(w), w)
    np.testing.assert_allclose(np.asarray(u_plain["k"]), -0.3 * 200 * 1e-3, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(u_clip["k"]), -0.3 * 1e-3, rtol=1e-4)  # min(r, lr)


def test_lars_clip_lr_needs_pytorch_momentum():
    import ml_collections
    cfg = ml_collections.ConfigDict(optim.default_config().to_dict())
    cfg.update(dict(name="lars", lars_clip_lr=True, lars_classic_momentum=True, warmup_epochs=0.0))
    with pytest.raises(ValueError, match="lars_clip_lr"):
        optim.build_optimizer(cfg, global_batch=256, total_steps=5, steps_per_epoch=1)


@pytest.mark.parametrize("name", ["byol_cifar10", "barlow_cifar10", "vicreg_cifar10",
                                  "dino_cifar10"])
def test_solo_learn_lars_presets_clip_the_lr(name):
    # solo-learn scripts/pretrain/cifar/{byol,barlow,vicreg,dino}.yaml: clip_lr True, eta 0.02,
    # exclude_bias_n_norm True
    o = load_preset(name).optim
    assert (o.name, o.lars_clip_lr, o.trust_coefficient, o.lars_classic_momentum) == (
        "lars", True, 0.02, False)
