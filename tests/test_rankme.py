"""RankMe against numpy's SVD and matrices of known effective rank, on 1 and 8 devices."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import sharding
from jaxssl.evaluators.rankme import RANKME_EPS, rankme, rankme_from_singular_values


def np_rankme(z, eps=1e-7):
    """The paper's eq. 1 in float64: p_k = sigma_k / ||sigma||_1 + eps, exp(entropy of p)."""
    s = np.linalg.svd(np.asarray(z, np.float64), compute_uv=False)
    p = s / np.abs(s).sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def _orthonormal(n, r, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, r)))
    return q


def test_eps_is_the_papers():
    assert RANKME_EPS == 1e-7


@pytest.mark.parametrize("shape,scale", [((64, 16), 1.0), ((16, 64), 1.0), ((50, 7), 100.0)])
def test_rankme_matches_numpy_svd(shape, scale):
    rng = np.random.default_rng(0)
    # Anisotropic spectrum so the value is far from both 1 and min(N, D).
    z = (rng.normal(size=shape) * np.geomspace(1.0, 1e-2, shape[1]) * scale).astype(np.float32)
    got = jax.jit(rankme)(jnp.asarray(z))
    assert got.dtype == jnp.float32
    want = np_rankme(z)
    assert 1.5 < want < min(shape) - 0.5
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


@pytest.mark.parametrize("r", [1, 3, 8])
def test_equal_singular_values_of_rank_r_give_r(r):
    n, d = 40, 12
    z = (_orthonormal(n, r, 1) @ _orthonormal(d, r, 2).T * 5.0).astype(np.float32)
    got = float(rankme(jnp.asarray(z)))
    # r values p = 1/r + eps and min(N, D) - r values p ~ eps: r up to O(D * eps * log(1/eps)).
    np.testing.assert_allclose(got, r, rtol=1e-4)
    np.testing.assert_allclose(got, np_rankme(z), rtol=1e-5)


def test_random_rank_r_is_at_most_r_and_full_rank_isotropic_is_near_d():
    rng = np.random.default_rng(3)
    low = (rng.normal(size=(200, 4)) @ rng.normal(size=(4, 32))).astype(np.float32)
    got_low = float(rankme(jnp.asarray(low)))
    assert 2.0 < got_low <= 4.0 + 1e-3
    iso = rng.normal(size=(4096, 8)).astype(np.float32)  # singular values all ~ sqrt(4096)
    got_iso = float(rankme(jnp.asarray(iso)))
    assert 7.9 < got_iso <= 8.0
    np.testing.assert_allclose(got_iso, np_rankme(iso), rtol=1e-5)


def test_scale_invariant_and_collapse_is_one():
    z = np.random.default_rng(4).normal(size=(30, 6)).astype(np.float32)
    np.testing.assert_allclose(float(rankme(jnp.asarray(z))), float(rankme(jnp.asarray(1e3 * z))), rtol=1e-5)
    collapsed = np.tile(np.random.default_rng(5).normal(size=(1, 6)), (30, 1)).astype(np.float32)
    np.testing.assert_allclose(float(rankme(jnp.asarray(collapsed))), 1.0, atol=1e-4)
    zeros = float(rankme(jnp.zeros((5, 3))))  # no spectrum at all: p_k = eps, finite
    assert np.isfinite(zeros) and abs(zeros - 1.0) < 1e-4


def test_from_singular_values_formula_and_bf16_input():
    s = np.array([4.0, 2.0, 1.0, 1.0], np.float32)
    p = s / s.sum() + 1e-7
    np.testing.assert_allclose(float(rankme_from_singular_values(jnp.asarray(s))),
                               np.exp(-(p * np.log(p)).sum()), rtol=1e-6)
    z = np.random.default_rng(6).normal(size=(32, 4)).astype(np.float32)
    got = float(rankme(jnp.asarray(z, jnp.bfloat16)))
    np.testing.assert_allclose(got, np_rankme(np.asarray(jnp.asarray(z, jnp.bfloat16), np.float32)), rtol=1e-4)


def test_rejects_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        rankme(jnp.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="floating point"):
        rankme(jnp.ones((4, 3), jnp.int32))
    with pytest.raises(ValueError, match="non-empty vector"):
        rankme_from_singular_values(jnp.ones((2, 2)))


def test_sharded_over_8_devices_equals_1_device():
    z = np.random.default_rng(7).normal(size=(64, 12)).astype(np.float32) * np.geomspace(1, 0.05, 12)
    values = []
    for n_dev in (1, 8):
        mesh = sharding.make_mesh(devices=jax.devices()[:n_dev])
        values.append(float(jax.jit(rankme)(jax.device_put(jnp.asarray(z, jnp.float32),
                                                           sharding.batch_sharding(mesh)))))
    np.testing.assert_allclose(values[0], values[1], rtol=1e-5)
    np.testing.assert_allclose(values[1], np_rankme(z), rtol=1e-5)
