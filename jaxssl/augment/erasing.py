"""Random erasing (Zhong et al. 2020) on normalised images, timm ``RandomErasing``.

timm 0.3.2 (pytorch-image-models 6504a42) ``timm/data/random_erasing.py`` ``_erase``, per
image (MAE fine-tuning: ``RandomErasing(0.25, mode='pixel', max_count=1)`` after
normalisation):

  * with probability ``probability`` the image gets ``count`` boxes (``count`` uniform in
    ``[min_count, max_count]``), else it is returned unchanged;
  * each box tries up to 10 times: ``area ~ U[min_area, max_area] * H * W / count``,
    ``aspect = exp(U[log min_aspect, log max_aspect])`` (``max_aspect`` = 1 / min_aspect by
    default), ``h = round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))``
    (Python's round, half to even); the first try with ``h < H`` and ``w < W`` is placed at
    ``top ~ U{0..H-h}``, ``left ~ U{0..W-w}``; if all 10 fail the box is skipped;
  * the box's pixels become N(0, 1) per pixel and channel ('pixel'), one N(0, 1) per channel
    ('rand'), or 0 ('const').

Images are ``[B, H, W, C]`` (or ``[H, W, C]`` for ``random_erase``); each image has its own
key, so the result does not depend on the batch it is in. Jittable; every option is static.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

ERASE_MODES = ("pixel", "rand", "const")
ATTEMPTS = 10


class EraseDraws(NamedTuple):
    """The random numbers of one image (timm's ``random.*`` calls), ``K = max_count``."""
    apply: jax.Array        # U[0, 1): erase iff <= probability
    count: jax.Array        # int in [min_count, max_count]
    area: jax.Array         # [K, 10] U[min_area, max_area]
    log_aspect: jax.Array   # [K, 10] U[log min_aspect, log max_aspect]
    top: jax.Array          # [K] U[0, 1), scaled to U{0..H-h}
    left: jax.Array         # [K] U[0, 1), scaled to U{0..W-w}
    values: jax.Array       # [K, H, W, C] N(0, 1) (per-pixel mode; 'rand' uses [K, 1, 1, C])


def draw_erase(key: jax.Array, shape, *, min_area: float = 0.02, max_area: float = 1 / 3,
               min_aspect: float = 0.3, max_aspect: float | None = None, mode: str = "pixel",
               min_count: int = 1, max_count: int = 1, dtype=jnp.float32) -> EraseDraws:
    """The draws for one image of ``shape`` [H, W, C]."""
    height, width, channels = shape
    max_aspect = max_aspect or 1.0 / min_aspect
    k = jax.random.split(key, 7)
    value_shape = (max_count, height, width, channels) if mode == "pixel" else \
        (max_count, 1, 1, channels)
    values = jax.random.normal(k[6], value_shape, dtype)
    if mode == "const":
        values = jnp.zeros(value_shape, dtype)
    return EraseDraws(
        apply=jax.random.uniform(k[0]),
        count=jax.random.randint(k[1], (), min_count, max_count + 1),
        area=jax.random.uniform(k[2], (max_count, ATTEMPTS), minval=min_area, maxval=max_area),
        log_aspect=jax.random.uniform(k[3], (max_count, ATTEMPTS), minval=math.log(min_aspect),
                                      maxval=math.log(max_aspect)),
        top=jax.random.uniform(k[4], (max_count,)), left=jax.random.uniform(k[5], (max_count,)),
        values=values)


def erase_with_draws(image: jax.Array, draws: EraseDraws, *, probability: float = 0.25):
    """``random_erase`` with the draws given: ``(image [H, W, C], boxes [K, 4])``.

    ``boxes`` rows are ``(top, left, h, w)`` int32 (``h = w = 0`` for a box not erased).
    """
    height, width, _ = image.shape
    max_count = draws.area.shape[0]
    erase = draws.apply <= probability
    count = draws.count.astype(jnp.float32)
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    boxes = []
    out = image
    for j in range(max_count):
        target = draws.area[j] * (height * width) / count                      # [10]
        aspect = jnp.exp(draws.log_aspect[j])
        h = jnp.round(jnp.sqrt(target * aspect)).astype(jnp.int32)
        w = jnp.round(jnp.sqrt(target / aspect)).astype(jnp.int32)
        fits = (w < width) & (h < height)
        first = jnp.argmax(fits)
        ok = erase & fits[first] & (j < draws.count)
        h = jnp.where(ok, h[first], 0)
        w = jnp.where(ok, w[first], 0)
        top = jnp.floor(draws.top[j] * (height - h + 1)).astype(jnp.int32)
        left = jnp.floor(draws.left[j] * (width - w + 1)).astype(jnp.int32)
        inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
        fill = jnp.broadcast_to(draws.values[j], image.shape).astype(image.dtype)
        out = jnp.where(inside[:, :, None], fill, out)
        boxes.append(jnp.stack([top, left, h, w]))
    return out, jnp.stack(boxes)


def random_erase(key: jax.Array, image: jax.Array, *, probability: float = 0.25,
                 min_area: float = 0.02, max_area: float = 1 / 3, min_aspect: float = 0.3,
                 max_aspect: float | None = None, mode: str = "pixel", min_count: int = 1,
                 max_count: int = 1) -> jax.Array:
    """Erase up to ``max_count`` random boxes of one normalised image [H, W, C] -> same."""
    if mode not in ERASE_MODES:
        raise ValueError(f"random erasing mode={mode!r} is not one of {ERASE_MODES} "
                         "(MAE: 'pixel')")
    if not 1 <= min_count <= max_count:
        raise ValueError(f"random erasing needs 1 <= min_count <= max_count, got "
                         f"min_count={min_count}, max_count={max_count}")
    draws = draw_erase(key, image.shape, min_area=min_area, max_area=max_area,
                       min_aspect=min_aspect, max_aspect=max_aspect, mode=mode,
                       min_count=min_count, max_count=max_count, dtype=image.dtype)
    return erase_with_draws(image, draws, probability=probability)[0]


def random_erasing(key: jax.Array, images: jax.Array, **kwargs) -> jax.Array:
    """``random_erase`` on each image of a batch [B, H, W, C], one key per image (split from
    ``key``). Keyword arguments as ``random_erase``; defaults are MAE's fine-tuning values."""
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(lambda k, x: random_erase(k, x, **kwargs))(keys, images)


__all__ = ["ERASE_MODES", "EraseDraws", "draw_erase", "erase_with_draws", "random_erase",
           "random_erasing"]
