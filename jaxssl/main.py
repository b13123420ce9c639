"""Command line: ``python -m jaxssl.main --config=configs/FILE.py[:ARG] --workdir=DIR``.

Any config field can be overridden: ``--config.train.batch_size=512``. Running the same
command again resumes from the last checkpoint in DIR. Exit codes are listed in
``jaxssl.train`` and docs/reliability.md (0 done, 1 error, 3 non-finite abort, 75 preempted).
``--distributed`` first calls ``jax.distributed.initialize`` (see :func:`initialize_distributed`).
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


def initialize_distributed() -> None:
    """``jax.distributed.initialize`` from the environment, with CPU collectives over gloo.

    ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0), ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` are passed on when set (several processes on one machine, or clusters
    without auto-detection); otherwise JAX detects them (TPU pods, SLURM, Open MPI). CPU
    collectives use gloo (the default of current JAX, set explicitly because the CPU backend
    has no cross-process collectives otherwise); this only affects arrays on CPU devices.
    """
    import jax
    env = {k: os.environ.get(k) for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                                          "JAX_PROCESS_ID")}
    given = {k: v for k, v in env.items() if v}
    if given and len(given) != len(env):
        missing = sorted(set(env) - set(given))
        raise SystemExit(f"error: --distributed with {sorted(given)} set but {missing} unset; set "
                         "all three (or none, to let JAX detect the cluster)")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if given:
        jax.distributed.initialize(coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
                                   num_processes=int(env["JAX_NUM_PROCESSES"]),
                                   process_id=int(env["JAX_PROCESS_ID"]))
    else:
        jax.distributed.initialize()


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if _DISTRIBUTED.value:
        initialize_distributed()
    from jaxssl import checkpoint, train
    try:
        train.run(_CONFIG.value, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)
    except train.NonFiniteError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(train.EXIT_NONFINITE)
    except checkpoint.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(train.EXIT_ERROR)


if __name__ == "__main__":
    app.run(main)
