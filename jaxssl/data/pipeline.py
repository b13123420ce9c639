"""What the trainer feeds a method: the training data built from ``config.data`` and the
method's declared needs, before the method exists.

A method class declares (:class:`jaxssl.methods.base.Method`) ``data_kind`` (which builder
below), ``train_role``, and image methods also ``num_views`` (host crops per example on
host-read sources) or a ``view_spec(config)`` (:mod:`jaxssl.augment.views`: named groups of
views, multi-crop) and ``batch_keys(config)`` (the batch entries its loss reads, e.g.
``("image", "label")`` for a classifier). The trainer calls :func:`build_train_data`, learns
``steps_per_epoch`` from the feeder, computes the run's length, and only then builds the
method with the :class:`TrainData`. Every built-in kind is built here; methods never build
data themselves:

  ``image``                image pretraining (unlabelled or labelled, views per the spec)
  ``image_labelled``       a classifier's labelled split, optionally ``labels_per_class``
  ``text_mlm``             packed masked-language rows (:mod:`jaxssl.data.text_source`)
  ``text_classification``  a tokenised labelled text task (:mod:`jaxssl.data.text_classification`)

``data.in_memory`` (True / False / None) picks the path for image sources: ``True`` holds the
split on the device and gathers batches there (:class:`~jaxssl.data.feeder.DeviceFeeder`);
``False`` reads every batch on the host through the source's reader
(:class:`~jaxssl.data.feeder.HostFeeder`), the path ImageNet takes; ``None`` picks ``True``
exactly when the source holds its images in memory. Either way the device then crops (if the
host did not) and augments, so both paths give the same batches.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np

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


#: the data kinds read from an image dataset (``data.name`` one of ``sources.KNOWN_DATASETS``)
IMAGE_KINDS = ("image", "image_labelled")


def validate_data(config, method_cls) -> None:
    """Check, before device work, that the builder of ``method_cls.data_kind`` knows
    ``config.data.name`` (image kinds); raises ``ValueError`` naming field, value and fix."""
    if method_cls.data_kind in IMAGE_KINDS and config.data.name not in sources.KNOWN_DATASETS:
        from jaxssl.config import fail
        fail("data.name", config.data.name, f"use one of {list(sources.KNOWN_DATASETS)}")


def build_train_data(config, mesh, method_cls) -> TrainData:
    """The :class:`TrainData` of ``config`` for a method of class ``method_cls``."""
    kind = method_cls.data_kind
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
    spec = method_cls.view_spec(config)
    crop_groups = None if spec is None else views_lib.host_crop_groups(spec)
    source = sources.load_image_source(config.data, method_cls.train_role,
                                       num_views=int(method_cls.num_views),
                                       crop_groups=crop_groups)
    keys = tuple(method_cls.batch_keys(config))
    if spec is not None and source.images is None:  # host crops: one entry per crop group
        keys += tuple(c.key for c in spec.crop_groups() if c.key not in keys)
    feeder = image_feeder(config.data, source, global_batch=int(config.train.batch_size),
                          seed=int(config.seed), mesh=mesh, keys=keys)
    channels = source.image_shape[-1] if source.image_shape else 3
    return TrainData(feeder=feeder, source=source, host_cropped=source.images is None,
                     channels=channels)


def few_label_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices ``[M]`` int64 of a labelled subset with ``min(per_class, count_c)`` per class.

    Class ``c``'s examples are chosen by a permutation keyed by ``(seed, c)``, so the choice of
    one class does not depend on which other classes are present.
    """
    if per_class <= 0:
        raise ValueError(f"few_labels_per_class={per_class} must be a positive number of labelled "
                         "examples per class (e.g. 10)")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"few_label_indices: labels shape {labels.shape} must be [N]")
    if labels.size and labels.min() < 0:
        raise ValueError(f"few_label_indices: labels must be non-negative class ids, got {labels.min()}")
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        perm = np.random.default_rng([int(seed), int(c)]).permutation(members.size)
        chosen.append(members[perm[:per_class]])
    if not chosen:
        return np.zeros((0,), np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def few_label_source(source: sources.ImageSource, per_class: int, seed: int) -> sources.ImageSource:
    """The ``per_class``-examples-per-class subset of an in-memory labelled ``source``
    (:func:`few_label_indices`, the subset the kNN / probe ``*_10`` numbers use)."""
    if source.images is None or source.labels is None:
        raise ValueError(
            f"config field classifier.labels_per_class={per_class} needs an in-memory labelled "
            f"split; data.name={source.name!r} is read on the host: use its tfds subset "
            "(e.g. data.name='imagenet2012_subset/1pct') with classifier.labels_per_class=0")
    idx = few_label_indices(np.asarray(source.labels), per_class, seed)
    return sources.ImageSource(
        name=source.name, split=f"{source.split}[{per_class}/class]", images=source.images[idx],
        labels=source.labels[idx], num_examples=int(idx.size), num_classes=source.num_classes,
        image_shape=source.image_shape, on_device=source.on_device)


def labelled_train_source(config, num_views: int = 1) -> sources.ImageSource:
    """The labelled training split of a classifier run (``classifier.labels_per_class`` per
    class when set; host-read sources randomly cropped per example)."""
    source = sources.load_image_source(config.data, "train", host_crop="random",
                                       num_views=int(num_views))
    if source.num_classes is None:
        raise ValueError(f"data.name={config.data.name!r} has no classes to train a classifier on")
    per_class = int(config.classifier.labels_per_class)
    if per_class:
        source = few_label_source(source, per_class, int(config.eval.few_labels_seed))
    return source


def _labelled_image_data(config, mesh, method_cls) -> TrainData:
    """The labelled training split (optionally a few-label subset) with labels in the batch."""
    source = labelled_train_source(config, num_views=int(method_cls.num_views))
    feeder = image_feeder(config.data, source, global_batch=int(config.train.batch_size),
                          seed=int(config.seed), mesh=mesh,
                          keys=tuple(method_cls.batch_keys(config)))
    channels = source.image_shape[-1] if source.image_shape else 3
    return TrainData(feeder=feeder, source=source, host_cropped=source.images is None,
                     channels=channels)


def _text_mlm_data(config, mesh, method_cls) -> TrainData:
    del method_cls
    from jaxssl.data import text_source
    data = text_source.load_text_data(config.data, seed=int(config.seed))
    feeder = DeviceFeeder(data.train, int(config.train.batch_size), int(config.seed), mesh)
    return TrainData(feeder=feeder, source=data)


def vocab_path(config) -> str:
    """The WordPiece vocabulary of a text-classification run: ``data.vocab_file``, else
    ``vocab.txt`` of the ``train.init_from`` run (its workdir, or a parent of the given
    checkpoint folder)."""
    if config.data.vocab_file:
        return str(config.data.vocab_file)
    from jaxssl.config import init_path
    path = init_path(config)
    if not path:
        raise ValueError("config field data.vocab_file='' is invalid without a pretraining "
                         "run in init_from: "
                         "pass the pretraining run (--config.init_from=WORKDIR) or its vocab.txt "
                         "(--config.data.vocab_file=WORKDIR/vocab.txt)")
    path = os.path.abspath(path)
    for folder in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        candidate = os.path.join(folder, "vocab.txt")
        if os.path.isfile(candidate):
            return candidate
    raise ValueError(f"config field train.init_from={config.train.init_from!r}: no vocab.txt "
                     "in that run (masked-language runs write WORKDIR/vocab.txt); pass "
                     "--config.data.vocab_file=PATH/vocab.txt")


@dataclasses.dataclass
class TextClassificationData:
    """The source of a ``text_classification`` feeder: the tokenised training split, the
    tokenizer and the path of its vocabulary."""
    train: Any        # jaxssl.data.text_classification.ClassificationSplit
    tokenizer: Any    # jaxssl.data.tokenizer.WordPieceTokenizer
    vocab_path: str


def text_classification_split(config, split: str, tokenizer=None):
    """One split (``'train'``, or the task's held-out split for ``'test'``) of the text task
    ``config.data`` names, tokenised with the run's vocabulary (:func:`vocab_path`)."""
    from jaxssl.data import text_classification as tc
    from jaxssl.data.tokenizer import WordPieceTokenizer
    if tokenizer is None:
        tokenizer = WordPieceTokenizer.from_vocab_file(vocab_path(config),
                                                       lowercase=bool(config.data.lowercase))
    name = tc.eval_split(config.data.name) if split == "test" else split
    return tc.load_classification_split(config.data, name, tokenizer)


def _text_classification_data(config, mesh, method_cls) -> TrainData:
    del method_cls
    from jaxssl.data.tokenizer import WordPieceTokenizer
    path = vocab_path(config)
    tokenizer = WordPieceTokenizer.from_vocab_file(path, lowercase=bool(config.data.lowercase))
    train = text_classification_split(config, "train", tokenizer)
    feeder = DeviceFeeder(train.arrays(), int(config.train.batch_size), int(config.seed), mesh)
    return TrainData(feeder=feeder, source=TextClassificationData(train, tokenizer, path))


register_data_kind("image", _image_data)
register_data_kind("image_labelled", _labelled_image_data)
register_data_kind("text_mlm", _text_mlm_data)
register_data_kind("text_classification", _text_classification_data)

__all__ = ["TrainData", "TextClassificationData", "build_train_data", "register_data_kind",
           "validate_data",
           "use_in_memory", "image_feeder", "few_label_indices", "few_label_source",
           "labelled_train_source", "text_classification_split", "vocab_path"]
