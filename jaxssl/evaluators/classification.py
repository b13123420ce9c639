"""Top-1 accuracy of a classifier run (linear evaluation, fine-tuning, text classification).

``config.eval.evaluators`` entry ``'classification'``. The held-out split is read in order
in fixed-shape batches through the method's sharded reader; padding rows are masked out, so
each example counts exactly once on any device and process count. The method provides
``test_reader() -> (reader, num_examples)``, a jittable ``batch_logits(params, model_state,
batch) -> [B, K]``, ``train_labels()`` and ``metric_name`` (``linear_all``, ``finetune_10``,
``accuracy``...). Results::

    {"pretrained" | "random_init": {metric_name: accuracy},     # this run (init_from or not)
     "random_init": {metric_name: accuracy},                    # classifier.baselines
     "majority_class": {metric_name: accuracy}}                 # classifier.baselines

The ``random_init`` baseline trains the same recipe from random initialisation in
``WORKDIR/baselines/random_init`` (a run of its own: resumable, with its own checkpoints).
"""
from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl import sharding as sharding_lib
from jaxssl.data import batching


def accuracy(method, params, model_state, batch_size: int, mesh) -> tuple[int, int]:
    """``(correct, counted)`` of ``method`` on its held-out split, every example once."""
    reader, num_examples = method.test_reader()
    num_shards = math.lcm(int(mesh.devices.size), jax.process_count())

    @jax.jit
    def correct_in(params, model_state, batch, valid):
        logits = method.batch_logits(params, model_state, batch)
        hit = (jnp.argmax(logits, axis=-1) == batch["label"]) & valid
        return jnp.sum(hit.astype(jnp.int32)), jnp.sum(valid.astype(jnp.int32))

    correct = counted = 0
    for indices, valid in batching.eval_batches(num_examples, batch_size, num_shards):
        batch = reader.read(indices)
        rows = sharding_lib.process_batch_slice(len(indices), mesh)
        valid_g = sharding_lib.global_batch_from_local(valid[rows], mesh)
        c, n = jax.device_get(correct_in(params, model_state, batch, valid_g))
        correct, counted = correct + int(c), counted + int(n)
    if counted != num_examples:
        raise RuntimeError(f"classification evaluator counted {counted} of {num_examples} "
                           "held-out examples")
    return correct, counted


class ClassificationEvaluator:
    name = "classification"

    def __init__(self, config, mesh, method):
        self.config = config
        self.mesh = mesh
        self.method = method

    def __call__(self, state, workdir: str, final: bool) -> dict:
        c, metric = self.config, self.method.metric_name
        correct, counted = accuracy(self.method, state.params, state.model_state,
                                    int(c.eval.batch_size), self.mesh)
        from jaxssl.config import init_path
        group = "pretrained" if init_path(c) else "random_init"
        results = {group: {metric: correct / counted}}
        baselines = tuple(c.classifier.baselines) if "classifier" in c else ()
        if final and "majority_class" in baselines:
            results["majority_class"] = {metric: self.majority_accuracy()}
        if final and "random_init" in baselines and init_path(c):
            results["random_init"] = self.random_init_baseline(workdir)
        return results

    def majority_accuracy(self) -> float:
        """Accuracy of always predicting the commonest *training* label."""
        train = np.asarray(self.method.train_labels())
        majority = np.bincount(train[train >= 0]).argmax()
        test = np.asarray(self.method.test_labels())
        return float(np.mean(test == majority))

    def random_init_baseline(self, workdir: str) -> dict:
        """The same recipe trained from random initialisation (its own run and workdir)."""
        from jaxssl import config as config_lib, train
        config = ml_collections.ConfigDict(self.config.to_dict())
        config.train.init_from = config_lib.RANDOM_INIT
        config.classifier.baselines = ()
        config.train.eval_every_steps = 0
        overrides = self.method.baseline_overrides() if hasattr(self.method, "baseline_overrides") \
            else {}
        for key, value in overrides.items():  # e.g. a text run keeps its vocabulary
            section, field = key.split(".")
            config[section][field] = value
        base_dir = os.path.join(workdir, "baselines", "random_init")
        print(f"baseline: the same recipe from random initialisation in {base_dir}", flush=True)
        return train.run(config, base_dir, allow_config_change=True)["random_init"]
