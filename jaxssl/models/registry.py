"""Backbones by name: the config's ``model.backbone`` string -> a Flax module.

Every backbone maps images [B, H, W, C] to features [B, feature_dim] with
``module.apply(variables, x, train=...)`` and exposes ``module.feature_dim``.

Keyword arguments are the module's fields (``stem``, ``width_multiplier``, ``dtype``,
``patch_size``, ``pool``, ``posemb``, ``freeze_patch_embed``, ``bn_axis_name`` ...); a field
that the named backbone does not have is an error, so a misspelt or misplaced config field
fails loudly instead of being ignored. ``dtype`` may be given by name ('bfloat16').
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxssl.models.resnet import RESNET_DEPTHS, ResNet
from jaxssl.models.small_cnn import SmallCNN
from jaxssl.models.vit import VIT_SIZES, VisionTransformer

# name -> (module class, fields fixed by the name)
_BACKBONES: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "small_cnn": (SmallCNN, {}),
    **{name: (ResNet, fixed) for name, fixed in RESNET_DEPTHS.items()},
    **{name: (VisionTransformer, fixed) for name, fixed in VIT_SIZES.items()},
}

BACKBONE_NAMES = tuple(_BACKBONES)


def backbone_fields(name: str) -> tuple[str, ...]:
    """The keyword arguments ``create_backbone(name, ...)`` accepts."""
    cls, fixed = _lookup(name)
    return tuple(f.name for f in dataclasses.fields(cls)
                 if f.init and f.name not in ("parent", "name") and f.name not in fixed)


def create_backbone(name: str, **kwargs) -> nn.Module:
    """The backbone module called ``name`` (one of ``BACKBONE_NAMES``), configured by kwargs.

    Raises ValueError for an unknown name (fix ``model.backbone``) or for a keyword the
    backbone does not take.
    """
    cls, fixed = _lookup(name)
    allowed = backbone_fields(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"backbone {name!r} (model.backbone) does not take {unknown}; remove them from the "
            f"model config or pick a backbone that has them. {name!r} accepts: {list(allowed)}")
    if isinstance(kwargs.get("dtype"), str):
        try:
            kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
        except TypeError:
            raise ValueError(f"model.dtype={kwargs['dtype']!r} is not a dtype name; use "
                             "'float32' or 'bfloat16'") from None
    return cls(**fixed, **kwargs)


# model.vit_* overrides of the named ViT size (0 = the size's value): config field -> ViT field
VIT_OVERRIDES = {"vit_hidden_dim": "hidden_dim", "vit_depth": "depth", "vit_num_heads": "num_heads"}


def build_backbone(model_cfg) -> nn.Module:
    """The backbone ``model.backbone`` with the options of the ``config.model`` section.

    The one builder every image method uses. ResNets take ``stem``, ``width_multiplier``,
    ``conv_batch_chunk``, ``remat`` and :func:`jaxssl.models.resnet.resnet_options`; ViTs take
    ``patch_size``, ``pool``, ``posemb``, ``freeze_patch_embed``, ``sincos_layout``, ``remat``,
    the ``vit_hidden_dim`` / ``vit_depth`` / ``vit_num_heads`` overrides and the DINOv2 options
    ``vit_layerscale_init``, ``vit_num_registers``, ``vit_mlp_type``; ``dtype`` for all.
    Every field is declared by ``jaxssl.config.base_config``.
    """
    from jaxssl.models import resnet
    m = model_cfg
    name = m.backbone
    dtype = jnp.bfloat16 if m.dtype == "bfloat16" else jnp.float32
    if name.startswith("vit"):
        if name not in VIT_SIZES:
            raise ValueError(f"config field model.backbone={name!r} is invalid: use one of "
                             f"{list(VIT_SIZES)}")
        size = dict(VIT_SIZES[name])
        for field, arg in VIT_OVERRIDES.items():
            if int(m[field] or 0) > 0:
                size[arg] = int(m[field])
        return VisionTransformer(**size, patch_size=int(m.patch_size), pool=m.pool,
                                 posemb=m.posemb, freeze_patch_embed=bool(m.freeze_patch_embed),
                                 sincos_layout=m.sincos_layout, dtype=dtype, remat=str(m.remat),
                                 layerscale_init=float(m.vit_layerscale_init),
                                 num_registers=int(m.vit_num_registers),
                                 mlp_type=str(m.vit_mlp_type))
    if name.startswith("resnet"):
        return create_backbone(name, stem=m.stem, width_multiplier=m.width_multiplier, dtype=dtype,
                               conv_batch_chunk=int(m.conv_batch_chunk), remat=str(m.remat),
                               **resnet.resnet_options(m))
    return create_backbone(name, dtype=dtype)


def backbone_feature_dim(name: str, **kwargs) -> int:
    """Width D of the features ``create_backbone(name, **kwargs)`` returns (no init needed)."""
    return create_backbone(name, **kwargs).feature_dim


def _lookup(name: str) -> tuple[type[nn.Module], dict[str, Any]]:
    if name not in _BACKBONES:
        raise ValueError(
            f"unknown backbone {name!r}; set the config field model.backbone to one of "
            f"{list(BACKBONE_NAMES)}")
    return _BACKBONES[name]


__all__ = ["create_backbone", "build_backbone", "backbone_feature_dim", "backbone_fields",
           "BACKBONE_NAMES", "VIT_OVERRIDES"]
