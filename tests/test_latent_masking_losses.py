"""KoLeo, Sinkhorn-Knopp, iBOT's patch loss and block masks against numpy transcriptions of
their reference code.

Each ``np_*`` below transcribes the reference line by line in float64 (torch ops spelled in
numpy), including its distribution over ``world`` GPUs (per-GPU chunks and all-reduces).
jaxssl's functions take the global batch; on one device and sharded over 8 fake CPU devices,
on ``Auto`` and ``Explicit`` meshes, they must equal the reference's global objective, and
their gradients must equal finite differences of it.

References (file, commit):
  KoLeo          facebookresearch/dinov2 dinov2/loss/koleo_loss.py ``KoLeoLoss`` (b8931f7)
  Sinkhorn-Knopp facebookresearch/dinov2 dinov2/loss/dino_clstoken_loss.py
                 ``DINOLoss.sinkhorn_knopp_teacher`` and ibot_patch_loss.py's masked variant
  iBOT patch     facebookresearch/dinov2 dinov2/loss/ibot_patch_loss.py ``iBOTPatchLoss.forward``
                 / ``forward_masked``; bytedance/ibot main_ibot.py ``iBOTLoss`` (da316d8)
  block masks    facebookresearch/dinov2 dinov2/data/masking.py ``MaskingGenerator``,
                 dinov2/data/collate.py ``collate_data_and_cast``
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from jaxssl import losses, rng, sharding
from jaxssl.augment import patch_masking


def _rand(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def np_log_softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


# --------------------------------------------------------------------------- numpy references

def np_koleo(x, eps=1e-8):
    """``KoLeoLoss.forward``: F.normalize, ``pairwise_NNs_inner`` (diagonal filled with -1,
    ``torch.max(dots, dim=1)``), ``nn.PairwiseDistance(2, eps)``, ``-log(d + eps).mean()``."""
    x = np.asarray(x, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)
    dots = x @ x.T
    n = x.shape[0]
    dots.reshape(-1)[:: (n + 1)] = -1
    nearest = np.argmax(dots, axis=1)
    distances = np.linalg.norm(x - x[nearest] + eps, axis=-1)
    return float(-np.log(distances + eps).mean())


def np_sinkhorn_knopp(teacher_output, teacher_temp, n_iterations=3, world=1):
    """``DINOLoss.sinkhorn_knopp_teacher`` on ``world`` GPUs (each holds a contiguous chunk of
    rows; ``dist.all_reduce`` sums over them). Returns the global ``[N, K]``."""
    chunks = np.split(np.asarray(teacher_output, np.float64), world, axis=0)
    qs = [np.exp(c / teacher_temp).T for c in chunks]           # K x B_local
    b = qs[0].shape[1] * world
    k = qs[0].shape[0]
    sum_q = sum(q.sum() for q in qs)
    qs = [q / sum_q for q in qs]
    for _ in range(n_iterations):
        sum_of_rows = sum(q.sum(axis=1, keepdims=True) for q in qs)
        qs = [q / sum_of_rows / k for q in qs]
        qs = [q / q.sum(axis=0, keepdims=True) / b for q in qs]
    return np.concatenate([(q * b).T for q in qs], axis=0)


def np_ibot_patch_loss(student, teacher_probs, masks, student_temp=0.1):
    """``iBOTPatchLoss.forward``."""
    t, s = np.asarray(teacher_probs, np.float64), np.asarray(student, np.float64)
    m = np.asarray(masks, np.float64)
    loss = np.sum(t * np_log_softmax(s / student_temp), axis=-1)
    loss = np.sum(loss * m, axis=-1) / np.maximum(m.sum(axis=-1), 1.0)
    return float(-loss.mean())


def np_ibot_forward_masked(student, teacher_probs, masks, student_temp=0.1):
    """``iBOTPatchLoss.forward_masked`` with ``collate_data_and_cast``'s ``masks_weight`` on
    the buffers of masked patches (``index_select`` over ``mask_indices_list``)."""
    m = np.asarray(masks, bool)
    flat = m.reshape(-1)
    s = np.asarray(student, np.float64).reshape(-1, student.shape[-1])[flat]
    t = np.asarray(teacher_probs, np.float64).reshape(-1, student.shape[-1])[flat]
    weights = np.broadcast_to((1 / np.maximum(m.sum(-1), 1.0))[:, None], m.shape)[m]
    loss = np.sum(t * np_log_softmax(s / student_temp), axis=-1) * weights
    return float(-loss.sum() / m.shape[0])


def _finite_difference_grad(f, x, h=1e-6):
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += h
        minus[idx] -= h
        grad[idx] = (f(plus) - f(minus)) / (2 * h)
    return grad


def _assert_grad_close(got, want, rtol=2e-4):
    assert np.abs(want).max() > 1e-3, "reference gradient is trivially zero"
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol,
                               atol=rtol * np.abs(want).max())


# --------------------------------------------------------------------------- KoLeo

@pytest.mark.parametrize("n,d,scale", [(8, 5, 1.0), (16, 3, 10.0), (2, 4, 0.1)])
def test_koleo_matches_reference(n, d, scale):
    x = _rand((n, d), n + d, scale)
    got = jax.jit(losses.koleo_loss)(jnp.asarray(x))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), np_koleo(x), rtol=1e-5)


def test_koleo_gradient_vs_finite_differences():
    x = _rand((6, 4), 7)
    got = jax.jit(jax.grad(losses.koleo_loss))(jnp.asarray(x))
    _assert_grad_close(got, _finite_difference_grad(np_koleo, x))


def test_koleo_spread_points_score_lower_and_duplicates_stay_finite():
    spread = np.eye(4, dtype=np.float32)                       # orthogonal: far neighbours
    clustered = np.eye(4, dtype=np.float32) * 0.01 + 1.0       # all near one direction
    assert float(losses.koleo_loss(jnp.asarray(spread))) < float(losses.koleo_loss(jnp.asarray(clustered)))
    dup = jnp.ones((4, 3))                                     # distance 0: -log(sqrt(D) eps + eps)
    val, g = jax.value_and_grad(losses.koleo_loss)(dup)
    assert np.isfinite(float(val)) and np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_allclose(float(val), np_koleo(np.ones((4, 3))), rtol=1e-5)
    with pytest.raises(ValueError, match="N >= 2"):
        losses.koleo_loss(jnp.ones((1, 3)))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        losses.koleo_loss(jnp.ones((2, 3, 4)))


# --------------------------------------------------------------------------- Sinkhorn-Knopp

@pytest.mark.parametrize("temp,iters", [(0.05, 3), (0.07, 1), (1.0, 10)])
def test_sinkhorn_knopp_matches_reference_and_its_world_split(temp, iters):
    logits = _rand((16, 6), 11, 0.2)
    got = jax.jit(losses.sinkhorn_knopp, static_argnums=(2,))(jnp.asarray(logits), temp, iters)
    want = np_sinkhorn_knopp(logits, temp, iters)
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(np_sinkhorn_knopp(logits, temp, iters, world=4), want, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(got).sum(axis=1), 1.0, rtol=1e-5)   # assignments


def test_sinkhorn_knopp_large_logits_no_overflow_traced_temp_and_no_gradient():
    # l / tau up to ~112: exp overflows fp32 in the reference (> 88); the spread stays ~50.
    logits = 3.5 + np.clip(_rand((8, 5), 12, 0.5), -1.0, 1.0)
    got = jax.jit(losses.sinkhorn_knopp)(jnp.asarray(logits), jnp.float32(0.04))
    want = np_sinkhorn_knopp(logits - logits.max(), 0.04)   # same math, shifted (it cancels)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-6)
    assert np.all(np.isfinite(np.asarray(got)))
    g = jax.grad(lambda l: jnp.sum(losses.sinkhorn_knopp(l, 0.1) * jnp.arange(5.0)[None, :]))(
        jnp.asarray(logits))
    assert not np.any(np.asarray(g))


def test_sinkhorn_knopp_valid_rows_equal_the_subset():
    logits = _rand((10, 4), 13, 0.3)
    valid = np.array([1, 1, 0, 1, 0, 1, 1, 1, 0, 1], bool)
    got = np.asarray(losses.sinkhorn_knopp(jnp.asarray(logits), 0.1, 3, valid=jnp.asarray(valid)))
    np.testing.assert_allclose(got[valid], np_sinkhorn_knopp(logits[valid], 0.1, 3), rtol=2e-5)
    assert not np.any(got[~valid])
    with pytest.raises(ValueError, match="teacher_temp"):
        losses.sinkhorn_knopp(jnp.asarray(logits), 0.0)


# --------------------------------------------------------------------------- iBOT patch loss

def _ibot_inputs(n, p, k, seed, scale=3.0, ratio=0.4):
    student = _rand((n, p, k), seed, scale)
    teacher = np.asarray(jax.nn.softmax(_rand((n, p, k), seed + 1, scale) / 0.5, axis=-1), np.float32)
    mask = np.random.default_rng(seed + 2).random((n, p)) < ratio
    mask[0] = False                                      # an unmasked image still counts in N
    return student, teacher, mask


@pytest.mark.parametrize("temp", [0.1, 0.2])
def test_ibot_patch_loss_matches_reference_forward_and_forward_masked(temp):
    student, teacher, mask = _ibot_inputs(6, 9, 7, 20)
    got = jax.jit(losses.ibot_patch_loss)(jnp.asarray(student), jnp.asarray(teacher),
                                          jnp.asarray(mask), temp)
    assert got.dtype == jnp.float32
    want = np_ibot_patch_loss(student, teacher, mask, temp)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    np.testing.assert_allclose(np_ibot_forward_masked(student, teacher, mask, temp), want, rtol=1e-12)
    # The gathered form (a buffer of masked rows padded to a static size, as the methods use).
    flat = mask.reshape(-1)
    idx = np.nonzero(flat)[0]
    pad = 5
    rows = np.concatenate([idx, np.zeros(pad, int)])
    weights = np.concatenate([(1.0 / mask.sum(-1).clip(min=1))[idx // mask.shape[1]], np.zeros(pad)])
    gathered = losses.ibot_patch_loss_gathered(
        jnp.asarray(student.reshape(-1, 7)[rows]), jnp.asarray(teacher.reshape(-1, 7)[rows]),
        jnp.asarray(weights, jnp.float32), mask.shape[0], temp)
    np.testing.assert_allclose(float(gathered), want, rtol=1e-5)


def test_ibot_patch_loss_gradient_and_no_teacher_gradient():
    student, teacher, mask = _ibot_inputs(3, 4, 5, 21, scale=1.0)
    g_s, g_t = jax.jit(jax.grad(losses.ibot_patch_loss, argnums=(0, 1)))(
        jnp.asarray(student), jnp.asarray(teacher), jnp.asarray(mask))
    want = _finite_difference_grad(lambda s: np_ibot_patch_loss(s, teacher, mask), student)
    _assert_grad_close(g_s, want)
    assert not np.any(np.asarray(g_t))
    assert not np.any(np.asarray(g_s)[~mask])            # unmasked patches get no gradient


def test_ibot_patch_loss_uniform_student_gives_log_k_and_rejects_bad_shapes():
    _, teacher, mask = _ibot_inputs(4, 6, 7, 22)
    mask[1:, 0] = True
    got = losses.ibot_patch_loss(jnp.full((4, 6, 7), 1.5), jnp.asarray(teacher), jnp.asarray(mask))
    np.testing.assert_allclose(float(got), math.log(7) * 3 / 4, rtol=1e-6)   # image 0: no mask
    with pytest.raises(ValueError, match=r"mask"):
        losses.ibot_patch_loss(jnp.ones((4, 6, 7)), jnp.ones((4, 6, 7)), jnp.ones((4, 5), bool))


# --------------------------------------------------------------------------- 8 devices == 1 device

N_SHARDED = 16  # 2 rows per device on 8 devices


def _mesh(n_dev, axis_type):
    if axis_type == "auto":
        return sharding.make_mesh(devices=jax.devices()[:n_dev])
    return jax.make_mesh((n_dev,), (sharding.DATA_AXIS,), axis_types=(AxisType.Explicit,),
                         devices=jax.devices()[:n_dev])


def _sharded_value_and_grads(loss_fn, arrays, mesh, explicit):
    """``value_and_grad`` of ``loss_fn(first @ w, *rest)``, every array split over ``mesh`` on
    axis 0; ``w`` a replicated mixing matrix, so its gradient sums over the sharded batch."""
    def spec(a):
        return P(*([sharding.DATA_AXIS] + [None] * (a.ndim - 1)))

    placed = [jax.device_put(jnp.asarray(a), NamedSharding(mesh, spec(a))) for a in arrays]
    f = arrays[0].shape[-1]
    w = jax.device_put(jnp.asarray(np.eye(f) + _rand((f, f), 99, 0.1), jnp.float32),
                       NamedSharding(mesh, P()))

    def mixed(w, first, *rest):
        return loss_fn(jnp.einsum("...f,fg->...g", first, w,
                                  precision=jax.lax.Precision.HIGHEST), *rest)

    vg = jax.jit(jax.value_and_grad(mixed, argnums=(0, 1)))
    if explicit:
        with jax.set_mesh(mesh):
            return vg(w, *placed)
    return vg(w, *placed)


def _cases():
    x = _rand((N_SHARDED, 6), 40)
    logits = _rand((N_SHARDED, 6), 41, 0.5)
    student, teacher, mask = _ibot_inputs(N_SHARDED, 5, 6, 42)
    weights = np.arange(1.0, 7.0)
    return {
        "koleo": (losses.koleo_loss, (x,), np_koleo),
        # No gradient by design: the value (a weighted sum of the targets) is what is compared.
        "sinkhorn_knopp": (lambda l: jnp.sum(losses.sinkhorn_knopp(l, 0.1) * jnp.asarray(weights)[None, :]),
                           (logits,), lambda l: float(np.sum(np_sinkhorn_knopp(l, 0.1, world=8) * weights))),
        "ibot_patch": (losses.ibot_patch_loss, (student, teacher, mask),
                       lambda s, t, m: np_ibot_patch_loss(s, t, m)),
    }


CASES = _cases()


@pytest.fixture(scope="module")
def one_device_results():
    return {name: _sharded_value_and_grads(fn, arrays, _mesh(1, "auto"), explicit=False)
            for name, (fn, arrays, _) in CASES.items()}


@pytest.mark.parametrize("axis_type", ["auto", "explicit"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_sharded_over_8_devices_equals_1_device_and_reference(name, axis_type, one_device_results):
    fn, arrays, np_ref = CASES[name]
    value, grads = _sharded_value_and_grads(fn, arrays, _mesh(8, axis_type),
                                            explicit=axis_type == "explicit")
    want_value, want_grads = one_device_results[name]
    np.testing.assert_allclose(float(value), float(want_value), rtol=1e-6, atol=1e-6)
    if name != "sinkhorn_knopp":
        assert np.abs(np.asarray(want_grads[0])).max() > 1e-3
    for got, want in zip(grads, want_grads):
        scale = max(np.abs(np.asarray(want)).max(), 1e-6)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5 * scale)
    w = np.eye(arrays[0].shape[-1]) + _rand((arrays[0].shape[-1],) * 2, 99, 0.1).astype(np.float64)
    mixed_first = np.asarray(arrays[0], np.float64) @ w
    np.testing.assert_allclose(float(value), np_ref(mixed_first, *arrays[1:]), rtol=2e-5)
    if name != "sinkhorn_knopp":     # and the gradient w.r.t. the inputs is the reference's
        fd = _finite_difference_grad(lambda a: np_ref(a @ w, *arrays[1:]),
                                     np.asarray(arrays[0], np.float64)) if name == "koleo" else None
        if fd is not None:
            _assert_grad_close(grads[1], fd, rtol=5e-4)


# --------------------------------------------------------------------------- block masks

def _neighbour_share(masks, grid):
    """Share of masked cells with at least 2 masked 4-neighbours (blocks: most; scattered: few)."""
    m = masks.reshape(-1, *grid)
    pad = np.pad(m, ((0, 0), (1, 1), (1, 1)))
    nb = (pad[:, :-2, 1:-1].astype(int) + pad[:, 2:, 1:-1] + pad[:, 1:-1, :-2] + pad[:, 1:-1, 2:])
    return float((nb[m] >= 2).mean())


def _components(mask_hw):
    """4-connected components of a [H, W] bool mask, as lists of cells."""
    seen, comps = np.zeros_like(mask_hw), []
    for start in zip(*np.nonzero(mask_hw)):
        if seen[start]:
            continue
        stack, cells = [start], []
        seen[start] = True
        while stack:
            a, b = stack.pop()
            cells.append((a, b))
            for x, y in ((a + 1, b), (a - 1, b), (a, b + 1), (a, b - 1)):
                if 0 <= x < mask_hw.shape[0] and 0 <= y < mask_hw.shape[1] \
                        and mask_hw[x, y] and not seen[x, y]:
                    seen[x, y] = True
                    stack.append((x, y))
        comps.append(cells)
    return comps


def np_masking_generator_bounds(batch, n, ratio, prob):
    """``collate_data_and_cast``: per masked image the target ``int(N * U(r_i, r_{i+1}))``."""
    k = int(batch * prob)
    r = np.linspace(ratio[0], ratio[1], k + 1, dtype=np.float32)
    return k, [(int(n * float(r[i])), int(n * float(r[i + 1]))) for i in range(k)]


@pytest.fixture(scope="module")
def masks_14():
    fn = jax.jit(patch_masking.blockwise_masks, static_argnums=(1, 2))
    return np.asarray(fn(rng.step_key(0, "mask", 3), 32, (14, 14)))


def test_blockwise_masks_counts_follow_the_stratified_ratios(masks_14):
    assert masks_14.shape == (32, 196) and masks_14.dtype == bool
    counts = masks_14.sum(axis=1)
    k, bounds = np_masking_generator_bounds(32, 196, (0.1, 0.5), 0.5)
    assert int((counts > 0).sum()) == k                     # exactly int(B * prob) images masked
    # Sorted, the masked counts fall in the stratified bins' ranges (never above the target;
    # the generator may stop a little short when no block fits).
    masked = np.sort(counts[counts > 0])
    for c, (lo, hi) in zip(masked, bounds):
        assert c <= hi and c >= 0.6 * lo, (c, lo, hi)
    assert counts.sum() <= patch_masking.blockwise_mask_budget(32, 196)


def test_blockwise_masks_are_made_of_rectangles(masks_14):
    # Blocks, not scattered patches: most masked cells have >= 2 masked neighbours, unlike a
    # uniformly random mask (MAE's) with the same counts per image.
    share = _neighbour_share(masks_14, (14, 14))
    rs = np.random.default_rng(0)
    scattered = np.stack([rs.permutation(196) < c for c in masks_14.sum(axis=1)])
    assert share > 0.85 and _neighbour_share(scattered, (14, 14)) < 0.5, share
    # And with one block's worth of patches the mask is exactly one full rectangle: target
    # 12 = min_num_patches, no cap: the first block that fits (h * w <= 12) is taken whole.
    one = jax.jit(jax.vmap(lambda k: patch_masking._block_mask_one(
        k, jnp.int32(12), (14, 14), 12.0, 196.0, (math.log(0.3), math.log(1 / 0.3)))))
    for m in np.asarray(one(jax.random.split(jax.random.key(0), 8))).reshape(8, 14, 14):
        rows, cols = np.nonzero(m)
        box = m[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert 0 < m.sum() <= 12
        if len(_components(m)) == 1:
            assert box.all()      # a single component is a full rectangle


def test_blockwise_masks_deterministic_and_key_dependent():
    fn = jax.jit(patch_masking.blockwise_masks, static_argnums=(1, 2))
    a = np.asarray(fn(rng.step_key(0, "mask", 5), 8, (6, 6)))
    b = np.asarray(fn(rng.step_key(0, "mask", 5), 8, (6, 6)))
    c = np.asarray(fn(rng.step_key(0, "mask", 6), 8, (6, 6)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("prob,ratio", [(0.25, (0.2, 0.6)),
                                        pytest.param(0.0, (0.1, 0.5), marks=pytest.mark.slow),
                                        pytest.param(1.0, (0.3, 0.3), marks=pytest.mark.slow)])
def test_blockwise_masks_prob_share_and_ratio_ranges(prob, ratio):
    b, grid = 16, (8, 8)
    m = np.asarray(patch_masking.blockwise_masks(jax.random.key(1), b, grid, ratio, prob))
    counts = m.sum(axis=1)
    k, bounds = np_masking_generator_bounds(b, 64, ratio, prob)
    assert int((counts > 0).sum()) <= k
    assert int((counts > 0).sum()) >= k - 1 if k else int((counts > 0).sum()) == 0
    assert counts.max(initial=0) <= max((hi for _, hi in bounds), default=0)
    assert counts.sum() <= patch_masking.blockwise_mask_budget(b, 64, ratio, prob)


def test_blockwise_masks_rejects_bad_arguments():
    with pytest.raises(ValueError, match="ratio"):
        patch_masking.blockwise_masks(jax.random.key(0), 4, (4, 4), ratio=(0.5, 0.1))
    with pytest.raises(ValueError, match="prob"):
        patch_masking.blockwise_masks(jax.random.key(0), 4, (4, 4), prob=1.5)
