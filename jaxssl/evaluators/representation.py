"""Evaluate an image embedding with the papers' protocols on the config's labelled splits.

``evaluate_embedding(embed_fn, config, mesh)`` extracts frozen features of the labelled train
split and the held-out test split (every example exactly once, on any device count), then runs
the weighted kNN monitor and the linear probe, each with all labels and with
``eval.few_labels_per_class`` labels per class.
"""
from __future__ import annotations

import functools

import numpy as np

from jaxssl.data import sources
from jaxssl.evaluators import features, protocol


@functools.lru_cache(maxsize=8)
def _labelled(name: str, data_dir, split: str, data_cfg_items: tuple):
    import ml_collections
    cfg = ml_collections.ConfigDict(dict(data_cfg_items))
    src = sources.load_image_source(cfg, split)
    if src.images is None or src.labels is None:
        raise ValueError(
            f"data.name={name!r} split {split!r} is not held in memory with labels, so the in-training "
            "kNN/linear evaluation cannot run on it; set eval.enabled=False and evaluate the "
            "checkpoint with scripts/evaluate.py on a labelled, in-memory dataset")
    return src


def labelled_splits(data_cfg):
    items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in data_cfg.items()))
    train = _labelled(data_cfg.name, data_cfg.data_dir, "train", items)
    test = _labelled(data_cfg.name, data_cfg.data_dir, "test", items)
    return train, test


def evaluate_embedding(embed_fn, config, mesh) -> dict:
    """``{'knn_10', 'knn_all', 'linear_10', 'linear_all'}`` fractions for ``embed_fn``."""
    train, test = labelled_splits(config.data)
    bs = int(config.eval.batch_size)
    f_train = features.extract_features(embed_fn, train.images, bs, mesh)
    f_test = features.extract_features(embed_fn, test.images, bs, mesh)
    return protocol.evaluate_features(f_train, np.asarray(train.labels), f_test,
                                      np.asarray(test.labels), train.num_classes, config.eval)
