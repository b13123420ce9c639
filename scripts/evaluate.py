"""Evaluate a run's checkpoint with the evaluators its config lists (kNN and linear probe...).

    python scripts/evaluate.py --config=configs/simclr_digits.py --workdir=runs/simclr_digits \
        [--step=N] [--baselines] [--config.eval.linear_protocol=simclr] \
        [--config.data.in_memory=False]

Restores the checkpoint (the latest, or ``--step``) into the current device mesh and runs the
same evaluators as the trainer (``config.eval.evaluators``; for image methods frozen features
of the labelled train and held-out test splits, streamed from the host for ImageNet-size
data, every example once, then kNN and the linear probe), and writes
``WORKDIR/eval_results_step{N}.json`` (same keys as the trainer's ``eval_results.json``;
WORKDIR may be a URL, gs://BUCKET/...).
"""
from __future__ import annotations

import json

from absl import flags, logging
from ml_collections import config_flags

from jaxssl import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "The run's config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The run's workdir (holds checkpoints/).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: latest).")
_BASELINES = flags.DEFINE_bool("baselines", False, "Also evaluate random init and raw pixels.")
flags.mark_flags_as_required(["config", "workdir"])


def finished_steps(workdir: str) -> list[int]:
    """The finished checkpoint steps in ``WORKDIR/checkpoints``, read without orbax."""
    from jaxssl import checkpoint, paths
    directory = paths.resolve(workdir) / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir()
                  if p.name.isdigit() and checkpoint.is_finished(p))


def check_request(workdir: str, step: int | None) -> None:
    """Refuse, in one line and before any device work, a workdir without the checkpoint asked."""
    steps = finished_steps(workdir)
    if not steps:
        raise ValueError(f"--workdir={workdir}: no checkpoint in {workdir}/checkpoints; train "
                         "first (python -m jaxssl.main --config=... --workdir=... with the same "
                         "config) or check --workdir")
    if step is not None and step not in steps:
        raise ValueError(f"--step={step} is not in {workdir}/checkpoints; use one of {steps}")


def main(argv):
    del argv
    import jax

    from jaxssl import methods, metrics, paths, train

    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    config = _CONFIG.value
    methods.validate_config(config)
    check_request(_WORKDIR.value, _STEP.value)
    step, results = train.evaluate_checkpoint(config, _WORKDIR.value, _STEP.value,
                                              baselines=_BASELINES.value)
    out = paths.resolve(_WORKDIR.value) / f"eval_results_step{step}.json"
    if jax.process_index() == 0:
        paths.write_text(out, json.dumps(results, indent=2))
    metrics.log(train.results_table(results))  # a table, or JSON for flat results (MLM)
    metrics.log(f"wrote {out}")


if __name__ == "__main__":
    cli.run(main)
