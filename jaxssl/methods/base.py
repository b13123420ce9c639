"""The contract between a method (an objective) and the generic trainer.

A method owns its model, its loss and its extra state (EMA teacher, queue). The trainer
(:mod:`jaxssl.train`) owns everything around it: it builds the training data from
``config.data`` and what the method class declares (``data_kind``, ``train_role``,
``num_views``, :meth:`Method.view_spec`, :meth:`Method.batch_keys`; :mod:`jaxssl.data.pipeline`),
computes the run's length, then builds the method with that data and ``total_steps``; it owns
the mesh, the optimizer (which a method may extend: :meth:`Method.lr_scales`,
:meth:`Method.wrap_optimizer`), the loop, checkpoints (:meth:`Method.init_from`), metrics and
baselines (:meth:`Method.random_init_baseline`). Evaluators never see the method: the trainer
hands them its named jittable functions (:data:`EVAL_FUNCTIONS`: ``init``, ``features``,
``logits``, ``masked_logits``), as big_vision hands its evaluators a ``predict_fn``. Every hook
is declared here with its default, so the trainer calls them without probing. A new method is
one module here plus :func:`jaxssl.methods.register`.
"""
from __future__ import annotations

import abc
from typing import Any

import jax

#: the method functions the trainer hands to evaluators, by name (:mod:`jaxssl.evaluators.build`)
EVAL_FUNCTIONS = ("init", "features", "logits", "masked_logits")


class Method(abc.ABC):
    """Subclasses implement the abstract methods; ``loss`` runs inside one ``jax.jit``."""

    #: unit of throughput in progress lines: 'img' (images) or 'tok' (tokens)
    unit: str = "img"
    #: which training data the trainer builds (:func:`jaxssl.data.pipeline.build_train_data`)
    data_kind: str = "image"
    #: host-read image sources: random crops per example in each batch
    num_views: int = 2
    #: the batch entries the loss reads (:meth:`batch_keys` may depend on the config)
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

    # ----- what the trainer's data builder reads (before the method exists) --------------
    @classmethod
    def batch_keys(cls, config) -> tuple[str, ...]:
        """The batch entries the loss reads for ``config`` (default: :attr:`train_keys`)."""
        del config
        return tuple(cls.train_keys)

    @classmethod
    def view_spec(cls, config):
        """The :class:`jaxssl.augment.views.ViewSpec` of the training views, or None (a method
        without image views)."""
        del config
        return None

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

    # ----- the optimizer and loading: hooks of the trainer --------------------------------
    def lr_scales(self):
        """A tree like ``params`` of per-leaf learning-rate multipliers (layer-wise decay,
        bias lr), applied after the optimizer; None (the default) for none."""
        return None

    def wrap_optimizer(self, tx, schedule_inputs: dict):
        """The optimizer the run uses, given the one ``config.optim`` built (per-group
        optimizers, update freezes); ``schedule_inputs`` holds ``global_batch``,
        ``total_steps`` and ``steps_per_epoch``. The default returns ``tx``."""
        del schedule_inputs
        return tx

    def init_from(self, path: str, state, mesh) -> tuple[Any, list[str]]:
        """``(state, what was loaded)``: ``state`` with the weights of the checkpoint at
        ``path`` (``train.init_from``). The default loads every leaf of ``params`` and
        ``model_state`` whose path and shape match (:func:`jaxssl.checkpoint.init_from`)."""
        from jaxssl import checkpoint
        state, loaded, initialised = checkpoint.init_from(path, state, mesh)
        return state, [f"{len(loaded)} leaves ({', '.join(loaded)}); newly initialised "
                       f"{len(initialised)} leaves ({', '.join(initialised) or 'none'})"]

    def random_init_baseline(self) -> dict | None:
        """Config overrides (``{"section.field": value}``) of the same recipe trained from
        random initialisation, which the trainer runs after this run as a baseline; None (the
        default) for no such run."""
        return None

    # ----- the named functions the trainer hands to evaluators ---------------------------
    def features(self, params, model_state, inputs) -> jax.Array:
        """Frozen representation ``[B, D]`` of eval inputs (float images ``[B, S, S, C]`` in
        [0, 1], already eval-preprocessed, or a token batch); jittable, rows independent."""
        raise TypeError(f"method {type(self).__name__} has no frozen representation; "
                        "remove 'representation' and 'embedding_map' from config.eval.evaluators")

    def logits(self, params, model_state, inputs) -> jax.Array:
        """Eval-mode class logits ``[B, K]`` of eval inputs (as :meth:`features`); jittable."""
        raise TypeError(f"method {type(self).__name__} is not a classifier; "
                        "remove 'classification' from config.eval.evaluators")

    def masked_logits(self, params, inputs, segment_ids, attention_mask, positions) -> jax.Array:
        """Eval-mode masked-token logits ``[B, P, V]`` of token batches ``[B, T]`` at
        ``positions [B, P]``; jittable."""
        raise TypeError(f"method {type(self).__name__} is not a masked language model; "
                        "remove 'masked_lm' from config.eval.evaluators")

    def eval_functions(self) -> dict:
        """``{name: function}`` of :data:`EVAL_FUNCTIONS`: what evaluators receive."""
        return {name: getattr(self, name) for name in EVAL_FUNCTIONS}

    # ----- what the trainer reads ---------------------------------------------------------
    def chance_loss(self) -> float | None:
        """The loss of a model that has learnt nothing (collapse monitor), or None."""
        return None

    def flops_per_step(self) -> float | None:
        """Model FLOPs of one training step (for MFU), or None when unknown."""
        return None

    def save_artifacts(self, workdir: str) -> None:
        """Write files a later run needs next to the checkpoints (e.g. a vocabulary); called
        once on process 0 before training."""
