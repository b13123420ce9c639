"""Method registry: ``config.method`` -> the class that implements it."""
from __future__ import annotations

import importlib

_METHODS: dict[str, tuple[str, str] | type] = {
    "simclr": ("jaxssl.methods.simclr", "SimCLR"),
    "moco_v2": ("jaxssl.methods.moco", "MoCoV2"),
    "moco_v3": ("jaxssl.methods.moco", "MoCoV3"),
    "mlm": ("jaxssl.methods.mlm", "MaskedLM"),
    "mae": ("jaxssl.methods.mae", "MAE"),
    "byol": ("jaxssl.methods.byol", "BYOL"),
    "simsiam": ("jaxssl.methods.simsiam", "SimSiam"),
    "barlow": ("jaxssl.methods.barlow_twins", "BarlowTwins"),
    "vicreg": ("jaxssl.methods.vicreg", "VICReg"),
    "dino": ("jaxssl.methods.dino", "DINO"),
    "ijepa": ("jaxssl.methods.ijepa", "IJEPA"),
    "ibot": ("jaxssl.methods.ibot", "IBOT"),
    "dinov2": ("jaxssl.methods.dinov2", "DINOv2"),
    "linear_eval": ("jaxssl.methods.classifier", "LinearEval"),
    "finetune": ("jaxssl.methods.classifier", "FineTune"),
    "text_classify": ("jaxssl.methods.text_classifier", "TextClassifier"),
}


def known_methods() -> tuple[str, ...]:
    return tuple(sorted(_METHODS))


def register(name: str, cls: type) -> None:
    """Make ``config.method=name`` run ``cls`` (a :class:`jaxssl.methods.base.Method`)."""
    _METHODS[name] = cls


def get_method_class(name: str):
    if name not in _METHODS:
        raise ValueError(f"config field method={name!r} is unknown; use one of {list(known_methods())}")
    entry = _METHODS[name]
    if isinstance(entry, type):
        return entry
    module, cls = entry
    return getattr(importlib.import_module(module), cls)


# Masked fractions of the masked-prediction sections, checked wherever such a section appears.
_MASK_FRACTIONS = {"mlm": "rate", "mae": "mask_ratio"}


def validate_config(config, num_devices: int | None = None,
                    num_processes: int | None = None) -> None:
    """The checks of a config's method before device work: the shared fields
    (:func:`jaxssl.config.validate`) and the method's own ``validate_config`` (the trainer's
    :func:`jaxssl.train.validate` adds the names in ``eval.evaluators``). Raises
    ``ValueError`` naming field, value and fix."""
    from jaxssl import config as config_lib
    if config.method not in _METHODS:
        config_lib.fail("method", config.method, f"use one of {list(known_methods())}")
    config_lib.validate(config, num_devices, num_processes)
    for section, field in _MASK_FRACTIONS.items():
        if section in config and field in config[section] \
                and not 0.0 < config[section][field] < 1.0:
            config_lib.fail(f"{section}.{field}", config[section][field],
                            "the masked fraction must lie strictly between 0 and 1 "
                            "(BERT: 0.15, MAE: 0.75)")
    method_cls = get_method_class(config.method)
    if "data" in config and "normalize_mean" in config.data and "model" in config:
        from jaxssl.data.normalize import input_normalization
        input_normalization(config)   # every image method's input normalisation (one line)
    method_cls.validate_config(config)
