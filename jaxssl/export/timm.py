"""ViT encoder -> timm ``VisionTransformer`` state dict.

:mod:`jaxssl.models.vit` names its parameters after timm's; the conversion changes layouts:

===========================================  ==========================================
jaxssl (Flax)                                timm (PyTorch)
===========================================  ==========================================
``patch_embed/kernel`` [p, p, C, D]          ``patch_embed.proj.weight`` [D, C, p, p]
``cls_token`` [1, 1, D]                      ``cls_token`` [1, 1, D]
``pos_embed`` [1, 1 + N, D] (learned)        ``pos_embed`` [1, 1 + N, D]
sincos2d (not a parameter)                   ``pos_embed`` = [zero row; the fixed table]
``blocks_i/<layer>/kernel`` [in, out]        ``blocks.i.<layer>.weight`` [out, in]
``blocks_i/norm1/{scale,bias}``              ``blocks.i.norm1.{weight,bias}``
``norm/{scale,bias}``                        ``norm.{weight,bias}``
===========================================  ==========================================

The fused ``qkv`` projection has the same output layout in both (``[3, heads, head_dim]``
along the output axis), so it is transposed and nothing else. A fixed sine-cosine position
embedding becomes timm's learned ``pos_embed`` holding that table (with the zero row jaxssl
uses for the class token): the numbers the model sees are identical; fine-tuning in timm then
trains it.

The timm model that loads the export (:func:`timm_kwargs`): ``class_token=True``,
``no_embed_class=False`` (positions added after the class token is prepended, as in jaxssl),
LayerNorm eps 1e-6, exact GELU, ``qkv_bias=True``, ``num_classes=0`` (no head: the output is
the pooled feature). Pooling: jaxssl ``pool='cls'`` -> timm ``global_pool='token'``; ``'gap'``
(mean of the patch tokens *after* the final norm) -> ``global_pool='avg', fc_norm=False``
(timm's default for 'avg' would move the norm after the pool). Preprocessing is not part of
the export: feed the model what jaxssl fed it (images in [0, 1], or for MAE the normalised
pixels of ``mae.pixel_mean / pixel_std``), in NCHW layout.
"""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from jaxssl.models.vit import sincos_2d_position_embedding

POOL_TO_TIMM = {"cls": dict(global_pool="token"), "gap": dict(global_pool="avg", fc_norm=False)}


def _dense(leaf: Mapping, key: str, out: dict) -> None:
    out[key + ".weight"] = np.ascontiguousarray(np.asarray(leaf["kernel"], np.float32).T)
    out[key + ".bias"] = np.asarray(leaf["bias"], np.float32)


def _norm(leaf: Mapping, key: str, out: dict) -> None:
    out[key + ".weight"] = np.asarray(leaf["scale"], np.float32)
    out[key + ".bias"] = np.asarray(leaf["bias"], np.float32)


def depth_of(params: Mapping) -> int:
    """Number of ``blocks_<i>`` in a jaxssl ViT's params."""
    indices = [int(m.group(1)) for k in params if (m := re.match(r"blocks_(\d+)$", k))]
    if not indices or sorted(indices) != list(range(len(indices))):
        raise ValueError(f"not a jaxssl VisionTransformer params tree: blocks {sorted(indices)} "
                         f"in keys {sorted(params)}")
    return len(indices)


def vit_state_dict(params: Mapping, *, image_size: int,
                   sincos_layout: str = "mae") -> dict[str, np.ndarray]:
    """timm ``VisionTransformer`` state dict (``num_classes=0``) of a jaxssl ViT's params.

    Args:
      params: the ViT's ``params`` tree (``patch_embed``, ``cls_token``, ``blocks_<i>``,
        ``norm`` and, for learned positions, ``pos_embed``).
      image_size: side of the (square) training images; with fixed sincos positions it sets
        the ``(image_size / p)^2`` grid of the exported ``pos_embed``.
      sincos_layout: the run's ``model.sincos_layout`` ('mae' or 'mocov3'): which table the
        model was trained with (fixed positions are not in the params).

    Returns:
      ``{timm key: float32 array}``.
    """
    kernel = np.asarray(params["patch_embed"]["kernel"], np.float32)  # [p, p, C, D]
    patch, dim = kernel.shape[0], kernel.shape[-1]
    if image_size % patch:
        raise ValueError(f"data.image_size={image_size} is not divisible by the patch size {patch}")
    grid = image_size // patch
    out: dict[str, np.ndarray] = {"cls_token": np.asarray(params["cls_token"], np.float32)}
    if "pos_embed" in params:
        pos = np.asarray(params["pos_embed"], np.float32)
        if pos.shape != (1, 1 + grid * grid, dim):
            raise ValueError(f"learned pos_embed has shape {pos.shape}, but data.image_size="
                             f"{image_size} with patch {patch} needs (1, {1 + grid * grid}, {dim})")
    else:
        table = sincos_2d_position_embedding(grid, grid, dim, layout=sincos_layout)
        pos = np.concatenate([np.zeros((1, dim), np.float32), table])[None]
    out["pos_embed"] = pos
    out["patch_embed.proj.weight"] = np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))
    out["patch_embed.proj.bias"] = np.asarray(params["patch_embed"]["bias"], np.float32)
    for i in range(depth_of(params)):
        block, key = params[f"blocks_{i}"], f"blocks.{i}"
        _norm(block["norm1"], f"{key}.norm1", out)
        _dense(block["attn"]["qkv"], f"{key}.attn.qkv", out)
        _dense(block["attn"]["proj"], f"{key}.attn.proj", out)
        _norm(block["norm2"], f"{key}.norm2", out)
        _dense(block["mlp"]["fc1"], f"{key}.mlp.fc1", out)
        _dense(block["mlp"]["fc2"], f"{key}.mlp.fc2", out)
    _norm(params["norm"], "norm", out)
    return out


def timm_kwargs(params: Mapping, *, image_size: int, num_heads: int, pool: str = "cls") -> dict:
    """Keyword arguments of ``timm.models.vision_transformer.VisionTransformer`` (or of
    ``timm.create_model(name, **kwargs)``) for a model that loads :func:`vit_state_dict`
    strictly. ``num_heads`` is not recoverable from the weights: pass the config's."""
    if pool not in POOL_TO_TIMM:
        raise ValueError(f"pool={pool!r} (config field model.pool / mae.pool) must be one of "
                         f"{sorted(POOL_TO_TIMM)}")
    kernel = np.asarray(params["patch_embed"]["kernel"])
    dim = int(kernel.shape[-1])
    if dim % num_heads:
        raise ValueError(f"hidden dim {dim} is not divisible by num_heads={num_heads}")
    mlp_dim = int(np.asarray(params["blocks_0"]["mlp"]["fc1"]["kernel"]).shape[1])
    return dict(img_size=int(image_size), patch_size=int(kernel.shape[0]),
                in_chans=int(kernel.shape[2]), embed_dim=dim, depth=depth_of(params),
                num_heads=int(num_heads), mlp_ratio=mlp_dim / dim, qkv_bias=True,
                class_token=True, no_embed_class=False, num_classes=0, **POOL_TO_TIMM[pool])


def build_timm_vit(**kwargs):
    """``timm.models.vision_transformer.VisionTransformer(**kwargs)`` (kwargs from
    :func:`timm_kwargs`), imported lazily."""
    from jaxssl import optional

    optional.require("timm", "build_timm_vit")
    from timm.models.vision_transformer import VisionTransformer
    return VisionTransformer(**kwargs)


__all__ = ["vit_state_dict", "timm_kwargs", "build_timm_vit", "depth_of", "POOL_TO_TIMM"]
