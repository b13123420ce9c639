"""The evaluators a run's ``config.eval.evaluators`` names, built around its method.

Each evaluator is ``evaluator(state, workdir, final) -> dict`` (JSON-serialisable; the trainer
merges the dicts of all evaluators into ``eval_results.json``). It reads only what a method
declares for evaluation (:meth:`jaxssl.methods.base.Method.features`, ``init``), so
evaluation is the same code for every method and for ``scripts/evaluate.py``. An empty
``config.eval.evaluators`` runs the method class's ``default_evaluators``.

  ``representation``  kNN + linear probe of the frozen features, and baselines
                      (:mod:`jaxssl.evaluators.representation`)
  ``embedding_map``   t-SNE picture of test features, pretrained vs random init (end of run)
  ``masked_lm``       held-out masked-token accuracy and perplexity (:mod:`jaxssl.evaluators.mlm`)
  ``classification``  top-1 accuracy of a classifier on the test split, every example once
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


def evaluator_names(config, method_cls) -> tuple[str, ...]:
    """The evaluators a run uses: ``config.eval.evaluators`` or the method's defaults (plus
    ``embedding_map`` when ``eval.embedding_map`` is set)."""
    names = tuple(config.eval.evaluators or method_cls.default_evaluators)
    if config.eval.embedding_map and "embedding_map" not in names:
        names += ("embedding_map",)
    return names


def check_names(config, method_cls) -> None:
    """Raise naming ``eval.evaluators`` if it lists an unknown evaluator."""
    for name in evaluator_names(config, method_cls):
        if name not in _EVALUATORS:
            raise ValueError(f"config field eval.evaluators contains {name!r}, which is not an "
                             f"evaluator; use some of {list(KNOWN_EVALUATORS)}")


def build_evaluators(config, mesh, method) -> list[Callable]:
    """The evaluator objects of ``config`` for ``method`` (nothing is loaded until called)."""
    check_names(config, type(method))
    out = []
    for name in evaluator_names(config, type(method)):
        module, cls = _EVALUATORS[name]
        out.append(getattr(importlib.import_module(module), cls)(config, mesh, method))
    return out


def run_evaluators(evaluators, state, workdir: str, final: bool) -> dict:
    """The merged results of every evaluator on ``state``."""
    results: dict = {}
    for evaluator in evaluators:
        results.update(evaluator(state, workdir, final))
    return results


def evaluate_checkpoint(config, workdir: str, step: int | None = None,
                        baselines: bool = False) -> tuple[int, dict]:
    """``(step, results)`` of the config's evaluators on a run's checkpoint (``scripts/evaluate.py``).

    Restores ``WORKDIR/checkpoints/<step>`` (default: the latest) into the current mesh and
    runs the evaluators the trainer would (``final=baselines`` adds the baselines).
    """
    from jaxssl import checkpoint, train
    setup = train.Setup(config)
    ckpt = checkpoint.Checkpointer(workdir, async_save=False)
    try:
        step = step if step is not None else ckpt.latest_step()
        if step is None:
            raise ValueError(f"no checkpoint in {ckpt.directory}; train first or check --workdir")
        if step not in ckpt.all_steps():
            raise ValueError(f"--step={step} is not in {ckpt.directory}; available: "
                             f"{ckpt.all_steps()}")
        state = ckpt.restore(step, setup.abstract_state)
    finally:
        ckpt.close()
    return step, setup.evaluate(state, workdir, final=baselines)


__all__ = ["build_evaluators", "run_evaluators", "evaluate_checkpoint", "evaluator_names", "check_names",
           "KNOWN_EVALUATORS"]
