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
``fc_norm/{scale,bias}`` (pool gap_fc_norm)  ``fc_norm.{weight,bias}``
``register_tokens`` [1, R, D]                ``reg_token`` (``pos_embed`` gets R zero rows)
``blocks_i/ls{1,2}/gamma`` (LayerScale)      ``blocks.i.ls{1,2}.gamma``
``blocks_i/mlp/w12``, ``blocks_i/mlp/w3``    ``blocks.i.mlp.fc1``, ``blocks.i.mlp.fc2``
(SwiGLU)                                     (timm ``SwiGLUPacked``, SiLU on the first half)
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
(timm's default for 'avg' would move the norm after the pool); ``'gap_fc_norm'`` (MAE's
fine-tuned encoders: mean of the last block's patch tokens, then ``fc_norm``) -> ``global_pool=
'avg', fc_norm=True`` (``fc_norm.{weight,bias}``, no ``norm``). Preprocessing is not part of
the export: feed the model what jaxssl fed it (images in [0, 1], normalised with the run's
``data.normalize_mean / normalize_std`` when it set them, as MAE, MoCo v3 and the DINO-family
ImageNet ViT presets do; :mod:`jaxssl.data.normalize`), in NCHW layout. DINOv2-style options map onto
timm's own: LayerScale (``init_values``), register tokens (``reg_tokens``), SwiGLU
(``mlp_layer='SwiGLUPacked'``, ``act_layer='silu'``; :func:`build_timm_vit` resolves the
name); a ``mask_token`` (training only) is not exported.
"""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from jaxssl.models.vit import sincos_2d_position_embedding

POOL_TO_TIMM = {"cls": dict(global_pool="token"), "gap": dict(global_pool="avg", fc_norm=False),
                "gap_fc_norm": dict(global_pool="avg", fc_norm=True)}


def _dense(leaf: Mapping, key: str, out: dict, xp) -> None:
    out[key + ".weight"] = xp.transpose(xp.asarray(leaf["kernel"], xp.float32))
    out[key + ".bias"] = xp.asarray(leaf["bias"], xp.float32)


def _norm(leaf: Mapping, key: str, out: dict, xp) -> None:
    out[key + ".weight"] = xp.asarray(leaf["scale"], xp.float32)
    out[key + ".bias"] = xp.asarray(leaf["bias"], xp.float32)


def depth_of(params: Mapping) -> int:
    """Number of ``blocks_<i>`` in a jaxssl ViT's params."""
    indices = [int(m.group(1)) for k in params if (m := re.match(r"blocks_(\d+)$", k))]
    if not indices or sorted(indices) != list(range(len(indices))):
        raise ValueError(f"not a jaxssl VisionTransformer params tree: blocks {sorted(indices)} "
                         f"in keys {sorted(params)}")
    return len(indices)


def _convert(params: Mapping, image_size: int, sincos_layout: str, xp) -> dict:
    """The mapping itself, written once for numpy (``xp=np``: the export) and for jax.numpy
    (``xp=jnp`` under ``jax.eval_shape``: shapes of a full-size model without its weights)."""
    kernel_shape = tuple(params["patch_embed"]["kernel"].shape)  # [p, p, C, D]
    patch, dim = kernel_shape[0], kernel_shape[-1]
    if image_size % patch:
        raise ValueError(f"data.image_size={image_size} is not divisible by the patch size {patch}")
    grid = image_size // patch
    out: dict = {"cls_token": xp.asarray(params["cls_token"], xp.float32)}
    if "register_tokens" in params:  # timm reg_token, after the class token, no position
        out["reg_token"] = xp.asarray(params["register_tokens"], xp.float32)
    registers = int(params["register_tokens"].shape[1]) if "register_tokens" in params else 0
    if "pos_embed" in params:
        pos = xp.asarray(params["pos_embed"], xp.float32)
        if tuple(pos.shape) != (1, 1 + grid * grid, dim):
            raise ValueError(f"learned pos_embed has shape {tuple(pos.shape)}, but data.image_size="
                             f"{image_size} with patch {patch} needs (1, {1 + grid * grid}, {dim})")
    else:
        table = sincos_2d_position_embedding(grid, grid, dim, layout=sincos_layout)
        pos = xp.asarray(np.concatenate([np.zeros((1, dim), np.float32), table])[None])
    if registers:  # timm adds pos_embed to [cls, registers, patches]: zero rows for registers
        pos = xp.concatenate([pos[:, :1], xp.zeros((1, registers, dim), xp.float32), pos[:, 1:]],
                             axis=1)
    out["pos_embed"] = pos
    out["patch_embed.proj.weight"] = xp.transpose(
        xp.asarray(params["patch_embed"]["kernel"], xp.float32), (3, 2, 0, 1))
    out["patch_embed.proj.bias"] = xp.asarray(params["patch_embed"]["bias"], xp.float32)
    for i in range(depth_of(params)):
        block, key = params[f"blocks_{i}"], f"blocks.{i}"
        _norm(block["norm1"], f"{key}.norm1", out, xp)
        _dense(block["attn"]["qkv"], f"{key}.attn.qkv", out, xp)
        _dense(block["attn"]["proj"], f"{key}.attn.proj", out, xp)
        _norm(block["norm2"], f"{key}.norm2", out, xp)
        mlp = block["mlp"]
        swiglu = "w12" in mlp     # SwiGLU: w12 -> fc1 (both halves), w3 -> fc2 (SwiGLUPacked)
        _dense(mlp["w12" if swiglu else "fc1"], f"{key}.mlp.fc1", out, xp)
        _dense(mlp["w3" if swiglu else "fc2"], f"{key}.mlp.fc2", out, xp)
        for ls in ("ls1", "ls2"):  # LayerScale
            if ls in block:
                out[f"{key}.{ls}.gamma"] = xp.asarray(block[ls]["gamma"], xp.float32)
    if "norm" in params:       # pool 'cls' / 'gap': the final LayerNorm
        _norm(params["norm"], "norm", out, xp)
    if "fc_norm" in params:    # pool 'gap_fc_norm' (MAE fine-tuning): no final norm, fc_norm
        _norm(params["fc_norm"], "fc_norm", out, xp)
    return out


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
      ``{timm key: float32 array}`` (C-contiguous).
    """
    return {k: np.ascontiguousarray(v, np.float32)
            for k, v in _convert(params, image_size, sincos_layout, np).items()}


def vit_state_dict_shapes(params: Mapping, *, image_size: int,
                          sincos_layout: str = "mae") -> dict[str, tuple[int, ...]]:
    """``{timm key: shape}`` that :func:`vit_state_dict` writes for ``params``, computed from
    shapes only (``params`` may hold ``jax.ShapeDtypeStruct`` leaves, e.g. from
    ``jax.eval_shape(model.init, ...)``): a ViT-H's names and layouts, checked without its
    2.5 GB of weights."""
    import jax
    import jax.numpy as jnp

    abstract = jax.eval_shape(lambda p: _convert(p, image_size, sincos_layout, jnp), params)
    return {k: tuple(v.shape) for k, v in abstract.items()}


def timm_kwargs(params: Mapping, *, image_size: int, num_heads: int, pool: str = "cls") -> dict:
    """Keyword arguments of ``timm.models.vision_transformer.VisionTransformer`` (or of
    ``timm.create_model(name, **kwargs)``) for a model that loads :func:`vit_state_dict`
    strictly. ``num_heads`` is not recoverable from the weights: pass the config's."""
    if pool not in POOL_TO_TIMM:
        raise ValueError(f"pool={pool!r} (config field model.pool / mae.pool) must be one of "
                         f"{sorted(POOL_TO_TIMM)}")
    kernel = params["patch_embed"]["kernel"]  # shapes only: arrays or jax.ShapeDtypeStruct
    dim = int(kernel.shape[-1])
    if dim % num_heads:
        raise ValueError(f"hidden dim {dim} is not divisible by num_heads={num_heads}")
    block = params["blocks_0"]
    swiglu = "w12" in block["mlp"]
    fc1 = int(block["mlp"]["w12" if swiglu else "fc1"]["kernel"].shape[1])
    ratio = fc1 / dim                      # timm: fc1 width = int(dim * mlp_ratio)
    if int(dim * ratio) != fc1:
        ratio = (fc1 + 0.5) / dim
    kwargs = dict(img_size=int(image_size), patch_size=int(kernel.shape[0]),
                  in_chans=int(kernel.shape[2]), embed_dim=dim, depth=depth_of(params),
                  num_heads=int(num_heads), mlp_ratio=ratio, qkv_bias=True,
                  class_token=True, no_embed_class=False, num_classes=0, **POOL_TO_TIMM[pool])
    if "ls1" in block:      # any value: it only switches LayerScale on; gamma is loaded
        kwargs["init_values"] = 1e-5
    if "register_tokens" in params:
        kwargs["reg_tokens"] = int(params["register_tokens"].shape[1])
    if swiglu:              # build_timm_vit resolves the name (JSON-safe in the summary)
        kwargs.update(mlp_layer="SwiGLUPacked", act_layer="silu")
    return kwargs


def build_timm_vit(**kwargs):
    """``timm.models.vision_transformer.VisionTransformer(**kwargs)`` (kwargs from
    :func:`timm_kwargs`), imported lazily."""
    from jaxssl import optional

    optional.require("timm", "build_timm_vit")
    from timm.models.vision_transformer import VisionTransformer
    if isinstance(kwargs.get("mlp_layer"), str):  # 'SwiGLUPacked' (from timm_kwargs)
        import timm.layers
        kwargs = dict(kwargs, mlp_layer=getattr(timm.layers, kwargs["mlp_layer"]))
    return VisionTransformer(**kwargs)


__all__ = ["vit_state_dict", "vit_state_dict_shapes", "timm_kwargs", "build_timm_vit", "depth_of",
           "POOL_TO_TIMM"]
