"""Command line: ``python -m jaxssl.main --config=configs/FILE.py[:ARG] --workdir=DIR``.

Any config field can be overridden: ``--config.train.batch_size=512``. Running the same
command again resumes from the last checkpoint in DIR. Exit codes are listed in
``jaxssl.train`` and docs/reliability.md (0 done, 1 error, 3 non-finite abort, 75 preempted
by SIGTERM, 130 stopped by Ctrl-C after saving the current step).
``--distributed`` first calls ``jax.distributed.initialize`` (see :func:`initialize_distributed`).

Training length: a preset sets ``train.num_epochs`` or ``train.num_steps``; giving the other one
on the command line replaces it (``--config.train.num_steps=20`` on a 300-epoch preset trains 20
steps), and the first log line says so. A bad config or flag, or a missing optional package,
ends with one line and exit code 1 (``jaxssl.cli``; ``--debug_traceback`` shows the traceback);
Ctrl-C saves the current step and exits 130 (``jaxssl.train.PreemptionWatch``).
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxssl import cli  # noqa: E402

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


LENGTH_FIELDS = ("num_steps", "num_epochs")


def apply_length_override(config, overridden) -> str | None:
    """Let ``--config.train.num_steps`` alone replace the preset's ``train.num_epochs`` (and back).

    ``overridden``: the dotted keys given on the command line. When exactly one of the two
    length fields is among them and positive, the other is set to 0 and a sentence saying so is
    returned (else None). Both given, or neither: the config is left as it is (``validate``
    then insists on exactly one). Configs built in Python are not touched by this rule.
    """
    given = [f for f in LENGTH_FIELDS if f"train.{f}" in overridden]
    if len(given) != 1:
        return None
    field = given[0]
    other = LENGTH_FIELDS[1 - LENGTH_FIELDS.index(field)]
    if not config.train[field] > 0 or not config.train[other] > 0:
        return None
    old = config.train[other]
    config.train[other] = type(old)(0)
    return (f"train.{field}={config.train[field]!r} from the command line replaces the preset's "
            f"train.{other}={old!r} (set to 0)")


def check_dependencies(config) -> None:
    """Raise a one-line MissingDependencyError now, before any device work, if reading the
    config's dataset needs a package that is not installed (TensorFlow for tfds TFRecord files
    and for preparing, Pillow for JPEGs)."""
    name = config.data.name
    data_dir = config.data.data_dir
    from jaxssl.data import tfds_images
    if name in tfds_images.SPLITS:
        split = config.data.pretrain_split or "train"
        tfds_images.check_readable(name, split, data_dir)
    elif config.method == "mlm" and name != "pydoc":
        from jaxssl.data import corpus
        corpus.check_readable(name, data_dir)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    config = _CONFIG.value
    note = apply_length_override(config, config_flags.get_override_values(flags.FLAGS["config"]))
    if _DISTRIBUTED.value:
        initialize_distributed()
    from jaxssl import checkpoint, methods, metrics, train
    from jaxssl.data.tfds_images import DatasetNotPreparedError
    if note:
        metrics.log(note)
    from jaxssl.imports import workdir as import_workdir
    for change in import_workdir.config_overrides(config):  # the imported weights' model fields
        metrics.log(f"train.init_from={config.train.init_from}: {change}")
    # A bad config (every field: the shared ones, the method's, the evaluators') fails here,
    # in one line, before any device work (train.run checks the workdir first thing).
    methods.validate_config(config)
    check_dependencies(config)
    try:
        train.run(config, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)
    except train.NonFiniteError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(train.EXIT_NONFINITE)
    except (checkpoint.CheckpointError, DatasetNotPreparedError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(train.EXIT_ERROR)


if __name__ == "__main__":
    cli.run(main)
