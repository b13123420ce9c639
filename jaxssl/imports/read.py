"""Read a released checkpoint into flat ``{key: float32/int numpy array}`` entries.

Sources (``SRC`` of ``scripts/import_weights.py`` and ``--config.init_from``):

* ``*.safetensors``: ``safetensors.numpy`` (no torch);
* a Hugging Face model folder: ``model.safetensors`` (no torch) or ``pytorch_model.bin``,
  with ``config.json`` and, for BERT, ``vocab.txt``;
* ``*.pth`` / ``*.pt`` / ``*.pth.tar`` / ``*.bin``: ``torch.load`` (needs torch). Tensors-only files
  load with ``weights_only=True``; a file that also pickles Python objects (DINO's
  ``args`` namespace) needs ``allow_pickle=True`` (``--allow_pickle``): unpickling runs code
  from the file, so only for files you trust.

A checkpoint may nest its state dicts: :func:`entries` returns every top-level entry that is
itself a state dict (``state_dict``, ``model``, ``teacher``, ``student``, ...), or ``{'': sd}``
for a plain one.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

from jaxssl import optional

TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".tar", ".bin", ".ckpt")
NESTED_KEYS = ("state_dict", "model", "teacher", "student", "module", "target_encoder",
               "encoder", "predictor")


def is_import_source(path: str) -> bool:
    """Is ``path`` a released checkpoint (a file of a known suffix or a Hugging Face folder)
    rather than a jaxssl workdir / checkpoint folder?"""
    path = str(path)
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "config.json")) and any(
            os.path.isfile(os.path.join(path, f))
            for f in ("model.safetensors", "pytorch_model.bin"))
    return path.endswith(".safetensors") or path.endswith(TORCH_SUFFIXES)


def _to_numpy(value) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return None


def _flat_state_dict(obj: Mapping) -> dict[str, np.ndarray]:
    out = {}
    for key, value in obj.items():
        array = _to_numpy(value)
        if array is not None:
            out[str(key)] = array
    return out


def load_file(path: str, allow_pickle: bool = False) -> dict[str, Any]:
    """The raw top-level object of a checkpoint file as a dict (tensors as numpy)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"import source {path!r} does not exist; give a .pth / .pt / "
                                ".pth.tar / .safetensors file or a Hugging Face model folder")
    if path.endswith(".safetensors"):
        optional.require("safetensors", f"reading {path}")
        from safetensors.numpy import load_file as load_safetensors
        return dict(load_safetensors(path))
    torch = optional.require("torch", f"reading {path} (a PyTorch pickle; a .safetensors file "
                             "needs only the safetensors package)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as e:  # noqa: BLE001 -- torch raises UnpicklingError and others
        if not allow_pickle and "weights_only" in str(e):
            raise ValueError(
                f"import source {path!r} pickles Python objects besides tensors (e.g. DINO's "
                "'args'); if you trust the file, pass --allow_pickle (unpickling runs code from "
                "the file)") from None
        raise ValueError(f"import source {path!r} cannot be read by torch.load: "
                         f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
    if not isinstance(obj, Mapping):
        raise ValueError(f"import source {path!r} holds a {type(obj).__name__}, not a state dict; "
                         "save model.state_dict() instead of the model")

    def convert(node):
        if isinstance(node, Mapping):
            return {str(k): convert(v) for k, v in node.items()}
        array = _to_numpy(node)
        return array if array is not None else node
    return convert(obj)


def entries(obj: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """The state dicts in a loaded checkpoint: ``{entry name: flat state dict}``.

    A plain state dict is ``{'': sd}``; nested ones are found under :data:`NESTED_KEYS` (one
    level deep, e.g. ``{'state_dict': ...}``, DINO's ``{'teacher': ..., 'student': ...}``).
    """
    flat = _flat_state_dict(obj)
    if len(flat) >= max(1, len(obj) // 2) and any(v.ndim > 0 for v in flat.values()):
        return {"": flat}
    found = {}
    for key in NESTED_KEYS:
        if isinstance(obj.get(key), Mapping):
            sd = _flat_state_dict(obj[key])
            if sd:
                found[key] = sd
    if not found:
        raise ValueError(f"no state dict found in the checkpoint: its top-level keys are "
                         f"{sorted(obj)[:10]}; expected tensors or one of {list(NESTED_KEYS)}")
    return found


def read_hf_folder(path: str, allow_pickle: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """``(state dict, config.json)`` of a Hugging Face model folder."""
    with open(os.path.join(path, "config.json")) as f:
        hf_config = json.load(f)
    weights = os.path.join(path, "model.safetensors")
    if not os.path.isfile(weights):
        weights = os.path.join(path, "pytorch_model.bin")
    return entries(load_file(weights, allow_pickle))[""], hf_config


def read_source(path: str, allow_pickle: bool = False) -> tuple[dict[str, dict], dict]:
    """``({entry: flat state dict}, hf_config or {})`` of any import source."""
    path = str(path)
    if os.path.isdir(path):
        if not is_import_source(path):
            raise ValueError(f"import source {path!r} is a folder without config.json and "
                             "model.safetensors / pytorch_model.bin (not a Hugging Face model "
                             "folder)")
        sd, hf_config = read_hf_folder(path, allow_pickle)
        return {"": sd}, hf_config
    return entries(load_file(path, allow_pickle)), {}


__all__ = ["is_import_source", "load_file", "entries", "read_hf_folder", "read_source",
           "TORCH_SUFFIXES", "NESTED_KEYS"]
