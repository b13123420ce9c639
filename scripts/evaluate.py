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


def main(argv):
    del argv
    import jax

    from jaxssl import metrics, paths, train

    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    config = _CONFIG.value
    try:
        step, results = train.evaluate_checkpoint(config, _WORKDIR.value, _STEP.value,
                                                 baselines=_BASELINES.value)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    out = paths.resolve(_WORKDIR.value) / f"eval_results_step{step}.json"
    if jax.process_index() == 0:
        paths.write_text(out, json.dumps(results, indent=2))
    metrics.log(train.results_table(results))  # a table, or JSON for flat results (MLM)
    metrics.log(f"wrote {out}")


if __name__ == "__main__":
    cli.run(main)
