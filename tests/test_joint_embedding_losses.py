"""BYOL, Barlow Twins, VICReg and DINO losses against numpy transcriptions of their reference code.

Each ``np_*_reference`` below transcribes the reference implementation line by line in float64
(torch ops spelled in numpy), including how it is distributed over ``world`` GPUs: per-GPU
chunks, all-gathers, all-reduces and DDP's averaging of the per-GPU losses. jaxssl's losses take
the global batch; on one device and sharded over 8 fake CPU devices they must equal the
reference's global objective, and their gradients must equal finite differences of it.

References (file, commit):
  BYOL         google-deepmind/deepmind-research byol/utils/helpers.py ``regression_loss``
               (f5de0ede8430809180254ee957abf36ed62579ef), and lightly-ai/lightly
               lightly/loss/negative_cosine_similarity.py (e8d317fc5a87f4387a85a35e689869039ec249ee)
  Barlow Twins facebookresearch/barlowtwins main.py ``BarlowTwins.forward``
               (8e8d284ca0bc02f88b92328e53f9b901e86b4a3c)
  VICReg       facebookresearch/vicreg main_vicreg.py ``VICReg.forward``, ``FullGatherLayer``
               (4e12602fd495af83efd1631fbe82523e6db092e0)
  DINO         facebookresearch/dino main_dino.py ``DINOLoss.forward`` / ``update_center``
               (7c446df5b9f45747937fb0d72314eb9f7b66930a)
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from jaxssl import losses, sharding


def _rand(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def _chunks(x, world, axis=0):
    """The per-GPU pieces of a global batch (``DistributedSampler`` gives contiguous equal shards)."""
    return np.split(np.asarray(x, np.float64), world, axis=axis)


def np_off_diagonal(x):
    """``off_diagonal`` of barlowtwins/main.py and vicreg/main_vicreg.py."""
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].reshape(n - 1, n + 1)[:, 1:].flatten()


def np_relu(x):
    return np.maximum(x, 0.0)


def np_softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def np_log_softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


# --------------------------------------------------------------------------- numpy references

def np_l2_normalize(x, axis=None, epsilon=1e-12):
    """byol/utils/helpers.py ``l2_normalize``."""
    square_sum = np.sum(np.square(x), axis=axis, keepdims=True)
    x_inv_norm = 1.0 / np.sqrt(np.maximum(square_sum, epsilon))
    return x * x_inv_norm


def np_byol_regression_loss(x, y):
    """byol/utils/helpers.py ``regression_loss``: per-row ``||x/|x| - y/|y|||^2``."""
    normed_x, normed_y = np_l2_normalize(x, axis=-1), np_l2_normalize(y, axis=-1)
    return np.sum((normed_x - normed_y) ** 2, axis=-1)


def np_byol(p, z):
    """byol_experiment.py: ``jnp.mean(regression_loss(prediction, stop_gradient(projection)))``."""
    return float(np.mean(np_byol_regression_loss(np.asarray(p, np.float64), np.asarray(z, np.float64))))


def np_negative_cosine_similarity(x0, x1, eps=1e-8):
    """lightly NegativeCosineSimilarity: ``-cosine_similarity(x0, x1, dim=1, eps).mean()``."""
    x0, x1 = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    n0 = np.maximum(np.linalg.norm(x0, axis=1), eps)
    n1 = np.maximum(np.linalg.norm(x1, axis=1), eps)
    return float(-np.mean(np.sum(x0 * x1, axis=1) / (n0 * n1)))


def np_sync_batchnorm_no_affine(z_gpus, eps=1e-5):
    """``SyncBatchNorm(affine=False)`` in training mode: global mean and biased variance."""
    z = np.concatenate(z_gpus)
    mean, var = z.mean(axis=0), z.var(axis=0)
    return [(zg - mean) / np.sqrt(var + eps) for zg in z_gpus]


def np_barlow_twins(z1, z2, lambd=0.0051, world=1):
    """barlowtwins main.py ``BarlowTwins.forward`` on ``world`` GPUs (the same value on each)."""
    z1_gpus, z2_gpus = _chunks(z1, world), _chunks(z2, world)
    batch_size = sum(len(z) for z in z1_gpus)                   # args.batch_size: the global batch
    bn1, bn2 = np_sync_batchnorm_no_affine(z1_gpus), np_sync_batchnorm_no_affine(z2_gpus)
    c_per_gpu = [a.T @ b / batch_size for a, b in zip(bn1, bn2)]  # c = bn(z1).T @ bn(z2); c.div_(bs)
    c = sum(c_per_gpu)                                           # torch.distributed.all_reduce(c)
    on_diag = np.sum((np.diagonal(c) - 1) ** 2)
    off_diag = np.sum(np_off_diagonal(c) ** 2)
    return float(on_diag + lambd * off_diag)


def np_vicreg_one_gpu(x_gpus, y_gpus, rank, sim_coeff, std_coeff, cov_coeff):
    """vicreg main_vicreg.py ``VICReg.forward`` as run by GPU ``rank``."""
    x, y = x_gpus[rank], y_gpus[rank]
    num_features = x.shape[1]
    repr_loss = np.mean((x - y) ** 2)                            # F.mse_loss(x, y), local batch
    x = np.concatenate(x_gpus)                                   # FullGatherLayer
    y = np.concatenate(y_gpus)
    batch_size = x.shape[0]                                      # args.batch_size: the global batch
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    std_x = np.sqrt(x.var(axis=0, ddof=1) + 0.0001)              # torch .var: unbiased by default
    std_y = np.sqrt(y.var(axis=0, ddof=1) + 0.0001)
    std_loss = np.mean(np_relu(1 - std_x)) / 2 + np.mean(np_relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (batch_size - 1)
    cov_y = (y.T @ y) / (batch_size - 1)
    cov_loss = (np.sum(np_off_diagonal(cov_x) ** 2) / num_features
                + np.sum(np_off_diagonal(cov_y) ** 2) / num_features)
    return sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss


def np_vicreg(x, y, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, world=1):
    """The objective DDP optimises: the mean of the per-GPU losses (gradients are averaged)."""
    x_gpus, y_gpus = _chunks(x, world), _chunks(y, world)
    return float(np.mean([np_vicreg_one_gpu(x_gpus, y_gpus, r, sim_coeff, std_coeff, cov_coeff)
                          for r in range(world)]))


def np_dino_loss_one_gpu(student_output, teacher_output, center, ncrops, n_teacher_crops,
                         student_temp, teacher_temp):
    """dino main_dino.py ``DINOLoss.forward``; outputs are the crops concatenated along the batch.

    The reference splits the teacher output with ``.chunk(2)`` (2 global crops);
    ``n_teacher_crops`` is that 2.
    """
    student_out = student_output / student_temp
    student_out = np.split(student_out, ncrops)                  # .chunk(self.ncrops)
    teacher_out = np_softmax((teacher_output - center) / teacher_temp, axis=-1)
    teacher_out = np.split(teacher_out, n_teacher_crops)         # .detach().chunk(2)
    total_loss = 0.0
    n_loss_terms = 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            loss = np.sum(-q * np_log_softmax(student_out[v], axis=-1), axis=-1)
            total_loss += loss.mean()
            n_loss_terms += 1
    return total_loss / n_loss_terms


def _per_gpu_concatenated(views_VxNxK, world):
    """GPU g's ``torch.cat`` of its rows of every view: ``[V * N/world, K]``."""
    return [np.concatenate(list(v)) for v in _chunks(views_VxNxK, world, axis=1)]


def np_dino(student_VxNxK, teacher_VxNxK, center, student_temp=0.1, teacher_temp=0.04, world=1):
    """Mean over GPUs of the per-GPU DINO loss (what DDP's gradient averaging optimises)."""
    v_s, v_t = student_VxNxK.shape[0], teacher_VxNxK.shape[0]
    center = np.asarray(center, np.float64)
    return float(np.mean([
        np_dino_loss_one_gpu(s, t, center, v_s, v_t, student_temp, teacher_temp)
        for s, t in zip(_per_gpu_concatenated(student_VxNxK, world),
                        _per_gpu_concatenated(teacher_VxNxK, world))]))


def np_dino_update_center(center, teacher_VxNxK, center_momentum=0.9, world=1):
    """dino main_dino.py ``DINOLoss.update_center`` (all GPUs end with the same center)."""
    teacher_outputs = _per_gpu_concatenated(teacher_VxNxK, world)
    batch_center = sum(np.sum(t, axis=0, keepdims=True) for t in teacher_outputs)  # all_reduce
    batch_center = batch_center / (len(teacher_outputs[0]) * world)
    return np.asarray(center, np.float64) * center_momentum + batch_center * (1 - center_momentum)


# --------------------------------------------------------------------------- helpers

def _finite_difference_grad(f, args, which, h=1e-6):
    """Central differences of the float64 reference ``f(*args)`` w.r.t. ``args[which]``."""
    args = [np.asarray(a, np.float64) for a in args]
    x = args[which]
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += h
        minus[idx] -= h
        grad[idx] = (f(*args[:which], plus, *args[which + 1:])
                     - f(*args[:which], minus, *args[which + 1:])) / (2 * h)
    return grad


def _assert_grad_close(got, want, rtol=2e-4):
    got = np.asarray(got, np.float64)
    scale = max(np.abs(want).max(), 1e-3)
    assert np.abs(want).max() > 1e-3, "reference gradient is trivially zero"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def _check_grads_vs_reference(jax_loss, np_loss, args, argnums):
    grads = jax.jit(jax.grad(jax_loss, argnums=argnums))(*[jnp.asarray(a) for a in args])
    for which, g in zip(argnums, grads):
        _assert_grad_close(g, _finite_difference_grad(np_loss, args, which))


# --------------------------------------------------------------------------- BYOL

def test_byol_matches_deepmind_regression_loss_and_lightly():
    p, z = _rand((9, 5), 0), _rand((9, 5), 1, 3.0)
    got = jax.jit(losses.byol_loss)(jnp.asarray(p), jnp.asarray(z))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), np_byol(p, z), rtol=1e-6)
    np.testing.assert_allclose(float(got), 2 + 2 * np_negative_cosine_similarity(p, z), rtol=1e-6)


def test_byol_gradient_vs_finite_differences_and_no_gradient_into_target():
    p, z = _rand((5, 4), 2), _rand((5, 4), 3)
    _check_grads_vs_reference(losses.byol_loss, np_byol, (p, z), argnums=(0,))
    g_z = jax.grad(losses.byol_loss, argnums=1)(jnp.asarray(p), jnp.asarray(z))
    assert not np.any(np.asarray(g_z))
    # The gradient w.r.t. z of the reference *without* stop_gradient is not zero: the test can fail.
    assert np.abs(_finite_difference_grad(np_byol, (p, z), 1)).max() > 1e-2


def test_byol_scale_invariant_aligned_zero_and_zero_rows_finite():
    p, z = jnp.asarray(_rand((6, 4), 4)), jnp.asarray(_rand((6, 4), 5))
    np.testing.assert_allclose(float(losses.byol_loss(p, z)), float(losses.byol_loss(7.0 * p, 0.1 * z)),
                               rtol=1e-6)
    assert abs(float(losses.byol_loss(p, 2.0 * p))) < 1e-6
    np.testing.assert_allclose(float(losses.byol_loss(p, -p)), 4.0, rtol=1e-6)
    p0 = p.at[0].set(0.0)
    val, g = jax.value_and_grad(losses.byol_loss)(p0.astype(jnp.bfloat16), z.astype(jnp.bfloat16))
    want = (2.0 + np.sum(np_byol_regression_loss(np.asarray(p0[1:], np.float64),
                                                 np.asarray(z[1:], np.float64)))) / 6
    np.testing.assert_allclose(float(val), want, rtol=2e-2)  # a zero row has cosine 0: contributes 2
    assert val.dtype == jnp.float32 and np.isfinite(np.asarray(g, np.float32)).all()


# --------------------------------------------------------------------------- Barlow Twins

@pytest.mark.parametrize("lambd", [0.0051, 0.5])
def test_barlow_twins_matches_reference(lambd):
    z1, z2 = _rand((12, 6), 10, 2.0) + 1.0, _rand((12, 6), 11)
    got = jax.jit(losses.barlow_twins_loss, static_argnums=2)(jnp.asarray(z1), jnp.asarray(z2), lambd)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), np_barlow_twins(z1, z2, lambd), rtol=1e-5)
    # The reference on 4 GPUs (SyncBN + all-reduced c) gives the same number.
    np.testing.assert_allclose(np_barlow_twins(z1, z2, lambd, world=4), np_barlow_twins(z1, z2, lambd),
                               rtol=1e-12)


def test_barlow_twins_default_lambda_is_the_papers():
    z1, z2 = jnp.asarray(_rand((8, 5), 12)), jnp.asarray(_rand((8, 5), 13))
    np.testing.assert_allclose(float(losses.barlow_twins_loss(z1, z2)),
                               np_barlow_twins(z1, z2, 0.0051), rtol=1e-5)


def test_barlow_twins_gradient_vs_finite_differences():
    z1, z2 = _rand((8, 4), 14), _rand((8, 4), 15)
    _check_grads_vs_reference(lambda a, b: losses.barlow_twins_loss(a, b, 0.1),
                              lambda a, b: np_barlow_twins(a, b, 0.1), (z1, z2), argnums=(0, 1))


def test_barlow_twins_edge_cases():
    # Whitened identical views: C = I / (1 + 1e-5), the loss is ~0.
    q = np.linalg.qr(np.random.default_rng(16).normal(size=(32, 4)))[0]
    q = (q - q.mean(0)) / (q - q.mean(0)).std(0)
    white = jnp.asarray(q @ np.linalg.inv(np.linalg.cholesky(np.cov(q.T, bias=True))).T, jnp.float32)
    assert float(losses.barlow_twins_loss(white, white)) < 1e-6
    # A constant feature (zero variance) normalises to 0 through eps, as BatchNorm1d does.
    z1, z2 = _rand((10, 5), 17), _rand((10, 5), 18)
    z1[:, 2] = 3.0
    val, grads = jax.value_and_grad(losses.barlow_twins_loss, argnums=(0, 1))(
        jnp.asarray(z1, jnp.bfloat16), jnp.asarray(z2, jnp.bfloat16))
    assert val.dtype == jnp.float32 and all(np.isfinite(np.asarray(g, np.float32)).all() for g in grads)
    np.testing.assert_allclose(float(losses.barlow_twins_loss(jnp.asarray(z1), jnp.asarray(z2))),
                               np_barlow_twins(z1, z2), rtol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        losses.barlow_twins_loss(jnp.ones((4, 3)), jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="N >= 2"):
        losses.barlow_twins_loss(jnp.ones((1, 3)), jnp.ones((1, 3)))


# --------------------------------------------------------------------------- VICReg

def _vicreg_inputs(n, d, seed):
    """Features with per-feature std on both sides of 1, so both branches of the hinge are used."""
    scales = np.linspace(0.3, 2.0, d)
    x = _rand((n, d), seed) * scales + 0.5
    y = x + _rand((n, d), seed + 1, 0.4)
    return x.astype(np.float32), y.astype(np.float32)


@pytest.mark.parametrize("coeffs", [(25.0, 25.0, 1.0), (1.0, 3.0, 0.5)])
def test_vicreg_matches_reference(coeffs):
    x, y = _vicreg_inputs(16, 6, 20)
    got = jax.jit(losses.vicreg_loss, static_argnums=(2, 3, 4))(jnp.asarray(x), jnp.asarray(y), *coeffs)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), np_vicreg(x, y, *coeffs), rtol=1e-5)
    np.testing.assert_allclose(np_vicreg(x, y, *coeffs, world=4), np_vicreg(x, y, *coeffs), rtol=1e-12)


def test_vicreg_defaults_are_the_papers():
    x, y = _vicreg_inputs(8, 4, 21)
    np.testing.assert_allclose(float(losses.vicreg_loss(jnp.asarray(x), jnp.asarray(y))),
                               np_vicreg(x, y, 25.0, 25.0, 1.0), rtol=1e-5)


def test_vicreg_gradient_vs_finite_differences():
    x, y = _vicreg_inputs(8, 4, 22)
    _check_grads_vs_reference(losses.vicreg_loss, np_vicreg, (x, y), argnums=(0, 1))


def test_vicreg_collapse_and_minimal_batch():
    # Every embedding identical: invariance 0, covariance 0, std term 2 * (1 - sqrt(1e-4)) / 2.
    same = jnp.ones((6, 5)) * 0.7
    np.testing.assert_allclose(float(losses.vicreg_loss(same, same)), 25.0 * (1 - 0.01), rtol=1e-6)
    x, y = _vicreg_inputs(2, 3, 23)  # N = 2: unbiased variance divides by 1
    np.testing.assert_allclose(float(losses.vicreg_loss(jnp.asarray(x), jnp.asarray(y))),
                               np_vicreg(x, y), rtol=1e-5)
    with pytest.raises(ValueError, match="N >= 2"):
        losses.vicreg_loss(jnp.ones((1, 3)), jnp.ones((1, 3)))


# --------------------------------------------------------------------------- DINO

K = 7


def _dino_inputs(v_s, v_t, n, seed, scale=3.0):
    student = _rand((v_s, n, K), seed, scale)
    teacher = _rand((v_t, n, K), seed + 1, scale)
    center = _rand((1, K), seed + 2, 0.5)
    return student, teacher, center


@pytest.mark.parametrize("v_s,v_t", [(2, 2), (6, 2), (3, 1)])  # no local crops; 2 global + 4 local
def test_dino_loss_matches_reference(v_s, v_t):
    student, teacher, center = _dino_inputs(v_s, v_t, 8, 30)
    got = jax.jit(losses.dino_loss)(jnp.asarray(student), jnp.asarray(teacher), jnp.asarray(center))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), np_dino(student, teacher, center), rtol=1e-5)
    np.testing.assert_allclose(np_dino(student, teacher, center, world=4),
                               np_dino(student, teacher, center), rtol=1e-12)


def test_dino_loss_temperatures_traced_center_shapes_and_large_logits():
    student, teacher, center = _dino_inputs(6, 2, 8, 31, scale=40.0)  # sharp softmaxes
    loss = jax.jit(losses.dino_loss)
    for temps in ((0.1, 0.04), (0.2, 0.07)):
        got = loss(jnp.asarray(student), jnp.asarray(teacher), jnp.asarray(center),
                   jnp.float32(temps[0]), jnp.float32(temps[1]))  # traced, as a warm-up schedule
        np.testing.assert_allclose(float(got), np_dino(student, teacher, center, *temps), rtol=1e-5)
    flat = losses.dino_loss(jnp.asarray(student), jnp.asarray(teacher), jnp.asarray(center[0]))
    np.testing.assert_allclose(float(flat), np_dino(student, teacher, center), rtol=1e-5)


def test_dino_uniform_student_gives_log_k():
    student = jnp.full((6, 4, K), 2.5)
    _, teacher, center = _dino_inputs(6, 2, 4, 32)
    np.testing.assert_allclose(float(losses.dino_loss(student, jnp.asarray(teacher), jnp.asarray(center))),
                               math.log(K), rtol=1e-6)


def test_dino_gradient_vs_finite_differences_and_no_teacher_gradient():
    student, teacher, center = _dino_inputs(6, 2, 3, 33, scale=1.0)
    _check_grads_vs_reference(losses.dino_loss, np_dino, (student, teacher, center), argnums=(0,))
    g_t, g_c = jax.grad(losses.dino_loss, argnums=(1, 2))(
        jnp.asarray(student), jnp.asarray(teacher), jnp.asarray(center))
    assert not np.any(np.asarray(g_t)) and not np.any(np.asarray(g_c))
    # Without the reference's .detach() the teacher gradient would not vanish: the check can fail.
    assert np.abs(_finite_difference_grad(np_dino, (student, teacher, center), 1)).max() > 1e-2


def test_dino_rejects_bad_shapes():
    with pytest.raises(ValueError, match="no pair"):
        losses.dino_loss(jnp.ones((1, 4, K)), jnp.ones((1, 4, K)), jnp.zeros((1, K)))
    with pytest.raises(ValueError, match="same N and K"):
        losses.dino_loss(jnp.ones((4, 4, K)), jnp.ones((2, 3, K)), jnp.zeros((1, K)))
    with pytest.raises(ValueError, match="center shape"):
        losses.dino_loss(jnp.ones((4, 4, K)), jnp.ones((2, 4, K)), jnp.zeros((2, K)))
    with pytest.raises(ValueError, match="teacher_temp=0"):
        losses.dino_loss(jnp.ones((4, 4, K)), jnp.ones((2, 4, K)), jnp.zeros((1, K)), teacher_temp=0.0)


@pytest.mark.parametrize("momentum", [0.9, 0.0, 1.0])
def test_dino_center_update_matches_reference(momentum):
    _, teacher, center = _dino_inputs(6, 2, 8, 34)
    got = jax.jit(losses.dino_center_update)(jnp.asarray(center), jnp.asarray(teacher), momentum)
    assert got.shape == (1, K) and got.dtype == jnp.float32
    want = np_dino_update_center(center, teacher, momentum)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np_dino_update_center(center, teacher, momentum, world=4), want, rtol=1e-12)
    flat = losses.dino_center_update(jnp.asarray(center[0]), jnp.asarray(teacher), momentum)
    assert flat.shape == (K,)
    np.testing.assert_allclose(np.asarray(flat), want[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="center"):
        losses.dino_center_update(jnp.zeros((2, K)), jnp.asarray(teacher))


# --------------------------------------------------------------------------- 8 devices == 1 device

N_SHARDED = 16  # 2 rows per device on 8 devices


def _auto_mesh(n_dev):
    """jaxssl's training mesh: one ``Auto`` ``"data"`` axis (XLA places the collectives)."""
    return sharding.make_mesh(devices=jax.devices()[:n_dev])


def _explicit_mesh(n_dev):
    """``jax.make_mesh``'s default axis type, ``Explicit``: shardings are part of the types."""
    return jax.make_mesh((n_dev,), (sharding.DATA_AXIS,), axis_types=(AxisType.Explicit,),
                         devices=jax.devices()[:n_dev])


def _sharded_value_and_grads(loss_fn, arrays, batch_axes, mesh, explicit):
    """``value_and_grad`` of ``loss_fn(w, *arrays)`` with every array's batch axis split over ``mesh``.

    ``w`` is a replicated ``[F, F]`` mixing matrix applied to the first array's feature axis, so
    its gradient is a sum over the whole (sharded) batch.
    """
    def spec(batch_axis, ndim):
        if batch_axis is None:
            return P()
        return P(*([None] * batch_axis + [sharding.DATA_AXIS] + [None] * (ndim - batch_axis - 1)))

    placed = [jax.device_put(jnp.asarray(a), NamedSharding(mesh, spec(ax, a.ndim)))
              for a, ax in zip(arrays, batch_axes)]
    f = arrays[0].shape[-1]
    w = jax.device_put(jnp.asarray(np.eye(f) + _rand((f, f), 99, 0.1), jnp.float32), NamedSharding(mesh, P()))

    def mixed(w, first, *rest):
        return loss_fn(jnp.einsum("...f,fg->...g", first, w, precision=jax.lax.Precision.HIGHEST), *rest)

    vg = jax.jit(jax.value_and_grad(mixed, argnums=tuple(range(len(arrays) + 1))))
    if explicit:
        with jax.set_mesh(mesh):
            return vg(w, *placed)
    return vg(w, *placed)


def _sharding_cases():
    za, zb = _rand((N_SHARDED, 6), 40), _rand((N_SHARDED, 6), 41)
    vx, vy = _vicreg_inputs(N_SHARDED, 6, 42)
    student, teacher, center = _dino_inputs(6, 2, N_SHARDED, 43)
    return {
        "byol": (losses.byol_loss, (za, zb), (0, 0), np_byol, lambda w: ()),
        "barlow_twins": (losses.barlow_twins_loss, (za, zb), (0, 0), np_barlow_twins, lambda w: {"world": w}),
        "vicreg": (losses.vicreg_loss, (vx, vy), (0, 0), np_vicreg, lambda w: {"world": w}),
        "dino": (losses.dino_loss, (student, teacher, center), (1, 1, None), np_dino,
                 lambda w: {"world": w}),
        "dino_center": (lambda c, t: jnp.sum(losses.dino_center_update(c, t) * jnp.arange(1.0, K + 1)[None, :]),
                        (center, teacher), (None, 1),
                        lambda c, t, world=1: float(np.sum(np_dino_update_center(c, t, 0.9, world)
                                                           * np.arange(1.0, K + 1))),
                        lambda w: {"world": w}),
    }


CASES = _sharding_cases()


@pytest.fixture(scope="module")
def one_device_results():
    return {name: _sharded_value_and_grads(fn, arrays, axes, _auto_mesh(1), explicit=False)
            for name, (fn, arrays, axes, _, _) in CASES.items()}


@pytest.mark.parametrize("axis_type", ["auto", "explicit"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_sharded_over_8_devices_equals_1_device(name, axis_type, one_device_results):
    fn, arrays, axes, np_ref, world_kw = CASES[name]
    mesh = _auto_mesh(8) if axis_type == "auto" else _explicit_mesh(8)
    value, grads = _sharded_value_and_grads(fn, arrays, axes, mesh, explicit=axis_type == "explicit")
    want_value, want_grads = one_device_results[name]
    np.testing.assert_allclose(float(value), float(want_value), rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(want_grads[0])).max() > 1e-3  # the mixing matrix gets a real gradient
    for got, want in zip(grads, want_grads):
        scale = max(np.abs(np.asarray(want)).max(), 1e-6)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5 * scale)
    # And the value is the reference's run on 8 GPUs (inputs mixed by w exactly as in the loss).
    w = np.eye(arrays[0].shape[-1]) + _rand((arrays[0].shape[-1],) * 2, 99, 0.1).astype(np.float64)
    mixed_first = np.asarray(arrays[0], np.float64) @ w
    kw = world_kw(8)
    want_np = np_ref(mixed_first, *arrays[1:], **kw) if kw else np_ref(mixed_first, *arrays[1:])
    np.testing.assert_allclose(float(value), want_np, rtol=2e-5)
