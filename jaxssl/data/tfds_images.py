"""tensorflow-datasets image sources: cifar10, cifar100, stl10 (in memory), imagenet2012 (host).

Nothing is downloaded at run time: a dataset must already be prepared in ``data_dir``
(``python scripts/prepare_data.py NAME --data_dir DIR``); otherwise loading raises
:class:`DatasetNotPreparedError`, which says how to prepare it and where it looked.

**TensorFlow is optional for reading.** A dataset prepared in ArrayRecord format (what
``scripts/prepare_data.py`` writes) is read through tfds' random-access data source
(``builder.as_data_source``), which needs tensorflow-datasets, array_record and Pillow but not
TensorFlow. Only a dataset prepared in TFRecord format (tfds' default) is read with
``builder.as_dataset``, i.e. TensorFlow (``pip install -e '.[data]'``), imported then with its
GPUs hidden. Without TensorFlow, such a dataset (or one that is not prepared yet, since
preparing needs TensorFlow) fails with a one-line
:class:`jaxssl.optional.MissingDependencyError`; :func:`check_readable` runs that check before
any device work.

**In memory** (``on_device=True``): cifar10 / cifar100 (32x32x3, splits 'train' / 'test'),
stl10 (96x96x3, splits 'train' (5k), 'test' (8k), 'unlabelled' (100k) and the expression
'train+unlabelled' used for pretraining). The split is read in batches into one
preallocated array (stl10 'train+unlabelled': 105k x 27,648 B = 2.9 GB on the host, and on
the device). stl10 splits containing 'unlabelled' have ``labels=None`` and ``get`` returns label -1 for every row (tfds stores -1 for the
unlabelled examples; the labels of the 'train' part are not mixed in, pretraining ignores them).

**Host path** (``on_device=False``): imagenet2012 (1.28M train / 50k validation JPEGs of
varying size). Examples are read by index through tfds' random-access API
(``builder.as_data_source``, an ArrayRecord data source, so the dataset must be prepared with
``file_format='array_record'``); the JPEG bytes are decoded with PIL and cropped and resized on
the host by :class:`HostCropReader` in a thread pool. Randomness per example comes from
``(seed, step, global batch row)`` only, never from a worker or device id, so the crops are a
pure function of the step like the data order.

Limits of the host path (kept simple and exact rather than fast): full-resolution decode of
every JPEG (no DCT-domain downscaling), threads rather than processes (PIL releases the GIL
while decoding and resizing, the Python glue does not), no prefetch across steps — the caller
overlaps ``get`` for step ``s + 1`` with the device step ``s`` if it wants to. Its throughput
has not been benchmarked; feeding ResNet-50 at accelerator speed needs a host with many cores
and such a prefetch.
"""
from __future__ import annotations

import concurrent.futures
import io
import math
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from jaxssl import optional
from jaxssl.data.sources import ImageSource
from jaxssl.rng import stream_id

# name -> split names the loader accepts (as bases of a tfds split expression).
SPLITS = {
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "stl10": ("train", "test", "unlabelled"),
    "imagenet2012": ("train", "validation"),
    # SimCLR's semi-supervised subsets: 'train' is 1% / 10% of ImageNet's labels (the
    # simclr repo's image lists), 'validation' the whole ImageNet validation set.
    "imagenet2012_subset/1pct": ("train", "validation"),
    "imagenet2012_subset/10pct": ("train", "validation"),
}
IN_MEMORY = ("cifar10", "cifar100", "stl10")
HOST_CROPPED = ("imagenet2012", "imagenet2012_subset/1pct", "imagenet2012_subset/10pct")
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
HOST_CROP_MODES = ("random", "center")
_HOST_CROP_STREAM = stream_id("host_crop")


class DatasetNotPreparedError(RuntimeError):
    """A tfds dataset is not prepared in the data_dir; the message says how to prepare it."""


# ----------------------------------------------------------------------------- tfds access

def _import_tfds(with_tensorflow: bool = False, needed_for: str = "reading tfds datasets"):
    """Import tensorflow_datasets; with ``with_tensorflow`` also TensorFlow, its GPUs hidden
    (TF only reads files here). A missing package raises a one-line MissingDependencyError."""
    if with_tensorflow:
        tf = optional.require("tensorflow", needed_for)
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # TF already initialised its devices (e.g. by the caller): leave it
            pass
    return optional.require("tensorflow_datasets", needed_for)


def _is_array_record(builder) -> bool:
    """Is the builder's prepared dataset in ArrayRecord format (readable without TensorFlow)?"""
    try:
        return str(getattr(builder.info.file_format, "value", "")) == "array_record"
    except Exception:  # no metadata
        return False


def _needs_tensorflow(name: str, split: str, builder, data_dir: str | None) -> None:
    """Raise a one-line MissingDependencyError when TensorFlow is needed here and missing."""
    if optional.is_available("tensorflow"):
        return
    root = _data_root(builder)
    if builder.is_prepared():
        why = (f"reading {name} (split {split!r}), prepared in TFRecord format in "
               f"{builder.data_dir}, (or preparing it again as ArrayRecord, which is read "
               f"without TensorFlow)")
    else:
        why = (f"{name} is not prepared in {root}; preparing it (python scripts/prepare_data.py "
               f"{name} --data_dir {root})")
    raise optional.MissingDependencyError("tensorflow", why, optional.install_command("tensorflow"))


def check_readable(name: str, split: str, data_dir: str | None) -> None:
    """Fail now, with one line, if reading ``split`` of ``name`` needs a package that is missing.

    Cheap (reads the dataset's metadata only); the command line calls it before device work.
    """
    tfds = _import_tfds(needed_for=f"reading {name}")
    from absl import logging
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # tfds warns that an unprepared folder has no metadata
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        if name in HOST_CROPPED or _is_array_record(builder):
            optional.require("PIL", f"decoding {name} images")
        else:
            _needs_tensorflow(name, split, builder, data_dir)
    finally:
        logging.set_verbosity(verbosity)


def _data_root(builder) -> str:
    """The data_dir root a builder reads (``<root>/<name>/[<config>/]<version>``)."""
    levels = 2 if builder.builder_config is not None else 1
    return str(Path(builder.data_dir).parents[levels])


def _not_prepared(name: str, split: str, builder, data_dir: str | None) -> DatasetNotPreparedError:
    root = _data_root(builder)
    where = (f"data_dir '{root}'" if data_dir is not None
             else f"the tfds default data_dir '{root}' (data.data_dir=None)")
    header = (f"Dataset {name!r} (split {split!r}) is not prepared in {where}; looked for "
              f"{builder.data_dir}. jaxssl never downloads at run time.")
    if name == "imagenet2012":
        manual = os.path.join(root, "downloads", "manual")
        return DatasetNotPreparedError(
            f"{header} ImageNet must be downloaded by hand (register at "
            f"https://image-net.org/download-images):\n"
            f"  1. put {IMAGENET_MANUAL_FILES[0]} and {IMAGENET_MANUAL_FILES[1]} in {manual}/\n"
            f"  2. python scripts/prepare_data.py imagenet2012 --data_dir {root}\n"
            f"     or: python -c \"import tensorflow_datasets as tfds; tfds.builder('imagenet2012', "
            f"data_dir='{root}', file_format='array_record').download_and_prepare()\"\n"
            f"The ArrayRecord format is required: jaxssl reads examples by index "
            f"(tfds data source). Then set data.data_dir='{root}'.")
    return DatasetNotPreparedError(
        f"{header} Prepare it once (needs network):\n"
        f"  python scripts/prepare_data.py {name} --data_dir {root}\n"
        f"  or: python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}', "
        f"data_dir='{root}', file_format='array_record').download_and_prepare()\"\n"
        f"then set data.data_dir='{root}'. (Preparing needs TensorFlow: "
        f"{optional.install_command('tensorflow')}; ArrayRecord files are then read without it.)")


def _wrong_format(name: str, builder) -> DatasetNotPreparedError:
    return DatasetNotPreparedError(
        f"Dataset {name!r} is prepared in {builder.data_dir} but not in a random-access file "
        f"format (it is {builder.info.file_format}); jaxssl reads it by index and needs "
        f"ArrayRecord. Convert it in place:\n"
        f"  tfds convert_format --dataset_version_dir={builder.data_dir} --out_file_format=array_record")


def check_split(name: str, split: str, field: str) -> list[str]:
    """Base split names of a tfds split expression ('train+unlabelled', 'train[:10%]', ...)."""
    parts = [re.sub(r"\[.*\]$", "", p.strip()) for p in split.split("+")]
    unknown = [p for p in parts if p not in SPLITS[name]]
    if unknown:
        raise ValueError(f"{field}={split!r} names no split of {name}: {unknown}; the splits are "
                         f"{list(SPLITS[name])} (tfds expressions such as 'train+unlabelled' or "
                         f"'train[:90%]' combine them)")
    return parts


# ----------------------------------------------------------------------------- in memory

_READ_BATCH = 4096


def _split_size(builder, split: str) -> int | None:
    """Examples in ``split`` from the prepared dataset's metadata (``None`` if unknown)."""
    try:
        return int(builder.info.splits[split].num_examples)
    except Exception:  # no metadata (e.g. under tfds.testing.mock_data)
        return None


def _read_all(batches, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``{"image", "label"}`` batches into uint8 images and int32 labels.

    With ``size`` known the arrays are preallocated and filled, so host memory peaks at about
    one copy of the split plus a batch. (tfds' ``batch_size=-1`` would also build the split
    as one TF tensor first, and crashes under ``tfds.testing.mock_data`` with TF 2.21.)
    """
    if size is None:
        chunks = [(np.asarray(b["image"], np.uint8), np.asarray(b["label"], np.int32)) for b in batches]
        return (np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks]))
    images = labels = None
    filled = 0
    for batch in batches:
        b_images, b_labels = batch["image"], batch["label"]
        if images is None:
            images = np.empty((size, *b_images.shape[1:]), np.uint8)
            labels = np.empty((size,), np.int32)
        images[filled:filled + len(b_images)] = b_images
        labels[filled:filled + len(b_labels)] = b_labels
        filled += len(b_images)
    if filled != size:
        raise RuntimeError(f"read {filled} examples but the dataset metadata says {size}")
    return images, labels


def _read_data_source(source, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """All examples of a tfds data source (decoded ``{"image", "label"}`` dicts), in index order,
    as uint8 images and int32 labels; read ``batch`` examples at a time."""
    n = len(source)

    def batches():
        for start in range(0, n, batch):
            idx = list(range(start, min(n, start + batch)))
            rows = source.__getitems__(idx) if hasattr(source, "__getitems__") else [source[i] for i in idx]
            yield {"image": np.stack([np.asarray(r["image"], np.uint8) for r in rows]),
                   "label": np.asarray([int(r["label"]) for r in rows], np.int32)}

    return _read_all(batches(), n)

def load_in_memory(name: str, split: str, data_dir: str | None, field: str = "split") -> ImageSource:
    """cifar10 / cifar100 / stl10 ``split`` as a uint8 ``[N, H, W, 3]`` array (``on_device=True``)."""
    if name not in IN_MEMORY:
        raise ValueError(f"data.name={name!r} is not held in memory; those are {list(IN_MEMORY)}")
    parts = check_split(name, split, field)
    tfds = _import_tfds(needed_for=f"reading {name}")
    builder = tfds.builder(name, data_dir=data_dir)
    if _is_array_record(builder):  # random access, no TensorFlow
        images, labels = _read_data_source(builder.as_data_source(split), _READ_BATCH)
    else:
        _needs_tensorflow(name, split, builder, data_dir)
        tfds = _import_tfds(with_tensorflow=True, needed_for=f"reading {name}")
        try:
            dataset = builder.as_dataset(split=split, batch_size=_READ_BATCH)
        except Exception as err:  # tfds raises AssertionError / FileNotFoundError when data is missing
            if not builder.is_prepared():
                raise _not_prepared(name, split, builder, data_dir) from err
            raise
        images, labels = _read_all(tfds.as_numpy(dataset), _split_size(builder, split))
    if "unlabelled" in parts:
        labels = None
    return ImageSource(
        name=name, split=split, images=images, labels=labels, num_examples=len(images),
        num_classes=int(builder.info.features["label"].num_classes),
        image_shape=tuple(images.shape[1:]), on_device=True)


# ----------------------------------------------------------------------------- host crops

def _uniform(bitgen: np.random.PCG64, low: float = 0.0, high: float = 1.0) -> float:
    """One double in ``[low, high)`` from the top 53 bits of a raw PCG64 word (version-stable)."""
    return low + (high - low) * ((int(bitgen.random_raw()) >> 11) * 2.0 ** -53)


def _randint(bitgen: np.random.PCG64, high: int) -> int:
    """An integer in ``[0, high)``."""
    return min(int(_uniform(bitgen) * high), high - 1)


def random_resized_crop_box(bitgen: np.random.PCG64, height: int, width: int,
                            scale: Sequence[float], ratio: Sequence[float],
                            max_attempts: int = 10) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random-resized crop, torchvision's ``RandomResizedCrop``.

    Up to ``max_attempts`` times: area ``A = H*W*U(scale)``, aspect ``r = exp(U(log ratio))``,
    ``w = round(sqrt(A r))``, ``h = round(sqrt(A / r))``; the first box that fits is placed
    uniformly. Otherwise the fallback is a centred crop of the whole image with its aspect
    ratio clamped to ``ratio``. (SimCLR's TF ``distorted_bounding_box_crop`` samples the same
    area/aspect ranges with 100 attempts and falls back to the whole image.)
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(max_attempts):
        target = area * _uniform(bitgen, scale[0], scale[1])
        aspect = math.exp(_uniform(bitgen, log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = _randint(bitgen, height - h + 1)
            left = _randint(bitgen, width - w + 1)
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    h, w = min(max(h, 1), height), min(max(w, 1), width)
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop_box(height: int, width: int, fraction: float) -> tuple[int, int, int, int]:
    """``(top, left, side, side)``: SimCLR's eval crop, a centred square of side
    ``round(fraction * min(H, W))`` with offset ``(H - side + 1) // 2`` (its ``center_crop``)."""
    side = max(1, int(round(fraction * min(height, width))))
    return (height - side + 1) // 2, (width - side + 1) // 2, side, side


# config ``data.resize_method`` (= ``augment.resize_method``) -> PIL resample filter name. PIL
# widens the filter when it downscales (antialiasing), as torchvision's RandomResizedCrop on
# PIL images does: bilinear is MoCo's ``RandomResizedCrop(224)``, bicubic MAE's / SimCLR's.
PIL_RESAMPLE = {"bicubic": "BICUBIC", "bilinear": "BILINEAR"}


def _pil_resample(resize_method: str):
    from PIL import Image

    if resize_method not in PIL_RESAMPLE:
        raise ValueError(f"config field data.resize_method={resize_method!r} (the same as "
                         f"augment.resize_method) is invalid: use one of {list(PIL_RESAMPLE)}")
    return getattr(Image.Resampling, PIL_RESAMPLE[resize_method])


def _crop_resize(image, box: tuple[int, int, int, int], size: int,
                 resize_method: str = "bicubic") -> np.ndarray:
    """Crop ``box`` of a PIL image and resize it to ``size x size`` with PIL's ``resize_method``
    filter ('bicubic' | 'bilinear'): uint8 ``[S, S, 3]``."""
    top, left, h, w = box
    out = image.resize((size, size), _pil_resample(resize_method),
                       box=(left, top, left + w, top + h))
    return np.asarray(out, np.uint8)


def _check_crop_group(group) -> tuple:
    count, size, scale, ratio, resize = group
    if int(count) <= 0 or int(size) <= 0:
        raise ValueError(f"host crop group {group!r}: count and size must be positive")
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"crop_scale={tuple(scale)} must satisfy 0 < lo <= hi <= 1")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"crop_ratio={tuple(ratio)} must satisfy 0 < lo <= hi")
    _pil_resample(resize)
    return (int(count), int(size), tuple(float(x) for x in scale),
            tuple(float(x) for x in ratio), str(resize))


class HostCropReader:
    """Reads examples by index, decodes the JPEG and crops it on the host.

    ``__call__(indices, seed=, step=, row_offset=)`` returns ``{"image": uint8 [b, V, S, S, 3],
    "label": int32 [b]}`` in ``'random'`` mode (``V = num_views`` random-resized crops,
    ``scale``/``ratio`` from the config, PIL ``resize_method`` resize to ``S = image_size``) and
    ``{"image": uint8 [b, S, S, 3], ...}`` in ``'center'`` mode (SimCLR eval: centre crop of
    ``eval_crop_fraction``, resize). The views of row ``i`` are drawn, in order, from
    ``PCG64(SeedSequence([seed, stream_id('host_crop'), step, row_offset + i]))``.
    Flips and colour augmentations are left to the device.

    ``crop_groups`` (multi-crop, :meth:`jaxssl.augment.views.ViewSpec.crop_groups`): a tuple of
    ``(count, size, crop_scale, crop_ratio, resize_method)``; group ``g`` is returned as
    ``crop_key(g)`` (``"image"``, ``"image_1"``, ...) ``uint8 [b, count, size, size, 3]``, all
    views of a row drawn in order from the same generator. It replaces ``num_views`` /
    ``image_size`` / ``crop_scale`` / ``crop_ratio`` / ``resize_method`` in ``'random'`` mode;
    one group equal to those fields gives exactly the crops without it.
    """

    def __init__(self, data_source, *, image_size: int, mode: str, num_views: int = 2,
                 crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), eval_crop_fraction: float = 0.875,
                 num_threads: int | None = None, resize_method: str = "bicubic",
                 crop_groups=None):
        _pil_resample(resize_method)  # fail early on an unknown name
        if mode not in HOST_CROP_MODES:
            raise ValueError(f"host_crop={mode!r}; use one of {list(HOST_CROP_MODES)}")
        if image_size <= 0:
            raise ValueError(f"data.image_size={image_size} must be positive")
        if num_views <= 0:
            raise ValueError(f"data.num_views={num_views} must be positive")
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"data.crop_scale={tuple(crop_scale)} must satisfy 0 < lo <= hi <= 1")
        if not 0 < crop_ratio[0] <= crop_ratio[1]:
            raise ValueError(f"data.crop_ratio={tuple(crop_ratio)} must satisfy 0 < lo <= hi")
        if not 0 < eval_crop_fraction <= 1:
            raise ValueError(f"data.eval_crop_fraction={eval_crop_fraction} must lie in (0, 1]")
        self.data_source = data_source
        self.image_size = int(image_size)
        self.mode = mode
        self.num_views = int(num_views)
        self.crop_scale = tuple(float(s) for s in crop_scale)
        self.crop_ratio = tuple(float(r) for r in crop_ratio)
        self.eval_crop_fraction = float(eval_crop_fraction)
        self.resize_method = str(resize_method)
        self.num_threads = num_threads or min(32, os.cpu_count() or 1)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        if crop_groups is None:
            crop_groups = ((self.num_views, self.image_size, self.crop_scale, self.crop_ratio,
                            self.resize_method),)
        self.crop_groups = tuple(_check_crop_group(g) for g in crop_groups)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one example's ``"image"`` (the first crop group in ``'random'`` mode)."""
        if self.mode == "random":
            count, size = self.crop_groups[0][:2]
            return (count, size, size, 3)
        s = self.image_size
        return (s, s, 3)

    @property
    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{batch key: one example's shape}`` of every entry ``__call__`` returns but labels."""
        if self.mode != "random":
            return {"image": self.output_shape}
        from jaxssl.augment.views import crop_key
        return {crop_key(i): (g[0], g[1], g[1], 3) for i, g in enumerate(self.crop_groups)}

    def __len__(self) -> int:
        return len(self.data_source)

    def _load_one(self, index: int, row: int, seed: int, step: int) -> tuple[np.ndarray, int]:
        from PIL import Image

        record = self.data_source[index]
        encoded = record["image"]
        encoded = encoded.item() if isinstance(encoded, np.ndarray) else encoded
        with Image.open(io.BytesIO(encoded)) as img:
            image = img.convert("RGB")  # also decodes; a few ImageNet files are grey or CMYK
        width, height = image.size
        if self.mode == "center":
            crops = _crop_resize(image, center_crop_box(height, width, self.eval_crop_fraction),
                                 self.image_size, self.resize_method)
        else:
            bitgen = np.random.PCG64(np.random.SeedSequence([seed, _HOST_CROP_STREAM, step, row]))
            crops = tuple(
                np.stack([_crop_resize(image, random_resized_crop_box(bitgen, height, width,
                                                                      scale, ratio), size, resize)
                          for _ in range(count)])
                for count, size, scale, ratio, resize in self.crop_groups)
        return crops, int(record["label"])

    def __call__(self, indices: np.ndarray, *, seed: int, step: int, row_offset: int = 0) -> dict:
        indices = [int(i) for i in np.asarray(indices).reshape(-1)]
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.num_threads, "jaxssl-host-crop")
        rows = range(row_offset, row_offset + len(indices))
        results = list(self._pool.map(self._load_one, indices, rows,
                                      [int(seed)] * len(indices), [int(step)] * len(indices)))
        labels = np.asarray([r[1] for r in results], np.int32)
        if self.mode != "random":
            images = (np.stack([r[0] for r in results]) if results
                      else np.zeros((0, *self.output_shape), np.uint8))
            return {"image": images, "label": labels}
        out = {"label": labels}
        for g, (key, shape) in enumerate(self.output_shapes.items()):
            out[key] = (np.stack([r[0][g] for r in results]) if results
                        else np.zeros((0, *shape), np.uint8))
        return out

    def close(self) -> None:
        """Stop the decoding threads (a later call starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def load_host_cropped(name: str, split: str, data_dir: str | None, *, image_size: int,
                      host_crop: str, num_views: int = 2, crop_scale=(0.08, 1.0),
                      crop_ratio=(3 / 4, 4 / 3), eval_crop_fraction: float = 0.875,
                      num_threads: int | None = None, field: str = "split",
                      resize_method: str = "bicubic", crop_groups=None) -> ImageSource:
    """imagenet2012 ``split`` read by index and cropped on the host (``on_device=False``).

    ``labels`` and ``images`` are ``None`` (nothing is held in memory); ``get`` returns the
    crops and the labels it reads.
    """
    if name not in HOST_CROPPED:
        raise ValueError(f"data.name={name!r} is not host-cropped; those are {list(HOST_CROPPED)}")
    check_split(name, split, field)
    tfds = _import_tfds(needed_for=f"reading {name}")
    optional.require("PIL", f"decoding {name} JPEGs")
    builder = tfds.builder(name, data_dir=data_dir)
    try:
        data_source = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
    except Exception as err:  # NotImplementedError (no random-access format), FileNotFoundError, ...
        if not builder.is_prepared():
            raise _not_prepared(name, split, builder, data_dir) from err
        if isinstance(err, NotImplementedError):
            raise _wrong_format(name, builder) from err
        raise
    reader = HostCropReader(data_source, image_size=image_size, mode=host_crop, num_views=num_views,
                            crop_scale=crop_scale, crop_ratio=crop_ratio,
                            eval_crop_fraction=eval_crop_fraction, num_threads=num_threads,
                            resize_method=resize_method, crop_groups=crop_groups)
    return ImageSource(
        name=name, split=split, images=None, labels=None, num_examples=len(data_source),
        num_classes=int(builder.info.features["label"].num_classes), image_shape=None,
        on_device=False, host_reader=reader, output_shape=reader.output_shape)


def load_from_config(data_cfg, split: str, *, role: str | None = None, host_crop: str = "center",
                     num_views: int = 2, eval_crop_fraction: float = 0.875,
                     crop_groups=None) -> ImageSource:
    """Registry entry for :func:`jaxssl.data.sources.load_image_source`."""
    field = f"data.{role}_split" if role else "split"
    name = data_cfg.name
    if name in IN_MEMORY:
        return load_in_memory(name, split, data_cfg.data_dir, field=field)
    return load_host_cropped(
        name, split, data_cfg.data_dir, image_size=data_cfg.image_size,
        host_crop=host_crop, num_views=num_views,
        crop_scale=data_cfg.crop_scale, crop_ratio=data_cfg.crop_ratio,
        eval_crop_fraction=eval_crop_fraction,
        num_threads=data_cfg.host_threads, field=field,
        resize_method=data_cfg.resize_method, crop_groups=crop_groups)
