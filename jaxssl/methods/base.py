"""The contract between a method (SimCLR, MoCo, MLM, MAE) and the generic trainer.

A method owns its model, its loss and its extra state (EMA teacher, queue); the trainer
(``jaxssl.train``) owns the mesh, the optimizer, the loop, checkpoints and metrics. A new
method is one module here plus a registry line in ``jaxssl/methods/__init__.py``.
"""
from __future__ import annotations

import abc
from typing import Any, Callable

import jax


class Method(abc.ABC):
    """Subclasses implement the abstract methods; everything runs inside one ``jax.jit``."""

    #: unit of throughput in progress lines: 'img' (images) or 'tok' (tokens)
    unit: str = "img"

    def __init__(self, config, mesh):
        self.config = config
        self.mesh = mesh

    @classmethod
    def validate_config(cls, config) -> None:
        """Check this method's config fields (dataset, model, method section) before device
        work; raise ``ValueError`` via ``jaxssl.config.fail`` naming field, value and fix."""

    # ----- data -------------------------------------------------------------------------
    @abc.abstractmethod
    def make_feeder(self) -> Any:
        """A callable ``feeder(step) -> batch`` (global arrays) with ``.steps_per_epoch``."""

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

    # ----- evaluation -------------------------------------------------------------------
    @abc.abstractmethod
    def evaluate(self, state, workdir: str, final: bool) -> dict:
        """Evaluation results (a JSON-serialisable dict) of ``state``; written by the trainer."""

    def flops_per_step(self) -> float | None:
        """Model FLOPs of one training step (for MFU), or None when unknown."""
        return None


Registry = dict[str, Callable[..., Method]]
