"""Evaluate a run's checkpoint with the kNN monitor and the linear probe.

    python scripts/evaluate.py --config=configs/simclr_digits.py --workdir=runs/simclr_digits \
        [--step=N] [--config.eval.linear_protocol=simclr] [--config.eval.few_labels_per_class=1]

Restores the checkpoint (the latest, or ``--step``) into the current device mesh, extracts
frozen backbone features of the labelled train and held-out test splits, and writes
``WORKDIR/eval_results_step{N}.json`` (same keys as the trainer's ``eval_results.json``;
WORKDIR may be a URL, gs://BUCKET/...).
"""
from __future__ import annotations

import json

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "The run's config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The run's workdir (holds checkpoints/).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: latest).")
_BASELINES = flags.DEFINE_bool("baselines", False, "Also evaluate random init and raw pixels.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    import jax

    from jaxssl import checkpoint, metrics, paths, train

    config = _CONFIG.value
    setup = train.Setup(config)
    ckpt = checkpoint.Checkpointer(_WORKDIR.value, async_save=False)
    step = _STEP.value if _STEP.value is not None else ckpt.latest_step()
    if step is None:
        raise SystemExit(f"no checkpoint in {ckpt.directory}; train first or check --workdir")
    if step not in ckpt.all_steps():
        raise SystemExit(f"--step={step} is not in {ckpt.directory}; available: {ckpt.all_steps()}")
    state = ckpt.restore(step, setup.abstract_state)
    ckpt.close()
    results = setup.method.evaluate(state, _WORKDIR.value, final=_BASELINES.value)
    out = paths.resolve(_WORKDIR.value) / f"eval_results_step{step}.json"
    if jax.process_index() == 0:
        paths.write_text(out, json.dumps(results, indent=2))
    metrics.log(train._results_table(results))  # a table, or JSON for flat results (MLM)
    metrics.log(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
