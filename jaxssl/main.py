"""Command line: ``python -m jaxssl.main --config=configs/FILE.py[:ARG] --workdir=DIR``.

Any config field can be overridden: ``--config.train.batch_size=512``. Running the same
command again resumes from the last checkpoint in DIR. Exit codes are listed in
``jaxssl.train`` (0 done, 1 error, 3 non-finite abort, 75 preempted).
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file, e.g. configs/simclr_digits.py", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
_ALLOW_CHANGE = flags.DEFINE_bool("allow_config_change", False,
                                  "Resume a workdir even though its recorded config differs.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False,
    "Call jax.distributed.initialize() first (multi-host; TPU pods and SLURM fill in the "
    "coordinator and process ids, otherwise set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, "
    "JAX_PROCESS_ID).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    import jax
    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    from jaxssl import train
    try:
        train.run(_CONFIG.value, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)
    except train.NonFiniteError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(train.EXIT_NONFINITE)


if __name__ == "__main__":
    app.run(main)
