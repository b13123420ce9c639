"""An online linear probe: a classifier on stop-gradient backbone features, trained with the
method (solo-learn's ``online classifier``), where the pretraining split has labels.

Enabled per method section (``<section>.online_probe = True``; BYOL, SimSiam, Barlow Twins,
VICReg, DINO). Its parameters live under ``params['online_probe']`` and are updated by the
run's optimizer; its cross-entropy is added to the objective, but the features pass through
``stop_gradient``, so the representation never sees a label. Rows labelled -1 (unlabelled
splits) are masked. Logged as ``online_probe_loss`` and ``online_probe_acc`` (the training
batch's top-1, on the first view): a label-aware monitor, not a reported number.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def init(num_classes: int, feature_dim: int) -> dict:
    """Zero-initialised linear layer ``{kernel [D, C], bias [C]}``."""
    return {"kernel": jnp.zeros((feature_dim, num_classes), jnp.float32),
            "bias": jnp.zeros((num_classes,), jnp.float32)}


def loss_and_accuracy(params: dict, features: jax.Array, labels: jax.Array):
    """``(mean CE, top-1)`` over labelled rows of ``features [B, D]`` (no gradient into them)."""
    x = jax.lax.stop_gradient(features.astype(jnp.float32))
    logits = x @ params["kernel"] + params["bias"][None, :]
    valid = (labels >= 0).astype(jnp.float32)
    safe = jnp.where(labels >= 0, labels, 0)
    logp = jax.nn.log_softmax(logits, axis=-1)
    ce = -jnp.take_along_axis(logp, safe[:, None], axis=-1)[:, 0]
    n = jnp.maximum(jnp.sum(valid), 1.0)
    acc = jnp.sum(valid * (jnp.argmax(logits, axis=-1) == safe).astype(jnp.float32)) / n
    return jnp.sum(valid * ce) / n, acc


def num_classes_of(data) -> int:
    """The class count of the training source, or a clear error when it has none."""
    n = getattr(data.source, "num_classes", None)
    if not n:
        raise ValueError("config field online_probe=True needs a labelled pretraining dataset "
                         f"(data source {getattr(data.source, 'name', '?')!r} has no classes); "
                         "set it to False")
    return int(n)


__all__ = ["init", "loss_and_accuracy", "num_classes_of"]
