"""Plan a preset's run on a TPU slice before renting it: compile its train step with the TPU
compiler on this CPU and say whether it fits, how fast it can be and whether the hosts can
feed it (``jaxssl.plan``; docs/performance.md, "Plan before renting a slice").

    python scripts/plan.py --config=configs/mae_vit_base_imagenet.py --topology=v3-128
    python scripts/plan.py --config=configs/simclr_imagenet.py --topology=v4-32 \
        --config.mesh.param_sharding=fsdp

--topology: a Cloud TPU name (v2-8, v3-128 (TensorCores), v4-32, v5p-128, v5litepod-16,
v6e-16) or libtpu's form (v4:2x2x4). The last line is ``fits: X of Y GiB per device ...``
(exit 0) or ``does not fit: X of Y GiB per device; try ...`` (exit 1). Needs libtpu:
``pip install -e '.[tpu]'``. No data is read and no TPU is used.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the host side; the TPU compiler is libtpu's
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # compile-only: no TPU is opened
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TPU_STDERR_LOG_LEVEL", "3")
os.environ.setdefault("TPU_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxssl import cli  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Preset to plan, e.g. "
                                          "configs/simclr_imagenet.py", lock_config=True)
_TOPOLOGY = flags.DEFINE_string("topology", None, "TPU slice: v3-128, v4-32, v5litepod-16, "
                                "v4:2x2x4, ...")
_HLO = flags.DEFINE_string("dump_hlo", None, "Also write the compiled step's HLO text to this file.")
flags.mark_flags_as_required(["config", "topology"])


def main(argv):
    del argv
    from jaxssl import plan as plan_lib
    try:
        topology = plan_lib.resolve(_TOPOLOGY.value)
        plan_lib.require_libtpu()
    except (plan_lib.UnknownTopologyError, plan_lib.MissingLibtpuError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    config = _CONFIG.value
    overridden = config_flags.get_override_values(flags.FLAGS["config"])
    given = [f for f in ("num_steps", "num_epochs") if f"train.{f}" in overridden]
    if len(given) == 1:  # as jaxssl.main: one length field on the command line replaces the other
        other = "num_epochs" if given[0] == "num_steps" else "num_steps"
        if config.train[given[0]] > 0 and config.train[other] > 0:
            config.train[other] = type(config.train[other])(0)
    result = plan_lib.plan(config, topology, log=lambda s: print(s, flush=True),
                           hlo_path=_HLO.value)
    for line in plan_lib.report_lines(result):
        print(line, flush=True)
    sys.exit(0 if result.fits else 1)


if __name__ == "__main__":
    cli.run(main)
