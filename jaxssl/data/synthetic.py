"""Synthetic images for benchmarks and smoke tests: random uint8 pixels, random labels.

``data.name='synthetic'``: ``NUM_EXAMPLES`` images of ``data.image_size`` squared, 3 channels,
10 classes, generated from a fixed seed per split (no download, nothing learnable).
"""
from __future__ import annotations

import numpy as np

from jaxssl.data.sources import ImageSource

NUM_EXAMPLES = {"train": 2048, "test": 512}


def load_from_config(data_cfg, split: str, *, role: str | None = None,
                     host_crop: str | None = None, **host_options) -> ImageSource:
    del role, host_crop, host_options
    if split not in NUM_EXAMPLES:
        raise ValueError(f"synthetic data has splits {sorted(NUM_EXAMPLES)}, not {split!r}")
    side = int(data_cfg.image_size)
    rng = np.random.default_rng(0 if split == "train" else 1)
    n = NUM_EXAMPLES[split]
    images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, (n,), dtype=np.int32)
    return ImageSource(name="synthetic", split=split, images=images, labels=labels, num_examples=n,
                       num_classes=10, image_shape=(side, side, 3), on_device=True)
