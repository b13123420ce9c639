"""The hallway between trainer, methods and evaluators, and the config copies that keep links.

* Imports: evaluators import neither the trainer nor a method module; methods import neither
  an evaluator nor a data builder (the trainer builds every method's data); the trainer
  calls the method's hooks without probing them (they are declared on ``Method``).
* An evaluator needs nothing but the config and named functions: the classification
  evaluator scores a hand-written ``logits`` function on the digits test split.
* ``classifier_config`` copies keep the ``data.crop_*`` / ``resize_method`` references to
  ``augment.*``: a ``--config.augment.crop_scale`` or ``resize_method`` override reaches the
  host crop of a linear-evaluation and a fine-tuning run.
"""
from __future__ import annotations

import ast
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import sharding
from jaxssl.config import load_preset
from jaxssl.data import pipeline, tfds_images
from jaxssl.evaluators import build
from jaxssl.evaluators.classification import ClassificationEvaluator, metric_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_BUILDERS = ("pipeline", "feeder", "sources", "batching", "prefetch", "tfds_images",
                 "image_folder", "digits", "synthetic")


def _imports(folder: str):
    """``(file, line, module)`` of every import (top-level or in a function) under ``folder``."""
    for name in sorted(os.listdir(os.path.join(ROOT, folder))):
        if not name.endswith(".py"):
            continue
        path = os.path.join(folder, name)
        tree = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    yield path, node.lineno, f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, node.lineno, alias.name


def test_evaluators_import_neither_the_trainer_nor_a_method():
    bad = [(p, n, m) for p, n, m in _imports("jaxssl/evaluators")
           if m.startswith(("jaxssl.train.", "jaxssl.methods")) or m == "jaxssl.train"]
    assert not bad, bad


def test_methods_import_neither_evaluators_nor_data_builders():
    builders = tuple(f"jaxssl.data.{b}" for b in DATA_BUILDERS)
    bad = [(p, n, m) for p, n, m in _imports("jaxssl/methods")
           if m.startswith("jaxssl.evaluators") or m.startswith(builders)]
    assert not bad, bad


def test_the_trainer_and_the_data_builder_do_not_probe_the_method():
    for path in ("jaxssl/train.py", "jaxssl/data/pipeline.py"):
        source = open(os.path.join(ROOT, path), encoding="utf-8").read()
        assert "hasattr(" not in source and "getattr(method" not in source, path


def test_classification_evaluator_scores_a_plain_logits_function():
    """Always predicting class 3 scores the test split's share of class 3."""
    config = load_preset("simclr_digits_finetune")
    mesh = sharding.make_mesh(devices=jax.devices()[:1])

    def logits(params, model_state, images):
        del params, model_state
        assert images.ndim == 4 and images.dtype == jnp.float32   # eval-preprocessed images
        return jnp.broadcast_to(jax.nn.one_hot(3, 10), (images.shape[0], 10))

    evaluator, = build.build_evaluators(config, mesh, {"logits": logits})
    assert isinstance(evaluator, ClassificationEvaluator)
    state = type("State", (), {"params": {}, "model_state": {}})()
    results = evaluator(state, "", final=False)
    labels = evaluator.held_out.labels()
    assert results == {"random_init": {metric_name(config): float(np.mean(labels == 3))}}
    assert metric_name(config) == "finetune_10"


@pytest.mark.parametrize("preset", ["mocov3_imagenet_linear", "mocov3_imagenet_finetune"])
def test_augment_overrides_reach_the_host_crop_of_classifier_runs(preset, monkeypatch):
    config = load_preset(preset)
    # what --config.augment.crop_scale=... and --config.augment.resize_method=... do
    config.augment.crop_scale = (0.35, 0.9)
    config.augment.resize_method = "nearest"
    seen = {}

    def fake_load_host_cropped(name, split, data_dir, **options):
        seen.update(options, name=name, split=split)
        raise StopIteration  # stop before any file is read

    monkeypatch.setattr(tfds_images, "load_host_cropped", fake_load_host_cropped)
    with pytest.raises(StopIteration):
        pipeline.labelled_train_source(config)
    assert seen["host_crop"] == "random" and seen["name"] == "imagenet2012"
    assert tuple(seen["crop_scale"]) == (0.35, 0.9)
    assert seen["resize_method"] == "nearest"


def test_mocov3_finetune_resizes_as_it_declares():
    config = load_preset("mocov3_imagenet_finetune")
    assert config.augment.resize_method == config.data.resize_method == "bicubic"
