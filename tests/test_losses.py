"""Losses against independent numpy references, on 1 and 8 (fake CPU) devices."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import losses, sharding

nt_xent = jax.jit(losses.nt_xent, static_argnums=2)

TEMP = 0.5


def _rand(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


# --------------------------------------------------------------------------- numpy references

def _np_normalize(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def np_nt_xent_paper(z_a, z_b, t):
    """Paper eq. 1: loop over the 2N anchors, explicit softmax over the other 2N-1 samples."""
    z = np.concatenate([_np_normalize(z_a), _np_normalize(z_b)])
    two_n = z.shape[0]
    n = two_n // 2
    total = 0.0
    for i in range(two_n):
        j = (i + n) % two_n
        others = [k for k in range(two_n) if k != i]
        denom = sum(math.exp(z[i] @ z[k] / t) for k in others)
        total += -math.log(math.exp(z[i] @ z[j] / t) / denom)
    return total / two_n


def np_nt_xent_tf_reference(z_a, z_b, t):
    """SimCLR tf2/objective.py add_contrastive_loss (1 replica): mean(loss_a + loss_b)."""
    h1, h2 = _np_normalize(z_a), _np_normalize(z_b)
    n = h1.shape[0]
    labels = np.eye(n, 2 * n)
    masks = np.eye(n)
    logits_aa = h1 @ h1.T / t - masks * 1e9
    logits_bb = h2 @ h2.T / t - masks * 1e9
    logits_ab = h1 @ h2.T / t
    logits_ba = h2 @ h1.T / t

    def softmax_ce(lab, logits):
        logits = logits - logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return -(lab * logp).sum(axis=1)

    loss_a = softmax_ce(labels, np.concatenate([logits_ab, logits_aa], 1))
    loss_b = softmax_ce(labels, np.concatenate([logits_ba, logits_bb], 1))
    return np.mean(loss_a + loss_b)


def _np_ce(logits, label):
    logits = np.asarray(logits, np.float64)
    m = logits.max()
    return m + math.log(np.exp(logits - m).sum()) - logits[label]


# --------------------------------------------------------------------------- nt_xent, 1 device

@pytest.mark.parametrize("scale", [1.0, 7.3])
def test_nt_xent_matches_paper_loop(scale):
    z_a, z_b = _rand((6, 5), 0, scale), _rand((6, 5), 1, scale)
    got = nt_xent(jnp.asarray(z_a), jnp.asarray(z_b), TEMP)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), np_nt_xent_paper(z_a, z_b, TEMP), rtol=1e-5)


def test_nt_xent_is_half_of_tf_reference():
    z_a, z_b = _rand((8, 4), 2), _rand((8, 4), 3)
    got = float(nt_xent(jnp.asarray(z_a), jnp.asarray(z_b), 0.1))
    np.testing.assert_allclose(2 * got, np_nt_xent_tf_reference(z_a, z_b, 0.1), rtol=1e-5)


def test_nt_xent_gradient_vs_finite_differences():
    z_a, z_b = _rand((4, 3), 4), _rand((4, 3), 5)
    g_a, g_b = jax.jit(jax.grad(losses.nt_xent, argnums=(0, 1)), static_argnums=2)(
        jnp.asarray(z_a), jnp.asarray(z_b), TEMP)
    h = 1e-5
    for arr, grad, which in ((z_a, g_a, 0), (z_b, g_b, 1)):
        fd = np.zeros(arr.shape)
        for idx in np.ndindex(arr.shape):
            plus, minus = arr.astype(np.float64), arr.astype(np.float64)
            plus[idx] += h
            minus[idx] -= h
            args_p = (plus, z_b) if which == 0 else (z_a, plus)
            args_m = (minus, z_b) if which == 0 else (z_a, minus)
            fd[idx] = (np_nt_xent_paper(*args_p, TEMP) - np_nt_xent_paper(*args_m, TEMP)) / (2 * h)
        np.testing.assert_allclose(np.asarray(grad), fd, atol=2e-5)


def test_nt_xent_scale_invariant_and_collapse_value():
    z_a, z_b = jnp.asarray(_rand((5, 4), 6)), jnp.asarray(_rand((5, 4), 7))
    np.testing.assert_allclose(float(nt_xent(z_a, z_b, TEMP)),
                               float(nt_xent(3.0 * z_a, 0.01 * z_b, TEMP)), rtol=1e-6)
    # Collapse (every projection identical): all 2N-1 candidates tie, loss = ln(2N - 1).
    same = jnp.ones((5, 4))
    np.testing.assert_allclose(float(nt_xent(same, same, TEMP)), math.log(9), rtol=1e-6)


def test_nt_xent_bf16_inputs_and_zero_rows_are_finite():
    z_a = jnp.asarray(_rand((4, 8), 8)).at[0].set(0.0)
    z_b = jnp.asarray(_rand((4, 8), 9))
    val, grads = jax.jit(jax.value_and_grad(losses.nt_xent, argnums=(0, 1)), static_argnums=2)(
        z_a.astype(jnp.bfloat16), z_b.astype(jnp.bfloat16), TEMP)
    assert val.dtype == jnp.float32 and np.isfinite(float(val))
    assert all(np.isfinite(np.asarray(g, np.float32)).all() for g in grads)


# --------------------------------------------------------------------------- sharded / blockwise

N, D, IN_DIM = 32, 6, 5


def _linear_then(loss_fn):
    """Loss of a tiny linear map applied before the contrastive loss.

    ``d_a``, ``d_b`` are zero offsets added to the projections: the gradients w.r.t. them are the
    gradients w.r.t. ``z_a``, ``z_b``, so one compiled function gives every gradient we check.
    """
    def f(w, b, d_a, d_b, x_a, x_b):
        return loss_fn(x_a @ w + b[None, :] + d_a, x_b @ w + b[None, :] + d_b)
    return f


def _value_and_grads(loss_fn, mesh, x_a, x_b, w, b):
    """(loss, grads w.r.t. (w, b, z_a, z_b)) with the batch sharded over ``mesh``'s devices."""
    data = sharding.batch_sharding(mesh)
    rep = sharding.replicated(mesh)
    zeros = jnp.zeros((x_a.shape[0], w.shape[1]), jnp.float32)
    x_a, x_b, d_a, d_b = (jax.device_put(v, data) for v in (x_a, x_b, zeros, zeros))
    w, b = jax.device_put(w, rep), jax.device_put(b, rep)
    vg = jax.jit(jax.value_and_grad(_linear_then(loss_fn), argnums=(0, 1, 2, 3)))
    return vg(w, b, d_a, d_b, x_a, x_b)


@pytest.fixture(scope="module")
def problem():
    x_a, x_b = jnp.asarray(_rand((N, IN_DIM), 10)), jnp.asarray(_rand((N, IN_DIM), 11))
    w, b = jnp.asarray(_rand((IN_DIM, D), 12)), jnp.asarray(_rand((D,), 13))
    one_device = sharding.make_mesh(devices=jax.devices()[:1])
    reference = _value_and_grads(lambda za, zb: losses.nt_xent(za, zb, TEMP), one_device, x_a, x_b, w, b)
    return (x_a, x_b, w, b), reference


def _assert_same(got, want, atol=1e-5):
    (v_got, g_got), (v_want, g_want) = got, want
    np.testing.assert_allclose(float(v_got), float(v_want), atol=atol, rtol=0)
    for a, b in zip(g_got, g_want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=0)


def test_nt_xent_sharded_over_8_devices_matches_1_device(problem):
    inputs, reference = problem
    assert np.abs(np.asarray(reference[1][0])).max() > 1e-3  # gradients are not trivially zero
    got = _value_and_grads(lambda za, zb: losses.nt_xent(za, zb, TEMP), sharding.make_mesh(8), *inputs)
    _assert_same(got, reference)


@pytest.mark.parametrize("block_size", [8, 5, 100])  # divides 2N=64, does not, exceeds it
def test_nt_xent_blockwise_8_devices_matches_nt_xent(problem, block_size):
    inputs, reference = problem
    mesh = sharding.make_mesh(8)
    loss = lambda za, zb: losses.nt_xent_blockwise(za, zb, TEMP, mesh=mesh, block_size=block_size)
    _assert_same(_value_and_grads(loss, mesh, *inputs), reference)


@pytest.mark.parametrize("block_size", [16, 7])
def test_nt_xent_blockwise_without_mesh_matches_nt_xent(problem, block_size):
    inputs, reference = problem
    loss = lambda za, zb: losses.nt_xent_blockwise(za, zb, TEMP, block_size=block_size)
    _assert_same(_value_and_grads(loss, sharding.make_mesh(devices=jax.devices()[:1]), *inputs), reference)


def _max_intermediate_size(jaxpr, only_inside_shard_map: bool = False, inside: bool = False) -> int:
    """Largest element count of any value produced inside a (closed) jaxpr, recursively.

    With ``only_inside_shard_map`` only values inside ``shard_map`` bodies count: their shapes are
    per device, whereas the shard_map's own outputs are global views over all devices.
    """
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    biggest = 0
    for eqn in jaxpr.eqns:
        if inside or not only_inside_shard_map:
            for v in eqn.outvars:
                biggest = max(biggest, int(np.prod(getattr(v.aval, "shape", ()))))
        sub_inside = inside or eqn.primitive.name == "shard_map"
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (tuple, list)) else (p,)):
                if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    biggest = max(biggest, _max_intermediate_size(sub, only_inside_shard_map, sub_inside))
    return biggest


def test_nt_xent_blockwise_never_builds_the_full_similarity_matrix():
    """Forward + backward keep O(rows * block) logits: no [rows, 2N] block anywhere."""
    z_a, z_b = jnp.asarray(_rand((N, D), 14)), jnp.asarray(_rand((N, D), 15))
    block = 5
    # 1-device path: 2N = 64 anchors; the plain loss builds [64, 64], the blockwise one [64, 5].
    def biggest(loss, **kw):
        return _max_intermediate_size(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(z_a, z_b), **kw)
    assert biggest(lambda a, b: losses.nt_xent(a, b, TEMP)) >= (2 * N) ** 2  # the probe can tell
    one_dev = biggest(lambda a, b: losses.nt_xent_blockwise(a, b, TEMP, block_size=block))
    assert 2 * N * block <= one_dev < 2 * N * 2 * N // 4, one_dev
    # 8 devices: per device 2n = 8 anchors; a [8, 64] row block must not appear, [8, 5] does.
    mesh = sharding.make_mesh(8)
    per_dev = biggest(lambda a, b: losses.nt_xent_blockwise(a, b, TEMP, mesh=mesh, block_size=block),
                      only_inside_shard_map=True)
    local_anchors = 2 * N // 8
    # The largest per-device values are the gathered [2N, D] columns (D=6 < 2n=8).
    assert per_dev <= 2 * N * D < local_anchors * 2 * N, per_dev


def test_nt_xent_blockwise_rejects_indivisible_batch():
    mesh = sharding.make_mesh(8)
    z = jnp.ones((12, 3))
    with pytest.raises(ValueError, match="not divisible by the 8 devices"):
        losses.nt_xent_blockwise(z, z, TEMP, mesh=mesh)


# --------------------------------------------------------------------------- MoCo

def test_info_nce_matches_numpy_and_stops_key_gradients():
    q, k = _rand((5, 4), 20), _rand((5, 4), 21)
    queue = _np_normalize(_rand((7, 4), 22)).astype(np.float32)
    t = 0.2
    qn, kn = _np_normalize(q), _np_normalize(k)
    want = np.mean([_np_ce(np.concatenate([[qn[i] @ kn[i]], queue @ qn[i]]) / t, 0) for i in range(5)])
    value_and_grads = jax.jit(jax.value_and_grad(losses.info_nce, argnums=(0, 1, 2)), static_argnums=3)
    got, (g_q, g_k, g_queue) = value_and_grads(jnp.asarray(q), jnp.asarray(k), jnp.asarray(queue), t)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    assert np.abs(np.asarray(g_q)).max() > 0
    assert not np.any(np.asarray(g_k)) and not np.any(np.asarray(g_queue))


def test_mocov3_contrastive_matches_numpy_and_stops_key_gradient():
    q, k = _rand((6, 4), 23), _rand((6, 4), 24)
    t = 0.2
    logits = _np_normalize(q) @ _np_normalize(k).T / t
    want = np.mean([_np_ce(logits[i], i) for i in range(6)]) * 2 * t
    got, (g_q, g_k) = jax.jit(jax.value_and_grad(losses.mocov3_contrastive, argnums=(0, 1)),
                              static_argnums=2)(jnp.asarray(q), jnp.asarray(k), t)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    assert np.abs(np.asarray(g_q)).max() > 0
    assert not np.any(np.asarray(g_k))


# --------------------------------------------------------------------------- masked LM

def test_masked_lm_loss_matches_numpy_with_zero_weight_rows():
    b, p, v = 3, 4, 11
    logits = _rand((b, p, v), 30, 3.0)
    targets = np.random.default_rng(31).integers(0, v, size=(b, p)).astype(np.int32)
    targets[0, 0] = logits[0, 0].argmax()  # at least one correct prediction
    weights = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]], np.float32)
    ce = np.array([[_np_ce(logits[i, j], targets[i, j]) for j in range(p)] for i in range(b)])
    correct = (logits.argmax(-1) == targets).astype(np.float64)
    loss, metrics = losses.masked_lm_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights))
    np.testing.assert_allclose(float(loss), (weights * ce).sum() / weights.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["correct"]), (weights * correct).sum())
    np.testing.assert_allclose(float(metrics["weight_sum"]), 5.0)
    np.testing.assert_allclose(float(metrics["ce_sum"]), (weights * ce).sum(), rtol=1e-5)
    # All-zero weights: loss 0, not NaN.
    zero_loss, _ = losses.masked_lm_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.zeros((b, p)))
    assert float(zero_loss) == 0.0


# --------------------------------------------------------------------------- MAE

def _np_patchify(images, p):
    """Explicit loops in MAE's order: patches row-major, pixels (row, col, channel)."""
    b, h, w, c = images.shape
    out = []
    for img in images:
        patches = []
        for gi in range(h // p):
            for gj in range(w // p):
                patches.append(img[gi * p:(gi + 1) * p, gj * p:(gj + 1) * p, :].reshape(-1))
        out.append(patches)
    return np.asarray(out)


@pytest.mark.parametrize("hw", [(8, 8), (4, 12)])
def test_patchify_order_and_round_trip(hw):
    images = _rand((2, *hw, 3), 40)
    patches = losses.patchify(jnp.asarray(images), 4)
    np.testing.assert_array_equal(np.asarray(patches), _np_patchify(images, 4))
    grid = (hw[0] // 4, hw[1] // 4)
    back = losses.unpatchify(patches, 4, grid_hw=None if grid[0] == grid[1] else grid)
    np.testing.assert_array_equal(np.asarray(back), images)


def test_mae_loss_norm_pix_matches_numpy_and_ignores_visible_patches():
    pred = _rand((2, 4, 12), 41)
    target = _rand((2, 4, 12), 42, 2.0) + 0.5
    mask = np.array([[1, 0, 1, 0], [0, 0, 1, 1]], np.float32)
    loss = jax.jit(losses.mae_loss, static_argnums=3)
    mean = target.mean(-1, keepdims=True)
    var = target.var(-1, ddof=1, keepdims=True)  # torch.Tensor.var default, as MAE
    norm_t = (target - mean) / np.sqrt(var + 1e-6)
    for norm_pix, t in ((True, norm_t), (False, target)):
        want = (((pred - t) ** 2).mean(-1) * mask).sum() / mask.sum()
        np.testing.assert_allclose(float(loss(pred, target, mask, norm_pix)), want, rtol=1e-5)
    changed = target.copy()
    changed[mask == 0] = 123.0  # visible patches' targets do not enter the loss
    for norm_pix in (True, False):
        np.testing.assert_allclose(float(loss(pred, changed, mask, norm_pix)),
                                   float(loss(pred, target, mask, norm_pix)), rtol=1e-6)
    changed[mask == 1] += 1.0  # masked ones do
    assert abs(float(loss(pred, changed, mask, False)) - float(loss(pred, target, mask, False))) > 0.1
