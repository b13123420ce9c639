"""Pure loss functions of global arrays: NT-Xent, InfoNCE (MoCo v2/v3), masked LM, MAE, and the
joint-embedding losses of BYOL, Barlow Twins, VICReg and DINO (with its center update).

Every function takes *global* ``jax.Array``s (inside a jitted step they are sharded over the
``"data"`` mesh axis; XLA inserts the collectives) and returns a scalar fp32 loss. Inputs may be
bf16: projections and logits are cast to fp32 before normalisation, similarity matmuls run at
``Precision.HIGHEST`` and every softmax / logsumexp is fp32 (docs/design.md, "Precision").

Because the contrastive losses see the global batch, negatives come from every device and
``jax.grad`` of the loss is the gradient of the global objective: no per-device averaging, no
world-size factor (the trap of lightly #1920/#1977). ``nt_xent_blockwise`` is the one place
that needs per-device blocks (a chunked logsumexp against all-gathered columns); it uses
``jax.shard_map`` and returns the same value and gradients as ``nt_xent``.

Also here: ``patchify`` / ``unpatchify`` in MAE's patch and pixel order.
"""
from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from jaxssl.sharding import DATA_AXIS

# Subtracted from self-similarity logits, as ``LARGE_NUM`` in SimCLR's tf2/objective.py.
LARGE_NUM = 1e9
# Squared-norm floor of the L2 normalisation, as ``tf.math.l2_normalize`` (epsilon=1e-12).
L2_EPS_SQUARED = 1e-12
# Column chunk of ``nt_xent_blockwise`` when ``block_size`` is None.
DEFAULT_BLOCK_SIZE = 1024

_HIGHEST = jax.lax.Precision.HIGHEST


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
    """``x / max(||x||, 1e-6)`` along ``axis`` in fp32 (``tf.math.l2_normalize`` semantics).

    A zero row stays zero (and has finite gradients) instead of becoming NaN.
    """
    x = x.astype(jnp.float32)
    sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, L2_EPS_SQUARED))


def _sim(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b.T`` in fp32 at full precision: ``[R, D] x [C, D] -> [R, C]``."""
    return jnp.einsum("rd,cd->rc", a, b, precision=_HIGHEST, preferred_element_type=jnp.float32)


def _check_pair(z_a: jax.Array, z_b: jax.Array, fn: str) -> None:
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            f"{fn}: expected two [N, D] projections of the same shape, got z_a{tuple(z_a.shape)} "
            f"and z_b{tuple(z_b.shape)}; pass the two views' projections row-aligned")


def _check_temperature(temperature, fn: str) -> None:
    if isinstance(temperature, (int, float)) and temperature <= 0:
        raise ValueError(f"{fn}: temperature={temperature} must be > 0 (SimCLR uses 0.1 / 0.5)")


# --------------------------------------------------------------------------- NT-Xent (SimCLR)

def nt_xent(z_a: jax.Array, z_b: jax.Array, temperature: float) -> jax.Array:
    """SimCLR's normalised-temperature cross entropy over the global batch.

    Args:
      z_a, z_b: ``[N, D]`` unnormalised projections of the two views (any float dtype); row
        ``i`` of ``z_a`` and row ``i`` of ``z_b`` are a positive pair.
      temperature: ``tau`` > 0.

    Returns:
      fp32 scalar, the SimCLR paper's loss (Chen et al. 2020, eq. 1):

        l(i, j) = -log  exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau)
        L = 1/(2N) sum_{k=1..N} [ l(2k-1, 2k) + l(2k, 2k-1) ]

      i.e. the mean over all 2N anchors of the cross-entropy of the anchor's positive against
      the other 2N - 1 candidates, with ``sim`` the cosine similarity. Self-similarity is
      removed by subtracting ``LARGE_NUM`` = 1e9 from it, as the TF reference does.

    Note: SimCLR's reference (``tf2/objective.py::add_contrastive_loss``) returns
    ``mean(loss_a + loss_b)``, which is **twice** this value (and twice its gradient); scale
    the learning rate or the loss by 2 to reproduce it bit for bit.

    Memory is ``O((2N)^2)``; for large global batches use ``nt_xent_blockwise``.
    """
    _check_pair(z_a, z_b, "nt_xent")
    _check_temperature(temperature, "nt_xent")
    n = z_a.shape[0]
    z_2NxD = jnp.concatenate([l2_normalize(z_a), l2_normalize(z_b)], axis=0)
    logits_2Nx2N = _sim(z_2NxD, z_2NxD) / temperature
    logits_2Nx2N = logits_2Nx2N - LARGE_NUM * jnp.eye(2 * n, dtype=jnp.float32)
    positive_idx = (jnp.arange(2 * n) + n) % (2 * n)
    pos_2N = jnp.take_along_axis(logits_2Nx2N, positive_idx[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits_2Nx2N, axis=1) - pos_2N)


def _chunked_anchor_losses(anchors_RxD, positive_R, self_col_R, cols_CxD, temperature, block_size):
    """Per-anchor ``logsumexp_{c != self}(anchor . col_c / T) - positive`` without the [R, C] matrix.

    Columns are processed ``block_size`` at a time with a running (online) logsumexp
    ``(m, s)``: ``m`` is a running max (under ``stop_gradient``: the logsumexp does not depend on
    it, so its gradient is exact) and ``s = sum exp(logit - m)``. The chunk body is wrapped in
    ``jax.checkpoint``, so the backward pass keeps only the carries (``O(R)`` per chunk) and
    recomputes each ``[R, block_size]`` logit block, instead of storing all of them. Full chunks
    run in a ``lax.scan``; a remainder (when ``block_size`` does not divide ``C``) runs once
    more with its own static shape, so nothing is padded.
    """
    num_cols = cols_CxD.shape[0]

    @jax.checkpoint
    def update(carry, chunk_BxD, col_start):
        m_R, s_R = carry
        logits_RxB = _sim(anchors_RxD, chunk_BxD) / temperature
        col_idx = col_start + jnp.arange(chunk_BxD.shape[0])
        is_self = (col_idx[None, :] == self_col_R[:, None]).astype(jnp.float32)
        logits_RxB = logits_RxB - LARGE_NUM * is_self
        m_new = jax.lax.stop_gradient(jnp.maximum(m_R, jnp.max(logits_RxB, axis=1)))
        s_new = s_R * jnp.exp(m_R - m_new) + jnp.sum(jnp.exp(logits_RxB - m_new[:, None]), axis=1)
        return m_new, s_new

    # ``*_like(positive_R)`` keeps the carry's shard_map varying-axes type equal to the body's.
    carry = (jnp.full_like(positive_R, -jnp.inf), jnp.zeros_like(positive_R))
    num_full = num_cols // block_size
    if num_full:
        full_KxBxD = cols_CxD[: num_full * block_size].reshape(num_full, block_size, -1)
        starts_K = jnp.arange(num_full, dtype=jnp.int32) * block_size
        carry, _ = jax.lax.scan(lambda c, xs: (update(c, *xs), None), carry, (full_KxBxD, starts_K))
    if num_cols % block_size:
        carry = update(carry, cols_CxD[num_full * block_size:], jnp.int32(num_full * block_size))
    m_R, s_R = carry
    return m_R + jnp.log(s_R) - positive_R


def _local_nt_xent_sum(a_nxD, b_nxD, a_all_NxD, b_all_NxD, row_offset, temperature, block_size):
    """Sum of the NT-Xent anchor losses of the local rows against all 2N columns.

    Anchors are the local rows of view a (global rows ``row_offset + i``) and of view b
    (global rows ``N + row_offset + i``) in the column layout ``[a_all; b_all]``.
    """
    n = a_nxD.shape[0]
    big_n = a_all_NxD.shape[0]
    local = jnp.arange(n, dtype=jnp.int32) + row_offset
    anchors_2nxD = jnp.concatenate([a_nxD, b_nxD], axis=0)
    self_col_2n = jnp.concatenate([local, local + big_n])
    pos_n = jnp.sum(a_nxD * b_nxD, axis=1) / temperature   # the positive logit, from the pair
    positive_2n = jnp.concatenate([pos_n, pos_n])
    cols_2NxD = jnp.concatenate([a_all_NxD, b_all_NxD], axis=0)
    losses_2n = _chunked_anchor_losses(
        anchors_2nxD, positive_2n, self_col_2n, cols_2NxD, temperature, block_size)
    return jnp.sum(losses_2n)


def nt_xent_blockwise(z_a: jax.Array, z_b: jax.Array, temperature: float,
                      mesh: Optional[Mesh] = None, block_size: Optional[int] = None) -> jax.Array:
    """``nt_xent`` (same value and gradients) with memory linear in the per-device batch.

    With a mesh, under ``jax.shard_map`` over ``"data"`` each device holds ``n = N / devices``
    rows of each view; it L2-normalises them, all-gathers the columns of both views
    (``jax.lax.all_gather(tiled=True)``; its transpose, a reduce-scatter, sends every device's
    column gradients back to the rows' owner, so gradients are exact), and computes the loss of
    its ``2n`` anchors against the ``2N`` columns ``block_size`` columns at a time with an online
    logsumexp (``jax.checkpoint`` around the chunk body, see ``_chunked_anchor_losses``). Peak
    activation memory is ``O(2n * block_size)`` plus the gathered ``[2N, D]`` columns, forward
    and backward. The positive logit is ``<a_i, b_i> / T`` computed from the paired local rows.
    The mean over anchors is ``psum(local sum) / (2N)``: the global mean, not a mean of means.

    Args:
      z_a, z_b: ``[N, D]`` unnormalised projections (global arrays; any float dtype).
      temperature: ``tau`` > 0.
      mesh: mesh with a ``"data"`` axis whose size divides ``N``. ``None``: one-device path
        (chunked logsumexp only, no collectives).
      block_size: columns per chunk (default ``DEFAULT_BLOCK_SIZE``); need not divide ``2N``.

    Returns:
      fp32 scalar equal to ``nt_xent(z_a, z_b, temperature)``.
    """
    _check_pair(z_a, z_b, "nt_xent_blockwise")
    _check_temperature(temperature, "nt_xent_blockwise")
    block_size = DEFAULT_BLOCK_SIZE if block_size is None else int(block_size)
    if block_size <= 0:
        raise ValueError(f"nt_xent_blockwise: block_size={block_size} must be a positive number of columns")
    big_n = z_a.shape[0]

    if mesh is None:
        a, b = l2_normalize(z_a), l2_normalize(z_b)
        total = _local_nt_xent_sum(a, b, a, b, 0, temperature, block_size)
        return total / (2 * big_n)

    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"nt_xent_blockwise: mesh axes {mesh.axis_names} lack {DATA_AXIS!r}; "
                         f"build the mesh with jaxssl.sharding.make_mesh")
    world = mesh.shape[DATA_AXIS]
    if big_n % world:
        raise ValueError(f"nt_xent_blockwise: batch N={big_n} is not divisible by the {world} devices "
                         f"of the {DATA_AXIS!r} axis; use a multiple of {world}")

    def per_device(a_nxD, b_nxD):
        a_nxD, b_nxD = l2_normalize(a_nxD), l2_normalize(b_nxD)
        a_all = jax.lax.all_gather(a_nxD, DATA_AXIS, tiled=True)
        b_all = jax.lax.all_gather(b_nxD, DATA_AXIS, tiled=True)
        row_offset = jax.lax.axis_index(DATA_AXIS).astype(jnp.int32) * a_nxD.shape[0]
        local_sum = _local_nt_xent_sum(a_nxD, b_nxD, a_all, b_all, row_offset, temperature, block_size)
        return jax.lax.psum(local_sum, DATA_AXIS) / (2 * big_n)

    sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(DATA_AXIS), P(DATA_AXIS)), out_specs=P())
    return sharded(z_a, z_b)


# --------------------------------------------------------------------------- MoCo

def info_nce(q: jax.Array, k: jax.Array, queue: jax.Array, temperature: float) -> jax.Array:
    """MoCo v2's InfoNCE with a queue of negatives (He et al. 2020, eq. 1).

        L = -1/N sum_i log  exp(q_i.k_i / T) / (exp(q_i.k_i / T) + sum_j exp(q_i.queue_j / T))

    i.e. cross-entropy of logits ``[q.k / T, q queue^T / T]`` with label 0 (moco/builder.py).

    Args:
      q: ``[N, D]`` unnormalised queries (online encoder).
      k: ``[N, D]`` unnormalised keys (momentum encoder); gradient stopped.
      queue: ``[K, D]`` already L2-normalised keys of earlier batches; gradient stopped.
      temperature: T > 0 (0.2 for MoCo v2, 0.07 for v1).

    Returns:
      fp32 scalar, the mean over the N queries.
    """
    _check_temperature(temperature, "info_nce")
    if q.ndim != 2 or q.shape != k.shape or queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"info_nce: expected q, k [N, D] and queue [K, D], got q{tuple(q.shape)}, "
                         f"k{tuple(k.shape)}, queue{tuple(queue.shape)}")
    q = l2_normalize(q)
    k = jax.lax.stop_gradient(l2_normalize(k))
    queue = jax.lax.stop_gradient(queue.astype(jnp.float32))
    l_pos_N = jnp.sum(q * k, axis=1) / temperature
    l_neg_NxK = _sim(q, queue) / temperature
    logits = jnp.concatenate([l_pos_N[:, None], l_neg_NxK], axis=1)
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - l_pos_N)


def mocov3_contrastive(q: jax.Array, k: jax.Array, temperature: float) -> jax.Array:
    """MoCo v3's ``ctr(q, k)`` with in-batch negatives (moco-v3 builder.py ``contrastive_loss``).

        ctr(q, k) = 2T * CE(softmax(q k^T / T), labels=arange(N))

    over the global batch: query ``i``'s positive is key ``i``, the other N - 1 keys are its
    negatives. The factor ``2T`` is the reference's scaling. The symmetric loss
    ``ctr(q1, k2) + ctr(q2, k1)`` is assembled by the method.

    Args:
      q: ``[N, D]`` unnormalised predictor outputs (online branch).
      k: ``[N, D]`` unnormalised momentum-encoder outputs; gradient stopped (the reference's
        ``concat_all_gather`` carries none).
      temperature: T > 0 (1.0 for ResNet, 0.2 for ViT).

    Returns:
      fp32 scalar.
    """
    _check_pair(q, k, "mocov3_contrastive")
    _check_temperature(temperature, "mocov3_contrastive")
    q = l2_normalize(q)
    k = jax.lax.stop_gradient(l2_normalize(k))
    logits_NxN = _sim(q, k) / temperature
    pos_N = jnp.diagonal(logits_NxN)
    return jnp.mean(jax.nn.logsumexp(logits_NxN, axis=1) - pos_N) * (2.0 * temperature)


# --------------------------------------------------------------------------- masked LM

def masked_lm_loss(logits: jax.Array, targets: jax.Array, weights: jax.Array):
    """Weighted token cross-entropy of BERT's masked-LM head (``get_masked_lm_output``).

        loss = sum_{b,p} w_bp * CE(logits_bp, target_bp) / max(sum_{b,p} w_bp, 1)

    Args:
      logits: ``[B, P, V]`` vocabulary logits at the P prediction slots (any float dtype;
        log-softmax in fp32).
      targets: ``[B, P]`` int32 original token ids.
      weights: ``[B, P]`` float32, 1 at real predictions, 0 at padding slots (rows may be all 0).

    Returns:
      ``(loss, metrics)``: loss an fp32 scalar; metrics a dict of fp32 scalars that aggregate
      exactly across batches by summing: ``correct`` (weighted count of argmax == target),
      ``weight_sum`` (sum of weights; the accuracy denominator), ``ce_sum`` (weighted CE sum;
      perplexity = exp(sum ce_sum / sum weight_sum)), plus this batch's ``accuracy``.
    """
    if logits.ndim != 3 or targets.shape != logits.shape[:2] or weights.shape != targets.shape:
        raise ValueError(f"masked_lm_loss: expected logits [B, P, V], targets and weights [B, P], got "
                         f"logits{tuple(logits.shape)}, targets{tuple(targets.shape)}, "
                         f"weights{tuple(weights.shape)}")
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    ce_BxP = -jnp.take_along_axis(log_probs, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    w = weights.astype(jnp.float32)
    ce_sum = jnp.sum(w * ce_BxP)
    weight_sum = jnp.sum(w)
    denom = jnp.maximum(weight_sum, 1.0)
    correct = jnp.sum(w * (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32))
    metrics = {"correct": correct, "weight_sum": weight_sum, "ce_sum": ce_sum,
               "accuracy": correct / denom}
    return ce_sum / denom, metrics


# --------------------------------------------------------------------------- MAE

def patchify(images: jax.Array, p: int) -> jax.Array:
    """``[B, H, W, C] -> [B, (H/p)*(W/p), p*p*C]``, MAE's order (models_mae.py ``patchify``).

    Patches are row-major over the ``(H/p, W/p)`` grid; inside a patch pixels are ordered
    ``(row, col, channel)``.
    """
    b, h, w, c = images.shape
    if h % p or w % p:
        raise ValueError(f"patchify: image size {h}x{w} is not divisible by patch size p={p}; "
                         f"resize/crop to a multiple of {p}")
    x = images.reshape(b, h // p, p, w // p, p, c)
    x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: jax.Array, p: int, grid_hw: Optional[tuple[int, int]] = None) -> jax.Array:
    """Inverse of ``patchify``: ``[B, N, p*p*C] -> [B, gh*p, gw*p, C]``.

    ``grid_hw`` is the ``(H/p, W/p)`` patch grid; by default square (``sqrt(N)``, as MAE).
    """
    b, n, d = patches.shape
    if d % (p * p):
        raise ValueError(f"unpatchify: last dim {d} is not p*p*C for p={p}")
    c = d // (p * p)
    if grid_hw is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"unpatchify: N={n} patches is not a square grid; pass grid_hw=(H/p, W/p)")
        grid_hw = (side, side)
    gh, gw = grid_hw
    if gh * gw != n:
        raise ValueError(f"unpatchify: grid_hw={grid_hw} has {gh * gw} patches, but N={n}")
    x = patches.reshape(b, gh, gw, p, p, c)
    x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))
    return x.reshape(b, gh * p, gw * p, c)


def mae_loss(pred: jax.Array, target_patches: jax.Array, mask: jax.Array,
             norm_pix_loss: bool = True) -> jax.Array:
    """MAE's reconstruction loss (models_mae.py ``forward_loss``), on removed patches only.

        t = (x - mean(x)) / sqrt(var(x) + 1e-6)   per patch, if norm_pix_loss
        L = sum_{b,n} m_bn * mean_j (pred_bnj - t_bnj)^2 / sum_{b,n} m_bn

    ``var`` is the unbiased (ddof=1) variance over the patch's ``p*p*C`` values, as
    ``torch.Tensor.var``'s default in the reference.

    Args:
      pred: ``[B, N, p*p*C]`` decoder predictions (any float dtype; math in fp32).
      target_patches: ``[B, N, p*p*C]`` ``patchify(images, p)``.
      mask: ``[B, N]``, 1 = masked/removed (counted), 0 = visible (ignored).
      norm_pix_loss: normalise each target patch by its mean and std (MAE default True).

    Returns:
      fp32 scalar; 0 if no patch is masked (the reference would divide by 0).
    """
    if pred.shape != target_patches.shape or pred.ndim != 3 or mask.shape != pred.shape[:2]:
        raise ValueError(f"mae_loss: expected pred and target [B, N, p*p*C] and mask [B, N], got "
                         f"pred{tuple(pred.shape)}, target{tuple(target_patches.shape)}, "
                         f"mask{tuple(mask.shape)}")
    target = target_patches.astype(jnp.float32)
    if norm_pix_loss:
        mean = jnp.mean(target, axis=-1, keepdims=True)
        var = jnp.var(target, axis=-1, keepdims=True, ddof=1)
        target = (target - mean) * jax.lax.rsqrt(var + 1e-6)
    per_patch = jnp.mean(jnp.square(pred.astype(jnp.float32) - target), axis=-1)
    m = mask.astype(jnp.float32)
    return jnp.sum(per_patch * m) / jnp.maximum(jnp.sum(m), 1.0)


# --------------------------------------------------------------------------- joint-embedding losses
#
# BYOL, Barlow Twins, VICReg and DINO. Like the losses above they take global arrays (rows sharded
# over ``"data"`` inside a jitted step) and compute every batch statistic (means, variances,
# cross-correlations, covariances, the DINO center) over the *global* batch, as the references do
# with SyncBatchNorm / all-gather / all-reduce. Math is fp32; matmuls run at ``Precision.HIGHEST``.

# BatchNorm1d's default eps, used by Barlow Twins' affine-free normalisation of z.
BARLOW_BN_EPS = 1e-5
# Added to the variance before the square root in VICReg's std term (main_vicreg.py).
VICREG_VAR_EPS = 1e-4


def _off_diagonal_sq_sum(m_DxD: jax.Array) -> jax.Array:
    """``sum_{i != j} m_ij^2`` of a square matrix (the references' ``off_diagonal(m).pow(2).sum()``)."""
    d = m_DxD.shape[0]
    return jnp.sum(jnp.square(m_DxD) * (1.0 - jnp.eye(d, dtype=m_DxD.dtype)))


def _check_batch_at_least(n: int, minimum: int, fn: str) -> None:
    if n < minimum:
        raise ValueError(f"{fn}: batch N={n} rows, but the loss needs N >= {minimum} (it uses "
                         f"per-feature batch statistics); pass a global batch of at least {minimum}")


def _contract_batch(subscripts: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """fp32 ``einsum`` at full precision that sums over the (sharded) batch axis.

    On ``Auto`` mesh axes (``jaxssl.sharding.make_mesh``) XLA picks the all-reduce. Under
    ``Explicit`` axes (``jax.make_mesh``'s default) JAX needs the output sharding of a
    contraction over sharded dims spelled out: the small result is replicated.
    """
    mesh = jax.typeof(a).sharding.mesh
    explicit = any(t == jax.sharding.AxisType.Explicit for t in mesh.axis_types)
    return jnp.einsum(subscripts, a, b, precision=_HIGHEST, preferred_element_type=jnp.float32,
                      out_sharding=P() if explicit else None)


def byol_loss(p: jax.Array, z: jax.Array) -> jax.Array:
    """BYOL's regression loss between online predictions and target projections (Grill et al. 2020, eq. 2).

        L = 1/N sum_i || p_i/||p_i|| - z_i/||z_i|| ||^2 = 1/N sum_i (2 - 2 cos(p_i, z_i))

    As ``regression_loss`` in deepmind-research ``byol/utils/helpers.py`` (there summed per
    row and averaged by the caller; identical to ``2 + 2 * lightly.loss.NegativeCosineSimilarity``).
    The symmetric BYOL loss ``byol_loss(p1, z2) + byol_loss(p2, z1)`` is assembled by the method.
    SimSiam's ``D(p, z) = -cos(p, stopgrad(z))`` is ``byol_loss / 2 - 1``.

    Args:
      p: ``[N, D]`` online-branch predictor outputs (any float dtype).
      z: ``[N, D]`` target projections, row-aligned with ``p``; a target: wrapped in
        ``jax.lax.stop_gradient``, so no gradient flows into it.

    Returns:
      fp32 scalar in ``[0, 4]``. Rows are normalised with ``l2_normalize`` (norm floor 1e-6),
      so a zero row has cosine 0 and contributes 2 with finite gradients.
    """
    _check_pair(p, z, "byol_loss")
    p_n = l2_normalize(p)
    z_n = jax.lax.stop_gradient(l2_normalize(z))
    return jnp.mean(2.0 - 2.0 * jnp.sum(p_n * z_n, axis=-1))


def _standardize_over_batch(z_NxD: jax.Array, eps: float) -> jax.Array:
    """``(z - mean) / sqrt(var + eps)`` per feature over the (global) batch, biased variance.

    Training-mode ``BatchNorm1d(affine=False)`` (SyncBatchNorm when the batch is sharded).
    """
    z = z_NxD.astype(jnp.float32)
    mean = jnp.mean(z, axis=0, keepdims=True)
    centred = z - mean
    var = jnp.mean(jnp.square(centred), axis=0, keepdims=True)
    return centred * jax.lax.rsqrt(var + eps)


def barlow_twins_loss(z_a: jax.Array, z_b: jax.Array, lambda_offdiag: float = 0.0051) -> jax.Array:
    """Barlow Twins' redundancy-reduction loss (Zbontar et al. 2021, eq. 1 and 2).

        z_n   = (z - mean_b z) / sqrt(var_b z + 1e-5)      per feature, biased var (BN, no affine)
        C_ij  = sum_b z_a_n[b, i] z_b_n[b, j] / N
        L     = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2

    As ``BarlowTwins.forward`` in facebookresearch/barlowtwins ``main.py`` with its
    SyncBatchNorm: the statistics and the cross-correlation are over the global batch of ``N``
    rows. That reference all-reduces ``C`` without differentiating the all-reduce and DDP then
    averages gradients, so its parameter gradient is this loss's gradient divided by the number
    of GPUs (lightly found and fixed the same in its BarlowTwinsLoss); this function returns the
    global objective and its exact gradient.

    Args:
      z_a, z_b: ``[N, D]`` projector outputs of the two views, row-aligned (any float dtype);
        N >= 2 (training-mode BatchNorm needs two rows).
      lambda_offdiag: ``lambda``, weight of the off-diagonal (redundancy) term; 0.0051 as the
        paper's ImageNet recipe (``--lambd``).

    Returns:
      fp32 scalar.
    """
    _check_pair(z_a, z_b, "barlow_twins_loss")
    _check_batch_at_least(z_a.shape[0], 2, "barlow_twins_loss")
    n = z_a.shape[0]
    a_n = _standardize_over_batch(z_a, BARLOW_BN_EPS)
    b_n = _standardize_over_batch(z_b, BARLOW_BN_EPS)
    c_DxD = _contract_batch("nd,ne->de", a_n, b_n) / n
    on_diag = jnp.sum(jnp.square(jnp.diagonal(c_DxD) - 1.0))
    return on_diag + lambda_offdiag * _off_diagonal_sq_sum(c_DxD)


def vicreg_loss(z_a: jax.Array, z_b: jax.Array, sim_coeff: float = 25.0, std_coeff: float = 25.0,
                cov_coeff: float = 1.0) -> jax.Array:
    """VICReg's variance-invariance-covariance loss (Bardes et al. 2022, eq. 1-6).

        s(Z, Z')   = 1/(N D) sum_{b,j} (z_bj - z'_bj)^2                          (invariance, MSE)
        v(Z)       = 1/D sum_j relu(1 - sqrt(Var_b(z_.j) + 1e-4))                (Var: unbiased, N-1)
        C(Z)       = (Z - mean Z)^T (Z - mean Z) / (N - 1)
        c(Z)       = 1/D sum_{i != j} C(Z)_ij^2
        L = sim_coeff * s + std_coeff * (v(Z)/2 + v(Z')/2) + cov_coeff * (c(Z) + c(Z'))

    As ``VICReg.forward`` in facebookresearch/vicreg ``main_vicreg.py``: the variance and
    covariance terms are over the globally gathered batch (``FullGatherLayer``, whose backward
    sums gradients over GPUs, so the reference's gradient equals this loss's); the reference's
    per-GPU MSE averaged by DDP is the global MSE here. Note the std term halves each branch
    (``mean(relu(1 - std_x)) / 2 + ...``) while the covariance term does not.

    Args:
      z_a, z_b: ``[N, D]`` expander outputs of the two views, row-aligned (any float dtype); N >= 2.
      sim_coeff, std_coeff, cov_coeff: lambda, mu, nu of the paper (25, 25, 1 for ImageNet).

    Returns:
      fp32 scalar.
    """
    _check_pair(z_a, z_b, "vicreg_loss")
    _check_batch_at_least(z_a.shape[0], 2, "vicreg_loss")
    n, d = z_a.shape
    x = z_a.astype(jnp.float32)
    y = z_b.astype(jnp.float32)
    repr_loss = jnp.mean(jnp.square(x - y))

    def std_and_cov(v_NxD):
        centred = v_NxD - jnp.mean(v_NxD, axis=0, keepdims=True)
        var = jnp.sum(jnp.square(centred), axis=0) / (n - 1)
        std_term = jnp.mean(jax.nn.relu(1.0 - jnp.sqrt(var + VICREG_VAR_EPS))) / 2.0
        cov_DxD = _contract_batch("nd,ne->de", centred, centred) / (n - 1)
        return std_term, _off_diagonal_sq_sum(cov_DxD) / d

    std_x, cov_x = std_and_cov(x)
    std_y, cov_y = std_and_cov(y)
    return sim_coeff * repr_loss + std_coeff * (std_x + std_y) + cov_coeff * (cov_x + cov_y)


def _check_positive_scalar(value, name: str, fn: str, typical: str) -> None:
    if isinstance(value, (int, float)) and value <= 0:
        raise ValueError(f"{fn}: {name}={value} must be > 0 ({typical})")


def dino_loss(student_logits: jax.Array, teacher_logits: jax.Array, center: jax.Array,
              student_temp: float = 0.1, teacher_temp: float = 0.04) -> jax.Array:
    """DINO's multi-crop self-distillation cross-entropy (Caron et al. 2021, eq. 1-3).

        P_t^{(t)} = softmax((g_t(x_t) - c) / tau_t)          (no gradient)
        log P_s^{(s)} = log_softmax(g_s(x_s) / tau_s)
        L = 1/|pairs| sum_{(t, s), s != t} 1/N sum_n  -<P_t^{(t)}_n, log P_s^{(s)}_n>

    over all teacher views ``t`` and student views ``s`` except a view with itself. As
    ``DINOLoss.forward`` in facebookresearch/dino ``main_dino.py``, where the teacher sees the
    2 global crops and the student all ``2 + n_local`` crops (global crops first), and
    ``loss.mean()`` of each pair is over the global batch here (the reference's per-GPU mean
    averaged by DDP is the same number).

    Args:
      student_logits: ``[Vs, N, K]`` student head outputs, one stack per view (any float dtype).
      teacher_logits: ``[Vt, N, K]`` teacher head outputs; teacher view ``t`` is the same crop
        as student view ``t`` (so those pairs are skipped). Gradient stopped.
      center: ``[1, K]`` (DINO's buffer shape; ``[K]`` also works) running mean of teacher
        logits, see ``dino_center_update``; gradient stopped.
      student_temp: ``tau_s`` > 0 (0.1).
      teacher_temp: ``tau_t`` > 0 (0.04 after DINO's warm-up from 0.04 / 0.07); may be a traced
        scalar, for the warm-up schedule.

    Returns:
      fp32 scalar.
    """
    fn = "dino_loss"
    if student_logits.ndim != 3 or teacher_logits.ndim != 3 or \
            student_logits.shape[1:] != teacher_logits.shape[1:]:
        raise ValueError(f"{fn}: expected student_logits [Vs, N, K] and teacher_logits [Vt, N, K] with the "
                         f"same N and K, got {tuple(student_logits.shape)} and "
                         f"{tuple(teacher_logits.shape)}; stack each view's head outputs on axis 0")
    v_s, n, k = student_logits.shape
    v_t = teacher_logits.shape[0]
    if center.shape not in ((1, k), (k,)):
        raise ValueError(f"{fn}: center shape {tuple(center.shape)} must be (1, {k}) (DINO's buffer) "
                         f"for K={k} logits")
    num_pairs = v_t * v_s - min(v_t, v_s)
    if num_pairs == 0:
        raise ValueError(f"{fn}: Vs={v_s} student and Vt={v_t} teacher views leave no pair (t, s) with "
                         f"s != t; DINO needs at least 2 views (2 global crops)")
    _check_positive_scalar(student_temp, "student_temp", fn, "DINO uses 0.1")
    _check_positive_scalar(teacher_temp, "teacher_temp", fn, "DINO uses 0.04, warm-up from 0.04 or 0.07")

    center = jax.lax.stop_gradient(center.astype(jnp.float32)).reshape(1, 1, -1)  # [1, 1, K]
    teacher = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
    t_probs_VtxNxK = jax.lax.stop_gradient(jax.nn.softmax((teacher - center) / teacher_temp, axis=-1))
    s_logp_VsxNxK = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temp, axis=-1)
    ce_VtxVs = -_contract_batch("tnk,snk->ts", t_probs_VtxNxK, s_logp_VsxNxK) / n
    not_same_view = 1.0 - jnp.eye(v_t, v_s, dtype=jnp.float32)
    return jnp.sum(ce_VtxVs * not_same_view) / num_pairs


def dino_center_update(center: jax.Array, teacher_logits: jax.Array, momentum: float = 0.9) -> jax.Array:
    """DINO's EMA of the teacher output (``DINOLoss.update_center``, Caron et al. 2021, eq. 4).

        c <- m c + (1 - m) * 1/(Vt N) sum_{t, n} g_t(x_t)_n

    the batch mean over every teacher view and every row of the global batch (the reference
    all-reduces the per-GPU sums and divides by ``len(teacher_output) * world_size``).

    Args:
      center: ``[1, K]`` current center (DINO initialises it to zeros; ``[K]`` also works).
      teacher_logits: ``[Vt, N, K]`` teacher head outputs of this step; gradient stopped.
      momentum: ``m`` in [0, 1] (``center_momentum``, 0.9).

    Returns:
      the new center, fp32, with ``center``'s shape.
    """
    if teacher_logits.ndim != 3 or center.shape not in ((1, teacher_logits.shape[-1]),
                                                        (teacher_logits.shape[-1],)):
        raise ValueError(f"dino_center_update: expected center [1, K] and teacher_logits [Vt, N, K], got "
                         f"center{tuple(center.shape)} and teacher_logits{tuple(teacher_logits.shape)}")
    if isinstance(momentum, (int, float)) and not 0.0 <= momentum <= 1.0:
        raise ValueError(f"dino_center_update: momentum={momentum} must be in [0, 1] (DINO uses 0.9)")
    teacher = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
    batch_center = jnp.mean(teacher, axis=(0, 1)).reshape(center.shape)
    return momentum * center.astype(jnp.float32) + (1.0 - momentum) * batch_center


# --------------------------------------------------------------------------- iBOT / DINOv2
#
# The masked-prediction-in-latent-space losses: KoLeo (DINOv2's spreading regulariser),
# Sinkhorn-Knopp teacher centering (SwAV's, DINOv2's default for large runs) and iBOT's masked
# patch cross-entropy. Same conventions as above: global arrays, fp32 math, no teacher gradient.


def _explicit_mesh_of(x: jax.Array) -> bool:
    mesh = jax.typeof(x).sharding.mesh
    return any(t == jax.sharding.AxisType.Explicit for t in mesh.axis_types)


def _replicated(x: jax.Array) -> jax.Array:
    """``x`` with every axis replicated when its mesh is ``Explicit`` (a gathered copy that an
    einsum against the sharded original can use); unchanged on ``Auto`` meshes, where XLA
    inserts the all-gather itself."""
    if _explicit_mesh_of(x):
        return jax.sharding.reshard(x, P())
    return x


def koleo_loss(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """The Kozachenko-Leonenko entropy estimator as a loss (Sablayrolles et al. 2019; DINOv2
    sec. 4 "KoLeo regularizer"):

        x_i <- x_i / max(||x_i||, eps)
        nn(i) = argmax_{j != i} <x_i, x_j>
        L = -1/N sum_i log(|| x_i - x_nn(i) + eps ||_2 + eps)

    as dinov2 ``dinov2/loss/koleo_loss.py`` ``KoLeoLoss.forward`` (``nn.PairwiseDistance(2,
    eps)`` adds ``eps`` to the difference). The nearest neighbour is searched among the rows
    given (the reference: one GPU's rows); the gradient flows through both ``x_i`` and
    ``x_nn(i)``, the argmax itself has none.

    Args:
      x: ``[N, D]`` features (DINOv2: the student's [CLS] backbone output of one global crop),
        ``N >= 2``, any float dtype.
      eps: the normalisation floor and distance offset (1e-8).

    Returns:
      fp32 scalar.
    """
    if x.ndim != 2:
        raise ValueError(f"koleo_loss: expected x [N, D], got shape {tuple(x.shape)}; pass one "
                         "crop's features (DINOv2 applies it to each global crop separately)")
    _check_batch_at_least(x.shape[0], 2, "koleo_loss")
    x = x.astype(jnp.float32)
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)
    cols = _replicated(x)
    dots_NxN = jnp.einsum("nd,md->nm", x, jax.lax.stop_gradient(cols), precision=_HIGHEST,
                          preferred_element_type=jnp.float32)
    dots_NxN = jnp.where(jnp.eye(x.shape[0], dtype=bool), -1.0, dots_NxN)  # never yourself
    nearest_N = jnp.argmax(dots_NxN, axis=1)
    if _explicit_mesh_of(x):
        neighbours = cols.at[nearest_N].get(out_sharding=jax.typeof(x).sharding.spec)
    else:
        neighbours = cols[nearest_N]
    distances = jnp.sqrt(jnp.sum(jnp.square(x - neighbours + eps), axis=-1))
    return -jnp.mean(jnp.log(distances + eps))


def sinkhorn_knopp(teacher_logits: jax.Array, teacher_temp, num_iters: int = 3,
                   valid: Optional[jax.Array] = None) -> jax.Array:
    """Sinkhorn-Knopp teacher targets (SwAV's ``distributed_sinkhorn``; dinov2
    ``DINOLoss.sinkhorn_knopp_teacher``), over the global batch:

        Q = exp(l / tau_t)^T,  Q <- Q / sum(Q)                       [K, N]
        repeat num_iters: Q <- Q / (K * rowsum(Q));  Q <- Q / (N * colsum(Q))
        return (N * Q)^T                                             [N, K], rows sum to 1

    Computed as ``exp((l - max l) / tau_t)``: the global scale cancels in the first
    normalisation, so the result is the reference's, without its fp32 overflow for
    ``l / tau_t > 88``. No gradient.

    Args:
      teacher_logits: ``[N, K]`` teacher head outputs (the reference's all-reduces make ``N``
        the global batch: every GPU's rows).
      teacher_temp: ``tau_t`` > 0 (DINOv2: 0.04 -> 0.07); may be traced.
      num_iters: Sinkhorn iterations (3).
      valid: optional ``[N]`` bool: rows that take part (the others are padding, get zeros and
        do not count in ``N``), for a fixed-size buffer of masked patches (dinov2
        ``iBOTPatchLoss.sinkhorn_knopp_teacher`` with ``n_masked_patches_tensor``).

    Returns:
      fp32 ``[N, K]``.
    """
    if teacher_logits.ndim != 2:
        raise ValueError(f"sinkhorn_knopp: expected teacher_logits [N, K], got shape "
                         f"{tuple(teacher_logits.shape)}; flatten the crops into N")
    if num_iters < 0:
        raise ValueError(f"sinkhorn_knopp: num_iters={num_iters} must be >= 0 (DINOv2: 3)")
    _check_positive_scalar(teacher_temp, "teacher_temp", "sinkhorn_knopp", "DINOv2: 0.04 -> 0.07")
    logits = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
    n, k = logits.shape
    if valid is None:
        weight = None
        batch = jnp.float32(n)
        top = jnp.max(logits)
    else:
        weight = jax.lax.stop_gradient(valid.astype(jnp.float32)).reshape(n, 1)
        batch = jnp.sum(weight)
        top = jnp.max(jnp.where(weight > 0, logits, -jnp.inf))
    q_NxK = jnp.exp((logits - top) / teacher_temp)
    if weight is not None:
        q_NxK = q_NxK * weight
    q_NxK = q_NxK / jnp.sum(q_NxK)
    for _ in range(num_iters):
        q_NxK = q_NxK / (jnp.sum(q_NxK, axis=0, keepdims=True) * k)   # each prototype: 1/K
        col = jnp.sum(q_NxK, axis=1, keepdims=True)
        if weight is not None:
            col = jnp.where(weight > 0, col, 1.0)
        q_NxK = q_NxK / (col * batch)                                 # each sample: 1/N
    return jax.lax.stop_gradient(q_NxK * batch)


def ibot_patch_loss(student_logits: jax.Array, teacher_probs: jax.Array, mask: jax.Array,
                    student_temp: float = 0.1) -> jax.Array:
    """iBOT's masked patch self-distillation (Zhou et al. 2022, eq. 2; dinov2
    ``iBOTPatchLoss.forward``, bytedance/ibot ``iBOTLoss`` patch term):

        l_np = -sum_k t_npk log_softmax(s_np / tau_s)_k
        L = 1/N sum_n [ sum_p m_np l_np / max(sum_p m_np, 1) ]

    the mean over each image's masked patches (an image with no masked patch contributes 0
    and still counts in ``N``), then over images. ``teacher_probs`` get no gradient.

    Args:
      student_logits: ``[N, P, K]`` student head outputs of the (masked) global crops' patch
        tokens.
      teacher_probs: ``[N, P, K]`` teacher targets (softmax with centering, or Sinkhorn-Knopp)
        of the unmasked crops' patch tokens.
      mask: ``[N, P]`` bool, True where the student's patch was masked.
      student_temp: ``tau_s`` > 0 (0.1).

    Returns:
      fp32 scalar.
    """
    fn = "ibot_patch_loss"
    if student_logits.ndim != 3 or student_logits.shape != teacher_probs.shape or \
            mask.shape != student_logits.shape[:2]:
        raise ValueError(f"{fn}: expected student_logits and teacher_probs [N, P, K] and mask "
                         f"[N, P], got {tuple(student_logits.shape)}, {tuple(teacher_probs.shape)}"
                         f" and {tuple(mask.shape)}")
    _check_positive_scalar(student_temp, "student_temp", fn, "iBOT / DINOv2 use 0.1")
    t = jax.lax.stop_gradient(teacher_probs.astype(jnp.float32))
    logp = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temp, axis=-1)
    ce_NxP = -jnp.sum(t * logp, axis=-1)
    m = mask.astype(jnp.float32)
    per_image = jnp.sum(ce_NxP * m, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1.0)
    return jnp.mean(per_image)


def ibot_patch_loss_gathered(student_logits: jax.Array, teacher_probs: jax.Array,
                             weights: jax.Array, num_images: int,
                             student_temp: float = 0.1) -> jax.Array:
    """:func:`ibot_patch_loss` on a buffer of the masked patches only (dinov2
    ``iBOTPatchLoss.forward_masked``): ``-1/num_images sum_m w_m sum_k t_mk log_softmax(s_m /
    tau_s)_k`` with ``w_m = 1 / (masked patches of row m's image)`` and 0 on padding rows.

    Args:
      student_logits, teacher_probs: ``[M, K]`` rows of masked patches (a static-size buffer).
      weights: ``[M]`` per-row weights (0 for padding).
      num_images: the ``N`` of :func:`ibot_patch_loss` (every image, masked or not).
    """
    if student_logits.ndim != 2 or student_logits.shape != teacher_probs.shape or \
            weights.shape != student_logits.shape[:1]:
        raise ValueError(f"ibot_patch_loss_gathered: expected [M, K] logits and targets and [M] "
                         f"weights, got {tuple(student_logits.shape)}, "
                         f"{tuple(teacher_probs.shape)} and {tuple(weights.shape)}")
    t = jax.lax.stop_gradient(teacher_probs.astype(jnp.float32))
    logp = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temp, axis=-1)
    ce_M = -jnp.sum(t * logp, axis=-1)
    return jnp.sum(ce_M * jax.lax.stop_gradient(weights.astype(jnp.float32))) / num_images
