"""RankMe: the effective rank of a set of embeddings, a label-free quality monitor.

Garrido, Balestriero, Najman and LeCun, "RankMe: Assessing the downstream performance of
pretrained self-supervised representations by their rank" (ICML 2023), eq. 1:

    p_k       = sigma_k(Z) / ||sigma(Z)||_1 + eps          k = 1 .. min(N, D)
    RankMe(Z) = exp(-sum_k p_k log p_k)

with ``sigma_k(Z)`` the singular values of the embedding matrix ``Z [N, D]`` and ``eps`` = 1e-7
(the paper's value for fp32). It is the exponential of the entropy of the normalised singular
value spectrum: ~r for a matrix with r equal non-zero singular values, 1 for a collapsed
(rank-1) embedding, at most ``min(N, D)``. The paper evaluates it on 25,600 embeddings; use
N >= D, or it measures the sample size rather than the representation.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

# eps added to every normalised singular value (the paper's choice for float32).
RANKME_EPS = 1e-7


def rankme_from_singular_values(singular_values: jax.Array, eps: float = RANKME_EPS) -> jax.Array:
    """``exp(-sum_k p_k log p_k)`` with ``p_k = sigma_k / ||sigma||_1 + eps``; fp32 scalar.

    Args:
      singular_values: ``[min(N, D)]`` singular values (non-negative) of the embeddings.
      eps: added to each normalised value (1e-7, as the paper).

    An all-zero spectrum (all-zero embeddings) gives ``p_k = eps`` and RankMe ~1, not NaN.
    """
    s = jnp.abs(jnp.asarray(singular_values, jnp.float32))
    if s.ndim != 1 or s.shape[0] == 0:
        raise ValueError(f"rankme: singular_values shape {tuple(s.shape)} must be a non-empty vector "
                         "[min(N, D)]; pass jnp.linalg.svd(embeddings, compute_uv=False)")
    l1 = jnp.maximum(jnp.sum(s), jnp.finfo(jnp.float32).tiny)
    p = s / l1 + eps
    return jnp.exp(-jnp.sum(p * jnp.log(p)))


def rankme(embeddings: jax.Array, eps: float = RANKME_EPS) -> jax.Array:
    """RankMe of ``embeddings [N, D]`` (any float dtype; SVD in fp32); fp32 scalar in ``[~1, min(N, D)]``.

    Pure and jittable. A sharded global array is gathered by the SVD; at the paper's scale
    (25,600 x 2048 fp32, 210 MB) that fits one device. The embeddings are not centred, as in the
    paper.
    """
    z = jnp.asarray(embeddings)
    if z.ndim != 2 or 0 in z.shape:
        raise ValueError(f"rankme: embeddings shape {tuple(z.shape)} must be a non-empty [N, D] matrix "
                         "(one embedding per row)")
    if not jnp.issubdtype(z.dtype, jnp.floating):
        raise ValueError(f"rankme: embeddings dtype {z.dtype} must be floating point; cast the features "
                         "to float32")
    singular_values = jnp.linalg.svd(z.astype(jnp.float32), compute_uv=False)
    return rankme_from_singular_values(singular_values, eps)
