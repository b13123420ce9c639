"""Export a trained run for PyTorch: torchvision ResNet, timm ViT, Hugging Face BERT.

    python scripts/export.py --config=configs/simclr_cifar10.py --workdir=runs/simclr_cifar10 \
        --format=torchvision --out=resnet18_simclr.pt [--step=N]
    python scripts/export.py --config=configs/mae_vit_base_imagenet.py --workdir=runs/mae \
        --format=timm --out=vit_base_mae.safetensors
    python scripts/export.py --config=configs/bert_pydoc.py --workdir=runs/bert \
        --format=hf_bert --out=bert_pydoc_hf/

--config is the run's config (with the same overrides as the run); the checkpoint (latest,
or --step) is restored on the CPU and converted (jaxssl.export). --workdir and --out may be
local paths or URLs (gs://BUCKET/...). ``.pt`` outputs need torch,
``.safetensors`` outputs and ``hf_bert`` need only the safetensors package. A summary with
the step and how to build the model that loads the file is printed and written beside it
(``<out>.json``; ``DIR/export.json`` for hf_bert).

Load the exports:
    torchvision:  m = torchvision.models.resnet18(); m.fc = torch.nn.Identity()
                  m.load_state_dict(torch.load("resnet18_simclr.pt"))   # CIFAR stem: see
                  jaxssl.export.torchvision.build_torch_resnet(arch, stem="cifar")
    timm:         m = timm.models.vision_transformer.VisionTransformer(**summary["load"])
                  m.load_state_dict(safetensors.torch.load_file("vit_base_mae.safetensors"))
    hf_bert:      transformers.BertForMaskedLM.from_pretrained("bert_pydoc_hf/")
"""
from __future__ import annotations

import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # conversion is host work; leave accelerators be
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxssl import cli  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "The run's config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The run's workdir (holds checkpoints/).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the latest).")
_FORMAT = flags.DEFINE_enum("format", None, ["torchvision", "timm", "hf_bert"], "Output format.")
_OUT = flags.DEFINE_string("out", None, "Output file (.pt/.pth: torch.save; .safetensors), or "
                           "directory for hf_bert.")
flags.mark_flags_as_required(["config", "workdir", "format", "out"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore step at INFO
    from jaxssl import export

    export.require_writer(_OUT.value, _FORMAT.value)  # a missing torch / safetensors: one line
    summary = export.export_run(_CONFIG.value, _WORKDIR.value, _FORMAT.value, _OUT.value,
                                step=_STEP.value)
    # A str join, so that a gs:// --out stays a URL (jaxssl.paths writes both kinds).
    summary_path = (os.path.join(_OUT.value, "export.json") if _FORMAT.value == "hf_bert"
                    else _OUT.value + ".json")
    export.write_summary(summary, summary_path)
    print(json.dumps(summary, indent=2))
    print(f"wrote {_OUT.value} ({summary['num_tensors']} tensors from {summary['source_path']} "
          f"at step {summary['step']}) and {summary_path}")


if __name__ == "__main__":
    cli.run(main)
