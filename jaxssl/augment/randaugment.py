"""RandAugment (Cubuk et al. 2020) on device, timm's ``rand_augment_transform``.

timm 0.3.2 (pytorch-image-models 6504a42) ``timm/data/auto_augment.py``, as MAE fine-tuning
builds it (``create_transform(auto_augment='rand-m9-mstd0.5-inc1', interpolation='bicubic')``, so
``hparams = {translate_const: 100, img_mean: (124, 116, 104), interpolation: BICUBIC}``):
``num_layers`` ops per image, each chosen uniformly *with replacement* from the op set and
applied with probability 0.5 (``AugmentOp``: skipped iff ``random() > prob``); a magnitude
``clip(N(m, mstd), 0, 10)`` is drawn per applied op and mapped to the op's argument by timm's
``LEVEL_TO_ARG``; signed arguments are negated with probability 1/2.

Op set 'inc1' (``_RAND_INCREASING_TRANSFORMS``) and the argument at level ``v`` (0..10):

=====================  =============================================  =====================
op                     argument                                        PIL reference
=====================  =============================================  =====================
AutoContrast           --                                              ImageOps.autocontrast
Equalize               --                                              ImageOps.equalize
Invert                 --                                              ImageOps.invert
Rotate                 +-30 v / 10 degrees (counter-clockwise > 0)     Image.rotate
PosterizeIncreasing    keep 4 - int(4 v / 10) bits                     ImageOps.posterize
SolarizeIncreasing     threshold 256 - int(256 v / 10)                 ImageOps.solarize
SolarizeAdd            add int(110 v / 10) to levels < 128            timm solarize_add
ColorIncreasing        factor 1 +- 0.9 v / 10                          ImageEnhance.Color
ContrastIncreasing     factor 1 +- 0.9 v / 10                          ImageEnhance.Contrast
BrightnessIncreasing   factor 1 +- 0.9 v / 10                          ImageEnhance.Brightness
SharpnessIncreasing    factor 1 +- 0.9 v / 10                          ImageEnhance.Sharpness
ShearX / ShearY        +-0.3 v / 10                                    Image.transform AFFINE
TranslateXRel / YRel   +-0.45 v / 10 of the width / height              Image.transform AFFINE
=====================  =============================================  =====================

PosterizeIncreasing reaches 0 bits at level 10 (clipped magnitude): a black image, as Pillow
8.0's ``posterize`` (Pillow >= 11 raises for 0 bits).

The non-increasing set (``inc0``) swaps in Posterize (int(4 v / 10) bits), Solarize
(threshold int(256 v / 10)) and Color / Contrast / Brightness / Sharpness with factor
``1.8 v / 10 + 0.1``.

Images are float ``[H, W, C]`` in [0, 1] (a uint8 level ``k`` is ``k / 255``); outputs stay in
[0, 1]. Where an op is defined on uint8 levels it works on ``q = round(255 x)``:
Equalize (histogram of ``q``, PIL's LUT; output quantised to levels), Posterize (``q`` with
the low bits cleared; output quantised), Solarize and SolarizeAdd (the threshold compares
``q``; the value change is applied to ``x``). The other ops are computed in float and, unlike
PIL, not truncated to uint8 after each op; on uint8-level inputs they differ from PIL by:

  * AutoContrast, Brightness, affine ops: PIL truncates, so ``0 <= 255 (ours - PIL) < 1``;
  * Color, Sharpness: PIL also rounds the blend's grey / smoothed image to uint8 first
    (``|255 (ours - PIL)| < 1 + 0.5 |1 - factor|``);
  * Contrast: PIL blends with ``int(mean(round(luma)) + 0.5)``, this with the float mean of the
    luma (``|255 (ours - PIL)| < 1 + |1 - factor|``).

Geometric ops use PIL's ``Image.transform(AFFINE)`` sampling (in float32 coordinates):
output pixel centre ``(x + 0.5, y + 0.5)`` maps to ``(a x' + b y' + c, d x' + e y' + f)``; a
source point outside ``[0, W) x [0, H)`` takes the fill colour; inside, PIL's bicubic (cubic
convolution with ``a = -1``, PIL ``Geometry.c``, unchanged from Pillow 8.0 to 13) or bilinear
filter with edge-clamped taps. ``interpolation='random'`` picks bilinear or bicubic per op
with probability 1/2 (timm's default without an ``interpolation`` hparam); MAE passes 'bicubic'.
"""
from __future__ import annotations

import re
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

MAX_LEVEL = 10.0
# round(255 * IMAGENET_DEFAULT_MEAN): timm's ``img_mean`` hparam in MAE fine-tuning.
FILL_IMAGENET_MEAN = (124, 116, 104)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # PIL convert('L') (ITU-R 601-2)
INTERPOLATIONS = ("bicubic", "bilinear", "random")

RAND_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
    "TranslateYRel")
RAND_INCREASING_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
    "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
    "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
GEOMETRIC_OPS = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


# --------------------------------------------------------------------------- single ops
# Each takes one image [H, W, C] in [0, 1] and returns the same shape.

def _levels(img):
    """uint8 levels ``round(255 x)`` as int32."""
    return jnp.clip(jnp.round(img * 255.0), 0, 255).astype(jnp.int32)


def _luma(img):
    if img.shape[-1] == 1:
        return img
    r, g, b = img[..., 0:1], img[..., 1:2], img[..., 2:3]
    return LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b


def _blend(degenerate, img, factor):
    """PIL ``Image.blend(degenerate, img, factor)`` in float, clipped to [0, 1]."""
    return jnp.clip(degenerate + factor * (img - degenerate), 0.0, 1.0)


def auto_contrast(img):
    """Per channel, stretch [min, max] to [0, 1]; a constant channel is left as is."""
    lo = jnp.min(img, axis=(0, 1), keepdims=True)
    hi = jnp.max(img, axis=(0, 1), keepdims=True)
    span = hi - lo
    stretched = (img - lo) / jnp.where(span > 0, span, 1.0)
    return jnp.where(span > 0, jnp.clip(stretched, 0.0, 1.0), img)


def equalize(img):
    """PIL ``ImageOps.equalize`` per channel on the uint8 levels (output quantised).

    ``step = (N - n_last) // 255`` (``n_last``: pixels at the highest level present);
    ``lut[i] = (step // 2 + #pixels below level i) // step``; identity if one level or
    ``step == 0``.
    """
    q = _levels(img)                                                      # [H, W, C]
    channels = img.shape[-1]
    flat = q.reshape(-1, channels)
    hist = jnp.zeros((channels, 256), jnp.int32).at[
        jnp.broadcast_to(jnp.arange(channels), flat.shape), flat].add(1)  # [C, 256]
    present = hist > 0
    top = 255 - jnp.argmax(present[:, ::-1], axis=1)                      # highest level
    n_last = jnp.take_along_axis(hist, top[:, None], axis=1)[:, 0]
    step = (flat.shape[0] - n_last) // 255                                # [C]
    below = jnp.cumsum(hist, axis=1) - hist                               # exclusive cumsum
    safe = jnp.maximum(step, 1)[:, None]
    lut = jnp.minimum((step[:, None] // 2 + below) // safe, 255)          # [C, 256]
    out = jnp.take_along_axis(lut.T, q.reshape(-1, channels), axis=0).reshape(q.shape)
    identity = (jnp.sum(present, axis=1) <= 1) | (step == 0)              # [C]
    return jnp.where(identity, img, out.astype(img.dtype) / 255.0)


def invert(img):
    return 1.0 - img


def posterize(img, bits):
    """Keep the ``bits`` high bits of each uint8 level (0 bits: black; >= 8: unchanged)."""
    shift = 8 - jnp.clip(jnp.asarray(bits, jnp.int32), 0, 8)
    q = _levels(img)
    kept = jnp.right_shift(q, shift)
    out = jnp.left_shift(kept, shift).astype(img.dtype) / 255.0
    return jnp.where(shift == 0, img, out)


def solarize(img, threshold):
    """PIL ``ImageOps.solarize``: levels ``>= threshold`` are inverted."""
    return jnp.where(_levels(img) >= threshold, 1.0 - img, img)


def solarize_add(img, add, threshold=128):
    """timm ``solarize_add``: levels ``< threshold`` get ``+ add`` (capped at 255)."""
    added = jnp.minimum(img + jnp.asarray(add, img.dtype) / 255.0, 1.0)
    return jnp.where(_levels(img) < threshold, added, img)


def color(img, factor):
    """PIL ``ImageEnhance.Color``: blend with the greyscale (luma) image."""
    return _blend(_luma(img), img, factor)


def contrast(img, factor):
    """PIL ``ImageEnhance.Contrast``: blend with the mean luma of the image."""
    return _blend(jnp.mean(_luma(img)), img, factor)


def brightness(img, factor):
    """PIL ``ImageEnhance.Brightness``: blend with black."""
    return _blend(jnp.zeros_like(img), img, factor)


def sharpness(img, factor):
    """PIL ``ImageEnhance.Sharpness``: blend with ``ImageFilter.SMOOTH`` (3x3 kernel
    [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 on interior pixels; the border rows and columns
    are copied, as PIL's ``ImagingFilter3x3``)."""
    pad = jnp.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    height, width = img.shape[0], img.shape[1]
    total = sum(pad[dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3))
    smooth = (total + 4.0 * img) / 13.0
    rows = jnp.arange(height)[:, None, None]
    cols = jnp.arange(width)[None, :, None]
    interior = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
    return _blend(jnp.where(interior, smooth, img), img, factor)


# --------------------------------------------------------------------------- affine (PIL)

def _cubic_weights(d):
    """PIL Geometry.c ``BICUBIC`` (cubic convolution, a = -1) tap weights for offset d."""
    d2, d3 = d * d, d * d * d
    return (-d + 2 * d2 - d3, 1 - 2 * d2 + d3, d + d2 - d3, -d2 + d3)


def affine(img, matrix, fill, interpolation: str = "bicubic", bicubic=None):
    """PIL ``img.transform(size, AFFINE, matrix, resample, fillcolor=fill)``: [H, W, C].

    ``matrix`` (a, b, c, d, e, f) maps an output pixel centre (x + .5, y + .5) to the source
    point (a x' + b y' + c, d x' + e y' + f); ``fill`` [C] in [0, 1] outside the image.
    ``bicubic``: traced bool choosing the filter per call (``interpolation='random'``).
    """
    height, width, channels = img.shape
    a, b, c, d, e, f = (matrix[i] for i in range(6))
    ys = jnp.arange(height, dtype=jnp.float32)[:, None] + 0.5
    xs = jnp.arange(width, dtype=jnp.float32)[None, :] + 0.5
    xin = a * xs + b * ys + c                                              # [H, W]
    yin = d * xs + e * ys + f
    inside = (xin >= 0) & (xin < width) & (yin >= 0) & (yin < height)
    xin, yin = xin - 0.5, yin - 0.5
    x0, y0 = jnp.floor(xin), jnp.floor(yin)
    dx, dy = xin - x0, yin - y0
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    flat = img.reshape(height * width, channels)

    def sample(offsets, wx, wy):
        out = 0.0
        for i, oy in enumerate(offsets):
            row = jnp.clip(y0 + oy, 0, height - 1) * width
            acc = 0.0
            for j, ox in enumerate(offsets):
                col = jnp.clip(x0 + ox, 0, width - 1)
                acc = acc + wx[j][..., None] * jnp.take(flat, row + col, axis=0)
            out = out + wy[i][..., None] * acc
        return out

    def cubic():
        return sample((-1, 0, 1, 2), _cubic_weights(dx), _cubic_weights(dy))

    def linear():
        return sample((0, 1), (1 - dx, dx), (1 - dy, dy))

    if interpolation == "bicubic":
        values = cubic()
    elif interpolation == "bilinear":
        values = linear()
    else:
        values = jnp.where(bicubic, cubic(), linear())
    fill = jnp.broadcast_to(jnp.asarray(fill, img.dtype), (channels,))
    return jnp.where(inside[..., None], jnp.clip(values, 0.0, 1.0).astype(img.dtype), fill)


def rotate_matrix(degrees, height: int, width: int):
    """PIL ``Image.rotate(degrees)`` about the centre (W / 2, H / 2), as an affine matrix."""
    angle = -jnp.deg2rad(degrees)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    cx, cy = width / 2.0, height / 2.0
    return jnp.stack([cos, sin, cos * -cx + sin * -cy + cx,
                      -sin, cos, -sin * -cx + cos * -cy + cy])


def shear_x_matrix(factor):
    return jnp.stack([1.0, factor, 0.0, 0.0, 1.0, 0.0])


def shear_y_matrix(factor):
    return jnp.stack([1.0, 0.0, 0.0, factor, 1.0, 0.0])


def translate_matrix(dx, dy):
    return jnp.stack([1.0, 0.0, dx, 0.0, 1.0, dy])


# --------------------------------------------------------------------------- timm levels

def _signed(value, negate):
    return jnp.where(negate, -value, value)


def op_argument(name: str, level, negate):
    """timm ``LEVEL_TO_ARG[name](level)`` (``negate``: ``_randomly_negate`` came up heads).

    Integer arguments use Python's ``int()`` (truncation) as timm does.
    """
    frac = level / MAX_LEVEL
    if name == "Rotate":
        return _signed(frac * 30.0, negate)
    if name in ("ShearX", "ShearY"):
        return _signed(frac * 0.3, negate)
    if name in ("TranslateXRel", "TranslateYRel"):
        return _signed(frac * 0.45, negate)
    if name == "Posterize":
        return jnp.floor(frac * 4).astype(jnp.int32)
    if name == "PosterizeIncreasing":
        return 4 - jnp.floor(frac * 4).astype(jnp.int32)
    if name == "Solarize":
        return jnp.floor(frac * 256).astype(jnp.int32)
    if name == "SolarizeIncreasing":
        return 256 - jnp.floor(frac * 256).astype(jnp.int32)
    if name == "SolarizeAdd":
        return jnp.floor(frac * 110).astype(jnp.int32)
    if name.endswith("Increasing"):
        return 1.0 + _signed(frac * 0.9, negate)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return frac * 1.8 + 0.1
    return jnp.zeros(())  # AutoContrast, Equalize, Invert take no argument


_POINTWISE = {
    "AutoContrast": lambda img, arg: auto_contrast(img),
    "Equalize": lambda img, arg: equalize(img),
    "Invert": lambda img, arg: invert(img),
    "Posterize": posterize, "PosterizeIncreasing": posterize,
    "Solarize": solarize, "SolarizeIncreasing": solarize,
    "SolarizeAdd": solarize_add,
    "Color": color, "ColorIncreasing": color,
    "Contrast": contrast, "ContrastIncreasing": contrast,
    "Brightness": brightness, "BrightnessIncreasing": brightness,
    "Sharpness": sharpness, "SharpnessIncreasing": sharpness,
}


def op_matrix(name: str, arg, height: int, width: int):
    """The affine matrix of a geometric op with timm's argument ``arg``."""
    if name == "Rotate":
        return rotate_matrix(arg, height, width)
    if name == "ShearX":
        return shear_x_matrix(arg)
    if name == "ShearY":
        return shear_y_matrix(arg)
    if name == "TranslateXRel":
        return translate_matrix(arg * width, 0.0)
    return translate_matrix(0.0, arg * height)


def apply_op(img, name: str, level, negate, fill, interpolation: str = "bicubic",
             bicubic=None):
    """One timm ``AugmentOp`` (always applied) at magnitude ``level``: [H, W, C] -> same."""
    arg = op_argument(name, level, negate)
    if name in GEOMETRIC_OPS:
        return affine(img, op_matrix(name, arg, img.shape[0], img.shape[1]), fill,
                      interpolation, bicubic)
    return _POINTWISE[name](img, arg)


# --------------------------------------------------------------------------- RandAugment

class RandAugmentConfig(NamedTuple):
    """What ``rand_augment_transform``'s config string sets."""
    magnitude: float = 10.0
    num_layers: int = 2
    magnitude_std: float = 0.0
    increasing: bool = False

    @property
    def ops(self) -> tuple[str, ...]:
        return RAND_INCREASING_TRANSFORMS if self.increasing else RAND_TRANSFORMS


def parse_rand_augment(config_str: str) -> RandAugmentConfig:
    """timm's ``rand_augment_transform`` string, e.g. 'rand-m9-mstd0.5-inc1' (MAE):
    'm' magnitude, 'n' ops per image, 'mstd' magnitude noise std, 'inc' increasing op set.
    Choice weights ('w') are not implemented (MAE does not use them)."""
    sections = config_str.split("-")
    if sections[0] != "rand":
        raise ValueError(f"RandAugment config {config_str!r} must start with 'rand-' "
                         "(e.g. 'rand-m9-mstd0.5-inc1')")
    cfg = RandAugmentConfig()
    for section in sections[1:]:
        parts = re.split(r"(\d.*)", section)
        if len(parts) < 2:
            continue
        key, val = parts[:2]
        if key == "mstd":
            cfg = cfg._replace(magnitude_std=float(val))
        elif key == "inc":
            cfg = cfg._replace(increasing=bool(int(val)))
        elif key == "m":
            cfg = cfg._replace(magnitude=float(int(val)))
        elif key == "n":
            cfg = cfg._replace(num_layers=int(val))
        else:
            raise ValueError(f"RandAugment config {config_str!r}: section {section!r} is not "
                             "supported; use m<int>, n<int>, mstd<float>, inc<0|1>")
    return cfg


class RandAugmentDraws(NamedTuple):
    """Per layer (shape [num_layers]): the random numbers of timm ``RandAugment.__call__``."""
    op: jax.Array         # int: index into the op set (np.random.choice, with replacement)
    apply: jax.Array      # bool: random() <= prob
    level: jax.Array      # float: clip(gauss(m, mstd), 0, 10)
    negate: jax.Array     # bool: _randomly_negate
    bicubic: jax.Array    # bool: random interpolation picks bicubic ('random' only)


def draw_rand_augment(key: jax.Array, cfg: RandAugmentConfig, prob: float = 0.5
                      ) -> RandAugmentDraws:
    """The draws of one image."""
    k_op, k_apply, k_level, k_neg, k_interp = jax.random.split(key, 5)
    n = cfg.num_layers
    noise = jax.random.normal(k_level, (n,)) * cfg.magnitude_std
    return RandAugmentDraws(
        op=jax.random.randint(k_op, (n,), 0, len(cfg.ops)),
        apply=jax.random.uniform(k_apply, (n,)) <= prob,
        level=jnp.clip(cfg.magnitude + noise, 0.0, MAX_LEVEL),
        negate=jax.random.uniform(k_neg, (n,)) > 0.5,
        bicubic=jax.random.bernoulli(k_interp, 0.5, (n,)))


def _fill_values(fill, channels: int):
    fill = np.atleast_1d(np.asarray(fill, np.float32))
    if fill.shape[0] not in (1, channels):
        raise ValueError(f"RandAugment fill={tuple(fill.tolist())} has {fill.shape[0]} values "
                         f"for {channels}-channel images; pass one value or {channels}")
    return jnp.asarray(np.broadcast_to(fill, (channels,)) / 255.0)


def rand_augment_with_draws(img, draws: RandAugmentDraws, cfg: RandAugmentConfig, *,
                            fill: Sequence[float] = FILL_IMAGENET_MEAN,
                            interpolation: str = "bicubic"):
    """Apply the drawn ops in order to one image [H, W, C] in [0, 1]."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"RandAugment interpolation={interpolation!r} is not one of "
                         f"{INTERPOLATIONS} (MAE: 'bicubic')")
    height, width, channels = img.shape
    fill = _fill_values(fill, channels)
    ops = cfg.ops
    geometric = [i for i, name in enumerate(ops) if name in GEOMETRIC_OPS]
    pointwise = [i for i, name in enumerate(ops) if name not in GEOMETRIC_OPS]
    is_geometric = jnp.asarray([name in GEOMETRIC_OPS for name in ops])
    # index of each op inside its group (geometric ops -> matrix, others -> switch branch)
    group_index = jnp.asarray([geometric.index(i) if i in geometric else pointwise.index(i)
                               for i in range(len(ops))])
    for layer in range(cfg.num_layers):
        op, level, negate = draws.op[layer], draws.level[layer], draws.negate[layer]
        matrices = jnp.stack([op_matrix(ops[i], op_argument(ops[i], level, negate),
                                        height, width) for i in geometric])
        moved = affine(img, matrices[group_index[op]], fill, interpolation,
                       draws.bicubic[layer])
        branches = [lambda x, lv, ng, name=ops[i]: _POINTWISE[name](
            x, op_argument(name, lv, ng)) for i in pointwise]
        recoloured = jax.lax.switch(group_index[op], branches, img, level, negate)
        out = jnp.where(is_geometric[op], moved, recoloured)
        img = jnp.where(draws.apply[layer], out, img)
    return img


def rand_augment(key: jax.Array, images: jax.Array, config: str = "rand-m9-mstd0.5-inc1", *,
                 prob: float = 0.5, fill: Sequence[float] = FILL_IMAGENET_MEAN,
                 interpolation: str = "bicubic") -> jax.Array:
    """timm ``rand_augment_transform(config, hparams)`` on a batch [B, H, W, C] in [0, 1].

    One key per image (split from ``key``). Defaults: MAE fine-tuning ('rand-m9-mstd0.5-inc1',
    fill = the ImageNet mean in uint8 levels, bicubic). Jittable; config, prob, fill and
    interpolation are static.
    """
    cfg = parse_rand_augment(config)
    keys = jax.random.split(key, images.shape[0])

    def one(k, img):
        return rand_augment_with_draws(img, draw_rand_augment(k, cfg, prob), cfg, fill=fill,
                                       interpolation=interpolation)
    return jax.vmap(one)(keys, images)


__all__ = [
    "MAX_LEVEL", "FILL_IMAGENET_MEAN", "RAND_TRANSFORMS", "RAND_INCREASING_TRANSFORMS",
    "GEOMETRIC_OPS", "INTERPOLATIONS", "auto_contrast", "equalize", "invert", "posterize",
    "solarize", "solarize_add", "color", "contrast", "brightness", "sharpness", "affine",
    "rotate_matrix", "shear_x_matrix", "shear_y_matrix", "translate_matrix", "op_argument",
    "op_matrix", "apply_op", "RandAugmentConfig", "parse_rand_augment", "RandAugmentDraws",
    "draw_rand_augment", "rand_augment_with_draws", "rand_augment"]
