"""Image data sources: one random-access object per (dataset, split), and the dispatcher.

A source answers ``get(indices, seed=..., step=...)`` for any dataset indices, so the position
in the data is a pure function of the step (:mod:`jaxssl.data.batching`). Two kinds:

* **in memory** (``on_device=True``: digits, cifar10, cifar100, stl10, image_folder -- a
  user's own images, :mod:`jaxssl.data.image_folder`): the whole split is a
  uint8 ``[N, H, W, C]`` array. The trainer puts ``images`` on the device once and gathers and
  augments batches there (docs/design.md, "Readers, not iterators"); ``get`` is the host
  equivalent (a plain gather), used by evaluators and tests.
* **host-cropped** (``on_device=False``: imagenet2012): ``get`` reads the examples by index,
  decodes the JPEGs and does the random-resized (or centre) crop on the host; colour and blur
  augmentations then run on the device (:mod:`jaxssl.data.tfds_images`).

``load_image_source(data_cfg, split)`` picks the loader from ``data_cfg.name``. Neither this
module nor :mod:`jaxssl.data.digits` imports TensorFlow; tfds loaders import it when called.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, Mapping

import numpy as np

ROLES = ("pretrain", "train", "test")
"""Semantic splits: SSL pretraining, probe/kNN training (labelled), held-out evaluation."""

# name -> (module, loader function); imported lazily so `import jaxssl.data.sources` is cheap.
_LOADERS: Mapping[str, tuple[str, str]] = {
    "digits": ("jaxssl.data.digits", "load_from_config"),
    "cifar10": ("jaxssl.data.tfds_images", "load_from_config"),
    "cifar100": ("jaxssl.data.tfds_images", "load_from_config"),
    "stl10": ("jaxssl.data.tfds_images", "load_from_config"),
    "imagenet2012": ("jaxssl.data.tfds_images", "load_from_config"),
    "imagenet2012_subset/1pct": ("jaxssl.data.tfds_images", "load_from_config"),
    "imagenet2012_subset/10pct": ("jaxssl.data.tfds_images", "load_from_config"),
    "image_folder": ("jaxssl.data.image_folder", "load_from_config"),
    "synthetic": ("jaxssl.data.synthetic", "load_from_config"),
}
KNOWN_DATASETS = tuple(_LOADERS)

_DEFAULT_SPLITS: Mapping[str, Mapping[str, str]] = {
    "digits": {"pretrain": "train", "train": "train", "test": "test"},
    "cifar10": {"pretrain": "train", "train": "train", "test": "test"},
    "cifar100": {"pretrain": "train", "train": "train", "test": "test"},
    # SimCLR / MoCo practice on STL-10: pretrain on the 100k unlabelled plus the 5k labelled.
    "stl10": {"pretrain": "train+unlabelled", "train": "train", "test": "test"},
    "imagenet2012": {"pretrain": "train", "train": "train", "test": "validation"},
    "imagenet2012_subset/1pct": {"pretrain": "train", "train": "train", "test": "validation"},
    "imagenet2012_subset/10pct": {"pretrain": "train", "train": "train", "test": "validation"},
    # a user's folder prepared by scripts/prepare_data.py (fixed stratified split, image_folder.py)
    "image_folder": {"pretrain": "train", "train": "train", "test": "test"},
    "synthetic": {"pretrain": "train", "train": "train", "test": "test"},
}

UNLABELLED = -1
"""The label ``get`` returns for examples of an unlabelled split (``labels is None``)."""


@dataclasses.dataclass(eq=False)
class ImageSource:
    """One split of one image dataset, readable by index.

    Attributes:
      name: dataset name ('digits', 'cifar10', ...).
      split: the dataset's split expression ('train', 'test', 'train+unlabelled', ...).
      images: uint8 ``[N, H, W, C]`` when the split is held in memory, else ``None``.
      labels: int32 ``[N]`` for an in-memory labelled split. ``None`` for a split without
        (complete) labels, e.g. stl10's 'unlabelled' and 'train+unlabelled' (``get`` then
        returns ``UNLABELLED`` = -1), and for host-read sources (``get`` returns the labels
        it reads with the images).
      num_examples: ``N``.
      num_classes: number of classes of the dataset, or ``None`` if it has none.
      image_shape: ``(H, W, C)`` of the stored images; ``None`` when sizes vary (ImageNet).
      on_device: ``True``: the trainer copies ``images`` to the device once and crops there;
        ``False``: batches come from ``get``, already cropped on the host.
      host_reader: for ``on_device=False``, the callable behind ``get``
        (``reader(indices, seed=, step=, row_offset=) -> dict``).
      output_shape: shape of one example's ``image`` as returned by ``get``:
        ``image_shape`` for in-memory sources, ``(V, S, S, 3)`` for random host crops
        (``V`` views), ``(S, S, 3)`` for centre host crops.
    """

    name: str
    split: str
    images: np.ndarray | None
    labels: np.ndarray | None
    num_examples: int
    num_classes: int | None
    image_shape: tuple[int, int, int] | None
    on_device: bool
    host_reader: Callable[..., dict] | None = None
    output_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.images is not None:
            if self.images.dtype != np.uint8 or self.images.ndim != 4:
                raise ValueError(f"{self.name}/{self.split}: images must be uint8 [N, H, W, C], "
                                 f"got {self.images.dtype} {self.images.shape}")
            if len(self.images) != self.num_examples:
                raise ValueError(f"{self.name}/{self.split}: {len(self.images)} images but "
                                 f"num_examples={self.num_examples}")
            if self.output_shape is None:
                self.output_shape = tuple(self.images.shape[1:])
        elif self.host_reader is None:
            raise ValueError(f"{self.name}/{self.split}: a source needs images or a host_reader")
        if self.labels is not None and (self.labels.dtype != np.int32
                                        or self.labels.shape != (self.num_examples,)):
            raise ValueError(f"{self.name}/{self.split}: labels must be int32 [{self.num_examples}], "
                             f"got {self.labels.dtype} {self.labels.shape}")

    def get(self, indices: np.ndarray, *, seed: int, step: int, row_offset: int = 0) -> dict:
        """Examples at dataset ``indices`` (int ``[b]``), on the host.

        Returns ``{"image": uint8 [b, *output_shape], "label": int32 [b]}``. For in-memory
        sources this is a gather (``seed``, ``step``, ``row_offset`` unused). For host-cropped
        sources the crops of row ``i`` are drawn from ``(seed, step, row_offset + i)``:
        ``row_offset`` is the global-batch row of ``indices[0]`` (a process's first row), so a
        process's rows are identical to the same rows of the whole batch.
        """
        indices = np.asarray(indices, np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_examples):
            raise IndexError(f"{self.name}/{self.split}: indices must lie in [0, {self.num_examples}), "
                             f"got [{indices.min()}, {indices.max()}]")
        if self.images is None:
            return self.host_reader(indices, seed=seed, step=step, row_offset=row_offset)
        labels = (self.labels[indices] if self.labels is not None
                  else np.full(indices.shape, UNLABELLED, np.int32))
        return {"image": self.images[indices], "label": labels}


def default_splits(name: str) -> dict[str, str]:
    """The dataset split used for each role ('pretrain', 'train', 'test') of dataset ``name``."""
    _check_name(name)
    return dict(_DEFAULT_SPLITS[name])


def resolve_split(data_cfg, split: str) -> tuple[str, str | None]:
    """``(dataset split, role)`` for ``split``: a role resolved through ``data.<role>_split``
    (``None`` -> :func:`default_splits`), or a dataset split expression used as given."""
    if split in ROLES:
        chosen = data_cfg[f"{split}_split"]
        return (chosen if chosen is not None else default_splits(data_cfg.name)[split]), split
    return split, None


def load_image_source(data_cfg, split: str, *, host_crop: str | None = None,
                      num_views: int = 2, eval_crop_fraction: float = 0.875,
                      crop_groups=None) -> ImageSource:
    """The :class:`ImageSource` of ``data_cfg.name`` for ``split``.

    Args:
      data_cfg: ``config.data`` (ml_collections): ``name``, ``data_dir`` (``None``: the tfds
        default), ``pretrain_split`` / ``train_split`` / ``test_split`` (``None``: the
        dataset's default, :func:`default_splits`), and for host-cropped sources
        ``image_size``, ``crop_scale`` and ``crop_ratio``.
      split: a role, ``'pretrain'``, ``'train'`` or ``'test'``, or a dataset split
        expression used as is (``'unlabelled'``, ``'validation'``, ``'train+unlabelled'``).
      host_crop: host-cropped sources only: ``'random'`` (``num_views`` random-resized crops
        per example) or ``'center'`` (one centre crop). Default: ``'random'`` for the
        ``'pretrain'`` role, ``'center'`` otherwise (features for kNN / linear probes).
      num_views: host-cropped sources with ``host_crop='random'``: crops per example (the
        method's ``num_views``: 2 for SimCLR / MoCo, 1 for MAE and classifiers).
      eval_crop_fraction: host-cropped sources with ``host_crop='center'``: the centre crop's
        side fraction before the resize (the config's top-level ``eval_crop_fraction``).
      crop_groups: host-cropped sources with ``host_crop='random'``: the method's views
        (:func:`jaxssl.augment.views.host_crop_groups`), replacing ``num_views`` and the
        ``data`` crop fields; each group comes back as its own batch entry.
    """
    name = data_cfg.name
    _check_name(name)
    dataset_split, role = resolve_split(data_cfg, split)
    if host_crop is None:
        host_crop = "random" if role == "pretrain" else "center"
    module, function = _LOADERS[name]
    loader = getattr(importlib.import_module(module), function)
    extra = {} if crop_groups is None else {"crop_groups": tuple(crop_groups)}
    return loader(data_cfg, dataset_split, role=role, host_crop=host_crop, num_views=num_views,
                  eval_crop_fraction=eval_crop_fraction, **extra)


def _check_name(name: str) -> None:
    if name not in _LOADERS:
        raise ValueError(f"data.name={name!r} is not a known image dataset; "
                         f"use one of {list(KNOWN_DATASETS)}")
