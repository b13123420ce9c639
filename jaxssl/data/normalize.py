"""Input normalisation of every image method: ``x <- (x - mean) / std`` per channel, applied to
the augmented views and to the evaluation images right before the network (torchvision's
``Normalize`` after the augmentation, as the reference pipelines do).

The field is ``data.normalize_mean`` / ``data.normalize_std`` (``()``: none; 1 value or one
per channel). Older per-method names are still honoured: ``mae.pixel_mean`` /
``mae.pixel_std``, ``ijepa.pixel_mean`` / ``ijepa.pixel_std`` and
``classifier.pixel_mean`` / ``classifier.pixel_std``; a config that sets one of those and a
different ``data.normalize_*`` is refused. ResNet presets may instead normalise inside the
backbone (``model.input_mean`` / ``input_std``, part of the exported network); a config that
sets both is refused, as it would normalise twice.
"""
from __future__ import annotations

import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: config sections whose ``pixel_mean`` / ``pixel_std`` are older names of data.normalize_*
LEGACY_SECTIONS = ("mae", "ijepa", "classifier")


def input_normalization(config) -> tuple[tuple, tuple, str]:
    """``(mean, std, field)``: the normalisation ``config`` asks for and the field that set it
    (``'data.normalize_mean'``, ``'mae.pixel_mean'``, ...; ``((), (), '')`` for none).

    Raises ValueError (one line naming the fields) when two of them disagree, or when the
    lengths differ, are not 1 or 3, or a standard deviation is not positive.
    """
    from jaxssl.config import fail
    found = []
    data = config.data
    if tuple(data.normalize_mean) or tuple(data.normalize_std):
        found.append(("data.normalize", tuple(data.normalize_mean), tuple(data.normalize_std)))
    for section in LEGACY_SECTIONS:
        if section in config and "pixel_mean" in config[section]:
            s = config[section]
            if tuple(s.pixel_mean) or tuple(s.pixel_std):
                found.append((f"{section}.pixel", tuple(s.pixel_mean), tuple(s.pixel_std)))
    if not found:
        return (), (), ""
    name, mean, std = found[0]
    mean_field = f"{name}_mean"
    for other, m, s in found[1:]:
        if (m, s) != (mean, std):
            fail(f"{other}_mean", (m, s), f"it disagrees with {name}_mean / _std = {(mean, std)}; "
                 f"set the input normalisation once, in data.normalize_mean / normalize_std")
    if len(mean) != len(std) or len(mean) not in (1, 3):
        fail(mean_field, mean, f"give as many values as {name}_std={std}: 1 (grayscale or one "
             "for all channels) or 3 (RGB); () for no normalisation")
    if min(std) <= 0:
        fail(f"{name}_std", std, "every standard deviation must be > 0")
    if "input_mean" in config.model and tuple(config.model.input_mean):
        fail("model.input_mean", tuple(config.model.input_mean),
             f"the ResNet already normalises its input, and {mean_field}={mean} would normalise "
             "it again; keep one of the two")
    return mean, std, mean_field


def normalize_images(images, mean, std):
    """``(x - mean) / std`` over the last (channel) axis; ``images`` unchanged when ``mean`` is
    empty. images: float ``[..., C]`` in [0, 1] -> float32 ``[..., C]``."""
    mean, std = tuple(mean), tuple(std)
    if not mean:
        return images
    shape = (1,) * (images.ndim - 1) + (-1,)
    return ((images.astype(jnp.float32) - jnp.asarray(mean, jnp.float32).reshape(shape))
            / jnp.asarray(std, jnp.float32).reshape(shape))


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "input_normalization", "normalize_images"]
