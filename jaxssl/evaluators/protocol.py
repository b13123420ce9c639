"""The evaluation protocol on frozen features: kNN and linear probe, all labels and few labels.

:func:`evaluate_features` returns the four numbers the results table reports for one
representation::

    knn_<n>     weighted kNN (Wu et al. 2018) with n labelled examples per class
    knn_all     weighted kNN with every training label
    linear_<n>  linear probe trained on the same n-per-class subset
    linear_all  linear probe trained on every training label

``n`` is ``cfg.few_labels_per_class`` (default 10 -> ``knn_10``, ``linear_10``). The few-label
variants use one subset (:func:`few_label_indices`) for both classifiers; kNN's k is capped at
the subset size.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from jaxssl.data.pipeline import few_label_indices  # noqa: F401  (the subset, one home)
from jaxssl.evaluators import knn as knn_lib
from jaxssl.evaluators import linear_probe as linear_lib


def _linear_overrides(cfg) -> dict:
    """Probe options from ``cfg``; 0 / -1 mean 'the preset's value'. Epochs, batch size and LR
    apply to the SGD presets only (L-BFGS is full batch, run to convergence)."""
    proto = linear_lib.resolve_protocol(cfg.linear_protocol)
    overrides = {}
    if proto.optimizer == "sgd":
        if cfg.linear_epochs > 0:
            overrides["epochs"] = int(cfg.linear_epochs)
        if cfg.linear_batch_size > 0:
            overrides["batch_size"] = int(cfg.linear_batch_size)
        if cfg.linear_lr > 0:
            overrides["learning_rate"] = float(cfg.linear_lr)
    if cfg.linear_weight_decay >= 0:
        overrides["weight_decay"] = float(cfg.linear_weight_decay)
    return overrides


def evaluate_features(train_feats: np.ndarray, train_labels: np.ndarray, test_feats: np.ndarray,
                      test_labels: np.ndarray, num_classes: int, cfg, seed: int = 0) -> dict:
    """``{'knn_<n>', 'knn_all', 'linear_<n>', 'linear_all'}`` -> python floats in [0, 1].

    Args:
      train_feats, test_feats: ``[N, D]`` frozen features.
      train_labels, test_labels: ``[N]`` integer labels in ``[0, num_classes)``.
      cfg: an ``ml_collections.ConfigDict`` (``config.eval``) with knn_k, knn_temperature,
        few_labels_per_class, few_labels_seed, linear_protocol, linear_epochs,
        linear_batch_size, linear_lr (0 = preset), linear_weight_decay (-1 = preset).
      seed: seeds the linear probe's shuffling / init.
    """
    train_feats = np.asarray(train_feats, np.float32)
    train_labels = np.asarray(train_labels)
    per_class = int(cfg.few_labels_per_class)
    subset = few_label_indices(train_labels, per_class, int(cfg.few_labels_seed))
    overrides = _linear_overrides(cfg)

    def knn(feats, labels):
        return knn_lib.knn_accuracy(feats, labels, test_feats, test_labels, num_classes,
                                    k=min(int(cfg.knn_k), len(labels)),
                                    temperature=float(cfg.knn_temperature))

    def linear(feats, labels):
        return linear_lib.linear_probe_accuracy(feats, labels, test_feats, test_labels,
                                                num_classes, protocol=cfg.linear_protocol,
                                                seed=seed, **overrides)

    few_x, few_y = train_feats[subset], train_labels[subset]
    return {
        f"knn_{per_class}": knn(few_x, few_y),
        "knn_all": knn(train_feats, train_labels),
        f"linear_{per_class}": linear(few_x, few_y),
        "linear_all": linear(train_feats, train_labels),
    }


def describe(cfg) -> dict:
    """``{metric prefix: protocol}`` of :func:`evaluate_features` under ``cfg`` (``config.eval``):
    what the numbers of the representation evaluator are, written beside them
    (``eval_protocol.json``) and printed under their table. The linear probe here is jaxssl's
    monitor on frozen features of the un-augmented evaluation view, not a paper's linear
    evaluation (which trains on augmented crops; the ``configs/*_linear.py`` presets run those)."""
    proto = linear_lib.resolve_protocol(cfg.linear_protocol)
    n = int(cfg.few_labels_per_class)
    return {
        "knn": f"weighted kNN (Wu et al. 2018), k={int(cfg.knn_k)}, temperature "
               f"{float(cfg.knn_temperature)}, on L2-normalised frozen features",
        "linear": f"jaxssl's linear probe '{cfg.linear_protocol}' ({proto.optimizer}) on frozen "
                  "features of the un-augmented evaluation view: a monitor, not a paper's linear "
                  "evaluation (configs/*_linear.py run those)",
        "few_labels": f"knn_{n} / linear_{n}: {n} labelled examples per class "
                      f"(seed {int(cfg.few_labels_seed)}); *_all: every training label",
    }


def format_results_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """A fixed-width text table: one row per representation, one column per metric (in %).

    Columns are the metrics in first-seen order across rows (``knn_10 knn_all linear_10
    linear_all`` for :func:`evaluate_features` output); a metric a row lacks prints as ``-``.
    """
    columns: list[str] = []
    for row in results.values():
        columns += [key for key in row if key not in columns]
    name_width = max([len("representation")] + [len(name) for name in results])
    col_width = max([len("100.00")] + [len(c) for c in columns])
    header = "representation".ljust(name_width) + "".join(f"  {c:>{col_width}}" for c in columns)
    lines = ["top-1 accuracy (%)", header, "-" * len(header)]
    for name, row in results.items():
        cells = "".join(f"  {100.0 * row[c]:>{col_width}.2f}" if c in row else f"  {'-':>{col_width}}"
                        for c in columns)
        lines.append(name.ljust(name_width) + cells)
    return "\n".join(lines)
