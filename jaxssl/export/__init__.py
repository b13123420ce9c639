"""Take a trained model elsewhere: torchvision ResNets, timm ViTs, Hugging Face BERT.

``export_run(config, workdir, fmt, out, step=None)`` restores a checkpoint of a run (verified,
as a plain tree: no dataset is loaded, any device count), finds the exported module's
variables in it, converts them and writes ``out``:

============  ===================================  ===========================================
``fmt``       source (``model.backbone``)          output
============  ===================================  ===========================================
torchvision   resnet18 / resnet34 / resnet50       state dict without ``fc``
                                                   (:mod:`jaxssl.export.torchvision`)
timm          vit_* (SimCLR, MoCo v3, MAE encoder) ``VisionTransformer`` state dict, no head
                                                   (:mod:`jaxssl.export.timm`)
hf_bert       bert_* (method 'mlm')                directory: ``config.json`` +
                                                   ``model.safetensors`` of ``BertForMaskedLM``
                                                   (:mod:`jaxssl.export.hf_bert`)
============  ===================================  ===========================================

State dicts (torchvision, timm) are written with ``torch.save`` (``.pt`` / ``.pth``; needs
torch) or, for a path ending in ``.safetensors``, with ``safetensors.numpy`` (no torch).
The workdir and ``out`` may be local paths or URLs (``gs://...``, :mod:`jaxssl.paths`): files
are serialised in memory and written through ``etils.epath``.

Which variables: the *online* (query, student) encoder's -- what the reference code exports
for linear evaluation (MoCo's ``encoder_q`` / ``base_encoder``, SimCLR's backbone); the
momentum teacher in ``model_state['teacher']`` is left out. The module is found by its
structure in ``params`` (the first sub-tree, breadth-first, holding ``conv1`` + ``layer1_0``
for a ResNet, ``patch_embed`` + ``blocks_0`` for a ViT, ``bert`` + ``cls`` for BERT), and its
BatchNorm statistics at the same path under ``model_state['batch_stats']``. So SimCLR
(``params/backbone``), MoCo v2 (``params/backbone``), MoCo v3 (``params/encoder/backbone``),
MAE (``params/encoder``) and MLM (``params``) export without method-specific code.
"""
from __future__ import annotations

import io
import json
from collections import deque
from typing import Any, Callable, Mapping

import numpy as np

from jaxssl import paths
from jaxssl.export import hf_bert, timm, torchvision

FORMATS = ("torchvision", "timm", "hf_bert")


def restore_variables(workdir: paths.PathLike, step: int | None = None) -> tuple[int, dict, dict]:
    """``(step, params, model_state)`` of a run's checkpoint as host numpy trees.

    ``step=None`` takes the latest. Uses :func:`jaxssl.checkpoint.load_tree` (verified
    restore, any device count).
    """
    import jax

    from jaxssl import checkpoint

    workdir = paths.resolve(workdir)
    ckpts = workdir / "checkpoints"
    path = ckpts / str(step) if step is not None else workdir
    if step is not None and not path.is_dir():
        available = sorted(int(p.name) for p in ckpts.iterdir()
                           if p.name.isdigit()) if ckpts.is_dir() else []
        raise ValueError(f"--step={step}: no checkpoint {path}; available steps: {available}")
    tree, _ = checkpoint.load_tree(path)
    tree = jax.tree.map(np.asarray, tree)
    return int(tree["step"]), dict(tree["params"]), dict(tree.get("model_state", {}) or {})


def find_subtree(tree: Mapping, predicate: Callable[[Mapping], bool]) -> tuple[tuple[str, ...], Mapping]:
    """``(path, subtree)`` of the first mapping, breadth-first (keys in sorted order), for
    which ``predicate`` holds; ``ValueError`` if none does."""
    queue: deque = deque([((), tree)])
    while queue:
        path, node = queue.popleft()
        if predicate(node):
            return path, node
        for key in sorted(node):
            if isinstance(node[key], Mapping):
                queue.append((path + (key,), node[key]))
    raise ValueError("no matching module in the checkpoint's params")


def get_path(tree: Mapping, path: tuple[str, ...], default: Any = None) -> Any:
    for key in path:
        if not isinstance(tree, Mapping) or key not in tree:
            return default
        tree = tree[key]
    return tree


def _is_resnet(node: Mapping) -> bool:
    return "conv1" in node and "layer1_0" in node


def _is_vit(node: Mapping) -> bool:
    return "patch_embed" in node and "blocks_0" in node


def _is_bert(node: Mapping) -> bool:
    return "bert" in node and "cls" in node


def _find(params: Mapping, predicate, what: str, config) -> tuple[tuple[str, ...], Mapping]:
    try:
        return find_subtree(params, predicate)
    except ValueError:
        raise ValueError(f"the checkpoint of method {config.method!r} (model.backbone="
                         f"{config.model.backbone!r}) holds no {what}; top-level params: "
                         f"{sorted(params)}") from None


def require_writer(out: str, fmt: str | None = None):
    """Import the package that writes ``out`` (torch for ``.pt``/``.pth``, safetensors for
    ``.safetensors`` and ``hf_bert``); a missing one raises a one-line
    :class:`jaxssl.optional.MissingDependencyError` (call this before restoring anything)."""
    from jaxssl import optional

    if fmt == "hf_bert" or out.endswith(".safetensors"):
        return optional.require("safetensors", f"writing {out} (safetensors)")
    return optional.require("torch", f"writing {out} with torch.save (or give an --out ending in "
                            ".safetensors, which needs only the safetensors package)")


def save_state_dict(tensors: Mapping[str, np.ndarray], path: paths.PathLike) -> str:
    """Write ``{key: array}`` to ``path`` (local or URL): safetensors for ``*.safetensors``, else
    ``torch.save`` of ``{key: torch.Tensor}`` (a missing package: one-line error)."""
    path = str(path)
    if path.endswith(".safetensors"):
        require_writer(path)
        from safetensors.numpy import save
        paths.write_bytes(path, save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                                     metadata={"format": "pt"}))
        return path
    torch = require_writer(path)
    buffer = io.BytesIO()
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, buffer)
    paths.write_bytes(path, buffer.getvalue())
    return path


def vit_heads_and_pool(config) -> tuple[int, str]:
    """``(num_heads, pool)`` of the run's ViT: MAE's ``mae.encoder_heads`` / ``mae.pool``,
    else ``model.vit_num_heads`` / ``model.pool`` when set, else the named size's heads."""
    from jaxssl.models.vit import VIT_SIZES

    heads = int(VIT_SIZES.get(config.model.backbone, {}).get("num_heads", 0))
    pool = config.model.pool
    if config.method == "mae":
        heads = int(config.mae.encoder_heads) or heads
        pool = config.mae.pool
    elif int(config.model.vit_num_heads) > 0:
        heads = int(config.model.vit_num_heads)
    if heads <= 0:
        raise ValueError(f"cannot tell the number of attention heads of model.backbone="
                         f"{config.model.backbone!r}; use a named ViT size {sorted(VIT_SIZES)}")
    return heads, pool


def export_run(config, workdir: paths.PathLike, fmt: str, out: str,
               step: int | None = None) -> dict:
    """Export the checkpoint of the run (``config``, ``workdir``) as ``fmt`` to ``out``.

    Returns a summary: ``{'format', 'out', 'step', 'source_path', 'num_tensors', 'load'}``
    where ``load`` says how to build the model that loads the file (torchvision: arch and
    stem; timm: VisionTransformer kwargs; hf_bert: the config dict).
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format={fmt!r} is not one of {list(FORMATS)}")
    require_writer(out, fmt)
    step, params, model_state = restore_variables(workdir, step)
    batch_stats = model_state.get("batch_stats", {}) or {}
    summary: dict[str, Any] = {"format": fmt, "step": step}
    if fmt == "torchvision":
        torchvision.check_exportable(config.model.backbone, config.model.width_multiplier)
        path, sub = _find(params, _is_resnet, "ResNet (conv1 + layer1_0)", config)
        tensors = torchvision.resnet_state_dict(sub, get_path(batch_stats, path, {}),
                                                num_batches_tracked=step)
        save_state_dict(tensors, out)
        in_chans = int(np.asarray(sub["conv1"]["kernel"]).shape[2])
        summary["load"] = {"arch": config.model.backbone, "stem": config.model.stem,
                           "in_chans": in_chans}
    elif fmt == "timm":
        path, sub = _find(params, _is_vit, "ViT (patch_embed + blocks_0)", config)
        heads, pool = vit_heads_and_pool(config)
        image_size = int(config.data.image_size)
        tensors = timm.vit_state_dict(sub, image_size=image_size,
                                      sincos_layout=config.model.sincos_layout)
        save_state_dict(tensors, out)
        summary["load"] = timm.timm_kwargs(sub, image_size=image_size, num_heads=heads, pool=pool)
    else:
        path, sub = _find(params, _is_bert, "BERT MLM model (bert + cls)", config)
        from jaxssl.methods.mlm import bert_config

        vocab = int(np.asarray(sub["bert"]["embeddings"]["word_embeddings"]["embedding"]).shape[0])
        bc = bert_config(config.model, vocab)
        hf = hf_bert.hf_config(sub, num_heads=bc.num_heads, layer_norm_eps=bc.layer_norm_eps,
                               hidden_dropout=bc.hidden_dropout,
                               attention_dropout=bc.attention_dropout,
                               initializer_range=bc.initializer_range)
        hf_bert.save_pretrained(sub, out, hf)
        tensors = hf_bert.bert_state_dict(sub)
        summary["load"] = hf
    summary.update(out=out, source_path="/".join(("params",) + path), num_tensors=len(tensors))
    return summary


def write_summary(summary: dict, path: paths.PathLike) -> None:
    """The summary as JSON beside the export (``<out>.json`` / ``DIR/export.json``)."""
    paths.write_text(path, json.dumps(summary, indent=2))


__all__ = ["FORMATS", "export_run", "require_writer", "restore_variables", "find_subtree", "save_state_dict",
           "vit_heads_and_pool", "write_summary", "hf_bert", "timm", "torchvision"]
