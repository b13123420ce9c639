"""Mixup / CutMix of a batch with its reverse, and the soft-target loss (timm ``Mixup``).

timm 0.3.2 (pytorch-image-models 6504a42) ``timm/data/mixup.py`` ``Mixup(mode='batch')`` as
MAE fine-tuning uses it (mixup alpha 0.8, cutmix alpha 1.0, prob 1.0, switch prob 0.5,
correct_lam, label smoothing 0.1).
One draw per batch (``_params_per_batch``):

  * with probability ``prob`` the batch is mixed, else returned as is (lam = 1);
  * CutMix with probability ``switch_prob`` (when both alphas are > 0), else mixup;
  * ``lam ~ Beta(alpha, alpha)`` of the chosen kind.

Mixup (Zhang et al. 2018):  ``x' = lam * x + (1 - lam) * x[::-1]``.
CutMix (Yun et al. 2019), ``rand_bbox``: ``cut = int(side * sqrt(1 - lam))`` per side, centre
``cy ~ U{0..H-1}``, ``cx ~ U{0..W-1}``, box rows ``clip(cy -+ cut_h // 2, 0, H)`` (and
columns alike), pixels inside the box taken from ``x[::-1]``; with ``correct_lam`` the label
weight is the pixel share actually kept, ``lam = 1 - box area / (H * W)``.
Targets (``mixup_target``): ``lam * smooth(y) + (1 - lam) * smooth(y[::-1])`` with
``smooth(y) = one_hot(y) * (1 - eps) + eps / num_classes``.

Images are ``[B, H, W, C]`` (timm's are ``[B, C, H, W]``; the box is over H, W). Only
``mode='batch'`` and ``cutmix_minmax=None`` are implemented. timm asserts an even batch; so
does this function.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class MixDraws(NamedTuple):
    """The random numbers of one ``mixup_cutmix`` call (scalars), in timm's order."""
    apply: jax.Array       # U[0, 1): mix iff < prob
    use_cutmix: jax.Array  # U[0, 1): cutmix iff < switch_prob (both alphas > 0)
    lam_mixup: jax.Array   # Beta(mixup_alpha, mixup_alpha)
    lam_cutmix: jax.Array  # Beta(cutmix_alpha, cutmix_alpha)
    cy: jax.Array          # U{0, .., H - 1}: box centre row
    cx: jax.Array          # U{0, .., W - 1}: box centre column


def draw_mix(key: jax.Array, height: int, width: int, *, mixup_alpha: float,
             cutmix_alpha: float) -> MixDraws:
    """The draws of one batch (Beta draws are 1 for a disabled kind)."""
    k_apply, k_switch, k_mix, k_cut, k_cy, k_cx = jax.random.split(key, 6)
    beta = lambda k, a: (jax.random.beta(k, a, a) if a > 0 else jnp.float32(1.0))
    return MixDraws(
        apply=jax.random.uniform(k_apply), use_cutmix=jax.random.uniform(k_switch),
        lam_mixup=beta(k_mix, mixup_alpha), lam_cutmix=beta(k_cut, cutmix_alpha),
        cy=jax.random.randint(k_cy, (), 0, height), cx=jax.random.randint(k_cx, (), 0, width))


def cutmix_box(lam: jax.Array, cy: jax.Array, cx: jax.Array, height: int, width: int):
    """timm ``rand_bbox`` (margin 0) for a given centre: ``(yl, yh, xl, xh)`` int32 scalars,
    the box ``[yl, yh) x [xl, xh)``; ``cut = int(side * sqrt(1 - lam))`` (truncation)."""
    ratio = jnp.sqrt(1.0 - lam)
    cut_h = jnp.floor(height * ratio).astype(jnp.int32)
    cut_w = jnp.floor(width * ratio).astype(jnp.int32)
    yl = jnp.clip(cy - cut_h // 2, 0, height)
    yh = jnp.clip(cy + cut_h // 2, 0, height)
    xl = jnp.clip(cx - cut_w // 2, 0, width)
    xh = jnp.clip(cx + cut_w // 2, 0, width)
    return yl, yh, xl, xh


def smooth_one_hot(labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
    """[B] int -> [B, num_classes]: ``1 - eps + eps / K`` on the label, ``eps / K`` elsewhere."""
    off = smoothing / num_classes
    return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * (1.0 - smoothing) + off


def mix_with_draws(images: jax.Array, labels: jax.Array, draws: MixDraws, *, num_classes: int,
                   mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                   switch_prob: float = 0.5, correct_lam: bool = True,
                   label_smoothing: float = 0.1):
    """``mixup_cutmix`` with the draws given: ``(mixed [B, H, W, C], targets [B, K], lam)``."""
    _, height, width, _ = images.shape
    if mixup_alpha > 0 and cutmix_alpha > 0:
        cutmix = draws.use_cutmix < switch_prob
    else:
        cutmix = jnp.asarray(cutmix_alpha > 0)
    mixed = draws.apply < prob
    lam_mix = jnp.where(cutmix, draws.lam_cutmix, draws.lam_mixup)
    lam = jnp.where(mixed, lam_mix, 1.0).astype(jnp.float32)
    flipped = images[::-1]
    # CutMix: the pasted box and (correct_lam) the area-corrected weight
    yl, yh, xl, xh = cutmix_box(lam, draws.cy, draws.cx, height, width)
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    in_box = (rows >= yl) & (rows < yh) & (cols >= xl) & (cols < xh)        # [H, W]
    cut_images = jnp.where(in_box[None, :, :, None], flipped, images)
    if correct_lam:
        lam_cut = 1.0 - ((yh - yl) * (xh - xl)).astype(jnp.float32) / (height * width)
    else:
        lam_cut = lam
    # Mixup: convex combination in the images' dtype (timm: x * lam + x_flipped * (1 - lam))
    lam_x = lam.astype(images.dtype)
    mix_images = images * lam_x + flipped * (1 - lam_x)
    use_cut = mixed & cutmix
    use_mix = mixed & ~cutmix
    out = jnp.where(use_cut, cut_images, jnp.where(use_mix, mix_images, images))
    lam = jnp.where(use_cut, lam_cut, lam)
    y = smooth_one_hot(labels, num_classes, label_smoothing)
    targets = lam * y + (1.0 - lam) * y[::-1]
    return out, targets, lam


def mixup_cutmix(key: jax.Array, images: jax.Array, labels: jax.Array, *, num_classes: int,
                 mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, correct_lam: bool = True,
                 label_smoothing: float = 0.1):
    """Mix a batch with its reverse, timm ``Mixup(mode='batch')``. Defaults: MAE fine-tuning.

    Args:
      key: one PRNG key for the whole batch (one lam, one box, as timm's batch mode).
      images: [B, H, W, C] float, B even. labels: [B] int class ids.
      num_classes: K of the soft targets.
    Returns:
      ``(mixed images [B, H, W, C], soft targets [B, K] float32)``; target rows sum to 1.
    Jittable; the alphas, probabilities and K are static.
    """
    batch, height, width, _ = images.shape
    if batch % 2:
        raise ValueError(f"mixup_cutmix needs an even batch (timm asserts it), got {batch}; "
                         "change the per-device batch size")
    if not (mixup_alpha > 0 or cutmix_alpha > 0):
        raise ValueError(f"mixup_cutmix: mixup_alpha={mixup_alpha} and cutmix_alpha="
                         f"{cutmix_alpha}; set at least one > 0 (MAE: 0.8 and 1.0)")
    draws = draw_mix(key, height, width, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)
    out, targets, _ = mix_with_draws(
        images, labels, draws, num_classes=num_classes, mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha, prob=prob, switch_prob=switch_prob, correct_lam=correct_lam,
        label_smoothing=label_smoothing)
    return out, targets


def soft_target_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """timm ``SoftTargetCrossEntropy``: ``mean_b sum_k -t_bk log softmax(z_b)_k`` (scalar).

    logits, targets: [B, K]; the log-softmax in float32.
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.mean(jnp.sum(-targets * logp, axis=-1))


__all__ = ["MixDraws", "draw_mix", "cutmix_box", "smooth_one_hot", "mix_with_draws",
           "mixup_cutmix", "soft_target_cross_entropy"]
