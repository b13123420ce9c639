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


# --------------------------------------------------------------------------- I-JEPA multi-block
# I-JEPA's ``MaskCollator`` (Assran et al. 2023; facebookresearch/ijepa ``src/masks/multiblock.py``),
# as pure functions of a key. The reference, per batch of B images on an H x W patch grid:
#
# 1. one uniform ``u_t`` gives the TARGET block size shared by the whole batch
#    (``_sample_block_size``): ``s = lo + u (hi - lo)`` (target_scale), ``a = lo + u (hi - lo)``
#    (target_aspect, the same u), ``k = int(H W s)``, ``h = round(sqrt(k a))``,
#    ``w = round(sqrt(k / a))``, then h <= H - 1 and w <= W - 1; a second uniform ``u_c`` gives
#    the CONTEXT block size the same way with context_scale and aspect 1;
# 2. per image, ``num_targets`` target blocks at ``top = randint(0, H - h)``,
#    ``left = randint(0, W - w)`` (the exclusive upper bound means a block never touches the
#    last row / column: the reference's behaviour, kept);
# 3. per image, the context block: positions drawn the same way until the block minus every
#    target block keeps more than ``min_keep`` patches; after each 20 failed draws the last
#    remaining target stops constraining it (``tries``), so the context may then overlap the
#    targets (never with the I-JEPA settings on a 14 x 14 grid, where the first draw nearly
#    always succeeds);
# 4. collation truncates every image's context to the batch's smallest context (keeping the
#    first patches in row-major order: ``cm[:min_keep_enc]`` of sorted indices); the targets
#    all have h * w patches already.
#
# jaxssl returns boolean masks over the H*W patches, context [B, N] and targets [B, T, N], with
# equal counts across the batch (the reference's collated index lists, as masks). The counts
# vary from step to step, as in the reference; a model gathers a static number of indices
# (``mask_indices``: the selected patches first, in row-major order, plus a validity mask)
# so the step compiles once. Randomness: the two block sizes come from ``key`` (shared by the
# batch), image i's positions from ``fold_in(key', offset + i)`` only, so an image's blocks do
# not depend on the device count or the sharding; every candidate position of step 3 is drawn
# up front (``(num_targets + 1) * max_tries`` of them) and the first acceptable one in the
# reference's order is taken, so the whole sampler is one jittable program.

MULTIBLOCK_TRIES = 20  # the reference's ``timeout``: draws before a target stops constraining


def _grid_hw(grid) -> tuple[int, int]:
    if isinstance(grid, int):
        return int(grid), int(grid)
    height, width = (int(g) for g in grid)
    return height, width


def multiblock_block_size(u, scale, aspect, height: int, width: int):
    """``(h, w)`` of a block from the uniform ``u`` (``MaskCollator._sample_block_size``).

    Works on Python / numpy floats (float64, as the reference's ``.item()``) and on traced
    JAX scalars (float32). ``round`` is half-to-even in both, as Python's.
    """
    xp = jnp if isinstance(u, jax.Array) else __import__("numpy")
    mask_scale = scale[0] + u * (scale[1] - scale[0])
    max_keep = xp.floor(height * width * mask_scale)
    ratio = aspect[0] + u * (aspect[1] - aspect[0])
    h = xp.round(xp.sqrt(max_keep * ratio))
    w = xp.round(xp.sqrt(max_keep / ratio))
    h = xp.minimum(h, height - 1)   # ``while h >= self.height: h -= 1``
    w = xp.minimum(w, width - 1)
    if xp is jnp:
        return h.astype(jnp.int32), w.astype(jnp.int32)
    return h.astype(int), w.astype(int)


def multiblock_sizes(grid, scale, aspect, resolution: int = 100_001):
    """Every ``(h, w)`` :func:`multiblock_block_size` gives for u on a dense grid of [0, 1):
    ``np.ndarray [K, 2]`` (host, for static bounds and config checks)."""
    import numpy as np
    height, width = _grid_hw(grid)
    u = np.linspace(0.0, 1.0, resolution, endpoint=False)
    h, w = multiblock_block_size(u, tuple(map(float, scale)), tuple(map(float, aspect)),
                                 height, width)
    return np.unique(np.stack([h, w], axis=1), axis=0)


def multiblock_budgets(grid, num_targets: int = 4, target_scale=(0.15, 0.2),
                       target_aspect=(0.75, 1.5), context_scale=(0.85, 1.0),
                       min_keep: int = 10, field: str = "ijepa") -> tuple[int, int]:
    """``(target_patches, context_patches)``: the most patches a target block and a context
    block can hold on ``grid`` (static sequence lengths for :func:`mask_indices`).

    Raises ``ValueError`` (naming ``field``) when a block can hold ``min_keep`` patches or
    fewer, where the reference would retry forever, or when ``num_targets < 1``.
    """
    if int(num_targets) < 1:
        raise ValueError(f"config field {field}.num_targets={num_targets!r} is invalid: use at "
                         "least 1 target block (I-JEPA: 4)")
    for name, rng_ in (("target_scale", target_scale), ("target_aspect", target_aspect),
                       ("context_scale", context_scale)):
        lo, hi = (float(v) for v in rng_)
        if not 0.0 < lo <= hi or (name.endswith("scale") and hi > 1.0):
            raise ValueError(f"config field {field}.{name}={tuple(rng_)!r} is invalid: give "
                             "(low, high) with 0 < low <= high" +
                             (" <= 1" if name.endswith("scale") else ""))
    height, width = _grid_hw(grid)
    if height < 2 or width < 2:
        raise ValueError(f"multi-block masking needs a patch grid of at least 2 x 2, got "
                         f"{height} x {width}; use smaller patches (model.patch_size)")
    out = []
    for name, scale, aspect in (("target_scale", target_scale, target_aspect),
                                ("context_scale", context_scale, (1.0, 1.0))):
        sizes = multiblock_sizes((height, width), scale, aspect)
        areas = sizes[:, 0] * sizes[:, 1]
        if int(areas.min()) <= int(min_keep):
            raise ValueError(
                f"config field {field}.{name}={tuple(scale)!r} gives blocks of "
                f"{int(areas.min())} patches on the {height} x {width} grid, not more than "
                f"{field}.min_keep={min_keep}; raise the scale or lower min_keep")
        out.append(int(areas.max()))
    return out[0], out[1]


def _block_masks(tops, lefts, h, w, height: int, width: int):
    """Boolean masks ``[..., H*W]`` of the h x w blocks at ``(tops, lefts)`` (any batch shape)."""
    lead = (1,) * tops.ndim
    rows = jnp.arange(height, dtype=jnp.int32).reshape(lead + (height, 1))
    cols = jnp.arange(width, dtype=jnp.int32).reshape(lead + (1, width))
    t, l = tops[..., None, None], lefts[..., None, None]
    inside = (rows >= t) & (rows < t + h) & (cols >= l) & (cols < l + w)
    return inside.reshape(inside.shape[:-2] + (height * width,))


def multiblock_draws(key, batch_size: int, num_targets: int = 4,
                     max_tries: int = MULTIBLOCK_TRIES, offset=0) -> dict:
    """The uniforms :func:`multiblock_masks` consumes: ``u_target``, ``u_context`` (scalars,
    the batch's block sizes), ``target_pos`` [B, T, 2] and ``context_pos`` [B, (T+1)*tries, 2]
    (top, left uniforms in [0, 1), in the reference's drawing order)."""
    sizes = jax.random.uniform(jax.random.fold_in(key, 0x7FFFFFFF), (2,), jnp.float32)
    keys = rng.example_keys(jax.random.fold_in(key, 1), batch_size, offset)
    candidates = (num_targets + 1) * max_tries

    def one(k):
        kt, kc = jax.random.split(k)
        return (jax.random.uniform(kt, (num_targets, 2), jnp.float32),
                jax.random.uniform(kc, (candidates, 2), jnp.float32))

    target_pos, context_pos = jax.vmap(one)(keys)
    return dict(u_target=sizes[0], u_context=sizes[1], target_pos=target_pos,
                context_pos=context_pos)


def multiblock_from_draws(draws: dict, grid, target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                          context_scale=(0.85, 1.0), min_keep: int = 10,
                          max_tries: int = MULTIBLOCK_TRIES):
    """:func:`multiblock_masks` given its uniforms (:func:`multiblock_draws`)."""
    height, width = _grid_hw(grid)
    th, tw = multiblock_block_size(draws["u_target"], tuple(map(float, target_scale)),
                                   tuple(map(float, target_aspect)), height, width)
    ch, cw = multiblock_block_size(draws["u_context"], tuple(map(float, context_scale)),
                                   (1.0, 1.0), height, width)

    def position(u, extent, size):  # torch.randint(0, extent - size): [0, extent - size - 1]
        return jnp.floor(u * (extent - size).astype(jnp.float32)).astype(jnp.int32)

    tp, cp = draws["target_pos"], draws["context_pos"]
    targets = _block_masks(position(tp[..., 0], height, th), position(tp[..., 1], width, tw),
                           th, tw, height, width)                              # [B, T, N]
    blocks = _block_masks(position(cp[..., 0], height, ch), position(cp[..., 1], width, cw),
                          ch, cw, height, width)                               # [B, C, N]
    # Level t (candidates t * tries ... (t + 1) * tries - 1) avoids the first T - t targets.
    covered = jnp.cumsum(targets.astype(jnp.int32), axis=1) > 0                # [B, T, N]
    free_all = jnp.ones_like(covered[:, :1])
    allowed = jnp.concatenate([~covered[:, ::-1], free_all], axis=1)           # [B, T+1, N]
    level = jnp.arange(blocks.shape[1]) // max_tries                           # [C]
    constrained = blocks & allowed[:, level]                                   # [B, C, N]
    counts = jnp.sum(constrained, axis=-1)                                     # [B, C]
    valid = counts > min_keep
    first = jnp.where(jnp.any(valid, axis=1), jnp.argmax(valid, axis=1), blocks.shape[1] - 1)
    context = constrained[jnp.arange(constrained.shape[0]), first]             # [B, N]
    # Collation: every context cut to the batch's smallest, first patches in row-major order.
    keep = jnp.min(jnp.sum(context, axis=-1))
    context = context & (jnp.cumsum(context, axis=-1) <= keep)
    return context, targets


def multiblock_masks(key, batch_size: int, grid, num_targets: int = 4,
                     target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                     context_scale=(0.85, 1.0), min_keep: int = 10, offset=0):
    """I-JEPA's multi-block masks for a batch (``MaskCollator.__call__``; see the notes above).

    Args:
      key: typed PRNG key of the step (``rng.step_key(seed, 'mask', step)``).
      batch_size: B (static). grid: H (square) or (H, W) patches (static).
      num_targets: T target blocks per image (I-JEPA ``npred`` 4).
      target_scale, target_aspect: the target blocks' area fraction and height / width ranges
        (``pred_mask_scale`` (0.15, 0.2), ``aspect_ratio`` (0.75, 1.5)).
      context_scale: the context block's area fraction (``enc_mask_scale`` (0.85, 1.0)),
        square (aspect 1).
      min_keep: a context needs more than this many patches (``min_keep`` 10).
      offset: global index of row 0 (a slice of the global batch reproduces its rows' blocks,
        not the batch-wide truncation, which needs the whole batch).

    Returns:
      ``(context [B, H*W] bool, targets [B, T, H*W] bool)``: every target an h x w rectangle
      (one size for the batch), the context a square block minus the targets, cut to the
      batch's smallest context, so every row of ``context`` has the same count, and every
      ``targets[b, t]`` the same count h * w.
    """
    height, width = _grid_hw(grid)
    multiblock_budgets((height, width), num_targets, target_scale, target_aspect,
                       context_scale, min_keep, field="multiblock_masks")
    draws = multiblock_draws(key, batch_size, num_targets, MULTIBLOCK_TRIES, offset)
    return multiblock_from_draws(draws, (height, width), target_scale, target_aspect,
                                 context_scale, min_keep, MULTIBLOCK_TRIES)


def mask_indices(mask, length: int):
    """``(ids [..., L] int32, valid [..., L] bool)``: the positions of ``mask [..., N]``'s
    True entries in increasing order, then the others, cut to the static ``length``; ``valid``
    marks the selected ones (a fixed-size gather of a variable-size set)."""
    order = jnp.argsort(~mask, axis=-1, stable=True)[..., :length].astype(jnp.int32)
    count = jnp.sum(mask, axis=-1, keepdims=True)
    valid = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), order.shape) < count
    return order, valid


__all__ += ["multiblock_masks", "multiblock_draws", "multiblock_from_draws",
            "multiblock_block_size", "multiblock_sizes", "multiblock_budgets", "mask_indices",
            "MULTIBLOCK_TRIES"]
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
