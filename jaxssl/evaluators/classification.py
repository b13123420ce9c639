"""Top-1 accuracy of a classifier run (linear evaluation, fine-tuning, text classification).

``config.eval.evaluators`` entry ``'classification'``, around the run's named function
``logits(params, model_state, inputs) -> [B, K]`` (:mod:`jaxssl.evaluators.build`). The
evaluator builds the held-out split from ``config.data``: an image dataset's labelled test
split (centre crops, :class:`jaxssl.evaluators.representation.LabelledSplit`), or a text
task's held-out split tokenised with the run's vocabulary
(:func:`jaxssl.data.pipeline.text_classification_split`). It is read in order in fixed-shape
batches; padding rows are masked out, so each example counts exactly once on any device and
process count. Results (the metric is ``linear_all``, ``finetune_10``... for images,
``accuracy`` for text)::

    {"pretrained" | "random_init": {metric: accuracy},     # this run (init_from or not)
     "majority_class": {metric: accuracy}}                 # classifier.baselines

The ``random_init`` baseline of ``classifier.baselines`` (the same recipe trained from
random initialisation) is a run of its own, which the trainer starts after this one
(:meth:`jaxssl.methods.base.Method.random_init_baseline`).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl import sharding as sharding_lib
from jaxssl.data import batching, pipeline
from jaxssl.data import text_classification as tc
from jaxssl.data.feeder import DeviceReader

TEXT_INPUTS = ("ids", "segment_ids", "attention_mask")


def is_text_task(data_cfg) -> bool:
    """Does ``data_cfg`` name a text classification task (rather than an image dataset)?"""
    name = data_cfg.name
    return isinstance(name, str) and (name == tc.PYDOC_TASK or name.startswith(tc.GLUE_PREFIX))


def metric_name(config) -> str:
    """``accuracy`` (text), else ``linear_all`` / ``finetune_10``...: what the run measures."""
    if is_text_task(config.data):
        return "accuracy"
    n = int(config.classifier.labels_per_class)
    mode = "linear" if config.method == "linear_eval" else "finetune"
    return f"{mode}_{n if n else 'all'}"


class HeldOut:
    """The held-out split of ``config.data``: a reader of ``{inputs..., label}`` batches, its
    size, its labels, and ``inputs(batch)``, what ``logits`` receives of a batch."""

    def __init__(self, config, mesh):
        self.config = config
        if is_text_task(config.data):
            self.split = pipeline.text_classification_split(config, "test")
            self.reader = DeviceReader(self.split.arrays(), mesh)
            self.num_examples = int(self.split.num_examples)
            self.text = True
        else:
            from jaxssl.evaluators.representation import LabelledSplit
            self.split = LabelledSplit(config, mesh, "test")
            self.reader = self.split.reader
            self.num_examples = self.split.num_examples
            self.text = False

    def inputs(self, batch):
        if self.text:
            return {k: batch[k] for k in TEXT_INPUTS}
        from jaxssl.evaluators.representation import eval_preprocess
        c = self.config
        return eval_preprocess(batch["image"], image_size=int(c.data.image_size),
                               crop_fraction=float(c.eval_crop_fraction),
                               host_cropped=self.split.host_cropped)

    def labels(self) -> np.ndarray:
        if self.text:
            return np.asarray(self.split.label)
        source = self.split.source
        if source.labels is not None:
            return np.asarray(source.labels)
        labels = [np.asarray(source.get(idx, seed=0, step=0)["label"])
                  for idx, _ in batching.eval_batches(self.num_examples, 1024, 1)]
        return np.concatenate(labels)[:self.num_examples]


def train_labels(config) -> np.ndarray:
    """The labels of the run's training split (the few-label subset when one is set)."""
    if is_text_task(config.data):
        return np.asarray(pipeline.text_classification_split(config, "train").label)
    source = pipeline.labelled_train_source(config)
    if source.labels is None:
        raise ValueError("the majority_class baseline needs in-memory training labels; "
                         "remove it from classifier.baselines for host-read data")
    return np.asarray(source.labels)


def accuracy(logits_fn, held_out: HeldOut, params, model_state, batch_size: int,
             mesh) -> tuple[int, int]:
    """``(correct, counted)`` of ``logits_fn`` on ``held_out``, every example once."""
    num_shards = math.lcm(int(mesh.devices.size), jax.process_count())

    @jax.jit
    def correct_in(params, model_state, batch, valid):
        logits = logits_fn(params, model_state, held_out.inputs(batch))
        hit = (jnp.argmax(logits, axis=-1) == batch["label"]) & valid
        return jnp.sum(hit.astype(jnp.int32)), jnp.sum(valid.astype(jnp.int32))

    correct = counted = 0
    for indices, valid in batching.eval_batches(held_out.num_examples, batch_size, num_shards):
        batch = held_out.reader.read(indices)
        rows = sharding_lib.process_batch_slice(len(indices), mesh)
        valid_g = sharding_lib.global_batch_from_local(valid[rows], mesh)
        c, n = jax.device_get(correct_in(params, model_state, batch, valid_g))
        correct, counted = correct + int(c), counted + int(n)
    if counted != held_out.num_examples:
        raise RuntimeError(f"classification evaluator counted {counted} of "
                           f"{held_out.num_examples} held-out examples")
    return correct, counted


class ClassificationEvaluator:
    name = "classification"

    def __init__(self, config, mesh, *, logits, **unused_functions):
        del unused_functions
        self.config = config
        self.mesh = mesh
        self.logits = logits

    @functools.cached_property
    def held_out(self) -> HeldOut:
        return HeldOut(self.config, self.mesh)

    def __call__(self, state, workdir: str, final: bool) -> dict:
        del workdir
        c, metric = self.config, metric_name(self.config)
        correct, counted = accuracy(self.logits, self.held_out, state.params, state.model_state,
                                    int(c.eval.batch_size), self.mesh)
        from jaxssl.config import init_path
        group = "pretrained" if init_path(c) else "random_init"
        results = {group: {metric: correct / counted}}
        baselines = tuple(c.classifier.baselines) if "classifier" in c else ()
        if final and "majority_class" in baselines:
            results["majority_class"] = {metric: self.majority_accuracy()}
        return results

    def majority_accuracy(self) -> float:
        """Accuracy of always predicting the commonest *training* label."""
        train = train_labels(self.config)
        majority = np.bincount(train[train >= 0]).argmax()
        return float(np.mean(self.held_out.labels() == majority))
