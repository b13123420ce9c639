"""Colour augmentations on float images in [0, 1]: jitter, grayscale, solarize.

Every function takes an image ``[..., H, W, C]`` (float32, values in [0, 1]) with ``C`` = 3 (RGB)
or 1 (grayscale). With ``C == 1`` the hue, saturation and grayscale ops are identities (a gray
image has no hue and zero saturation); brightness and contrast still apply.

Semantics follow torchvision's ``ColorJitter`` (MoCo v2/v3) and the SimCLR ``color_jitter_rand``
(google-research/simclr ``tf2/data_util.py``):

* brightness, multiplicative (SimCLR v2 code, torchvision):  ``x' = f * x``,
  ``f ~ U[max(0, 1 - b), 1 + b]``;  additive (SimCLR v1, ``tf.image.random_brightness``):
  ``x' = x + d``, ``d ~ U[-b, b]``;
* contrast: ``x' = f * x + (1 - f) * mean(gray(x))``, the mean over the whole image of the
  ITU-R 601-2 luma (torchvision ``adjust_contrast``), ``f ~ U[max(0, 1 - c), 1 + c]``;
* saturation: ``x' = f * x + (1 - f) * gray(x)`` per pixel (torchvision ``adjust_saturation``),
  ``f ~ U[max(0, 1 - s), 1 + s]``;
* hue: rotate the HSV hue, ``h' = (h + d) mod 1`` with ``d ~ U[-h, h]`` (``tf.image.adjust_hue``,
  torchvision ``adjust_hue``);
* the four ops run in a random order (uniform over the 24 orders) and the result is clipped to
  [0, 1] after each op, as ``color_jitter_rand`` does.

Note: TF's ``adjust_saturation`` scales the HSV saturation and TF's ``adjust_contrast`` uses a
per-channel mean; the torchvision forms above (blend with grayscale) are what this module
implements for both recipes.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# ITU-R 601-2 luma transform, as PIL's ``convert('L')`` and ``tf.image.rgb_to_grayscale``.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3
BRIGHTNESS_MODES = ("multiplicative", "additive")
JITTER_UNIFORMS = 5  # U[0, 1) numbers one jitter draw consumes: order, b, c, s, h

# All 24 orders of the four ops, each split into (the 3 linear ops in order, hue's position):
# drawing one row uniformly is a uniform random order (cheaper to compile than a permutation).
_ORDERS = list(itertools.permutations((BRIGHTNESS, CONTRAST, SATURATION, HUE)))
_LINEAR_ORDERS = np.asarray([[op for op in o if op != HUE] for o in _ORDERS], np.int32)
_HUE_POSITIONS = np.asarray([o.index(HUE) for o in _ORDERS], np.int32)


def _luma(image: jax.Array) -> jax.Array:
    """Per-pixel luma ``[..., H, W, 1]``; the channel itself when ``C == 1``.

    Written as an elementwise sum (not a matmul) so that it stays float32 on TPU, where the
    default matmul precision would round to bfloat16.
    """
    if image.shape[-1] == 1:
        return image
    r, g, b = image[..., 0:1], image[..., 1:2], image[..., 2:3]
    return LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b


def _image_mean_luma(image: jax.Array) -> jax.Array:
    """Mean luma of each image, ``[..., 1, 1, 1]`` (the reference point of contrast)."""
    return jnp.mean(_luma(image), axis=(-3, -2, -1), keepdims=True)


def _blend(image: jax.Array, reference: jax.Array, factor, delta=0.0) -> jax.Array:
    """``clip(factor * image + (1 - factor) * reference + delta, 0, 1)``."""
    return jnp.clip(factor * image + (1.0 - factor) * reference + delta, 0.0, 1.0)


def rgb_to_grayscale(image: jax.Array) -> jax.Array:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` broadcast back to all channels, ``[..., H, W, C]``.

    Identity for ``C == 1``. Matches ``tf.image.rgb_to_grayscale`` followed by tiling to 3
    channels (SimCLR ``to_grayscale(keep_channels=True)``) and torchvision ``Grayscale(3)``.
    """
    return jnp.broadcast_to(_luma(image), image.shape)


def adjust_brightness(image: jax.Array, amount, mode: str = "multiplicative") -> jax.Array:
    """Brightness: ``clip(amount * x)`` (multiplicative) or ``clip(x + amount)`` (additive)."""
    if mode == "multiplicative":
        return _blend(image, 0.0, amount)
    if mode == "additive":
        return _blend(image, 0.0, 1.0, amount)
    raise ValueError(f"brightness_mode={mode!r} is not supported; use one of {BRIGHTNESS_MODES}")


def adjust_contrast(image: jax.Array, factor) -> jax.Array:
    """Contrast: ``clip(f * x + (1 - f) * m)``, ``m`` the image's mean luma (torchvision)."""
    return _blend(image, _image_mean_luma(image), factor)


def adjust_saturation(image: jax.Array, factor) -> jax.Array:
    """Saturation: ``clip(f * x + (1 - f) * gray(x))`` per pixel (torchvision). Identity if C=1."""
    if image.shape[-1] == 1:
        return image
    return _blend(image, _luma(image), factor)


def adjust_hue(image: jax.Array, delta) -> jax.Array:
    """Rotate the HSV hue by ``delta`` (in turns, |delta| <= 0.5), keeping S and V. Identity if C=1.

    Equivalent to ``rgb -> hsv``, ``h = (h + delta) mod 1``, ``hsv -> rgb`` (``colorsys``,
    ``tf.image.adjust_hue``), computed without materialising S: with ``v = max``, chroma
    ``c = max - min`` and hue in sextants ``h6 in [0, 6)``, channel ``n`` (5, 3, 1 for R, G, B)
    is ``v - c * clip(min(k, 4 - k), 0, 1)``, ``k = (n + h6) mod 6``.
    """
    if image.shape[-1] == 1:
        return image
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    # Pick the max channel by comparisons between the channels, not by `v == r`: XLA may
    # recompute r in two fusions with different rounding, and an equality test against a
    # recomputed max can then fail for every channel. Near a tie both branches agree.
    r_max = (r >= g) & (r >= b)
    g_max = ~r_max & (g >= b)
    v = jnp.where(r_max, r, jnp.where(g_max, g, b))
    chroma = v - jnp.minimum(jnp.minimum(r, g), b)
    safe_chroma = jnp.where(chroma > 0, chroma, 1.0)
    h6 = jnp.where(r_max, (g - b) / safe_chroma,
                   jnp.where(g_max, (b - r) / safe_chroma + 2.0, (r - g) / safe_chroma + 4.0))
    h6 = jnp.where(chroma > 0, h6, 0.0) + 6.0 * delta
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = jnp.mod(n + h6, 6.0)
        channels.append(v - chroma * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0))
    return jnp.stack(channels, axis=-1)


def solarize(image: jax.Array, threshold=0.5) -> jax.Array:
    """``x -> 1 - x`` where ``x >= threshold`` (torchvision ``RandomSolarize``, BYOL)."""
    return jnp.where(image >= threshold, 1.0 - image, image)


class JitterParams(NamedTuple):
    """One draw of colour jitter for one image.

    ``linear_order``: int32[3], a permutation of (BRIGHTNESS, CONTRAST, SATURATION);
    ``hue_position``: int32 in [0, 3], how many of ``linear_order`` run before the hue op.
    Together they are a uniform random order of the four ops (3! * 4 = 24 orders).
    ``brightness``: the factor (multiplicative) or delta (additive); ``contrast``,
    ``saturation``: factors; ``hue``: the hue delta in turns.
    """
    linear_order: jax.Array
    hue_position: jax.Array
    brightness: jax.Array
    contrast: jax.Array
    saturation: jax.Array
    hue: jax.Array

    def order(self) -> list[int]:
        """The op order as a Python list of op ids (for inspection and tests; not jit-able)."""
        ops = [int(o) for o in self.linear_order]
        ops.insert(int(self.hue_position), HUE)
        return ops


def _factor_range(strength: float) -> tuple[float, float]:
    return max(0.0, 1.0 - strength), 1.0 + strength


def sample_jitter_params(key: jax.Array, brightness: float, contrast: float, saturation: float,
                         hue: float, brightness_mode: str = "multiplicative",
                         random_order: bool = True) -> JitterParams:
    """Draw the jitter order and the four factors for one image (all randomness from ``key``).

    With ``random_order=False`` the order is fixed to brightness, contrast, saturation, hue
    (SimCLR ``color_jitter_nonrand``).
    """
    return jitter_params_from_uniforms(jax.random.uniform(key, (JITTER_UNIFORMS,)), brightness,
                                       contrast, saturation, hue, brightness_mode, random_order)


def jitter_params_from_uniforms(u: jax.Array, brightness: float, contrast: float,
                                saturation: float, hue: float,
                                brightness_mode: str = "multiplicative",
                                random_order: bool = True) -> JitterParams:
    """``sample_jitter_params`` given its U[0, 1) draws ``u``: ``float32[5]`` (order, b, c, s,
    h). One PRNG call for all of them keeps the compiled program small."""
    if brightness_mode == "multiplicative":
        b_range = _factor_range(brightness)
    elif brightness_mode == "additive":
        b_range = (-brightness, brightness)
    else:
        raise ValueError(f"brightness_mode={brightness_mode!r} is not supported; "
                         f"use one of {BRIGHTNESS_MODES}")
    if random_order:
        n = len(_ORDERS)  # floor(U[0, 1) * n) is uniform on 0..n-1
        row = jnp.minimum(jnp.floor(u[0] * n).astype(jnp.int32), n - 1)
        linear_order = jnp.asarray(_LINEAR_ORDERS)[row]
        hue_position = jnp.asarray(_HUE_POSITIONS)[row]
    else:
        linear_order = jnp.arange(3, dtype=jnp.int32)
        hue_position = jnp.asarray(3, jnp.int32)
    lerp = lambda t, lo_hi: lo_hi[0] + t * (lo_hi[1] - lo_hi[0])
    return JitterParams(
        linear_order=linear_order,
        hue_position=hue_position,
        brightness=lerp(u[1], b_range),
        contrast=lerp(u[2], _factor_range(contrast)),
        saturation=lerp(u[3], _factor_range(saturation)),
        hue=lerp(u[4], (-hue, hue)),
    )


def apply_color_jitter(image: jax.Array, params: JitterParams,
                       brightness_mode: str = "multiplicative", use_hue: bool = True) -> jax.Array:
    """Apply one draw of colour jitter to one image ``[H, W, C]``, clipping after every op.

    Brightness, contrast and saturation are all ``clip(f * x + (1 - f) * ref + d)`` with
    ``ref`` = 0, the mean luma or the pixel luma; so a slot of the random order is one blend
    whose ``f``, ``ref`` and ``d`` are selected by the op id. The expensive hue op runs once,
    between the ``hue_position`` linear ops before it and the rest after it. Under ``vmap``
    this costs 6 blends + 1 hue per image, where a ``lax.switch`` per slot would evaluate all
    four ops in every one of the 4 slots. ``use_hue=False`` (static) skips the hue op, as the
    reference does for ``hue == 0``.
    """
    if brightness_mode not in BRIGHTNESS_MODES:
        raise ValueError(f"brightness_mode={brightness_mode!r} is not supported; "
                         f"use one of {BRIGHTNESS_MODES}")
    multiplicative = brightness_mode == "multiplicative"
    b_factor = params.brightness if multiplicative else 1.0
    b_delta = 0.0 if multiplicative else params.brightness
    factors = jnp.stack([jnp.asarray(b_factor, jnp.float32), params.contrast, params.saturation])
    deltas = jnp.stack([jnp.asarray(b_delta, jnp.float32), 0.0, 0.0])

    def linear_op(x, op):
        if x.shape[-1] == 1:
            reference = jnp.where(op == CONTRAST, _image_mean_luma(x), 0.0)
            # Saturation is the identity on one channel: factor 1, no delta.
            factor = jnp.where(op == SATURATION, 1.0, factors[op])
        else:
            reference = jnp.where(op == SATURATION, _luma(x),
                                  jnp.where(op == CONTRAST, _image_mean_luma(x), 0.0))
            factor = factors[op]
        return _blend(x, reference, factor, deltas[op])

    x = image
    for slot in range(3):  # linear ops before the hue op
        x = jnp.where(slot < params.hue_position, linear_op(x, params.linear_order[slot]), x)
    if use_hue:
        x = jnp.clip(adjust_hue(x, params.hue), 0.0, 1.0)
    for slot in range(3):  # linear ops after the hue op
        x = jnp.where(slot >= params.hue_position, linear_op(x, params.linear_order[slot]), x)
    return x
