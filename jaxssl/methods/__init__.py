"""Method registry: ``config.method`` -> the class that implements it."""
from __future__ import annotations

import importlib

_METHODS = {
    "simclr": ("jaxssl.methods.simclr", "SimCLR"),
    "moco_v2": ("jaxssl.methods.moco", "MoCoV2"),
    "moco_v3": ("jaxssl.methods.moco", "MoCoV3"),
    "mlm": ("jaxssl.methods.mlm", "MaskedLM"),
    "mae": ("jaxssl.methods.mae", "MAE"),
}


def known_methods() -> tuple[str, ...]:
    return tuple(sorted(_METHODS))


def get_method_class(name: str):
    if name not in _METHODS:
        raise ValueError(f"config field method={name!r} is unknown; use one of {list(known_methods())}")
    module, cls = _METHODS[name]
    return getattr(importlib.import_module(module), cls)
