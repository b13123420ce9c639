"""I-JEPA multi-block masks: a numpy transcription of facebookresearch/ijepa
``src/masks/multiblock.py`` (``MaskCollator``) fed the same uniforms, and the masks'
properties (rectangles, scale and aspect ranges, disjoint context, min_keep, determinism)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.augment import patch_masking as pm

IJEPA = dict(target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5), context_scale=(0.85, 1.0),
             min_keep=10)


class ReferenceCollator:
    """``MaskCollator`` line by line, with ``torch.rand(1, generator=g)`` replaced by the
    given size uniforms and ``torch.randint(0, n, (1,))`` by ``floor(u * n)`` of the next
    given position uniform (the image's own stream, in drawing order)."""

    def __init__(self, height, width, enc_mask_scale, pred_mask_scale, aspect_ratio, nenc,
                 npred, min_keep, allow_overlap=False):
        self.height, self.width = height, width
        self.enc_mask_scale, self.pred_mask_scale = enc_mask_scale, pred_mask_scale
        self.aspect_ratio, self.nenc, self.npred = aspect_ratio, nenc, npred
        self.min_keep, self.allow_overlap = min_keep, allow_overlap

    def _sample_block_size(self, _rand, scale, aspect_ratio_scale):
        min_s, max_s = scale
        mask_scale = min_s + _rand * (max_s - min_s)
        max_keep = int(self.height * self.width * mask_scale)
        min_ar, max_ar = aspect_ratio_scale
        aspect_ratio = min_ar + _rand * (max_ar - min_ar)
        h = int(round(math.sqrt(max_keep * aspect_ratio)))
        w = int(round(math.sqrt(max_keep / aspect_ratio)))
        while h >= self.height:
            h -= 1
        while w >= self.width:
            w -= 1
        return (h, w)

    def _sample_block_mask(self, b_size, stream, acceptable_regions=None):
        h, w = b_size

        def constrain_mask(mask, tries=0):
            N = max(int(len(acceptable_regions) - tries), 0)
            for k in range(N):
                mask *= acceptable_regions[k]

        tries = 0
        timeout = og_timeout = 20
        valid_mask = False
        while not valid_mask:
            u_top, u_left = next(stream)
            top = int(np.floor(u_top * (self.height - h)))
            left = int(np.floor(u_left * (self.width - w)))
            mask = np.zeros((self.height, self.width), dtype=np.int32)
            mask[top:top + h, left:left + w] = 1
            if acceptable_regions is not None:
                constrain_mask(mask, tries)
            mask = np.nonzero(mask.flatten())[0]
            valid_mask = len(mask) > self.min_keep
            if not valid_mask:
                timeout -= 1
                if timeout == 0:
                    tries += 1
                    timeout = og_timeout
        mask_complement = np.ones((self.height, self.width), dtype=np.int32)
        mask_complement[top:top + h, left:left + w] = 0
        return mask, mask_complement

    def __call__(self, u_pred, u_enc, target_pos, context_pos):
        B = target_pos.shape[0]
        p_size = self._sample_block_size(u_pred, self.pred_mask_scale, self.aspect_ratio)
        e_size = self._sample_block_size(u_enc, self.enc_mask_scale, (1., 1.))
        collated_masks_pred, collated_masks_enc = [], []
        min_keep_pred = min_keep_enc = self.height * self.width
        for b in range(B):
            t_stream, c_stream = iter(target_pos[b]), iter(context_pos[b])
            masks_p, masks_C = [], []
            for _ in range(self.npred):
                mask, mask_C = self._sample_block_mask(p_size, t_stream)
                masks_p.append(mask)
                masks_C.append(mask_C)
                min_keep_pred = min(min_keep_pred, len(mask))
            collated_masks_pred.append(masks_p)
            acceptable_regions = None if self.allow_overlap else masks_C
            masks_e = []
            for _ in range(self.nenc):
                mask, _ = self._sample_block_mask(e_size, c_stream, acceptable_regions)
                masks_e.append(mask)
                min_keep_enc = min(min_keep_enc, len(mask))
            collated_masks_enc.append(masks_e)
        pred = [[cm[:min_keep_pred] for cm in cl] for cl in collated_masks_pred]
        enc = [[cm[:min_keep_enc] for cm in cl] for cl in collated_masks_enc]
        return np.asarray(enc), np.asarray(pred), p_size, e_size   # [B, nenc, K], [B, npred, K]


def _as_bool(indices, n):
    out = np.zeros(indices.shape[:-1] + (n,), bool)
    np.put_along_axis(out, indices, True, axis=-1)
    return out


@pytest.mark.parametrize("grid,batch,seed", [((14, 14), 16, 0), ((14, 14), 8, 3),
                                             ((16, 16), 8, 7), ((8, 6), 12, 1)])
def test_multiblock_masks_equal_the_reference_collator_on_the_same_uniforms(grid, batch, seed):
    height, width = grid
    cfg = dict(IJEPA, min_keep=10 if height >= 14 else 2)
    key = jax.random.key(seed)
    draws = pm.multiblock_draws(key, batch, 4)
    context, targets = jax.jit(lambda d: pm.multiblock_from_draws(d, grid, **cfg))(draws)
    # the public entry point is the same function of the key
    c2, t2 = pm.multiblock_masks(key, batch, grid, **cfg)
    np.testing.assert_array_equal(np.asarray(c2), np.asarray(context))
    np.testing.assert_array_equal(np.asarray(t2), np.asarray(targets))
    ref = ReferenceCollator(height, width, cfg["context_scale"], cfg["target_scale"],
                            cfg["target_aspect"], 1, 4, cfg["min_keep"])
    d = jax.tree.map(np.asarray, draws)
    enc, pred, _, _ = ref(float(d["u_target"]), float(d["u_context"]),
                          d["target_pos"].astype(np.float64), d["context_pos"].astype(np.float64))
    n = height * width
    np.testing.assert_array_equal(np.asarray(targets), _as_bool(pred, n))
    np.testing.assert_array_equal(np.asarray(context), _as_bool(enc, n)[:, 0])


def test_reference_fallback_lets_the_context_overlap_the_later_targets():
    # A tiny grid with large targets: the context often fails against all targets and the
    # reference drops constraints; the vectorised sampler follows it draw for draw.
    cfg = dict(target_scale=(0.3, 0.4), target_aspect=(0.75, 1.5), context_scale=(0.6, 0.7),
               min_keep=3)
    ref = ReferenceCollator(6, 6, cfg["context_scale"], cfg["target_scale"],
                            cfg["target_aspect"], 1, 4, cfg["min_keep"])
    overlapped = 0
    for seed in range(6):
        draws = pm.multiblock_draws(jax.random.key(seed), 8, 4)
        context, targets = pm.multiblock_from_draws(draws, 6, **cfg)
        d = jax.tree.map(np.asarray, draws)
        enc, pred, _, _ = ref(float(d["u_target"]), float(d["u_context"]),
                              d["target_pos"].astype(np.float64),
                              d["context_pos"].astype(np.float64))
        np.testing.assert_array_equal(np.asarray(context), _as_bool(enc, 36)[:, 0])
        np.testing.assert_array_equal(np.asarray(targets), _as_bool(pred, 36))
        overlapped += int(np.any(np.asarray(context)[:, None] & np.asarray(targets)))
    assert overlapped > 0  # the fallback path was exercised


def _rectangle(mask2d):
    rows, cols = np.nonzero(mask2d)
    h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    return h, w, h * w == mask2d.sum()


def test_multiblock_mask_properties_on_the_ijepa_grid():
    height = width = 14
    batch = 32
    block_sizes = {tuple(s) for s in pm.multiblock_sizes(14, IJEPA["target_scale"],
                                                         IJEPA["target_aspect"])}
    seen_sizes = set()
    fn = jax.jit(lambda k: pm.multiblock_masks(k, batch, (height, width), **IJEPA))
    for seed in range(8):
        context, targets = (np.asarray(x) for x in fn(jax.random.key(seed)))
        assert context.shape == (batch, 196) and targets.shape == (batch, 4, 196)
        counts = targets.sum(-1)
        assert (counts == counts[0, 0]).all()                  # one block size per batch
        sizes = set()
        for b in range(batch):
            for t in range(4):
                block = targets[b, t].reshape(height, width)
                h, w, full = _rectangle(block)
                assert full                                    # a filled rectangle
                assert not block[-1].any() and not block[:, -1].any()  # randint's bound
                sizes.add((h, w))
        assert len(sizes) == 1
        (h, w), = sizes
        seen_sizes.add((h, w))
        assert (h, w) in block_sizes
        # scale and aspect within the reference's rounding of the ranges
        assert 0.15 * 196 - (h + w) <= h * w <= 0.2 * 196 + (h + w)
        assert 0.75 - 0.3 <= h / w <= 1.5 + 0.3
        # the context: disjoint from every target, more than min_keep patches, equal counts
        assert not np.any(context[:, None] & targets)
        kept = context.sum(-1)
        assert (kept == kept[0]).all() and kept[0] > IJEPA["min_keep"]
    assert len(seen_sizes) > 1


def test_multiblock_masks_are_a_function_of_the_key_and_the_global_row():
    key = jax.random.key(5)
    a = pm.multiblock_masks(key, 8, 14)
    b = pm.multiblock_masks(key, 8, 14)
    c = pm.multiblock_masks(jax.random.key(6), 8, 14)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(a[1]), np.asarray(c[1]))
    # a slice of the batch with its offset draws the same target blocks for its rows
    _, tail = pm.multiblock_masks(key, 3, 14, offset=5)
    np.testing.assert_array_equal(np.asarray(tail), np.asarray(a[1])[5:])


def test_mask_indices_gather_the_selected_patches_first():
    mask = jnp.array([[False, True, False, True, True], [True, False, False, False, True]])
    ids, valid = pm.mask_indices(mask, 4)
    np.testing.assert_array_equal(np.asarray(ids), [[1, 3, 4, 0], [0, 4, 1, 2]])
    np.testing.assert_array_equal(np.asarray(valid), [[1, 1, 1, 0], [1, 1, 0, 0]])


def test_budgets_bound_every_block_and_refuse_blocks_below_min_keep():
    t_max, c_max = pm.multiblock_budgets(14)
    for seed in range(4):
        context, targets = pm.multiblock_masks(jax.random.key(seed), 16, 14)
        assert int(np.asarray(targets).sum(-1).max()) <= t_max
        assert int(np.asarray(context).sum(-1).max()) <= c_max
    assert c_max == 13 * 13   # the context block is at most (H - 1) x (W - 1)
    with pytest.raises(ValueError, match="min_keep"):
        pm.multiblock_budgets(4, min_keep=10)
    with pytest.raises(ValueError, match="num_targets"):
        pm.multiblock_budgets(14, num_targets=0)
