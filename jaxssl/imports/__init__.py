"""Start from released weights: PyTorch / timm / Hugging Face checkpoints -> jaxssl.

:func:`load_source` reads a checkpoint (:mod:`jaxssl.imports.read`), finds the online
encoder and, where the checkpoint has one, the teacher (MoCo's key / momentum encoder, DINO's
teacher), and converts them (:mod:`jaxssl.imports.convert`). :func:`write_workdir`
(``scripts/import_weights.py``) lays them into the state of a preset and saves it as the
step-0 checkpoint of a workdir, which ``--config.init_from=DIR``, ``scripts/evaluate.py`` and
``scripts/export.py`` accept like any run's. The summary ``DIR/import.json`` names what was
loaded, what was initialised and the model fields the weights imply (e.g. learned position
embeddings, LayerScale, registers), which :func:`apply_overrides` sets on a config.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from jaxssl.imports import convert, read

IMPORT_FILE = "import.json"
# online prefix -> the teacher's prefix in the same state dict (MoCo v2 / v3)
TEACHER_PREFIXES = {"module.encoder_q.": "module.encoder_k.", "encoder_q.": "encoder_k.",
                    "module.base_encoder.": "module.momentum_encoder.",
                    "base_encoder.": "momentum_encoder."}
# ViT fields the weights imply -> config fields of the model section
MODEL_FIELDS = {"posemb": "posemb", "layerscale_init": "vit_layerscale_init",
                "num_registers": "vit_num_registers", "mlp_type": "vit_mlp_type"}


@dataclasses.dataclass
class Imported:
    """A converted checkpoint: the online encoder (``params``, ``batch_stats``), the teacher
    (or None), extra subtrees (MAE's ``decoder``, BERT's ``cls`` / ``pooler``), the model fields
    the weights imply, and what was dropped."""
    format: str
    params: dict
    batch_stats: dict
    teacher_params: dict | None = None
    teacher_batch_stats: dict | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    extra_stats: dict = dataclasses.field(default_factory=dict)
    teacher_extra: dict = dataclasses.field(default_factory=dict)
    teacher_extra_stats: dict = dataclasses.field(default_factory=dict)
    fields: dict = dataclasses.field(default_factory=dict)
    dropped: list = dataclasses.field(default_factory=list)
    source: str = ""
    entries: dict = dataclasses.field(default_factory=dict)   # role -> where in the file
    hf_config: dict = dataclasses.field(default_factory=dict)
    vocab_file: str | None = None


def _convert(fmt: str, sd: dict, grid: int | None):
    if fmt == "resnet":
        params, stats, dropped = convert.resnet(sd)
        return params, stats, {}, {}, dropped
    if fmt == "vit":
        params, fields, dropped = convert.vit(sd, grid)
        decoder = convert.mae_decoder(sd)
        extra = {"decoder": decoder} if decoder is not None else {}
        if decoder is not None:
            dropped = [k for k in dropped if not k.startswith("decoder") and k != "mask_token"]
        return params, {}, fields, extra, dropped
    params, dropped = convert.bert(sd)
    return params, {}, {}, {}, dropped


#: online prefix -> (where its projector sits under it, where the predictor sits): MoCo v2
#: (``encoder_q.fc``: the MLP head), MoCo v3 (``base_encoder.fc`` (ResNet) or ``.head`` (ViT):
#: ``_build_mlp``; ``predictor`` beside the encoders)
MOCO_HEADS = {"module.encoder_q.": ("module.encoder_q.", None),
              "encoder_q.": ("encoder_q.", None),
              "module.base_encoder.": ("module.base_encoder.", "module.predictor."),
              "base_encoder.": ("base_encoder.", "predictor.")}


def _mlp_heads(sd: dict, prefix: str, fmt: str, teacher_prefix: str | None = None):
    """MoCo's projector (and predictor) as extras: ``(extra, extra_stats, teacher_extra,
    teacher_extra_stats, their key prefixes)``; empty where the checkpoint has none."""
    if prefix not in MOCO_HEADS:
        return {}, {}, {}, {}, []
    sub = "fc." if fmt == "resnet" else "head."
    online, predictor = MOCO_HEADS[prefix]
    extra, stats, t_extra, t_stats, used = {}, {}, {}, {}, []
    for name, key, dest, dest_stats in (
            ("projector", online + sub, extra, stats),
            ("predictor", predictor, extra, stats),
            ("projector", (teacher_prefix or "") + sub if teacher_prefix else None, t_extra, t_stats)):
        if key is None:
            continue
        head = convert.sequential_mlp(convert.strip_prefix(sd, key))
        if head is None:
            continue
        dest[name] = head[0]
        if head[1]:
            dest_stats[name] = head[1]
        used.append(key)
    return extra, stats, t_extra, t_stats, used


def _head(sd: dict, prefix: str) -> tuple[dict, dict, str | None]:
    """DINO's projection head beside a ``backbone.`` prefix: ``(params, stats, its prefix)``."""
    if not prefix.endswith("backbone."):
        return {}, {}, None
    head_prefix = prefix[: -len("backbone.")] + "head."
    head = convert.dino_head(convert.strip_prefix(sd, head_prefix))
    if head is None:
        return {}, {}, None
    return {"head": head[0]}, ({"head": head[1]} if head[1] else {}), head_prefix


def load_source(src: str, fmt: str | None = None, *, allow_pickle: bool = False,
                grid: int | None = None) -> Imported:
    """Read and convert ``src`` (see :mod:`jaxssl.imports.read`).

    ``fmt`` forces the format ('resnet', 'vit', 'bert'); ``grid`` resizes a ViT's learned
    positions to that patch grid. Raises ValueError with one line naming the source and the fix.
    """
    entries, hf_config = read.read_source(src, allow_pickle)
    if "student" in entries or "teacher" in entries:  # DINO's full checkpoint
        online_entry = "student" if "student" in entries else "teacher"
        teacher_entry = "teacher" if "teacher" in entries else None
    else:
        online_entry = "" if "" in entries else next(iter(entries))
        teacher_entry = None
    sd = entries[online_entry]
    fmt, prefix = convert.detect(sd, fmt)
    params, stats, fields, extra, dropped = _convert(fmt, convert.strip_prefix(sd, prefix), grid)
    out = Imported(format=fmt, params=params, batch_stats=stats, fields=fields, extra=extra,
                   source=str(src), hf_config=hf_config,
                   dropped=[prefix + k for k in dropped if not k.startswith("head")]
                   + sorted(k for k in sd if not k.startswith(prefix)))
    out.entries["online"] = f"{online_entry + '/' if online_entry else ''}{prefix}"
    if fmt == "vit":
        head, head_stats, head_prefix = _head(sd, prefix)
        if head:
            out.extra.update(head)
            out.extra_stats.update(head_stats)
            out.dropped = [k for k in out.dropped if not k.startswith(head_prefix)]
    teacher_sd, teacher_prefix = None, None
    if teacher_entry is not None:
        teacher_sd = entries[teacher_entry]
        _, teacher_prefix = convert.detect(teacher_sd, fmt)
    elif prefix in TEACHER_PREFIXES and any(k.startswith(TEACHER_PREFIXES[prefix]) for k in sd):
        teacher_sd, teacher_prefix = sd, TEACHER_PREFIXES[prefix]
        out.dropped = [k for k in out.dropped if not k.startswith(teacher_prefix)]
    if fmt in ("resnet", "vit"):  # MoCo's projector / predictor (and the key encoder's projector)
        extra, stats, t_extra, t_stats, used = _mlp_heads(
            sd, prefix, fmt, teacher_prefix if teacher_sd is sd else None)
        out.extra.update(extra)
        out.extra_stats.update(stats)
        out.teacher_extra.update(t_extra)
        out.teacher_extra_stats.update(t_stats)
        out.dropped = [k for k in out.dropped if not any(k.startswith(u) for u in used)]
    if teacher_sd is not None:
        t_params, t_stats, _, _, _ = _convert(fmt, convert.strip_prefix(teacher_sd,
                                                                         teacher_prefix), grid)
        out.teacher_params, out.teacher_batch_stats = t_params, t_stats
        if fmt == "vit":
            t_head, t_head_stats, _ = _head(teacher_sd, teacher_prefix)
            out.teacher_extra.update(t_head)
            out.teacher_extra_stats.update(t_head_stats)
        out.entries["teacher"] = f"{teacher_entry + '/' if teacher_entry else ''}{teacher_prefix}"
    if fmt == "bert":
        out.extra = {k: params.pop(k) for k in ("cls", "pooler") if k in params}
        if os.path.isdir(src) and os.path.isfile(os.path.join(src, "vocab.txt")):
            out.vocab_file = os.path.join(src, "vocab.txt")
    return out


def summary(imported: Imported) -> dict:
    """JSON-able description of an import (without the arrays)."""
    return {"source": imported.source, "format": imported.format, "entries": imported.entries,
            "model_fields": imported.fields, "teacher": imported.teacher_params is not None,
            "extra": sorted(imported.extra), "dropped": imported.dropped,
            "vocab_file": imported.vocab_file}


def apply_overrides(config, fields: dict) -> list[str]:
    """Set the model fields the imported weights imply on ``config``; returns ``field=value``
    for each one that changed (printed by the CLIs)."""
    changed = []
    for name, field in MODEL_FIELDS.items():
        if name in fields and field in config.model and config.model[field] != fields[name]:
            config.model[field] = fields[name]
            changed.append(f"model.{field}={fields[name]!r}")
    return changed


def read_import_summary(path: str) -> dict | None:
    """``DIR/import.json`` of an imported workdir, or None."""
    file = os.path.join(str(path), IMPORT_FILE)
    if os.path.isfile(file):
        with open(file) as f:
            return json.load(f)
    return None


def _find_path(tree, predicate, path=()):
    """Breadth-first path of the first subtree for which ``predicate`` holds, or None."""
    queue = [(path, tree)]
    while queue:
        p, node = queue.pop(0)
        if isinstance(node, dict) or hasattr(node, "keys"):
            if predicate(node):
                return p
            queue.extend((p + (k,), node[k]) for k in sorted(node))
    return None


def _is_backbone(fmt: str):
    if fmt == "resnet":
        return lambda n: "conv1" in n and "layer1_0" in n
    if fmt == "vit":
        return lambda n: "patch_embed" in n and "blocks_0" in n
    return lambda n: "embeddings" in n and "encoder" in n


def overlay(target: Any, path: tuple, source: dict, what: str, loaded: list,
            root: str = "params") -> Any:
    """``target`` with the subtree at ``path`` replaced leaf by leaf by ``source`` (same
    structure, shapes checked: a mismatch is a ValueError naming the first offending tensor)."""
    import flax

    target = flax.core.unfreeze(target)
    node = target
    for key in path:
        node = node[key]
    flat_t = flax.traverse_util.flatten_dict(node, sep="/")
    flat_s = flax.traverse_util.flatten_dict(source, sep="/")
    missing = sorted(set(flat_t) - set(flat_s))
    if missing:
        raise ValueError(f"{what}: the checkpoint has no tensor for {'/'.join(path)}/{missing[0]} "
                         f"(the preset's model expects {tuple(flat_t[missing[0]].shape)}); "
                         f"{len(missing)} missing in all: is it the same architecture?")
    extra = sorted(set(flat_s) - set(flat_t))
    if extra:
        raise ValueError(f"{what}: the checkpoint's {extra[0]} has no place in the preset's model "
                         f"at {'/'.join(path)} (e.g. registers, LayerScale or learned positions "
                         "the preset lacks; set the model fields import.json names)")
    for name, value in flat_s.items():
        want = tuple(flat_t[name].shape)
        if tuple(np.shape(value)) != want:
            raise ValueError(f"{what}: {'/'.join(path)}/{name} is {list(np.shape(value))} in the "
                             f"checkpoint but the preset's model expects {list(want)}; check "
                             "the preset's model size / patch size / image size")
        flat_t[name] = np.asarray(value, flat_t[name].dtype)
        loaded.append("/".join((root,) + path + (name,)))
    new = flax.traverse_util.unflatten_dict(flat_t, sep="/")
    if not path:
        return new
    parent = target
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = new
    return target


def place(imported: Imported, params: dict, model_state: dict) -> tuple[dict, dict, dict]:
    """Lay the imported trees into a preset's freshly initialised ``params`` / ``model_state``.

    The backbone is found by structure (the first subtree, breadth-first, that is a ResNet /
    ViT / BERT encoder: SimCLR's ``backbone``, MoCo v3's ``encoder/backbone``, MAE's ``encoder``,
    MLM's ``bert``); its BN statistics at the same path of ``batch_stats``; the teacher's under
    ``model_state['teacher']`` (teacher = imported teacher, else the online weights); MAE's
    decoder beside the encoder; BERT's MLM head ``cls`` and ``pooler`` beside ``bert``.
    Returns ``(params, model_state, report)`` with ``loaded`` and ``initialised`` path lists.
    """
    import flax

    fmt = imported.format
    is_backbone = _is_backbone(fmt)
    loaded: list[str] = []
    path = _find_path(flax.core.unfreeze(params), is_backbone)
    if path is None:
        raise ValueError(f"the preset's model has no {fmt} encoder to take the imported weights "
                         f"(params: {sorted(params)}); pick a preset with that backbone")
    online = imported.params["bert"] if fmt == "bert" else imported.params
    params = overlay(params, path, online, f"import of {imported.source}", loaded)
    model_state = flax.core.unfreeze(model_state)
    if imported.batch_stats and "batch_stats" in model_state:
        model_state["batch_stats"] = overlay(model_state["batch_stats"], path,
                                             imported.batch_stats, "BN statistics", loaded,
                                             "model_state/batch_stats")
    teacher = model_state.get("teacher")
    t_path, prefix = None, ()
    if teacher is not None:
        t_params = teacher.get("params", teacher)
        t_path = _find_path(flax.core.unfreeze(t_params), is_backbone)
        if t_path is not None:
            source = imported.teacher_params or imported.params
            prefix = ("params",) if "params" in teacher else ()
            model_state["teacher"] = overlay(teacher, prefix + t_path, source,
                                             "teacher", loaded, "model_state/teacher")
            t_stats = imported.teacher_batch_stats or imported.batch_stats
            if t_stats and "batch_stats" in model_state["teacher"]:
                model_state["teacher"] = overlay(model_state["teacher"], ("batch_stats",) + t_path,
                                                 t_stats, "teacher BN statistics", loaded,
                                                 "model_state/teacher")
    skipped: list[str] = []
    params = _place_extras(params, path[:-1], imported.extra, "params", imported, loaded, skipped)
    if imported.extra_stats and "batch_stats" in model_state:
        model_state["batch_stats"] = _place_extras(
            model_state["batch_stats"], path[:-1], imported.extra_stats,
            "model_state/batch_stats", imported, loaded, skipped)
    if teacher is not None and t_path is not None:
        t_extra = imported.teacher_extra or imported.extra
        t_extra_stats = imported.teacher_extra_stats or imported.extra_stats
        model_state["teacher"] = _place_extras(model_state["teacher"], prefix + t_path[:-1],
                                               t_extra, "model_state/teacher", imported, loaded,
                                               skipped)
        if t_extra_stats and "batch_stats" in model_state["teacher"]:
            model_state["teacher"] = _place_extras(
                model_state["teacher"], ("batch_stats",) + t_path[:-1], t_extra_stats,
                "model_state/teacher", imported, loaded, skipped)
    every = sorted(flax.traverse_util.flatten_dict(
        {"params": flax.core.unfreeze(params), "model_state": model_state}, sep="/"))
    done = set(loaded)
    report = {"loaded": len(loaded), "initialised": [k for k in every if k not in done],
              "not_placed": skipped}
    return params, model_state, report


def _place_extras(target, parent: tuple, extras: dict, root: str, imported: Imported,
                  loaded: list, skipped: list):
    """Each extra subtree (a head, MAE's decoder, BERT's MLM head, MoCo's projector and
    predictor) at ``name`` beside the encoder: under ``parent`` or, failing that, the nearest
    ancestor of it that has ``name`` (MoCo v3's predictor sits beside the whole encoder), where
    the preset has it with the same structure; otherwise it is reported in ``skipped`` (the
    preset's own part keeps its initialisation)."""
    import flax

    def holds(path):
        node = flax.core.unfreeze(target)
        try:
            for key in path:
                node = node[key]
        except (KeyError, TypeError):
            return False
        return True

    for name, tree in extras.items():
        where = next((parent[:i] + (name,) for i in range(len(parent), -1, -1)
                      if holds(parent[:i] + (name,))), None)
        if where is None:
            skipped.append(f"{name} (the preset has no {'/'.join(parent + (name,))})")
            continue
        try:
            target = overlay(target, where, tree, f"{name} of {imported.source}",
                             loaded, root)
        except ValueError as e:
            skipped.append(f"{name} ({e})")
    return target


__all__ = ["Imported", "load_source", "summary", "apply_overrides", "read_import_summary",
           "place", "overlay", "IMPORT_FILE", "convert", "read"]
