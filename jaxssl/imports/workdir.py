"""Imported weights into a run: ``--config.init_from=SRC`` and ``scripts/import_weights.py``.

* :func:`config_overrides`: the model fields an import implies (learned positions, LayerScale,
  registers, SwiGLU, the BERT vocabulary), set on the config before the run is built.
* :func:`init_state` (``train.init_from`` = a released checkpoint or an imported workdir):
  the imported trees laid into the run's fresh state by structure
  (:func:`jaxssl.imports.place`), whatever the preset: pretraining (teacher included) or a
  protocol preset (its backbone).
* :func:`write_workdir`: the preset's state with the imported weights, saved as step 0 of a
  workdir, with ``import.json`` and (BERT) ``vocab.txt``.
"""
from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np

from jaxssl import imports
from jaxssl.imports import read


def _grid(config) -> int | None:
    if "image_size" not in config.data or "patch_size" not in config.model:
        return None  # text presets
    size, patch = int(config.data.image_size or 0), int(config.model.patch_size or 0)
    return size // patch if size and patch else None


def _drop_fixed_positions(imported: imports.Imported, config) -> None:
    """A checkpoint whose ``pos_embed`` is exactly the fixed sin-cos table the preset computes
    (MAE's, MoCo v3's buffers) keeps the preset's fixed positions instead of a learned copy."""
    from jaxssl.models.vit import sincos_2d_position_embedding

    pos = imported.params.get("pos_embed")
    if pos is None or config.model.posemb != "sincos2d":
        return
    grid = int(round(np.sqrt(pos.shape[1] - 1)))
    for layout in ("mae", "mocov3"):
        table = sincos_2d_position_embedding(grid, grid, pos.shape[-1], layout=layout)
        if np.allclose(pos[0, 1:], table, atol=1e-5) and np.allclose(pos[0, :1], 0, atol=1e-6):
            del imported.params["pos_embed"]
            imported.fields["posemb"] = "sincos2d"
            if imported.teacher_params is not None:
                imported.teacher_params.pop("pos_embed", None)
            return


def load_for(config, src: str, fmt: str | None = None,
             allow_pickle: bool = False) -> imports.Imported:
    """:func:`jaxssl.imports.load_source` for this config (positions resized to its grid)."""
    imported = imports.load_source(src, fmt, allow_pickle=allow_pickle, grid=_grid(config))
    if imported.format == "vit":
        _drop_fixed_positions(imported, config)
    return imported


def config_overrides(config, init_from: str | None = None,
                     allow_pickle: bool = False) -> list[str]:
    """Set on ``config`` what ``train.init_from`` (a released checkpoint, or a workdir written
    by ``scripts/import_weights.py``) implies; returns the ``field=value`` changes."""
    source = init_from if init_from is not None else config.train.init_from
    if not source or source == "random":
        return []
    if read.is_import_source(source):
        imported = load_for(config, source, allow_pickle=allow_pickle)
        fields, vocab = imported.fields, imported.vocab_file
    else:
        saved = imports.read_import_summary(source)
        if saved is None:
            return []
        fields = saved.get("model_fields", {})
        vocab = os.path.join(source, "vocab.txt") if saved.get("vocab_file") else None
    changed = imports.apply_overrides(config, fields)
    if vocab and "vocab_file" in config.data and not config.data.vocab_file and \
            config.method == "mlm":
        config.data.vocab_file = vocab
        changed.append(f"data.vocab_file={vocab!r}")
    return changed


def init_state(src: str, state, mesh, config, allow_pickle: bool = False):
    """``(state, message)``: ``state`` with the weights of ``src`` (a released checkpoint) in
    its backbone (and teacher, heads) -- the rest keeps its fresh initialisation."""
    imported = load_for(config, src, allow_pickle=allow_pickle)
    params, model_state, report = imports.place(
        imported, jax.tree.map(np.asarray, state.params),
        jax.tree.map(np.asarray, state.model_state))
    shard = lambda new, old: jax.device_put(np.asarray(new, old.dtype), old.sharding)  # noqa: E731
    state = state.replace(params=jax.tree.map(shard, params, state.params),
                          model_state=jax.tree.map(shard, model_state, state.model_state))
    init = report["initialised"]
    message = (f"init_from {src} ({imported.format}, {imported.entries}): loaded "
               f"{report['loaded']} tensors; newly initialised {len(init)} "
               f"({', '.join(init[:8])}{' ...' if len(init) > 8 else ''})")
    unused = imported.dropped + report["not_placed"]
    if unused:
        message += f"; not used from the checkpoint: {', '.join(unused[:8])}"
    return state, message


def check_cli_args(args: list[str], workdir: str) -> str:
    """The SRC of ``scripts/import_weights.py`` (ValueError, one line, for a wrong command)."""
    if len(args) != 1:
        raise ValueError(f"give exactly one SRC before the flags (got {args}): a .pth / .pt / "
                         ".pth.tar / .safetensors file or a Hugging Face model folder")
    src = args[0]
    if not os.path.exists(src):
        raise ValueError(f"SRC={src!r} does not exist; give a .pth / .pt / .pth.tar / "
                         ".safetensors file or a Hugging Face model folder")
    if os.path.isfile(workdir):
        raise ValueError(f"--workdir={workdir} is a file; give a new folder")
    if os.path.isdir(workdir) and os.listdir(workdir):
        raise ValueError(f"--workdir={workdir} is not empty; import into a new folder")
    return src


def write_workdir(config, src: str, workdir: str, fmt: str | None = None,
                  allow_pickle: bool = False) -> dict:
    """Import ``src`` into the state of ``config``'s preset and save it as step 0 of
    ``workdir``. Returns the summary also written to ``workdir/import.json``."""
    from jaxssl import checkpoint, train_state
    from jaxssl.train import Setup

    imported = load_for(config, src, fmt, allow_pickle)
    changed = imports.apply_overrides(config, imported.fields)
    if imported.vocab_file and config.method == "mlm":
        config.data.vocab_file = imported.vocab_file
    if config.data.name not in ("digits", "synthetic", "pydoc") and config.method != "mlm":
        # Only the shapes of the state matter here: no dataset is read.
        config.data.name = "synthetic"
    setup = Setup(config)
    state = train_state.create(setup.init_fn, setup.tx, setup.mesh)
    params, model_state, report = imports.place(
        imported, jax.tree.map(np.asarray, state.params),
        jax.tree.map(np.asarray, state.model_state))
    shard = lambda new, old: jax.device_put(np.asarray(new, old.dtype), old.sharding)  # noqa: E731
    state = state.replace(params=jax.tree.map(shard, params, state.params),
                          model_state=jax.tree.map(shard, model_state, state.model_state))
    os.makedirs(workdir, exist_ok=True)
    ckpt = checkpoint.Checkpointer(workdir, async_save=False)
    try:
        ckpt.save(0, state, force=True)
        ckpt.wait()
    finally:
        ckpt.close()
    if imported.vocab_file:
        shutil.copyfile(imported.vocab_file, os.path.join(workdir, "vocab.txt"))
    out = imports.summary(imported)
    out.update(method=config.method, backbone=config.model.backbone, overrides=changed,
               loaded=report["loaded"], initialised=report["initialised"],
               not_placed=report["not_placed"])
    with open(os.path.join(workdir, imports.IMPORT_FILE), "w") as f:
        json.dump(out, f, indent=2)
    return out


__all__ = ["config_overrides", "init_state", "write_workdir", "load_for", "check_cli_args"]
