"""Import released PyTorch / timm / Hugging Face weights as a jaxssl checkpoint (step 0).

    python scripts/import_weights.py SRC --config=configs/FILE.py[:VARIANT] --workdir=DIR \
        [--format=resnet|vit|bert] [--allow_pickle] [--config.KEY=VALUE ...]

SRC: a ``.pth`` / ``.pt`` / ``.pth.tar`` file (needs torch), a ``.safetensors`` file or a
Hugging Face model folder (``config.json`` + ``model.safetensors`` / ``pytorch_model.bin``,
``vocab.txt``; safetensors needs no torch). The format is detected from the keys (torchvision
ResNet with MoCo v2 / v3 prefixes; timm-layout ViTs of DINO, MAE, MoCo v3, DINOv2; BERT).
--config is the preset the weights go into: the online encoder lands where the preset keeps
its backbone, the checkpoint's teacher (MoCo's key encoder, DINO's teacher) in its teacher,
MAE's decoder and BERT's MLM head beside them; everything else keeps its initialisation, and
DIR/import.json lists both. DIR is then accepted by ``--config.init_from=DIR``,
``scripts/evaluate.py --workdir=DIR`` and ``scripts/export.py --workdir=DIR``;
``--config.init_from=SRC`` imports on the fly instead.
"""
from __future__ import annotations

import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # conversion is host work
# Presets are laid out for many devices (MoCo's shuffle-BN refuses one): build the state on 8
# CPU devices. Only shapes matter; the checkpoint restores on any device count.
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxssl import cli  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "The preset the weights go into.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the step-0 checkpoint is written.")
_FORMAT = flags.DEFINE_enum("format", None, ["resnet", "vit", "bert"],
                            "Force the format (default: detected from the keys).")
_ALLOW_PICKLE = flags.DEFINE_bool("allow_pickle", False, "Let torch.load unpickle Python "
                                  "objects (e.g. DINO's args); only for files you trust.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    logging.set_verbosity(logging.WARNING)
    from jaxssl.imports import workdir

    src = workdir.check_cli_args(argv[1:], _WORKDIR.value)
    config = _CONFIG.value
    with config.unlocked():
        summary = workdir.write_workdir(config, src, _WORKDIR.value, _FORMAT.value,
                                        _ALLOW_PICKLE.value)
    print(json.dumps({k: v for k, v in summary.items() if k != "initialised"}, indent=2))
    init = summary["initialised"]
    print(f"wrote {_WORKDIR.value}/checkpoints/0: {summary['loaded']} tensors from {src} "
          f"({summary['format']}); {len(init)} initialised "
          f"({', '.join(init[:6])}{' ...' if len(init) > 6 else ''}); "
          f"model fields set: {', '.join(summary['overrides']) or 'none'}")


if __name__ == "__main__":
    cli.run(main)
