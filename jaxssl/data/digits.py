"""scikit-learn's handwritten digits: 1,797 real 8x8 grey images of 0-9, shipped with sklearn.

The quickstart dataset: no download, no TensorFlow, small enough for a laptop CPU.
``sklearn.datasets.load_digits`` gives pixel counts 0..16 (UCI "optdigits", each pixel the
number of set pixels in a 4x4 block of a 32x32 bitmap); they become uint8 ``round(v * 255/16)``
in ``[0, 255]``, shape ``[N, 8, 8, 1]``.

Fixed split (documented, the same on every machine): stratified, ``TEST_FRACTION = 0.3``,
seed ``SPLIT_SEED = 0``:

* ``n_test = ceil(0.3 * 1797) = 540`` (sklearn's ``train_test_split`` convention), spread over
  the classes by the largest-remainder rule on ``0.3 * n_class`` (ties: lower class first), so
  each class has ``floor`` or ``ceil`` of its 30% share; ``n_train = 1257``.
* within class ``c``, the test examples are the first ``n_test[c]`` of the class's indices
  ordered by ``argsort`` of raw ``PCG64(SeedSequence([SPLIT_SEED, c]))`` words (a bit stream
  NumPy keeps stable across versions; sklearn's shuffling internals are not relied on).

Splits: ``'train'`` (pretraining and probe training: the same images, SSL ignores the labels)
and ``'test'`` (held out). Both are returned in ascending index order.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from jaxssl.data.sources import ImageSource

NAME = "digits"
SPLITS = ("train", "test")
TEST_FRACTION = 0.3
SPLIT_SEED = 0
NUM_CLASSES = 10


@functools.lru_cache(maxsize=1)
def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits: images uint8 ``[1797, 8, 8, 1]`` in ``[0, 255]``, labels int32 ``[1797]``."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no network

    data = load_digits()
    images = np.rint(data.images.astype(np.float64) * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = data.target.astype(np.int32)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: ``(train_idx, test_idx)``, int64, sorted, disjoint.

    ``n_test = ceil(test_fraction * N)``, allocated to classes by largest remainder of
    ``test_fraction * n_class``; within a class the test set is a seeded uniform sample (see
    the module docstring).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction} must lie in (0, 1)")
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    quota = test_fraction * counts
    n_test_class = np.floor(quota).astype(np.int64)
    missing = math.ceil(test_fraction * len(labels)) - int(n_test_class.sum())
    by_remainder = np.argsort(-(quota - n_test_class), kind="stable")  # ties: lower class first
    n_test_class[by_remainder[:missing]] += 1

    test = []
    for c, k in zip(classes, n_test_class):
        members = np.flatnonzero(labels == c)
        words = np.random.PCG64(np.random.SeedSequence([seed, int(c)])).random_raw(members.size)
        test.append(members[np.argsort(words, kind="stable")[:k]])
    test_idx = np.sort(np.concatenate(test)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx).astype(np.int64)
    return train_idx, test_idx


def load_digits_source(split: str, field: str = "split") -> ImageSource:
    """The ``'train'`` (1,257) or ``'test'`` (540) digits split, held in memory (``on_device``)."""
    if split not in SPLITS:
        raise ValueError(f"{field}={split!r} is not a split of the digits dataset; use one of {list(SPLITS)}")
    images, labels = load_digits_arrays()
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    idx = train_idx if split == "train" else test_idx
    return ImageSource(
        name=NAME, split=split, images=images[idx], labels=labels[idx], num_examples=int(idx.size),
        num_classes=NUM_CLASSES, image_shape=tuple(images.shape[1:]), on_device=True)


def load_from_config(data_cfg, split: str, *, role: str | None = None, host_crop: str | None = None,
                     **host_options) -> ImageSource:
    """Registry entry for :func:`jaxssl.data.sources.load_image_source` (crop options unused)."""
    del data_cfg, host_crop, host_options  # held in memory and cropped on the device
    return load_digits_source(split, field=f"data.{role}_split" if role else "split")
