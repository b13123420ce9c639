"""MAE random patch masking, on device, with stateless per-example randomness.

Reference: He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners", sec. 3, and
facebookresearch/mae ``models_mae.py`` ``random_masking``::

    noise = torch.rand(N, L)                       # one uniform per patch
    ids_shuffle = torch.argsort(noise, dim=1)      # ascend: small is keep, large is remove
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    mask = ones([N, L]); mask[:, :len_keep] = 0; mask = gather(mask, 1, ids_restore)

Per image, exactly ``num_masked = round(mask_ratio * N)`` of its ``N`` patches are removed
(``mask == 1``), chosen uniformly without replacement; the encoder sees the other
``num_keep = N - num_masked``. MAE computes ``len_keep = int(N * (1 - mask_ratio))``; the two
agree for the standard grids at ratio 0.75 (196 -> 49 kept, 64 -> 16, 16 -> 4), and ``round``
is the rule this library documents (``round`` is Python's, evaluated on the host).

Differences from the reference, none of which changes the distribution:

* the noise is 32 random bits per patch instead of a float32 uniform (24 bits), so ties,
  which ``argsort`` breaks by position, have probability ~2^-32 per pair instead of ~2^-24;
* ``ids_restore`` is the inverse permutation written by a scatter (O(N)) instead of a second
  ``argsort`` (O(N log N)); it is the same array.

Randomness: image ``i`` of the global batch uses ``fold_in(key, offset + i)`` only
(``jaxssl.rng.example_keys``), with ``key = rng.step_key(seed, 'mask', step)``, so an image's
mask depends on (seed, step, its global index) and not on the batch size, the device count or
the sharding; a slice of the batch passed with its ``offset`` reproduces those rows.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl import rng

__all__ = ["PatchMask", "num_masked_patches", "random_patch_mask", "patch_mask_for_step",
           "gather_patches"]


class PatchMask(NamedTuple):
    """One random masking of a batch of ``B`` images with ``N`` patches each (``K`` kept).

    mask:        float32 ``[B, N]``, 1 = removed (predicted, counted by the loss), 0 = visible;
                 in patch order (row-major over the patch grid), MAE's convention.
    ids_shuffle: int32 ``[B, N]``, a permutation of ``0..N-1`` per row; its first ``K`` entries
                 are the visible patches (in random order), the rest the removed ones.
    ids_restore: int32 ``[B, N]``, the inverse permutation: ``ids_shuffle[b, ids_restore[b, n]]
                 == n``; gathering the shuffled sequence with it restores patch order.
    ids_keep:    int32 ``[B, K]``, ``ids_shuffle[:, :K]``, the patches the encoder sees.
    """
    mask: jax.Array
    ids_shuffle: jax.Array
    ids_restore: jax.Array
    ids_keep: jax.Array


def num_masked_patches(num_patches: int, mask_ratio: float, field: str = "mae.mask_ratio") -> int:
    """``round(mask_ratio * num_patches)``; raises ``ValueError`` unless 0 < it < num_patches.

    At least one patch must be removed (else the loss is empty) and at least one kept (else the
    encoder has no input); ``field`` names the config field in the error.
    """
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"config field {field}={mask_ratio!r} is invalid: the mask ratio must be "
                         "in (0, 1), e.g. 0.75 (MAE)")
    if num_patches <= 0:
        raise ValueError(f"random patch masking needs at least one patch, got N={num_patches}")
    n = int(round(mask_ratio * num_patches))
    if not 0 < n < num_patches:
        raise ValueError(
            f"config field {field}={mask_ratio!r} is invalid for {num_patches} patches: it masks "
            f"{n} of them, leaving {'no patch to predict' if n == 0 else 'no visible patch'}; "
            "use a ratio closer to 0.5 or smaller patches (model.patch_size)")
    return n


def random_patch_mask(key: jax.Array, batch_size: int, num_patches: int, mask_ratio: float,
                      offset=0) -> PatchMask:
    """MAE's ``random_masking`` for a batch: exactly ``round(mask_ratio * N)`` patches removed
    per image, uniformly at random.

    Args:
      key: typed PRNG key of the step (``rng.step_key(seed, 'mask', step)``).
      batch_size: ``B``, rows to draw (static).
      num_patches: ``N`` patches per image (static).
      mask_ratio: fraction of patches removed, in (0, 1) (static).
      offset: global index of row 0 (int or traced int); row ``i`` is keyed by
        ``fold_in(key, offset + i)``.

    Returns:
      :class:`PatchMask` with ``K = N - round(mask_ratio * N)`` kept patches per row.
    """
    num_masked = num_masked_patches(num_patches, mask_ratio)
    num_keep = num_patches - num_masked
    keys = rng.example_keys(key, batch_size, offset)
    noise = jax.vmap(lambda k: jax.random.bits(k, (num_patches,), jnp.uint32))(keys)  # [B, N]
    ids_shuffle = jnp.argsort(noise, axis=1, stable=True).astype(jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(num_patches, dtype=jnp.int32), ids_shuffle.shape)
    ids_restore = jax.vmap(lambda perm, pos: jnp.zeros_like(pos).at[perm].set(pos))(
        ids_shuffle, positions)
    # Shuffled order is [kept..., removed...]; bring the 0/1 flags back to patch order.
    shuffled_mask = (positions >= num_keep).astype(jnp.float32)
    mask = jnp.take_along_axis(shuffled_mask, ids_restore, axis=1)
    return PatchMask(mask=mask, ids_shuffle=ids_shuffle, ids_restore=ids_restore,
                     ids_keep=ids_shuffle[:, :num_keep])


def patch_mask_for_step(seed: int, step, batch_size: int, num_patches: int,
                        mask_ratio: float, offset=0) -> PatchMask:
    """The training masks of ``step``: :func:`random_patch_mask` keyed by stream ``'mask'``."""
    return random_patch_mask(rng.step_key(seed, "mask", step), batch_size, num_patches,
                             mask_ratio, offset)


def gather_patches(tokens: jax.Array, ids: jax.Array) -> jax.Array:
    """Rows ``ids`` of each example: tokens ``[B, N, D]``, ids int ``[B, K]`` -> ``[B, K, D]``.

    MAE's ``torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, D))``.
    """
    if tokens.ndim != 3 or ids.ndim != 2 or ids.shape[0] != tokens.shape[0]:
        raise ValueError(f"gather_patches expects tokens [B, N, D] and ids [B, K], got tokens "
                         f"{tuple(tokens.shape)} and ids {tuple(ids.shape)}")
    return jnp.take_along_axis(tokens, ids[:, :, None], axis=1)


# --------------------------------------------------------------------------- blockwise masks
# iBOT / DINOv2: BEiT-style block masking of the student's global crops.

def _block_mask_one(key, target, grid, min_num_patches, max_num_patches, log_aspect,
                    attempts=10):
    """One ``[H, W]`` bool mask with at most ``target`` patches, made of rectangles: dinov2
    ``MaskingGenerator.__call__`` / ``_mask`` (BEiT's ``masking_generator.py``)."""
    height, width = grid
    rows = jnp.arange(height, dtype=jnp.int32)[:, None]
    cols = jnp.arange(width, dtype=jnp.int32)[None, :]

    def attempt(state):
        mask, key, delta, tries, max_mask = state
        key, k_area, k_aspect, k_top, k_left = jax.random.split(key, 5)
        # random.uniform(lo, hi) = lo + (hi - lo) * U(0, 1), also for hi < lo
        area = min_num_patches + (max_mask - min_num_patches) * jax.random.uniform(k_area, ())
        aspect = jnp.exp(jax.random.uniform(k_aspect, (), jnp.float32, *log_aspect))
        h = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
        w = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
        fits = (w < width) & (h < height)
        top = jax.random.randint(k_top, (), 0, jnp.maximum(height - h + 1, 1))   # randint(0, H - h)
        left = jax.random.randint(k_left, (), 0, jnp.maximum(width - w + 1, 1))
        rect = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
        new = h * w - jnp.sum(mask & rect, dtype=jnp.int32)
        take = fits & (new > 0) & (new <= max_mask)
        return (mask | (rect & take), key, jnp.where(take, new, 0), tries + 1, max_mask)

    def one_block(state):
        mask, key, count, done = state
        max_mask = jnp.minimum(target - count, max_num_patches).astype(jnp.float32)
        mask, key, delta, _, _ = jax.lax.while_loop(
            lambda s: (s[2] == 0) & (s[3] < attempts), attempt,
            (mask, key, jnp.int32(0), jnp.int32(0), max_mask))
        return mask, key, count + delta, delta == 0

    mask0 = jnp.zeros((height, width), bool)
    mask, _, _, _ = jax.lax.while_loop(lambda s: (~s[3]) & (s[2] < target), one_block,
                                       (mask0, key, jnp.int32(0), jnp.bool_(False)))
    return mask.reshape(-1)


def blockwise_masks(key: jax.Array, batch_size: int, grid, ratio=(0.1, 0.5), prob: float = 0.5,
                    *, min_num_patches: int = 4, max_num_patches: float | None = None,
                    aspect=(0.3, 1 / 0.3)) -> jax.Array:
    """iBOT / DINOv2 block masks for ``batch_size`` images: ``[B, H*W]`` bool, True = masked.

    dinov2 ``data/collate.py`` ``collate_data_and_cast`` with ``data/masking.py``
    ``MaskingGenerator`` (BEiT's block masking):

    * ``int(B * prob)`` images are masked; image ``i`` of them gets a target of
      ``int(N * u_i)`` patches with ``u_i ~ U(r_i, r_{i+1})``, ``r = linspace(ratio[0],
      ratio[1], int(B * prob) + 1)`` (the ratios are stratified over the batch); the other
      images get no mask; then the rows are shuffled;
    * a mask grows by rectangles: area ``~ U(min_num_patches, min(left, max_num_patches))``,
      log aspect ``~ U(log aspect[0], log aspect[1])``, ``h = round(sqrt(area * aspect))``,
      ``w = round(sqrt(area / aspect))``, placed uniformly inside the grid; a rectangle is
      kept if it adds between 1 and ``left`` new patches (10 tries per block), so an image
      never has more masked patches than its target, and growth stops when a block fails.

    The masked count of row ``i`` is therefore at most ``int(N * r_{i+1})``:
    :func:`blockwise_mask_budget` is the static bound on the batch's total.

    Args:
      key: typed PRNG key (``rng.step_key(seed, 'mask', step)``); the masks are a pure
        function of it and of the static arguments.
      batch_size: ``B`` (static): DINOv2 masks the ``2 x batch`` global crops together.
      grid: ``(H, W)`` patch grid (static), e.g. (14, 14) for 224 px at patch 16.
      ratio: ``(min, max)`` masked fraction of a masked image (iBOT / DINOv2: (0.1, 0.5)).
      prob: share of images that are masked (0.5).
      min_num_patches: smallest rectangle area (DINOv2 4; iBOT ``(min(H, W) // 3) ** 2``).
      max_num_patches: largest rectangle area (DINOv2 ``0.5 * N``, the default; iBOT none:
        pass ``N``).
      aspect: ``(min, max)`` aspect ratio of a rectangle (0.3, 1 / 0.3).
    """
    height, width = (int(grid), int(grid)) if isinstance(grid, int) else tuple(map(int, grid))
    n = height * width
    lo, hi = float(ratio[0]), float(ratio[1])
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"blockwise_masks: ratio={tuple(ratio)} must satisfy 0 <= min <= max <= 1 "
                         "(iBOT / DINOv2: (0.1, 0.5))")
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"blockwise_masks: prob={prob} must lie in [0, 1] (iBOT / DINOv2: 0.5)")
    if not 0 < aspect[0] <= aspect[1]:
        raise ValueError(f"blockwise_masks: aspect={tuple(aspect)} must satisfy 0 < min <= max")
    max_num_patches = 0.5 * n if max_num_patches is None else float(max_num_patches)
    num_masked = int(batch_size * prob)
    bounds = np.linspace(lo, hi, num_masked + 1, dtype=np.float32)
    k_ratio, k_perm, k_rows = jax.random.split(key, 3)
    u = jax.random.uniform(k_ratio, (num_masked,), jnp.float32)
    frac = jnp.asarray(bounds[:-1]) + (jnp.asarray(bounds[1:]) - jnp.asarray(bounds[:-1])) * u
    targets = jnp.concatenate([jnp.floor(n * frac).astype(jnp.int32),
                               jnp.zeros((batch_size - num_masked,), jnp.int32)])
    log_aspect = (float(np.log(aspect[0])), float(np.log(aspect[1])))
    keys = jax.random.split(k_rows, batch_size)
    masks = jax.vmap(lambda k, t: _block_mask_one(k, t, (height, width), float(min_num_patches),
                                                  max_num_patches, log_aspect))(keys, targets)
    return masks[jax.random.permutation(k_perm, batch_size)]


def blockwise_mask_budget(batch_size: int, num_patches: int, ratio=(0.1, 0.5),
                          prob: float = 0.5) -> int:
    """A static upper bound on ``blockwise_masks(...).sum()``: dinov2's ``upperbound``
    (``sum_i int(N * r_{i+1})``) plus one per masked image for float rounding; at least 1.
    A method gathers the masked patches into a buffer of this many rows."""
    num_masked = int(batch_size * prob)
    bounds = np.linspace(float(ratio[0]), float(ratio[1]), num_masked + 1, dtype=np.float32)
    total = sum(min(num_patches, int(num_patches * float(b)) + 1) for b in bounds[1:])
    return max(1, min(total, batch_size * num_patches))


__all__ += ["blockwise_masks", "blockwise_mask_budget"]
