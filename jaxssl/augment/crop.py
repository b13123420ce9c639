"""Random resized crop and centre crop, each fused with the resize into one interpolation.

The crop box is sampled as torchvision's ``RandomResizedCrop.get_params`` (MoCo; the usual
PyTorch form of SimCLR's "random crop and resize"): area fraction ``~ U[scale]``, aspect
ratio ``w / h`` log-uniform in ``ratio``, ``w = round(sqrt(area * ratio))``,
``h = round(sqrt(area / ratio))``; the first of ``num_attempts`` (10) draws that fits in the
image wins, else a centre crop with the aspect ratio clamped into ``ratio``. The attempts are
drawn all at once (vectorised), so the box is a pure function of the key. (SimCLR's TF code
uses ``tf.image.sample_distorted_bounding_box``: 100 attempts, ``min_object_covered=0.1``,
whole image as fallback; docs/recipes.md names the torchvision form used here.)

The crop and the resize are one ``jax.image.scale_and_translate`` call whose scale and
translation are traced, so the box can differ per example under ``jit``/``vmap`` and no
intermediate crop is materialised. The kernel taps near the box edges read the real pixels
just outside the box (where crop-then-resize would renormalise the kernel at the crop edge);
inside the box the two are identical.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

RESIZE_METHODS = {"bicubic": "cubic", "bilinear": "linear"}


def _jax_method(method: str) -> str:
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize_method={method!r} is not supported; use one of "
                         f"{tuple(RESIZE_METHODS)}")
    return RESIZE_METHODS[method]


CROP_ATTEMPTS = 10  # torchvision RandomResizedCrop.get_params


def crop_uniforms_size(num_attempts: int = CROP_ATTEMPTS) -> int:
    """How many U[0, 1) numbers one box consumes: area and ratio per attempt, top, left."""
    return 2 * num_attempts + 2


def sample_crop_box(key: jax.Array, height: int, width: int, scale=(0.08, 1.0),
                    ratio=(3.0 / 4.0, 4.0 / 3.0), num_attempts: int = CROP_ATTEMPTS):
    """Sample a random-resized-crop box for a ``height x width`` image (static ints).

    Returns int32 scalars ``(top, left, h, w)`` with ``0 <= top``, ``top + h <= height``,
    ``0 <= left``, ``left + w <= width``. Rounding is half-to-even, as Python's ``round``.
    """
    u = jax.random.uniform(key, (crop_uniforms_size(num_attempts),))
    return crop_box_from_uniforms(u, height, width, scale, ratio)


def crop_box_from_uniforms(u: jax.Array, height: int, width: int, scale=(0.08, 1.0),
                           ratio=(3.0 / 4.0, 4.0 / 3.0)):
    """``sample_crop_box`` given its U[0, 1) draws ``u``: ``float32[2 * attempts + 2]``
    (areas, log-ratios, then the top and left offsets). One PRNG call for all of them keeps
    the compiled program small."""
    num_attempts = (u.shape[0] - 2) // 2
    area = float(height * width)
    lo, hi = float(scale[0]), float(scale[1])
    target_area = area * (lo + (hi - lo) * u[:num_attempts])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = jnp.exp(log_lo + (log_hi - log_lo) * u[num_attempts:2 * num_attempts])
    ws = jnp.round(jnp.sqrt(target_area * aspect)).astype(jnp.int32)
    hs = jnp.round(jnp.sqrt(target_area / aspect)).astype(jnp.int32)
    fits = (ws > 0) & (ws <= width) & (hs > 0) & (hs <= height)
    first = jnp.argmax(fits)  # index of the first attempt that fits (0 if none does)
    found = fits[first]

    # Fallback: centre crop of the largest box whose aspect ratio is clamped into `ratio`.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fb_w, fb_h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fb_w, fb_h = int(round(height * max(ratio))), height
    else:
        fb_w, fb_h = width, height

    h = jnp.where(found, hs[first], fb_h)
    w = jnp.where(found, ws[first], fb_w)
    # Offsets uniform on 0..H-h and 0..W-w: floor(U[0, 1) * n), clamped against rounding.
    top_draw = jnp.minimum(jnp.floor(u[-2] * (height - h + 1)).astype(jnp.int32), height - h)
    left_draw = jnp.minimum(jnp.floor(u[-1] * (width - w + 1)).astype(jnp.int32), width - w)
    top = jnp.where(found, top_draw, (height - fb_h) // 2)
    left = jnp.where(found, left_draw, (width - fb_w) // 2)
    return top.astype(jnp.int32), left.astype(jnp.int32), h, w


def crop_resize(image: jax.Array, top, left, h, w, output_size: int, method: str = "bicubic",
                antialias: bool = False) -> jax.Array:
    """Crop box ``(top, left, h, w)`` of ``image [..., H, W, C]`` resized to ``[..., S, S, C]``.

    One interpolation pass. Pixel-edge coordinates: output pixel ``i`` covers input rows
    ``top + [i, i + 1) * h / S`` (half-pixel centres, as ``tf.image.resize``).
    ``antialias=False`` is ``tf.image.resize``'s default (SimCLR); ``True`` widens the kernel
    when downscaling, like PIL (torchvision on PIL images, MoCo). The box may be traced
    (scalars); with leading batch axes the box is shared by the batch.
    """
    s = float(output_size)
    h = jnp.asarray(h, jnp.float32)
    w = jnp.asarray(w, jnp.float32)
    scale = jnp.stack([s / h, s / w])
    translation = jnp.stack([-jnp.asarray(top, jnp.float32) * s / h,
                             -jnp.asarray(left, jnp.float32) * s / w])
    nd = image.ndim
    return jax.image.scale_and_translate(
        image, image.shape[:-3] + (output_size, output_size, image.shape[-1]), (nd - 3, nd - 2),
        scale, translation, method=_jax_method(method), antialias=antialias)


def center_crop_box(height: int, width: int, crop_fraction: float = 0.875):
    """Static square centre box ``(top, left, side, side)`` as SimCLR's ``center_crop``.

    ``side = rint(crop_fraction * min(height, width))``, offsets ``((H - side) + 1) // 2``.
    """
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction={crop_fraction} must be in (0, 1]; SimCLR uses 0.875")
    side = max(1, int(round(crop_fraction * min(height, width))))
    return ((height - side) + 1) // 2, ((width - side) + 1) // 2, side, side


def to_float_image(images: jax.Array) -> jax.Array:
    """uint8 images -> float32 / 255; float images -> float32 unchanged (assumed in [0, 1])."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise TypeError(f"images dtype {images.dtype} is not supported; pass uint8 in [0, 255] "
                        f"or float in [0, 1]")
    return images.astype(jnp.float32)


def center_crop_resize(images: jax.Array, output_size: int, crop_fraction: float = 0.875,
                       method: str = "bicubic", antialias: bool = False) -> jax.Array:
    """Evaluation preprocessing: centre crop ``crop_fraction`` of the short side, resize.

    ``images``: ``[B, H, W, C]`` uint8 or float in [0, 1] -> float32 ``[B, S, S, C]`` in
    [0, 1] (SimCLR ``preprocess_for_eval``: ``center_crop(0.875)``, bicubic, clip).
    """
    images = to_float_image(images)
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, C], got shape {images.shape}")
    top, left, h, w = center_crop_box(images.shape[1], images.shape[2], crop_fraction)
    resized = crop_resize(images, top, left, h, w, output_size, method, antialias)
    return jnp.clip(resized, 0.0, 1.0)
