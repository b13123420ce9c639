"""Abstract training data: what the trainer's data builders return, with shapes and no data.

:func:`abstract_train_data` stands in for :func:`jaxssl.data.pipeline.build_train_data`
(``train.Setup(..., build_data=abstract_train_data)``): the method gets a
:class:`~jaxssl.data.pipeline.TrainData` whose source says what the real one would (split size,
classes, image shape, host-cropped or held on the device; for text the vocabulary size) and
whose feeder holds the global batch as ``jax.ShapeDtypeStruct``s sharded like the real feeder's
(:attr:`AbstractFeeder.batch`). Nothing is read, downloaded or allocated, so a preset for
ImageNet or Wikipedia plans on a machine without the data.

Split sizes are the datasets' published sizes (tfds); a corpus's size is unknown without
reading it, so text presets must give ``train.num_steps`` (BERT's do).
"""
from __future__ import annotations

import numpy as np

from jaxssl import sharding as sharding_lib
from jaxssl.data import batching, pipeline, sources

# name -> (image shape (None: host-decoded JPEGs of varying size), classes, {split: examples})
IMAGE_DATASETS = {
    "digits": ((8, 8, 1), 10, {"train": 1257, "test": 540}),
    "cifar10": ((32, 32, 3), 10, {"train": 50_000, "test": 10_000}),
    "cifar100": ((32, 32, 3), 100, {"train": 50_000, "test": 10_000}),
    "stl10": ((96, 96, 3), 10, {"train": 5_000, "test": 8_000, "unlabelled": 100_000}),
    "imagenet2012": (None, 1000, {"train": 1_281_167, "validation": 50_000}),
    "imagenet2012_subset/1pct": (None, 1000, {"train": 12_811, "validation": 50_000}),
    "imagenet2012_subset/10pct": (None, 1000, {"train": 128_116, "validation": 50_000}),
    "synthetic": ("config", 10, {"train": 2048, "test": 512}),
}
# GLUE task -> (classes, train examples) (tfds glue); the pydoc chapters task (jaxssl's own)
TEXT_CLASSIFICATION = {
    "glue/sst2": (2, 67_349), "glue/cola": (2, 8_551), "glue/mrpc": (2, 3_668),
    "glue/qqp": (2, 363_846), "glue/mnli": (3, 392_702), "glue/qnli": (2, 104_743),
    "glue/rte": (2, 2_490), "glue/wnli": (2, 635), "pydoc_chapters": (6, 930),
}


class AbstractFeeder:
    """A feeder with the real one's ``steps_per_epoch`` / ``num_examples`` and its global
    batch as abstract arrays (``batch``); calling it is an error (there is no data)."""

    reads_on_host = False

    def __init__(self, example_shapes: dict, num_examples: int, global_batch: int, mesh):
        self.num_examples = int(num_examples)
        self.global_batch = int(global_batch)
        self.steps_per_epoch = batching.steps_per_epoch(self.num_examples, self.global_batch)
        sharding = sharding_lib.batch_sharding(mesh)
        import jax
        self.batch = {k: jax.ShapeDtypeStruct((self.global_batch, *shape), dtype, sharding=sharding)
                      for k, (shape, dtype) in example_shapes.items()}

    def __call__(self, step: int):
        raise RuntimeError("a plan's feeder holds the batch's shapes, not data")


class _NoRecords:
    """``len()`` of a split whose records are never read (a HostCropReader's data source)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):
        raise RuntimeError("a plan reads no images")


def _split_size(name: str, split: str, table: dict) -> int:
    total = 0
    for part in split.split("+"):
        base = part.split("[")[0]
        if base not in table:
            raise ValueError(f"data.name={name!r} split {split!r}: the plan knows the splits "
                             f"{sorted(table)} of this dataset")
        total += table[base]
    return total


def abstract_image_source(data_cfg, split: str, *, host_crop: str | None = None,
                          num_views: int = 2, crop_groups=None) -> sources.ImageSource:
    """The :class:`~jaxssl.data.sources.ImageSource` ``load_image_source`` would return, with
    no image read: host-cropped splits get a real ``HostCropReader`` (its output shapes) over
    records it never reads, in-memory splits a zero-stride array of the split's shape."""
    name = data_cfg.name
    if name not in IMAGE_DATASETS:
        raise ValueError(f"config field data.name={name!r} cannot be planned: the plan knows "
                         f"the sizes of {sorted(IMAGE_DATASETS)}")
    shape, classes, splits = IMAGE_DATASETS[name]
    dataset_split, role = sources.resolve_split(data_cfg, split)
    if host_crop is None:
        host_crop = "random" if role == "pretrain" else "center"
    n = _split_size(name, dataset_split, splits)
    if shape is None:
        from jaxssl.data.tfds_images import HostCropReader
        extra = {} if crop_groups is None else {"crop_groups": tuple(crop_groups)}
        reader = HostCropReader(_NoRecords(n), image_size=int(data_cfg.image_size), mode=host_crop,
                                num_views=num_views, crop_scale=tuple(data_cfg.crop_scale),
                                crop_ratio=tuple(data_cfg.crop_ratio), num_threads=1,
                                resize_method=data_cfg.resize_method, **extra)
        return sources.ImageSource(name=name, split=dataset_split, images=None, labels=None,
                                   num_examples=n, num_classes=classes, image_shape=None,
                                   on_device=False, host_reader=reader,
                                   output_shape=reader.output_shape)
    if shape == "config":
        shape = (int(data_cfg.image_size),) * 2 + (3,)
    images = np.broadcast_to(np.zeros((), np.uint8), (n, *shape))
    labels = (None if "unlabelled" in dataset_split
              else np.broadcast_to(np.zeros((), np.int32), (n,)))
    return sources.ImageSource(name=name, split=dataset_split, images=images, labels=labels,
                               num_examples=n, num_classes=classes, image_shape=tuple(shape),
                               on_device=True)


def _image_batch(source: sources.ImageSource, keys) -> dict:
    """``{key: (per-example shape, dtype)}`` of the batch a feeder over ``source`` returns."""
    if source.images is None:
        shapes = source.host_reader.output_shapes
    else:
        shapes = {"image": tuple(source.image_shape)}
    out = {}
    for k in keys:
        if k == "label":
            out[k] = ((), np.int32)
        elif k in shapes:
            out[k] = (tuple(shapes[k]), np.uint8)
        else:
            raise ValueError(f"the plan does not know the batch entry {k!r} of "
                             f"data.name={source.name!r}")
    return out


def _image_data(config, mesh, method_cls) -> pipeline.TrainData:
    """As ``jaxssl.data.pipeline``'s image builder (pretraining methods)."""
    from jaxssl.augment import views as views_lib
    role = getattr(method_cls, "train_role", "pretrain")
    spec = method_cls.view_spec(config) if hasattr(method_cls, "view_spec") else None
    crop_groups = None if spec is None else views_lib.host_crop_groups(spec)
    source = abstract_image_source(config.data, role,
                                   num_views=int(getattr(method_cls, "num_views", 2)),
                                   crop_groups=crop_groups)
    keys = (tuple(method_cls.batch_keys(config)) if hasattr(method_cls, "batch_keys")
            else tuple(getattr(method_cls, "train_keys", ("image",))))
    if spec is not None and source.images is None:
        keys += tuple(c.key for c in spec.crop_groups() if c.key not in keys)
    return _image_train_data(config, mesh, source, keys)


def _image_train_data(config, mesh, source, keys) -> pipeline.TrainData:
    feeder = AbstractFeeder(_image_batch(source, keys), source.num_examples,
                            int(config.train.batch_size), mesh)
    channels = source.image_shape[-1] if source.image_shape else 3
    return pipeline.TrainData(feeder=feeder, source=source, host_cropped=source.images is None,
                              channels=channels)


def _labelled_image_data(config, mesh, method_cls) -> pipeline.TrainData:
    """As the classifier's builder: the labelled split (or its few-label subset)."""
    source = abstract_image_source(config.data, "train", host_crop="random",
                                   num_views=int(method_cls.num_views))
    per_class = int(config.classifier.labels_per_class)
    if per_class:
        if source.images is None:
            raise ValueError(
                f"config field classifier.labels_per_class={per_class} needs an in-memory "
                f"labelled split; data.name={source.name!r} is read on the host")
        n = per_class * int(source.num_classes)
        source = sources.ImageSource(
            name=source.name, split=f"{source.split}[{per_class}/class]",
            images=source.images[:n], labels=source.labels[:n], num_examples=n,
            num_classes=source.num_classes, image_shape=source.image_shape, on_device=True)
    return _image_train_data(config, mesh, source, ("image", "label"))


class _Tokenizer:
    """What a BERT method reads of its tokenizer: the vocabulary size and [MASK]'s id."""

    def __init__(self, vocab_size: int):
        from jaxssl.data.tokenizer import MASK, SPECIAL_TOKENS
        self.vocab_size = int(vocab_size)
        self.mask_id = SPECIAL_TOKENS.index(MASK)


BERT_VOCAB_SIZE = 30522  # BERT's uncased WordPiece vocabulary (bert_base_mlm's data.vocab_size)


def _vocab_size(data_cfg) -> int:
    """Lines of ``data.vocab_file``, else ``data.vocab_size``, else BERT's 30,522 (a
    fine-tuning preset reads its vocabulary from the pretraining run, absent here)."""
    path = str(data_cfg.get("vocab_file", "") or "")
    if path:
        with open(path, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    return int(data_cfg.get("vocab_size", BERT_VOCAB_SIZE))


def _text_rows(seq_len: int, fields: dict) -> dict:
    return {k: ((seq_len,), dtype) for k, dtype in fields.items()}


def _text_mlm_data(config, mesh, method_cls) -> pipeline.TrainData:
    """Packed ``[T]`` rows (ids, segments, mask, special, word starts) of the MLM feeder."""
    del method_cls
    if float(config.train.num_epochs) > 0:
        raise ValueError(f"config field train.num_epochs={config.train.num_epochs} cannot be "
                         "planned for a text corpus (its size is known only once read); give "
                         "--config.train.num_steps instead")
    from jaxssl.data.text_source import TextData
    seq_len = int(config.data.seq_len)
    rows = _text_rows(seq_len, dict(ids=np.int32, segment_ids=np.int32, attention_mask=np.int32,
                                    special=np.bool_, word_start=np.bool_))
    batch = int(config.train.batch_size)
    feeder = AbstractFeeder(rows, batch, batch, mesh)  # one step per "epoch": length is in steps
    source = TextData(train={}, test={}, tokenizer=_Tokenizer(_vocab_size(config.data)),
                      vocab_path="", most_frequent_id=0)
    return pipeline.TrainData(feeder=feeder, source=source)


class _ClassificationSplit:
    def __init__(self, num_classes: int, num_examples: int):
        self.num_classes = num_classes
        self.num_examples = num_examples


def _text_classification_data(config, mesh, method_cls) -> pipeline.TrainData:
    """Fixed-length ``[T]`` rows and labels of a GLUE (or pydoc chapters) task."""
    del method_cls
    from jaxssl.methods.text_classifier import TextClassificationData
    name = config.data.name
    if name not in TEXT_CLASSIFICATION:
        raise ValueError(f"config field data.name={name!r} cannot be planned: the plan knows "
                         f"{sorted(TEXT_CLASSIFICATION)}")
    classes, n = TEXT_CLASSIFICATION[name]
    seq_len = int(config.data.seq_len)
    rows = _text_rows(seq_len, dict(ids=np.int32, segment_ids=np.int32, attention_mask=np.int32))
    rows["label"] = ((), np.int32)
    feeder = AbstractFeeder(rows, n, int(config.train.batch_size), mesh)
    vocab = _vocab_size(config.data)
    source = TextClassificationData(_ClassificationSplit(classes, n), _Tokenizer(vocab), "")
    return pipeline.TrainData(feeder=feeder, source=source)


_BUILDERS = {"image": _image_data, "image_labelled": _labelled_image_data,
             "text_mlm": _text_mlm_data, "text_classification": _text_classification_data}


def abstract_train_data(config, mesh, method_cls) -> pipeline.TrainData:
    """``build_train_data``'s :class:`TrainData`, abstract (module docstring)."""
    kind = getattr(method_cls, "data_kind", "image")
    if kind not in _BUILDERS:
        raise ValueError(f"method {config.method!r} (data_kind={kind!r}) cannot be planned: the "
                         f"plan builds abstract data for {sorted(_BUILDERS)}")
    return _BUILDERS[kind](config, mesh, method_cls)


__all__ = ["AbstractFeeder", "abstract_train_data", "abstract_image_source", "IMAGE_DATASETS"]
