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
