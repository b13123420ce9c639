"""A user's own folder of images as an in-memory data source (``data.name='image_folder'``).

Two steps, so that training never decodes image files and never needs the network:

1. **Prepare once** (``python scripts/prepare_data.py image_folder --src DIR --data_dir OUT
   [--image_size S]``, i.e. :func:`prepare_image_folder`): every image under ``DIR`` is
   decoded with PIL, converted to RGB, resized so that its *shorter* side is ``S`` (PIL
   bicubic) and centre-cropped to ``S x S`` (torchvision's ``Resize(S)`` + ``CenterCrop(S)``;
   the offset of the crop is ``(L - S) // 2``). The result is written to ``OUT``:

   * ``OUT/images.npy``  uint8 ``[N, S, S, 3]``
   * ``OUT/labels.npy``  int32 ``[N]`` (``-1`` everywhere for an unlabelled folder)
   * ``OUT/image_folder.json``  metadata: classes, files (relative paths, in index order),
     image size, the split fraction and seed, and the train / test indices.

   Large folders (``--storage=sharded``, chosen by ``'auto'`` when the decoded arrays would
   exceed :data:`IN_MEMORY_LIMIT_BYTES`) are written instead as ArrayRecord shards of the
   *encoded* files (``OUT/images-00000.array_record``, ... of :data:`SHARD_SIZE` files each)
   that the streamed host path reads by index, decodes and crops like ImageNet: memory stays
   bounded by one image while preparing and training. Each finished shard is recorded
   (``OUT/shard-00000.json``), so an interrupted preparation resumes at the first unfinished
   shard. An unreadable file (truncated, not an image) is skipped with a warning naming it and
   counted at the end; ``strict=True`` (``--strict``) refuses it instead.

2. **Train** with ``--config.data.name=image_folder --config.data.data_dir=OUT``. The arrays
   are held in memory and on the device like CIFAR (``on_device=True``); views are cropped
   and augmented on the device from the stored ``S x S`` images (``data.image_size`` is the
   view size and may differ from ``S``).

Folder layouts (torchvision ``ImageFolder`` conventions):

* **labelled**: one sub-folder per class, ``DIR/<class>/**/<image>``; classes are the
  sub-folder names sorted as strings, label ``i`` = the ``i``-th class.
* **unlabelled**: images directly in ``DIR`` (no sub-folders), or any layout with
  ``unlabelled=True`` (``--unlabelled``), which collects every image under ``DIR``
  recursively. Only the ``'train'`` split exists (SSL pretraining; evaluate elsewhere).

Image files are those whose suffix is in :data:`IMAGE_EXTENSIONS` (case-insensitive); others
are ignored. Examples are ordered by (class, relative path), so indices are the same on every
machine.

Fixed split of a labelled folder (documented, stored in the metadata): stratified,
``test_fraction`` (default :data:`TEST_FRACTION` = 0.2) of each class to ``'test'``, seed
:data:`SPLIT_SEED` = 0, by :func:`jaxssl.data.digits.stratified_split` (``ceil(f * N)`` test
examples spread over the classes by the largest-remainder rule, a seeded uniform choice within
each class). Splits: ``'train'`` (pretraining and probe training) and ``'test'`` (held out).
"""
from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import numpy as np

from jaxssl.data.digits import stratified_split
from jaxssl.data.sources import UNLABELLED, ImageSource

NAME = "image_folder"
SPLITS = ("train", "test")
TEST_FRACTION = 0.2
SPLIT_SEED = 0
DEFAULT_IMAGE_SIZE = 64
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
METADATA_FILE = "image_folder.json"
IMAGES_FILE = "images.npy"
LABELS_FILE = "labels.npy"
FORMAT_VERSION = 1
STORAGES = ("auto", "arrays", "sharded")
IN_MEMORY_LIMIT_BYTES = 2 << 30  # 'auto': decoded arrays up to 2 GiB in memory, else shards
SHARD_SIZE = 1024                # files per ArrayRecord shard


class ImageFolderNotPreparedError(RuntimeError):
    """``data.data_dir`` holds no prepared image folder; the message says how to prepare it."""


# ----------------------------------------------------------------------------- preparation

def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(src: str, unlabelled: bool = False) -> tuple[list[str], np.ndarray, list[str]]:
    """The images of folder ``src``: ``(relative paths, labels int32 [N], class names)``.

    Labelled layout (sub-folders, no images at the top level): classes are the sorted
    sub-folder names, each one's images found recursively. Unlabelled (images at the top level
    and no sub-folders, or ``unlabelled=True``): every image, labels ``-1``, no classes.
    Raises ``ValueError`` for a folder without images or a mix of top-level images and class
    sub-folders (naming the fix).
    """
    root = Path(src)
    if not root.is_dir():
        raise ValueError(f"--src={src!r} is not a directory; give the folder of images to prepare")
    if unlabelled:
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if _is_image(p))
        labels = np.full(len(files), UNLABELLED, np.int32)
        classes: list[str] = []
    else:
        top_images = sorted(p.name for p in root.iterdir() if _is_image(p))
        class_dirs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if top_images and class_dirs:
            raise ValueError(
                f"--src={src!r} has both images at its top level ({top_images[0]!r}, ...) and "
                f"sub-folders ({class_dirs[0]!r}, ...); put every image in a class sub-folder "
                "(labelled), or pass --unlabelled to use all images without labels")
        if top_images:
            files, classes = top_images, []
            labels = np.full(len(files), UNLABELLED, np.int32)
        else:
            files, label_list, classes = [], [], []
            for name in class_dirs:
                members = sorted(p.relative_to(root).as_posix()
                                 for p in (root / name).rglob("*") if _is_image(p))
                if not members:
                    continue  # an empty sub-folder is not a class
                label_list += [len(classes)] * len(members)
                classes.append(name)
                files += members
            labels = np.asarray(label_list, np.int32)
    if not files:
        raise ValueError(f"--src={src!r} contains no images with a suffix in {list(IMAGE_EXTENSIONS)}")
    return files, labels, classes


def load_resized(path: str, size: int) -> np.ndarray:
    """One image file as uint8 ``[size, size, 3]``: upright (EXIF orientation applied, as
    photos from phones need), RGB, shorter side resized to ``size`` (PIL bicubic), centre
    crop ``size x size`` with offset ``(L - size) // 2``."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        image = ImageOps.exif_transpose(img).convert("RGB")
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), np.uint8)


class UnreadableImageError(ValueError):
    """An image file PIL cannot decode (``--strict``)."""


def check_readable(path: str) -> str | None:
    """None if PIL decodes the whole file ``path``, else the reason (one line)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
    except Exception as e:  # noqa: BLE001 -- PIL raises OSError, SyntaxError, ValueError, ...
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip(": ")
    return None


def _skip(src: str, name: str, reason: str, strict: bool, log) -> None:
    if strict:
        raise UnreadableImageError(f"{os.path.join(src, name)} cannot be decoded ({reason}); "
                                   "remove or replace it, or prepare without --strict to skip "
                                   "unreadable files")
    log(f"warning: skipping {os.path.join(src, name)}: cannot be decoded ({reason})")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def prepare_image_folder(src: str, out_dir: str, *, image_size: int = DEFAULT_IMAGE_SIZE,
                         unlabelled: bool = False, test_fraction: float = TEST_FRACTION,
                         seed: int = SPLIT_SEED, storage: str = "auto",
                         shard_size: int = SHARD_SIZE, strict: bool = False,
                         log=_stderr) -> dict:
    """Convert the image folder ``src`` into what this source reads; returns the metadata.

    ``storage='arrays'``: ``out_dir/images.npy`` (uint8 ``[N, S, S, 3]``, decoded, resized,
    centre-cropped) and ``labels.npy``; ``'sharded'``: ArrayRecord shards of the encoded files
    (see the module docstring); ``'auto'``: arrays when ``N * S * S * 3`` bytes fit
    :data:`IN_MEMORY_LIMIT_BYTES`. Both write ``out_dir/image_folder.json``. A labelled folder
    is split into train / test by :func:`jaxssl.data.digits.stratified_split` over the readable
    images; each class needs at least 2 of them. Unreadable files are skipped (``log`` names
    each; the count is in the metadata) or, with ``strict``, raise
    :class:`UnreadableImageError`.
    """
    if image_size <= 0:
        raise ValueError(f"--image_size={image_size} must be a positive number of pixels")
    if storage not in STORAGES:
        raise ValueError(f"--storage={storage!r} is not one of {list(STORAGES)}")
    if shard_size <= 0:
        raise ValueError(f"--shard_size={shard_size} must be a positive number of files")
    files, labels, classes = list_images(src, unlabelled)
    if storage == "auto":
        storage = ("arrays" if len(files) * image_size * image_size * 3 <= IN_MEMORY_LIMIT_BYTES
                   else "sharded")
    os.makedirs(out_dir, exist_ok=True)
    if storage == "arrays":
        images, keep, skipped = [], [], []
        for i, name in enumerate(files):
            reason = check_readable(os.path.join(src, name))
            if reason is not None:
                _skip(src, name, reason, strict, log)
                skipped.append(name)
                continue
            images.append(load_resized(os.path.join(src, name), image_size))
            keep.append(i)
        if not images:
            raise ValueError(f"--src={src!r}: none of its {len(files)} images can be decoded")
        extra = {}
    else:
        keep, skipped, extra = _write_shards(src, out_dir, files, labels, shard_size, strict, log)
    files = [files[i] for i in keep]
    labels = labels[np.asarray(keep, np.int64)]
    if classes:
        counts = np.bincount(labels, minlength=len(classes))
        if counts.min() < 2:
            small = [classes[i] for i in np.flatnonzero(counts < 2)]
            raise ValueError(f"classes {small} of --src={src!r} have fewer than 2 readable "
                             "images; a labelled folder needs >= 2 per class for the train/test "
                             "split (or pass --unlabelled)")
        train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    else:
        train_idx, test_idx = np.arange(len(files), dtype=np.int64), np.zeros(0, np.int64)
    metadata = {
        "format_version": FORMAT_VERSION,
        "storage": storage,
        "source_dir": os.path.abspath(src),
        "image_size": int(image_size),
        "num_examples": len(files),
        "labelled": bool(classes),
        "classes": classes,
        "files": files,
        "skipped": skipped,
        "test_fraction": float(test_fraction) if classes else 0.0,
        "split_seed": int(seed),
        "splits": {"train": train_idx.tolist(), "test": test_idx.tolist()} if classes
                  else {"train": train_idx.tolist()},
        **extra,
    }
    if storage == "arrays":
        np.save(os.path.join(out_dir, IMAGES_FILE), np.stack(images))
        np.save(os.path.join(out_dir, LABELS_FILE), labels)
    with open(os.path.join(out_dir, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=1)
    if skipped:
        log(f"image_folder: skipped {len(skipped)} unreadable file(s) of {len(files) + len(skipped)}")
    return metadata


def _shard_name(k: int) -> str:
    return f"images-{k:05d}.array_record"


def _encode_record(label: int, data: bytes) -> bytes:
    return struct.pack("<i", int(label)) + data


def _decode_record(record: bytes) -> dict:
    return {"label": struct.unpack("<i", record[:4])[0], "image": record[4:]}


def _write_shards(src, out_dir, files, labels, shard_size, strict, log):
    """Write the encoded files as ArrayRecord shards (resuming finished ones); returns
    ``(kept file indices, skipped names, metadata fields)``."""
    from array_record.python import array_record_module

    num_shards = -(-len(files) // shard_size)
    keep, skipped, shards = [], [], []
    for k in range(num_shards):
        done_file = os.path.join(out_dir, f"shard-{k:05d}.json")
        lo, hi = k * shard_size, min(len(files), (k + 1) * shard_size)
        if os.path.isfile(done_file):
            with open(done_file) as f:
                done = json.load(f)
            if done.get("files") == files[lo:hi]:
                keep += [lo + j for j in done["kept"]]
                skipped += done["skipped"]
                shards.append({"file": _shard_name(k), "count": len(done["kept"])})
                continue
        tmp = os.path.join(out_dir, _shard_name(k) + ".tmp")
        writer = array_record_module.ArrayRecordWriter(tmp, "group_size:1,max_parallelism:1")
        kept, bad = [], []
        try:
            for j, name in enumerate(files[lo:hi]):
                path = os.path.join(src, name)
                reason = check_readable(path)
                if reason is not None:
                    _skip(src, name, reason, strict, log)
                    bad.append(name)
                    continue
                with open(path, "rb") as f:
                    writer.write(_encode_record(labels[lo + j], f.read()))
                kept.append(j)
        finally:
            writer.close()
        os.replace(tmp, os.path.join(out_dir, _shard_name(k)))
        with open(done_file, "w") as f:
            json.dump({"files": files[lo:hi], "kept": kept, "skipped": bad}, f)
        keep += [lo + j for j in kept]
        skipped += bad
        shards.append({"file": _shard_name(k), "count": len(kept)})
        log(f"image_folder: shard {k + 1}/{num_shards} written ({hi}/{len(files)} files, "
            f"{len(skipped)} skipped)")
    if not keep:
        raise ValueError(f"--src={src!r}: none of its {len(files)} images can be decoded")
    return keep, skipped, {"shards": shards}


class ShardedImages:
    """Random access to the encoded images of a sharded image folder: ``[i] -> {"image":
    bytes, "label": int}`` over the examples ``indices`` (a split), in that order."""

    def __init__(self, data_dir: str, shards: list[dict], indices: np.ndarray):
        self.data_dir = data_dir
        self.paths = [os.path.join(data_dir, s["file"]) for s in shards]
        self.offsets = np.cumsum([0] + [int(s["count"]) for s in shards])
        self.indices = np.asarray(indices, np.int64)
        self._readers: dict[int, object] = {}

    def __len__(self) -> int:
        return int(self.indices.size)

    def _reader(self, k: int):
        if k not in self._readers:
            from array_record.python import array_record_module
            self._readers[k] = array_record_module.ArrayRecordReader(
                self.paths[k], "readahead_buffer_size:0")
        return self._readers[k]

    def __getitem__(self, i: int) -> dict:
        example = int(self.indices[int(i)])
        k = int(np.searchsorted(self.offsets, example, side="right") - 1)
        record = self._reader(k).read([example - int(self.offsets[k])])[0]
        return _decode_record(record)


# ----------------------------------------------------------------------------- loading

def read_metadata(data_dir: str | None) -> dict:
    """The metadata of the image folder prepared in ``data_dir`` (``data.data_dir``)."""
    if data_dir is None:
        raise ImageFolderNotPreparedError(
            "data.data_dir=None: data.name='image_folder' reads the folder prepared by\n"
            "  python scripts/prepare_data.py image_folder --src YOUR_IMAGES --data_dir OUT\n"
            "set --config.data.data_dir=OUT")
    path = os.path.join(data_dir, METADATA_FILE)
    if not os.path.exists(path):
        raise ImageFolderNotPreparedError(
            f"data.data_dir={data_dir!r} holds no prepared image folder (no {METADATA_FILE}). "
            f"Prepare it once:\n  python scripts/prepare_data.py image_folder --src YOUR_IMAGES "
            f"--data_dir {data_dir}")
    with open(path) as f:
        metadata = json.load(f)
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ImageFolderNotPreparedError(
            f"{path} has format_version={metadata.get('format_version')!r}, this jaxssl reads "
            f"{FORMAT_VERSION}; prepare the folder again with scripts/prepare_data.py image_folder")
    return metadata


def load_image_folder(data_dir: str | None, split: str, field: str = "split",
                      host_options: dict | None = None) -> ImageSource:
    """Split ``'train'`` or ``'test'`` of the prepared folder, in memory (``on_device=True``).

    ``labels`` is ``None`` for an unlabelled folder (``get`` returns -1); an unlabelled folder
    has no ``'test'`` split.
    """
    if split not in SPLITS:
        raise ValueError(f"{field}={split!r} is not a split of an image_folder; use one of {list(SPLITS)}")
    metadata = read_metadata(data_dir)
    if split not in metadata["splits"]:
        raise ValueError(
            f"{field}={split!r}: the image folder in data.data_dir={data_dir!r} is unlabelled "
            "and has only the 'train' split; set eval.enabled=False (kNN / linear evaluation "
            "needs labels) or prepare a folder with one sub-folder per class")
    idx = np.asarray(metadata["splits"][split], np.int64)
    if metadata.get("storage", "arrays") == "sharded":
        return _load_sharded(data_dir, metadata, split, idx, host_options or {})
    images = np.load(os.path.join(data_dir, IMAGES_FILE), mmap_mode="r")
    labels = np.load(os.path.join(data_dir, LABELS_FILE))
    if len(images) != metadata["num_examples"] or len(labels) != metadata["num_examples"]:
        raise ImageFolderNotPreparedError(
            f"{data_dir}: {len(images)} images / {len(labels)} labels but the metadata says "
            f"{metadata['num_examples']}; prepare the folder again")
    split_images = np.ascontiguousarray(images[idx])
    return ImageSource(
        name=NAME, split=split, images=split_images,
        labels=labels[idx].astype(np.int32) if metadata["labelled"] else None,
        num_examples=int(idx.size),
        num_classes=len(metadata["classes"]) if metadata["labelled"] else None,
        image_shape=tuple(split_images.shape[1:]), on_device=True)


def _load_sharded(data_dir: str, metadata: dict, split: str, idx: np.ndarray,
                  options: dict) -> ImageSource:
    """A split of a sharded folder, read by index and cropped on the host (``on_device=False``),
    as :func:`jaxssl.data.tfds_images.load_host_cropped` reads ImageNet."""
    from jaxssl.data.tfds_images import HostCropReader

    data_cfg = options["data_cfg"]
    reader = HostCropReader(
        ShardedImages(data_dir, metadata["shards"], idx), image_size=int(data_cfg.image_size),
        mode=options.get("host_crop") or "center", num_views=options.get("num_views", 2),
        crop_scale=data_cfg.crop_scale, crop_ratio=data_cfg.crop_ratio,
        eval_crop_fraction=options.get("eval_crop_fraction", 0.875),
        num_threads=data_cfg.host_threads, resize_method=data_cfg.resize_method,
        crop_groups=options.get("crop_groups"))
    return ImageSource(
        name=NAME, split=split, images=None, labels=None, num_examples=int(idx.size),
        num_classes=len(metadata["classes"]) if metadata["labelled"] else None,
        image_shape=None, on_device=False, host_reader=reader, output_shape=reader.output_shape)


def load_from_config(data_cfg, split: str, *, role: str | None = None,
                     host_crop: str | None = None, **host_options) -> ImageSource:
    """Registry entry for :func:`jaxssl.data.sources.load_image_source`. Crop options apply to
    sharded folders (host-cropped); array folders are held in memory and cropped on device."""
    return load_image_folder(data_cfg.data_dir, split,
                             field=f"data.{role}_split" if role else "split",
                             host_options=dict(host_options, host_crop=host_crop,
                                               data_cfg=data_cfg))


__all__ = ["prepare_image_folder", "load_image_folder", "list_images", "load_resized",
           "check_readable", "ShardedImages", "UnreadableImageError", "STORAGES",
           "IN_MEMORY_LIMIT_BYTES", "SHARD_SIZE",
           "read_metadata", "ImageFolderNotPreparedError", "IMAGE_EXTENSIONS", "TEST_FRACTION",
           "SPLIT_SEED"]
