"""What the trainer feeds a method: the training data built from ``config.data`` and the
method's declared needs, before the method exists.

A method class declares ``data_kind`` (which builder below), and image methods also
``num_views`` (host crops per example on host-read sources) or a ``view_spec(config)``
(:mod:`jaxssl.augment.views`: named groups of views, multi-crop) and ``train_keys`` (the batch
entries its loss reads, e.g. ``("image", "label")`` for a classifier). The trainer calls
:func:`build_train_data`, learns ``steps_per_epoch`` from the feeder, computes the run's
length, and only then builds the method with the :class:`TrainData`.

``data.in_memory`` (True / False / None) picks the path for image sources: ``True`` holds the
split on the device and gathers batches there (:class:`~jaxssl.data.feeder.DeviceFeeder`);
``False`` reads every batch on the host through the source's reader
(:class:`~jaxssl.data.feeder.HostFeeder`), the path ImageNet takes; ``None`` picks ``True``
exactly when the source holds its images in memory. Either way the device then crops (if the
host did not) and augments, so both paths give the same batches.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from jaxssl.augment import views as views_lib
from jaxssl.data import sources
from jaxssl.data.feeder import DeviceFeeder, HostFeeder


@dataclasses.dataclass
class TrainData:
    """The training feeder and what the method may need to know about its data.

    Attributes:
      feeder: ``feeder(step) -> dict of global arrays`` with ``steps_per_epoch`` and
        ``num_examples``.
      source: the :class:`~jaxssl.data.sources.ImageSource` behind an image feeder, the
        ``TextData`` of a text feeder, or whatever a registered builder returns.
      host_cropped: image sources only: ``True`` when the host already cropped and resized
        each view (the method must not crop again).
      channels: image channels (1 for digits, 3 otherwise).
    """
    feeder: Any
    source: Any = None
    host_cropped: bool = False
    channels: int = 3


_BUILDERS: dict[str, Callable[..., TrainData]] = {}


def register_data_kind(kind: str, builder: Callable[..., TrainData]) -> None:
    """Make ``builder(config, mesh, method_cls) -> TrainData`` the builder of ``kind``."""
    _BUILDERS[kind] = builder


def build_train_data(config, mesh, method_cls) -> TrainData:
    """The :class:`TrainData` of ``config`` for a method of class ``method_cls``."""
    kind = getattr(method_cls, "data_kind", "image")
    if kind not in _BUILDERS:
        raise ValueError(f"method {config.method!r} declares data_kind={kind!r}, which has no "
                         f"builder; known: {sorted(_BUILDERS)} (jaxssl.data.pipeline)")
    return _BUILDERS[kind](config, mesh, method_cls)


def use_in_memory(data_cfg, source: sources.ImageSource) -> bool:
    """Resolve ``data.in_memory`` for ``source`` (None: in memory iff the source holds images)."""
    want = data_cfg.in_memory
    if want is None:
        return source.images is not None
    if want and source.images is None:
        raise ValueError(
            f"config field data.in_memory=True is invalid for data.name={data_cfg.name!r}: "
            f"split {source.split!r} ({source.num_examples} examples) is read and cropped on "
            "the host, not held in memory; use data.in_memory=None (automatic) or False")
    return bool(want)


def image_feeder(data_cfg, source: sources.ImageSource, *, global_batch: int, seed: int, mesh,
                 keys=("image",)):
    """A training feeder over ``source``: device-held or host-read by ``data.in_memory``."""
    if "label" in keys and source.labels is None and source.images is not None:
        raise ValueError(f"data.name={data_cfg.name!r} split {source.split!r} has no labels; "
                         "a supervised run needs a labelled split (data.train_split)")
    if use_in_memory(data_cfg, source):
        arrays = {"image": source.images}
        if "label" in keys:
            arrays["label"] = source.labels
        return DeviceFeeder(arrays, global_batch, seed, mesh)
    return HostFeeder(source, global_batch, seed, mesh, keys=keys)


def _image_data(config, mesh, method_cls) -> TrainData:
    role = getattr(method_cls, "train_role", "pretrain")
    spec = method_cls.view_spec(config) if hasattr(method_cls, "view_spec") else None
    crop_groups = None if spec is None else views_lib.host_crop_groups(spec)
    source = sources.load_image_source(config.data, role,
                                       num_views=int(getattr(method_cls, "num_views", 2)),
                                       crop_groups=crop_groups)
    keys = (tuple(method_cls.batch_keys(config)) if hasattr(method_cls, "batch_keys")
            else tuple(getattr(method_cls, "train_keys", ("image",))))
    if spec is not None and source.images is None:  # host crops: one entry per crop group
        keys += tuple(c.key for c in spec.crop_groups() if c.key not in keys)
    feeder = image_feeder(config.data, source, global_batch=int(config.train.batch_size),
                          seed=int(config.seed), mesh=mesh, keys=keys)
    channels = source.image_shape[-1] if source.image_shape else 3
    return TrainData(feeder=feeder, source=source, host_cropped=source.images is None,
                     channels=channels)


def _text_mlm_data(config, mesh, method_cls) -> TrainData:
    del method_cls
    from jaxssl.data import text_source
    data = text_source.load_text_data(config.data, seed=int(config.seed))
    feeder = DeviceFeeder(data.train, int(config.train.batch_size), int(config.seed), mesh)
    return TrainData(feeder=feeder, source=data)


register_data_kind("image", _image_data)
register_data_kind("text_mlm", _text_mlm_data)

__all__ = ["TrainData", "build_train_data", "register_data_kind", "use_in_memory",
           "image_feeder"]
