"""On-device view augmentation for SimCLR and MoCo: one config, one view, a batch, two views.

Pipeline of one view (every step reads its own lanes of one draw from the example's key):

    random resized crop + resize (one interpolation)  ->  horizontal flip (p)
    ->  colour jitter in random order (p)  ->  grayscale (p)  ->  Gaussian blur (p)
    ->  solarize (p)

This is SimCLR's ``preprocess_for_train`` followed by its batch blur, and MoCo v2/v3's
torchvision pipeline up to where the flip sits (the flip commutes with the pixelwise colour ops
and the symmetric blur, so its position does not change the distribution).

Images are float32 in [0, 1] (uint8 is converted by ``/ 255``), NHWC, with C = 3 (RGB) or 1
(grayscale). With C = 1, saturation, hue and grayscale are identities; brightness and contrast
still apply. Everything is a pure function of the keys: ``jit``-able, ``vmap``-ped over the
batch, and independent of how the batch is sharded.
"""
from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from jaxssl import rng
from jaxssl.augment.blur import (BLUR_KERNELS, blur_kernel_size, blur_kernel_size_for_sigma,
                                 gaussian_blur, gaussian_kernel_1d)
from jaxssl.augment.color import (BRIGHTNESS_MODES, JITTER_UNIFORMS, adjust_brightness,
                                  adjust_contrast, adjust_hue, adjust_saturation,
                                  apply_color_jitter, jitter_params_from_uniforms,
                                  rgb_to_grayscale, solarize)
from jaxssl.augment.crop import (RESIZE_METHODS, center_crop_resize, crop_box_from_uniforms,
                                 crop_resize, crop_uniforms_size, sample_crop_box,
                                 to_float_image)

__all__ = [
    "ViewConfig", "augment_view", "augment_batch", "two_views", "center_crop_resize",
    "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue",
    "rgb_to_grayscale", "gaussian_kernel_1d", "gaussian_blur", "solarize", "sample_crop_box",
    "blur_kernel_size", "blur_kernel_size_for_sigma", "crop_resize",
]

_TUPLE_FIELDS = ("crop_scale", "crop_ratio", "blur_sigma")
# Lanes 0..5 of a view's uniforms: flip, jitter on, grayscale, blur on, blur sigma, solarize.
_NUM_COINS = 6
_PROB_FIELDS = ("flip_prob", "jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob")


@dataclasses.dataclass(frozen=True)
class ViewConfig:
    """How to draw one augmented view. Defaults are SimCLR's ImageNet recipe (strength s=1).

    output_size: side S of the square output.
    crop: random resized crop (else the whole image is resized to S).
    crop_scale: range of the crop's area fraction (SimCLR (0.08, 1); MoCo v2/v3 (0.2, 1)).
    crop_ratio: range of the crop's aspect ratio w / h, sampled log-uniformly.
    resize_method: 'bicubic' (SimCLR) or 'bilinear' (torchvision default, MoCo).
    resize_antialias: widen the kernel when downscaling (PIL / MoCo); False is
        ``tf.image.resize``'s default (SimCLR). No effect when the crop is upscaled.
    flip_prob: probability of a horizontal flip.
    jitter_prob: probability of applying colour jitter as a whole.
    brightness, contrast, saturation, hue: jitter strengths (``simclr_jitter(s)`` gives
        0.8s, 0.8s, 0.8s, 0.2s; MoCo uses 0.4, 0.4, 0.4, 0.1).
    brightness_mode: 'multiplicative' (SimCLR v2 code, torchvision) or 'additive' (SimCLR v1).
    jitter_random_order: the four jitter ops in a random order (else b, c, s, h).
    grayscale_prob: probability of converting to grayscale (3 channels kept).
    blur_prob: probability of a Gaussian blur; blur_sigma: its sigma range;
        blur_kernel: 'fraction' (SimCLR: kernel size = odd of ``blur_kernel_fraction`` x S,
        reflect border) or 'sigma' (PIL / MoCo v2 / solo-learn: radius ceil(4 sigma_max),
        untruncated by the image size, PIL's mirrored border); see ``jaxssl.augment.blur``;
        blur_kernel_fraction: the 'fraction' kernel's fraction of S (SimCLR 0.1).
    solarize_prob, solarize_threshold: BYOL / MoCo v3 solarization (x -> 1 - x if x >= t).
    """
    output_size: int
    crop: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    resize_method: str = "bicubic"
    resize_antialias: bool = False
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    brightness_mode: str = "multiplicative"
    jitter_random_order: bool = True
    grayscale_prob: float = 0.2
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_fraction: float = 0.1
    blur_kernel: str = "fraction"
    solarize_prob: float = 0.0
    solarize_threshold: float = 0.5

    def __post_init__(self):
        for name in _TUPLE_FIELDS:  # lists from configs become (hashable) tuples
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ValueError(f"augment.{name}={value!r} must be a pair (low, high)")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if (isinstance(self.output_size, bool) or not isinstance(self.output_size, numbers.Integral)
                or self.output_size <= 0):
            raise ValueError(f"augment output_size={self.output_size!r} must be a positive int")
        object.__setattr__(self, "output_size", int(self.output_size))
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"augment.crop_scale={self.crop_scale} must satisfy "
                             f"0 < low <= high <= 1, e.g. (0.08, 1.0)")
        lo, hi = self.crop_ratio
        if not 0.0 < lo <= hi:
            raise ValueError(f"augment.crop_ratio={self.crop_ratio} must satisfy "
                             f"0 < low <= high, e.g. (0.75, 1.3333)")
        lo, hi = self.blur_sigma
        if not 0.0 < lo <= hi:
            raise ValueError(f"augment.blur_sigma={self.blur_sigma} must satisfy "
                             f"0 < low <= high, e.g. (0.1, 2.0)")
        if self.resize_method not in RESIZE_METHODS:
            raise ValueError(f"augment.resize_method={self.resize_method!r} is not supported; "
                             f"use one of {tuple(RESIZE_METHODS)}")
        if self.brightness_mode not in BRIGHTNESS_MODES:
            raise ValueError(f"augment.brightness_mode={self.brightness_mode!r} is not "
                             f"supported; use one of {BRIGHTNESS_MODES}")
        for name in _PROB_FIELDS:
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"augment.{name}={p} must be a probability in [0, 1]")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name}={getattr(self, name)} must be >= 0")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"augment.hue={self.hue} must be in [0, 0.5] (a fraction of a turn)")
        if self.blur_kernel not in BLUR_KERNELS:
            raise ValueError(f"augment.blur_kernel={self.blur_kernel!r} is not supported; use one "
                             f"of {BLUR_KERNELS} ('sigma' for PIL's blur, as MoCo v2 / solo-learn)")
        if not 0.0 <= self.blur_kernel_fraction < 1.0:
            raise ValueError(f"augment.blur_kernel_fraction={self.blur_kernel_fraction} must be "
                             f"in [0, 1); SimCLR uses 0.1")

    @staticmethod
    def simclr_jitter(strength: float) -> dict[str, float]:
        """SimCLR colour-jitter strengths for strength ``s``: brightness, contrast and saturation
        0.8 s, hue 0.2 s (s = 1 ImageNet, 0.5 CIFAR). Use as ``ViewConfig(S, **simclr_jitter(s))``.
        """
        return dict(brightness=0.8 * strength, contrast=0.8 * strength,
                    saturation=0.8 * strength, hue=0.2 * strength)

    @classmethod
    def from_config(cls, cfg: Any, output_size: int) -> "ViewConfig":
        """Build from an ``ml_collections.ConfigDict`` or a dict holding any of the fields.

        Lists are accepted for the pair fields. An unknown key raises a ``ValueError`` that
        names it; ``output_size`` comes from the argument, not from ``cfg``.
        """
        if hasattr(cfg, "to_dict"):
            cfg = cfg.to_dict()
        if not isinstance(cfg, Mapping):
            raise TypeError(f"augment config must be a ConfigDict or dict, got {type(cfg)}")
        allowed = [f.name for f in dataclasses.fields(cls) if f.name != "output_size"]
        unknown = sorted(set(cfg) - set(allowed))
        if unknown:
            raise ValueError(f"unknown augment config key(s) {unknown}; allowed keys are "
                             f"{allowed} (output_size is passed separately)")
        return cls(output_size=output_size, **dict(cfg))


def augment_view(key: jax.Array, image: jax.Array, cfg: ViewConfig) -> jax.Array:
    """One augmented view of one image: ``[H, W, C]`` (uint8 or float in [0, 1]) -> float32
    ``[S, S, C]`` in [0, 1], ``S = cfg.output_size``.

    All randomness comes from ``key`` (a typed PRNG key) through one uniform draw in which every
    op owns fixed lanes (coins, jitter factors and order, crop attempts), so disabling one op
    does not change the draws of the others. Ops whose probability or strength is 0 are
    removed at trace time. Probabilistic ops are selected with ``where`` (under ``vmap`` a
    ``cond`` would evaluate both branches anyway).
    """
    image = to_float_image(image)
    if image.ndim != 3:
        raise ValueError(f"augment_view expects one image [H, W, C], got shape {image.shape}")
    height, width, channels = image.shape
    if channels not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels (NHWC), got C={channels}")
    size = cfg.output_size
    # One PRNG call: a threefry per op would dominate the compile time.
    u = jax.random.uniform(key, (_NUM_COINS + JITTER_UNIFORMS + crop_uniforms_size(),))
    u_flip, u_jitter, u_gray, u_blur, u_sigma, u_solarize = u[:_NUM_COINS]
    u_jitter_params = u[_NUM_COINS:_NUM_COINS + JITTER_UNIFORMS]
    u_crop = u[_NUM_COINS + JITTER_UNIFORMS:]

    if cfg.crop:
        top, left, h, w = crop_box_from_uniforms(u_crop, height, width, cfg.crop_scale,
                                                 cfg.crop_ratio)
        x = crop_resize(image, top, left, h, w, size, cfg.resize_method, cfg.resize_antialias)
        x = jnp.clip(x, 0.0, 1.0)  # bicubic overshoots
    elif (height, width) == (size, size):
        x = image
    else:
        x = crop_resize(image, 0, 0, height, width, size, cfg.resize_method,
                        cfg.resize_antialias)
        x = jnp.clip(x, 0.0, 1.0)

    if cfg.flip_prob > 0:
        x = jnp.where(u_flip < cfg.flip_prob, x[:, ::-1, :], x)

    strengths = (cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)
    if cfg.jitter_prob > 0 and any(s > 0 for s in strengths):
        params = jitter_params_from_uniforms(u_jitter_params, *strengths, cfg.brightness_mode,
                                             cfg.jitter_random_order)
        jittered = apply_color_jitter(x, params, cfg.brightness_mode,
                                      use_hue=cfg.hue > 0 and channels == 3)
        x = jnp.where(u_jitter < cfg.jitter_prob, jittered, x)

    if cfg.grayscale_prob > 0 and channels == 3:
        x = jnp.where(u_gray < cfg.grayscale_prob, rgb_to_grayscale(x), x)

    if cfg.blur_kernel == "sigma":
        kernel_size, padding = blur_kernel_size_for_sigma(cfg.blur_sigma[1]), "symmetric"
    else:
        kernel_size, padding = blur_kernel_size(size, cfg.blur_kernel_fraction), "reflect"
    if cfg.blur_prob > 0 and kernel_size > 1:
        sigma = cfg.blur_sigma[0] + (cfg.blur_sigma[1] - cfg.blur_sigma[0]) * u_sigma
        blurred = jnp.clip(gaussian_blur(x, sigma, kernel_size, padding), 0.0, 1.0)
        x = jnp.where(u_blur < cfg.blur_prob, blurred, x)

    if cfg.solarize_prob > 0:
        x = jnp.where(u_solarize < cfg.solarize_prob,
                      solarize(x, cfg.solarize_threshold), x)
    return x


def augment_batch(keys: jax.Array, images: jax.Array, cfg: ViewConfig) -> jax.Array:
    """``augment_view`` vmapped: keys ``[B]``, images ``[B, H, W, C]`` (uint8 or float) ->
    float32 ``[B, S, S, C]``. Jit with ``cfg`` static (``ViewConfig`` is hashable)."""
    images = to_float_image(images)
    if images.ndim != 4 or keys.shape != images.shape[:1]:
        raise ValueError(f"augment_batch expects keys [B] and images [B, H, W, C]; got keys "
                         f"{keys.shape} and images {images.shape}")
    return jax.vmap(functools.partial(augment_view, cfg=cfg))(keys, images)


def two_views(key_step: jax.Array, images: jax.Array, cfg_a: ViewConfig, cfg_b: ViewConfig,
              offset=0) -> tuple[jax.Array, jax.Array]:
    """Two views of each image for a contrastive step.

    View ``v`` of example ``i`` is keyed by ``fold_in(fold_in(key_step, v), offset + i)``
    (``rng.example_keys``), so the views differ, each example's draw is independent of the
    batch size and sharding, and a slice of the global batch starting at ``offset`` gets the
    same keys as in the whole batch. ``images``: ``[B, H, W, C]`` -> two ``[B, S, S, C]``.
    """
    batch = images.shape[0]
    keys_a = rng.example_keys(jax.random.fold_in(key_step, 0), batch, offset)
    keys_b = rng.example_keys(jax.random.fold_in(key_step, 1), batch, offset)
    return augment_batch(keys_a, images, cfg_a), augment_batch(keys_b, images, cfg_b)
