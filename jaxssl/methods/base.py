"""The contract between a method (an objective) and the generic trainer.

A method owns its model, its loss and its extra state (EMA teacher, queue). The trainer
(:mod:`jaxssl.train`) owns everything around it: it builds the training data from
``config.data`` and what the method class declares (``data_kind``, ``num_views``,
``train_keys``; :mod:`jaxssl.data.pipeline`), computes the run's length, then builds the
method with that data and ``total_steps``; it owns the mesh, the optimizer, the loop,
checkpoints and metrics, and builds the evaluators that ``config.eval`` lists around the
method's :meth:`Method.features` (:mod:`jaxssl.evaluators.build`). A new method is one module
here plus :func:`jaxssl.methods.register`.
"""
from __future__ import annotations

import abc
from typing import Any

import jax


class Method(abc.ABC):
    """Subclasses implement the abstract methods; ``loss`` runs inside one ``jax.jit``."""

    #: unit of throughput in progress lines: 'img' (images) or 'tok' (tokens)
    unit: str = "img"
    #: which training data the trainer builds (:func:`jaxssl.data.pipeline.build_train_data`)
    data_kind: str = "image"
    #: host-read image sources: random crops per example in each batch
    num_views: int = 2
    #: the batch entries the loss reads
    train_keys: tuple[str, ...] = ("image",)
    #: the dataset role of the training data: 'pretrain' (unlabelled) or 'train' (labelled)
    train_role: str = "pretrain"
    #: evaluators run when ``config.eval.evaluators`` is empty (:mod:`jaxssl.evaluators.build`)
    default_evaluators: tuple[str, ...] = ()

    def __init__(self, config, mesh, data, total_steps: int):
        """``data``: the :class:`jaxssl.data.pipeline.TrainData` the trainer built;
        ``total_steps``: the run's length in optimizer steps."""
        self.config = config
        self.mesh = mesh
        self.data = data
        self.total_steps = int(total_steps)

    @classmethod
    def validate_config(cls, config) -> None:
        """Check this method's config fields (dataset, model, method section) before device
        work; raise ``ValueError`` via ``jaxssl.config.fail`` naming field, value and fix."""

    @abc.abstractmethod
    def items_per_step(self) -> int:
        """Images (or tokens) consumed per optimizer step, for throughput lines."""

    # ----- model ------------------------------------------------------------------------
    @abc.abstractmethod
    def init(self, rng: jax.Array) -> tuple[Any, Any]:
        """``(params, model_state)``: trainable params, and non-trainable state (BN stats...)."""

    @abc.abstractmethod
    def loss(self, params, model_state, batch, step) -> tuple[jax.Array, tuple[Any, dict]]:
        """``loss, (new_model_state, metrics)`` for one global batch at ``step`` (traced int32)."""

    def after_update(self, state):
        """Hook after the optimizer update (EMA teacher, queue); the default does nothing."""
        return state

    # ----- what evaluators and the trainer read -----------------------------------------
    def features(self, params, model_state, inputs) -> jax.Array:
        """Frozen representation ``[B, D]`` of eval inputs (float images ``[B, S, S, C]`` in
        [0, 1], already eval-preprocessed, or a token batch); jittable, rows independent."""
        raise TypeError(f"method {type(self).__name__} has no frozen representation; "
                        "remove 'representation' from config.eval.evaluators")

    def chance_loss(self) -> float | None:
        """The loss of a model that has learnt nothing (collapse monitor), or None."""
        return None

    def flops_per_step(self) -> float | None:
        """Model FLOPs of one training step (for MFU), or None when unknown."""
        return None

    def save_artifacts(self, workdir: str) -> None:
        """Write files a later run needs next to the checkpoints (e.g. a vocabulary); called
        once on process 0 before training."""
