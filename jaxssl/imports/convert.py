"""PyTorch state dicts -> jaxssl parameter trees (the inverse of :mod:`jaxssl.export`).

=============  ==========================================  ===================================
format         keys (after the prefix is stripped)         jaxssl tree
=============  ==========================================  ===================================
``resnet``     torchvision ``conv1``, ``bn1``, ``layer1.0``  :mod:`jaxssl.models.resnet` params
                                                           + ``batch_stats``
``vit``        timm ``patch_embed.proj``, ``blocks.0``,    :mod:`jaxssl.models.vit` params;
               dinov2 ``ls1.gamma``, ``register_tokens``,  the model fields they imply
               ``mlp.w12``, ``mask_token``                 (posemb, LayerScale, registers, MLP)
``bert``       Hugging Face ``bert.embeddings``, ...,     :mod:`jaxssl.models.bert` params
               ``cls.predictions``, ``bert.pooler``        (``bert``, ``cls``, ``pooler``)
=============  ==========================================  ===================================

Layouts: torch Linear ``weight [out, in]`` -> Dense ``kernel [in, out]``; conv ``[out, in, kh,
kw]`` -> ``[kh, kw, in, out]``; BN / LayerNorm ``weight`` -> ``scale``; BN running statistics ->
``batch_stats`` ``mean`` / ``var``. Keys that have no place in the jaxssl model (classifier
``fc`` / ``head``, BERT's next-sentence head, ``num_batches_tracked``) are returned as
``dropped`` so the summary can name them.
"""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np

FORMATS = ("resnet", "vit", "bert")

# Prefixes of released checkpoints, longest first: MoCo v2 (encoder_q), MoCo v3 (base_encoder /
# momentum_encoder), DINO (backbone), DataParallel (module), SimCLR converted (no prefix).
PREFIXES = ("module.encoder_q.", "module.base_encoder.", "module.momentum_encoder.",
            "module.backbone.", "encoder_q.", "base_encoder.", "momentum_encoder.",
            "backbone.", "module.", "encoder.")


def strip_prefix(sd: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries of ``sd`` under ``prefix``, with it removed."""
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _marker(fmt: str, keys) -> bool:
    keys = set(keys)
    if fmt == "resnet":
        return "conv1.weight" in keys and "layer1.0.conv1.weight" in keys
    if fmt == "vit":
        return "patch_embed.proj.weight" in keys and "blocks.0.attn.qkv.weight" in keys
    return ("bert.embeddings.word_embeddings.weight" in keys
            or "embeddings.word_embeddings.weight" in keys)


def detect(sd: Mapping[str, np.ndarray], fmt: str | None = None,
           prefix: str | None = None) -> tuple[str, str]:
    """``(format, prefix)`` of a state dict: which of :data:`FORMATS` its keys are, under
    which of :data:`PREFIXES` (or none). ``fmt`` / ``prefix`` force one."""
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"--format={fmt!r} is not one of {list(FORMATS)}")
    prefixes = (prefix,) if prefix is not None else ("",) + PREFIXES
    for p in prefixes:
        keys = [k[len(p):] for k in sd if k.startswith(p)]
        for f in ((fmt,) if fmt else FORMATS):
            if _marker(f, keys):
                return f, p
    sample = sorted(sd)[:6]
    raise ValueError(f"cannot tell the format of the state dict (keys e.g. {sample}); expected "
                     "torchvision ResNet (conv1.weight, layer1.0...), timm/DINO/MAE/DINOv2 ViT "
                     "(patch_embed.proj.weight, blocks.0...) or Hugging Face BERT "
                     "(bert.embeddings...), optionally under a prefix such as 'module.encoder_q.'; "
                     "force it with --format")


def _linear(sd, key) -> dict:
    out = {"kernel": np.ascontiguousarray(np.asarray(sd[key + ".weight"], np.float32).T)}
    if key + ".bias" in sd:
        out["bias"] = np.asarray(sd[key + ".bias"], np.float32)
    return out


def _norm(sd, key) -> dict:
    return {"scale": np.asarray(sd[key + ".weight"], np.float32),
            "bias": np.asarray(sd[key + ".bias"], np.float32)}


def _conv(weight) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(np.asarray(weight, np.float32), (2, 3, 1, 0)))


# ----------------------------------------------------------------------------------- ResNet

def resnet(sd: Mapping[str, np.ndarray]) -> tuple[dict, dict, list[str]]:
    """``(params, batch_stats, dropped)`` of a torchvision ResNet state dict (no prefix).

    ``layer2.0.downsample.0`` -> ``layer2_0/downsample_conv``, ``downsample.1`` ->
    ``downsample_bn``; ``fc.*`` (classifier or MoCo v3's projector) is dropped.
    """
    params: dict = {}
    stats: dict = {}
    used: set[str] = set()
    for key in sd:
        m = re.match(r"^(.*)\.(weight|running_mean)$", key)
        if not m or key.startswith("fc."):
            continue
        module = m.group(1)
        path = re.sub(r"^(layer\d+)\.(\d+)", r"\1_\2", module)
        path = path.replace(".downsample.0", ".downsample_conv").replace(
            ".downsample.1", ".downsample_bn").split(".")
        is_bn = module + ".running_mean" in sd
        if m.group(2) == "running_mean":
            continue
        node = params
        for name in path[:-1]:
            node = node.setdefault(name, {})
        if is_bn:
            node[path[-1]] = _norm(sd, module)
            snode = stats
            for name in path[:-1]:
                snode = snode.setdefault(name, {})
            snode[path[-1]] = {"mean": np.asarray(sd[module + ".running_mean"], np.float32),
                               "var": np.asarray(sd[module + ".running_var"], np.float32)}
            used.update(f"{module}.{s}" for s in ("weight", "bias", "running_mean", "running_var",
                                                  "num_batches_tracked"))
        else:
            node[path[-1]] = {"kernel": _conv(sd[key])}
            used.add(key)
            if module + ".bias" in sd:
                node[path[-1]]["bias"] = np.asarray(sd[module + ".bias"], np.float32)
                used.add(module + ".bias")
    dropped = sorted(k for k in sd if k not in used and not k.endswith("num_batches_tracked"))
    return params, stats, dropped


# -------------------------------------------------------------------------------------- ViT

def vit_depth(sd) -> int:
    idx = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    return len(idx)


def _vit_block(sd, key) -> dict:
    block = {"norm1": _norm(sd, f"{key}.norm1"), "norm2": _norm(sd, f"{key}.norm2"),
             "attn": {"qkv": _linear(sd, f"{key}.attn.qkv"),
                      "proj": _linear(sd, f"{key}.attn.proj")}}
    if f"{key}.mlp.w12.weight" in sd:  # dinov2 SwiGLUFFNFused
        block["mlp"] = {"w12": _linear(sd, f"{key}.mlp.w12"), "w3": _linear(sd, f"{key}.mlp.w3")}
    else:
        block["mlp"] = {"fc1": _linear(sd, f"{key}.mlp.fc1"), "fc2": _linear(sd, f"{key}.mlp.fc2")}
    for ls in ("ls1", "ls2"):
        if f"{key}.{ls}.gamma" in sd:
            block[ls] = {"gamma": np.asarray(sd[f"{key}.{ls}.gamma"], np.float32)}
    if "bias" not in block["attn"]["qkv"]:  # qkv_bias=False models: the bias is zero
        block["attn"]["qkv"]["bias"] = np.zeros(block["attn"]["qkv"]["kernel"].shape[1],
                                                np.float32)
    return block


def vit(sd: Mapping[str, np.ndarray], grid: int | None = None) -> tuple[dict, dict, list[str]]:
    """``(params, model_fields, dropped)`` of a timm-layout ViT state dict (no prefix).

    ``model_fields`` are the jaxssl ViT fields the weights imply: ``hidden_dim``, ``depth``,
    ``patch_size``, ``posemb='learned'`` (a checkpoint's ``pos_embed`` is used as it is),
    ``layerscale_init`` (> 0 when ``ls1.gamma`` exists), ``num_registers``, ``mlp_type``,
    ``pool``. ``grid`` resizes the learned positions to a ``grid x grid`` patch grid (DINO's
    bicubic interpolation) when the checkpoint's differs.
    """
    from jaxssl.models.vit import resize_position_table

    depth = vit_depth(sd)
    weight = np.asarray(sd["patch_embed.proj.weight"], np.float32)  # [D, C, p, p]
    dim, patch = int(weight.shape[0]), int(weight.shape[-1])
    params: dict = {"patch_embed": {"kernel": _conv(weight),
                                    "bias": np.asarray(sd["patch_embed.proj.bias"], np.float32)},
                    "cls_token": np.asarray(sd["cls_token"], np.float32).reshape(1, 1, dim)}
    used = {"patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token"}
    fields = dict(hidden_dim=dim, depth=depth, patch_size=patch, posemb="sincos2d",
                  layerscale_init=0.0, num_registers=0, mlp_type="mlp", pool="cls")
    if "pos_embed" in sd:
        pos = np.asarray(sd["pos_embed"], np.float32)
        rows = pos.shape[1]
        if int(round(np.sqrt(rows))) ** 2 == rows:  # timm no_embed_class: no class-token row
            pos = np.concatenate([np.zeros((1, 1, dim), np.float32), pos], axis=1)
        patches = pos[0, 1:]
        if grid is not None and patches.shape[0] != grid * grid:
            patches = np.asarray(resize_position_table(patches, (grid, grid)))
        params["pos_embed"] = np.concatenate([pos[0, :1], patches])[None]
        fields["posemb"] = "learned"
        used.add("pos_embed")
    for i in range(depth):
        params[f"blocks_{i}"] = _vit_block(sd, f"blocks.{i}")
    used.update(k for k in sd if k.startswith("blocks."))
    if "blocks.0.ls1.gamma" in sd:
        fields["layerscale_init"] = 1e-5  # the value only matters for a fresh init
    if "blocks.0.mlp.w12.weight" in sd:
        fields["mlp_type"] = "swiglu"
    if "norm.weight" in sd:
        params["norm"] = _norm(sd, "norm")
        used.update({"norm.weight", "norm.bias"})
    if "fc_norm.weight" in sd:  # MAE fine-tuned with global pooling
        params["fc_norm"] = _norm(sd, "fc_norm")
        used.update({"fc_norm.weight", "fc_norm.bias"})
        fields["pool"] = "gap_fc_norm"
    for key in ("register_tokens", "reg_token"):  # dinov2's name, timm's name
        if key in sd:
            params["register_tokens"] = np.asarray(sd[key], np.float32)
            fields["num_registers"] = int(params["register_tokens"].shape[1])
            used.add(key)
    if "mask_token" in sd and np.asarray(sd["mask_token"]).shape[-1] == dim and \
            np.asarray(sd["mask_token"]).ndim == 2:  # dinov2's [1, D] (MAE's is the decoder's)
        params["mask_token"] = np.asarray(sd["mask_token"], np.float32)
        used.add("mask_token")
    dropped = sorted(k for k in sd if k not in used)
    return params, fields, dropped


def mae_decoder(sd: Mapping[str, np.ndarray]) -> dict | None:
    """jaxssl :class:`~jaxssl.models.mae.MAEDecoder` params from MAE's ``decoder_*`` keys
    (``models_mae.py``), or None when the checkpoint has no decoder. ``decoder_pos_embed`` is
    the fixed sin-cos table (not a parameter in jaxssl)."""
    if "decoder_embed.weight" not in sd:
        return None
    depth = len({int(m.group(1)) for k in sd if (m := re.match(r"decoder_blocks\.(\d+)\.", k))})
    out = {"decoder_embed": _linear(sd, "decoder_embed"),
           "mask_token": np.asarray(sd["mask_token"], np.float32),
           "decoder_norm": _norm(sd, "decoder_norm"),
           "decoder_pred": _linear(sd, "decoder_pred")}
    for i in range(depth):
        out[f"decoder_blocks_{i}"] = _vit_block(sd, f"decoder_blocks.{i}")
    return out


def dino_head(sd: Mapping[str, np.ndarray]) -> tuple[dict, dict] | None:
    """``(params, batch_stats)`` of :class:`jaxssl.models.dino_head.DINOHead` from DINO's
    ``DINOHead`` keys (``mlp.<i>`` Linear / BatchNorm1d layers in order, ``last_layer`` with
    ``weight_norm``: ``weight_g`` [K, 1], ``weight_v`` [K, bottleneck], or the newer
    ``parametrizations.weight.original0/1``), or None without a head. ``weight_g`` becomes
    ``kernel_g`` only where it is not all ones (``norm_last_layer=False``)."""
    v = sd.get("last_layer.weight_v", sd.get("last_layer.parametrizations.weight.original1"))
    if v is None:
        return None
    g = sd.get("last_layer.weight_g", sd.get("last_layer.parametrizations.weight.original0"))
    params, stats = sequential_mlp(strip_prefix(sd, "mlp."), linear_name="mlp") or ({}, {})
    last = {"kernel_v": np.ascontiguousarray(np.asarray(v, np.float32).T)}
    if g is not None and not np.allclose(np.asarray(g), 1.0):
        last["kernel_g"] = np.asarray(g, np.float32).reshape(-1)
    params["last_layer"] = last
    return params, stats


def sequential_mlp(sd: Mapping[str, np.ndarray],
                   linear_name: str = "dense") -> tuple[dict, dict] | None:
    """``(params, batch_stats)`` of :class:`jaxssl.models.heads.ProjectionHead` from a torch
    ``nn.Sequential`` of Linear / BatchNorm1d / ReLU layers (keys ``<i>.weight``, ...), as MoCo
    v2's MLP ``fc`` and MoCo v3's ``_build_mlp`` projector and predictor save them, or None
    when ``sd`` holds no such layers. Linear number ``n`` becomes ``dense_n`` (``linear_name``:
DINO's head names them ``mlp_n``; kernel
    transposed, bias if any); a BatchNorm1d after it becomes ``bn_n`` (scale / bias only when
    affine) with its running mean / variance in ``batch_stats``."""
    indices = sorted({int(m.group(1)) for k in sd if (m := re.match(r"(\d+)\.weight$", k))}
                     | {int(m.group(1)) for k in sd if (m := re.match(r"(\d+)\.running_mean$", k))})
    if not indices:
        return None
    params: dict = {}
    stats: dict = {}
    linear = 0
    for i in indices:
        key = str(i)
        if f"{key}.running_mean" in sd:  # BatchNorm1d after Linear number linear - 1
            if f"{key}.weight" in sd:
                params[f"bn_{linear - 1}"] = _norm(sd, key)
            stats[f"bn_{linear - 1}"] = {"mean": np.asarray(sd[f"{key}.running_mean"], np.float32),
                                         "var": np.asarray(sd[f"{key}.running_var"], np.float32)}
        else:
            params[f"{linear_name}_{linear}"] = _linear(sd, key)
            linear += 1
    return params, stats


# ------------------------------------------------------------------------------------- BERT

def bert(sd: Mapping[str, np.ndarray]) -> tuple[dict, list[str]]:
    """``(params, dropped)`` of a Hugging Face BERT state dict (``BertModel``,
    ``BertForPreTraining`` or ``BertForMaskedLM``): ``{'bert': ..., 'cls': ..., 'pooler': ...}``
    as :mod:`jaxssl.models.bert` names them (``cls`` only with an MLM head, ``pooler`` only
    when the checkpoint has one). The tied decoder weight and bias are dropped (jaxssl ties
    the decoder to the word embeddings), as are ``position_ids`` and the next-sentence head.
    """
    if "embeddings.word_embeddings.weight" in sd:  # BertModel: no 'bert.' prefix
        sd = {("bert." + k): v for k, v in sd.items()}
    params: dict = {}
    dropped = []
    for key, value in sd.items():
        value = np.asarray(value)
        if key.endswith("position_ids") or key.startswith("cls.seq_relationship") or \
                key.startswith("cls.predictions.decoder."):
            dropped.append(key)
            continue
        parts = key.split(".")
        if parts[:2] == ["bert", "pooler"]:
            parts = parts[1:]  # jaxssl's pooler sits beside 'bert' (BertForSequenceClassification)
        leaf = parts[-1]
        owner = parts[-2] if len(parts) > 1 else ""
        if leaf == "weight":
            if owner == "LayerNorm":
                name, value = "scale", value.astype(np.float32)
            elif owner.endswith("_embeddings"):
                name, value = "embedding", value.astype(np.float32)
            else:
                name, value = "kernel", np.ascontiguousarray(value.astype(np.float32).T)
        else:
            name, value = leaf, value.astype(np.float32)
        node = params
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[name] = value
    if "cls.predictions.decoder.weight" in sd and "bert" in params:
        tied = np.asarray(sd["cls.predictions.decoder.weight"], np.float32)
        words = params["bert"]["embeddings"]["word_embeddings"]["embedding"]
        if tied.shape != words.shape or not np.array_equal(tied, words):
            raise ValueError("the checkpoint's MLM decoder weight is not tied to the word "
                             "embeddings; jaxssl's BERT ties them, so it cannot take this head")
    return params, sorted(dropped)


__all__ = ["FORMATS", "PREFIXES", "detect", "strip_prefix", "resnet", "vit", "vit_depth",
           "mae_decoder", "dino_head", "bert"]
