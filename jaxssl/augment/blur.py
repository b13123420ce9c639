"""Separable Gaussian blur with a traced sigma (SimCLR / MoCo "GaussianBlur").

Two kernel sizes (config ``augment.blur_kernel``):

``'fraction'``  SimCLR (``tf2/data_util.py: random_blur``): kernel size = ``side // 10`` made
               odd as ``2 * (size // 2) + 1``, whatever sigma is: 23 taps at 224 px (no
               visible truncation for sigma <= 2) but 3 taps at 32 px, which truncates a
               sigma-2 Gaussian to about [0.3, 0.4, 0.3].
``'sigma'``    PIL's ``ImageFilter.GaussianBlur(radius=sigma)``, what MoCo v2
               (``moco/loader.py``) and solo-learn (``solo/data/pretrain_dataloader.py``)
               call: a Gaussian of standard deviation sigma that the image size does not
               truncate. The radius is ``ceil(4 * sigma_max)`` (mass beyond it < 1e-4), from
               the top of the sigma range so the kernel shape stays static; the borders are
               mirrored with the edge pixel repeated (``c b a | a b c``), PIL's behaviour.
               (PIL approximates the Gaussian by three box blurs; the two agree to about
               1/255 on average, ``tests/test_recipes_simclr_moco.py``.)

Padding for ``'fraction'``: **reflect** (``a b c | b a``, torchvision ``F.gaussian_blur``'s
mode). The SimCLR TF code convolves with zero 'SAME' padding, which darkens a band of
``radius`` pixels along every border and so changes the image mean; reflect padding keeps a
constant image constant and does not invent an edge that the network could key on. Reflect
needs ``radius < side``, which holds for any kernel built from a fraction < 1 of the side.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def blur_kernel_size(side: int, fraction: float = 0.1) -> int:
    """Odd kernel size for an image side, as SimCLR: ``2 * (int(fraction * side) // 2) + 1``.

    224 px -> 23, 96 px -> 9, 32 px -> 3; below 20 px (fraction 0.1) it is 1, i.e. no blur.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"blur_kernel_fraction={fraction} must be in [0, 1); SimCLR uses 0.1")
    return 2 * (int(fraction * side) // 2) + 1


BLUR_KERNELS = ("fraction", "sigma")
BLUR_PADDINGS = ("reflect", "symmetric")
# Radius of the 'sigma' kernel in units of the largest sigma: exp(-16 / 2) leaves < 1e-4 outside.
SIGMA_TRUNCATE = 4.0


def blur_kernel_size_for_sigma(sigma_max: float, truncate: float = SIGMA_TRUNCATE) -> int:
    """Odd kernel size ``2 * ceil(truncate * sigma_max) + 1`` covering a Gaussian of standard
    deviation up to ``sigma_max`` (PIL's untruncated blur): sigma 2 -> 17 taps."""
    if not sigma_max > 0:
        raise ValueError(f"augment.blur_sigma upper bound {sigma_max} must be > 0, e.g. 2.0")
    return 2 * int(math.ceil(truncate * float(sigma_max))) + 1


def gaussian_kernel_1d(sigma, size: int) -> jax.Array:
    """Normalised 1-D Gaussian ``float32[size]``: ``exp(-x^2 / (2 sigma^2)) / sum``, x centred.

    ``size`` must be a positive odd (static) int; ``sigma`` may be traced.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"Gaussian kernel size={size} must be a positive odd integer")
    radius = size // 2
    x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    sigma = jnp.asarray(sigma, jnp.float32)
    weights = jnp.exp(-(x ** 2) / (2.0 * sigma ** 2))
    return weights / jnp.sum(weights)


def _blur_axis(image: jax.Array, kernel: jax.Array, axis: int,
               padding: str = "reflect") -> jax.Array:
    """Convolve ``image`` along ``axis`` with a symmetric odd ``kernel``; ``padding`` is numpy's
    'reflect' (``b a | a b``... without the edge) or 'symmetric' (edge repeated, PIL).

    Written as a static sum of ``size`` shifted slices (fused by XLA into one pass); under
    ``vmap`` every image keeps its own kernel without a grouped convolution.
    """
    size = kernel.shape[0]
    radius = size // 2
    if radius == 0:
        return image * kernel[0]
    length = image.shape[axis]
    if padding not in BLUR_PADDINGS:
        raise ValueError(f"blur padding={padding!r}: use one of {BLUR_PADDINGS}")
    if radius >= length:
        raise ValueError(f"blur radius {radius} must be smaller than the image side {length}; "
                         f"lower augment.blur_kernel_fraction or the augment.blur_sigma range")
    pad = [(0, 0)] * image.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(image, pad, mode=padding)
    out = 0.0
    for k in range(size):
        out = out + kernel[k] * jax.lax.slice_in_dim(padded, k, k + length, axis=axis)
    return out


def gaussian_blur(image: jax.Array, sigma, kernel_size: int, padding: str = "reflect") -> jax.Array:
    """Blur one image ``[H, W, C]`` with a separable Gaussian (rows, then columns).

    ``padding``: 'reflect' (default, SimCLR-size kernels) or 'symmetric' (PIL's border).
    """
    kernel = gaussian_kernel_1d(sigma, kernel_size)
    return _blur_axis(_blur_axis(image, kernel, axis=-3, padding=padding), kernel, axis=-2,
                      padding=padding)
