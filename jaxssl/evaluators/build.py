"""The evaluators a run's ``config.eval.evaluators`` names, built around named functions.

Evaluators never see the method, the trainer or the training data. As big_vision hands its
evaluators a ``predict_fn``, the trainer (:class:`jaxssl.train.Setup`) hands each evaluator
class the method's named jittable functions as keywords, and the evaluator builds its own
data from ``config.data``::

    Evaluator(config, mesh, *, init, features, logits, masked_logits)
    evaluator(state, workdir, final) -> dict      # JSON-serialisable; the trainer merges them

    init(key) -> (params, model_state)                             the random-init baseline
    features(params, model_state, inputs) -> [B, D]                frozen representation
    logits(params, model_state, inputs) -> [B, K]                  classifier logits
    masked_logits(params, ids, segment_ids, attention_mask, positions) -> [B, P, V]

``inputs`` are eval-preprocessed float images ``[B, S, S, C]`` in [0, 1] (image data) or a
token batch ``{ids, segment_ids, attention_mask}`` (text data). A method that lacks one
raises ``TypeError`` when it is called. An empty ``config.eval.evaluators`` runs the method
class's ``default_evaluators``.

  ``representation``  kNN + linear probe of ``features``, and baselines
                      (:mod:`jaxssl.evaluators.representation`)
  ``embedding_map``   t-SNE picture of test features, pretrained vs random init (end of run)
  ``masked_lm``       held-out masked-token accuracy and perplexity of ``masked_logits``
                      (:mod:`jaxssl.evaluators.mlm`)
  ``classification``  top-1 accuracy of ``logits`` on the held-out split, every example once
                      (:mod:`jaxssl.evaluators.classification`)
"""
from __future__ import annotations

import importlib
from typing import Callable

_EVALUATORS: dict[str, tuple[str, str]] = {
    "representation": ("jaxssl.evaluators.representation", "RepresentationEvaluator"),
    "embedding_map": ("jaxssl.evaluators.embedding_map", "EmbeddingMapEvaluator"),
    "masked_lm": ("jaxssl.evaluators.mlm", "MaskedLMEvaluator"),
    "classification": ("jaxssl.evaluators.classification", "ClassificationEvaluator"),
}
KNOWN_EVALUATORS = tuple(_EVALUATORS)


def evaluator_names(config, defaults: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The evaluators a run uses: ``config.eval.evaluators``, else ``defaults`` (the method
    class's ``default_evaluators``), plus ``embedding_map`` when ``eval.embedding_map`` is set."""
    names = tuple(config.eval.evaluators or defaults)
    if config.eval.embedding_map and "embedding_map" not in names:
        names += ("embedding_map",)
    return names


def check_names(config, defaults: tuple[str, ...] = ()) -> None:
    """Raise naming ``eval.evaluators`` if it lists an unknown evaluator."""
    for name in evaluator_names(config, defaults):
        if name not in _EVALUATORS:
            raise ValueError(f"config field eval.evaluators contains {name!r}, which is not an "
                             f"evaluator; use some of {list(KNOWN_EVALUATORS)}")


def build_evaluators(config, mesh, functions: dict[str, Callable],
                     defaults: tuple[str, ...] = ()) -> list[Callable]:
    """The evaluator objects of ``config`` around ``functions`` (``{name: jittable fn}``, see
    the module docstring); nothing is loaded until an evaluator is called."""
    check_names(config, defaults)
    out = []
    for name in evaluator_names(config, defaults):
        module, cls = _EVALUATORS[name]
        out.append(getattr(importlib.import_module(module), cls)(config, mesh, **functions))
    return out


def run_evaluators(evaluators, state, workdir: str, final: bool) -> dict:
    """The merged results of every evaluator on ``state``."""
    results: dict = {}
    for evaluator in evaluators:
        results.update(evaluator(state, workdir, final))
    return results


__all__ = ["build_evaluators", "run_evaluators", "evaluator_names", "check_names",
           "KNOWN_EVALUATORS"]
