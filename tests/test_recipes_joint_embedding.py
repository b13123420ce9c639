"""BYOL, SimSiam, Barlow Twins, VICReg and DINO presets: the recipe values are the contract.

* Every ImageNet and CIFAR-10 preset (every config argument) builds with
  ``config.load_preset``, passes ``jaxssl.methods.validate_config`` on an 8-device mesh, and
  holds the reference's values (LR, weight decay, batch, epochs, head widths, temperatures,
  momenta, crops): the numbers below are transcribed from the reference code each preset's
  docstring cites (deepmind-research byol, facebookresearch/simsiam, barlowtwins, vicreg,
  dino, solo-learn scripts/pretrain/cifar), so an edit that drifts from it fails here.
* DINO's multi-crop on the ImageNet path (slow): one training step of a shrunk
  ``dino_imagenet:vit_s16`` under ``tfds.testing.mock_data``, with the host delivering the
  2 global crops as ``image`` [B, 2, S, S, 3] and the local crops as ``image_1`` [B, N, s, s, 3].
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from jaxssl.config import load_preset
from jaxssl.methods import get_method_class, validate_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

# (preset, argument) -> {dotted config field: the reference value}.
EXPECTED = {
    # deepmind-research byol/configs/byol.py _LR_PRESETS / _WD_PRESETS / _EMA_PRESETS
    ("byol_imagenet", None): {
        "method": "byol", "data.name": "imagenet2012", "data.image_size": 224,
        "model.backbone": "resnet50", "model.zero_init_residual": False,
        "model.input_mean": IMAGENET_MEAN, "model.input_std": IMAGENET_STD,
        "train.batch_size": 4096, "train.num_epochs": 1000.0,
        "optim.name": "lars", "optim.base_lr": 0.2, "optim.lr_scaling": "linear",
        "optim.weight_decay": 1.5e-6, "optim.trust_coefficient": 1e-3,
        "optim.warmup_epochs": 10.0, "optim.lars_classic_momentum": False,
        "teacher.momentum": 0.996, "teacher.momentum_final": 1.0,
        "teacher.momentum_schedule": "cosine",
        "byol.projector_hidden_dim": 4096, "byol.projector_output_dim": 256,
        "byol.predictor_hidden_dim": 4096,
        "augment.crop_scale": (0.08, 1.0), "augment.brightness": 0.4,
        "augment.saturation": 0.2, "augment.hue": 0.1, "augment.brightness_mode": "additive",
        "augment.blur_prob": 1.0, "augment.solarize_prob": 0.0,
        "byol.view2.blur_prob": 0.1, "byol.view2.solarize_prob": 0.2,
    },
    ("byol_imagenet", "300ep"): {
        "train.num_epochs": 300.0, "optim.base_lr": 0.3, "optim.weight_decay": 1e-6,
        "teacher.momentum": 0.99, "train.batch_size": 4096,
    },
    # facebookresearch/simsiam main_simsiam.py defaults + --fix-pred-lr
    ("simsiam_imagenet", None): {
        "method": "simsiam", "model.backbone": "resnet50", "model.zero_init_residual": True,
        "train.batch_size": 512, "train.num_epochs": 100.0,
        "optim.name": "sgd", "optim.base_lr": 0.05, "optim.weight_decay": 1e-4,
        "optim.momentum": 0.9, "optim.decay_all_params": True, "optim.warmup_epochs": 0.0,
        "optim.schedule": "cosine_epoch", "simsiam.fix_predictor_lr": True,
        "simsiam.projector_hidden_dim": 2048, "simsiam.projector_output_dim": 2048,
        "simsiam.projector_num_layers": 3, "simsiam.predictor_hidden_dim": 512,
        "augment.crop_scale": (0.2, 1.0), "augment.saturation": 0.4, "augment.blur_prob": 0.5,
    },
    # facebookresearch/barlowtwins main.py argparse defaults
    ("barlow_imagenet", None): {
        "method": "barlow", "model.backbone": "resnet50", "model.zero_init_residual": True,
        "train.batch_size": 2048, "train.num_epochs": 1000.0,
        "optim.name": "lars", "optim.base_lr": 0.2, "optim.weight_decay": 1e-6,
        "optim.lars_classic_momentum": False, "optim.warmup_epochs": 10.0,
        "optim.min_lr": 0.2 * 2048 / 256 * 0.001,
        "barlow.bias_lr_scale": 0.0048 / 0.2, "barlow.lambda_offdiag": 0.0051,
        "barlow.projector_hidden_dim": 8192, "barlow.projector_output_dim": 8192,
        "barlow.projector_num_layers": 3, "barlow.loss_scale": 1 / 16,
        "augment.blur_prob": 1.0, "barlow.view2.blur_prob": 0.1,
        "barlow.view2.solarize_prob": 0.2, "augment.blur_kernel": "sigma",
    },
    # facebookresearch/vicreg main_vicreg.py + README 1000-epoch command
    ("vicreg_imagenet", None): {
        "method": "vicreg", "model.backbone": "resnet50", "model.zero_init_residual": True,
        "train.batch_size": 2048, "train.num_epochs": 1000.0,
        "optim.name": "lars", "optim.base_lr": 0.2, "optim.weight_decay": 1e-6,
        "optim.lars_classic_momentum": False, "optim.min_lr": 0.2 * 2048 / 256 * 0.001,
        "vicreg.projector_hidden_dim": 8192, "vicreg.projector_output_dim": 8192,
        "vicreg.projector_num_layers": 3, "vicreg.sim_coeff": 25.0, "vicreg.std_coeff": 25.0,
        "vicreg.cov_coeff": 1.0, "vicreg.view2.blur_prob": 0.1,
        "vicreg.view2.solarize_prob": 0.2,
    },
    # facebookresearch/dino README "Vanilla DINO training" = main_dino.py defaults, 8 x 64
    ("dino_imagenet", None): {
        "method": "dino", "model.backbone": "vit_small", "model.patch_size": 16,
        "train.batch_size": 512, "train.num_epochs": 100.0,
        "optim.name": "adamw", "optim.base_lr": 0.0005, "optim.weight_decay": 0.04,
        "optim.weight_decay_end": 0.4, "optim.min_lr": 1e-6, "optim.warmup_epochs": 10.0,
        "optim.grad_clip_per_param": 3.0,
        "dino.out_dim": 65536, "dino.head_hidden_dim": 2048, "dino.head_bottleneck_dim": 256,
        "dino.head_num_layers": 3, "dino.head_use_bn": False, "dino.norm_last_layer": True,
        "dino.student_temp": 0.1, "dino.teacher_temp": 0.04, "dino.warmup_teacher_temp": 0.04,
        "dino.warmup_teacher_temp_epochs": 0, "dino.center_momentum": 0.9,
        "dino.freeze_last_layer_epochs": 1, "teacher.momentum": 0.996,
        "teacher.momentum_final": 1.0,
        "augment.crop_scale": (0.4, 1.0), "dino.local_crops_number": 8,
        "dino.local_crop_size": 96, "dino.local_crop_scale": (0.05, 0.4),
        "dino.global_1.blur_prob": 1.0, "dino.global_2.blur_prob": 0.1,
        "dino.global_2.solarize_prob": 0.2, "dino.local.blur_prob": 0.5,
    },
    # README "Boosting DINO performance" with run_with_submitit.py's 2 x 8 GPUs
    ("dino_imagenet", "vit_s16_300ep"): {
        "train.num_epochs": 300.0, "train.batch_size": 1024, "dino.teacher_temp": 0.07,
        "dino.warmup_teacher_temp": 0.04, "dino.warmup_teacher_temp_epochs": 30,
        "dino.norm_last_layer": False, "optim.base_lr": 0.0005,
    },
    # README "ResNet-50 and other convnets trainings"
    ("dino_imagenet", "r50"): {
        "model.backbone": "resnet50", "model.zero_init_residual": False,
        "model.input_mean": IMAGENET_MEAN, "train.batch_size": 512, "train.num_epochs": 100.0,
        "optim.name": "sgd", "optim.base_lr": 0.03, "optim.weight_decay": 1e-4,
        "optim.weight_decay_end": -1.0, "optim.momentum": 0.9, "optim.min_lr": 1e-6,
        "optim.grad_clip_per_param": 3.0, "augment.crop_scale": (0.14, 1.0),
        "dino.local_crop_scale": (0.05, 0.14), "dino.local_crops_number": 8,
        "dino.head_use_bn": False, "dino.out_dim": 65536,
    },
    # solo-learn scripts/pretrain/cifar/*.yaml
    ("byol_cifar10", None): {
        "method": "byol", "data.name": "cifar10", "model.backbone": "resnet18",
        "model.stem": "cifar", "model.cifar_stem_padding": 2, "model.input_mean": CIFAR10_MEAN,
        "train.batch_size": 256, "train.num_epochs": 1000.0,
        "optim.name": "lars", "optim.base_lr": 1.0, "optim.weight_decay": 1e-5,
        "optim.trust_coefficient": 0.02, "optim.lars_classic_momentum": False,
        "teacher.momentum": 0.99, "teacher.momentum_final": 1.0,
        "byol.projector_hidden_dim": 4096, "byol.projector_output_dim": 256,
        "byol.predictor_hidden_dim": 4096, "augment.blur_prob": 0.0,
        "byol.view2.solarize_prob": 0.2,
    },
    ("simsiam_cifar10", None): {
        "method": "simsiam", "optim.name": "sgd", "optim.base_lr": 0.5,
        "optim.weight_decay": 1e-5, "optim.decay_all_params": True,
        "simsiam.projector_hidden_dim": 2048, "simsiam.projector_output_dim": 2048,
        "simsiam.predictor_hidden_dim": 512, "simsiam.fix_predictor_lr": True,
        "augment.saturation": 0.4, "augment.blur_prob": 0.5, "train.batch_size": 256,
    },
    ("barlow_cifar10", None): {
        "method": "barlow", "optim.name": "lars", "optim.base_lr": 0.3,
        "optim.weight_decay": 1e-4, "optim.trust_coefficient": 0.02,
        "barlow.projector_hidden_dim": 2048, "barlow.projector_output_dim": 2048,
        "barlow.loss_scale": 0.1, "barlow.lambda_offdiag": 0.0051, "barlow.bias_lr_scale": 1.0,
        "barlow.view2.solarize_prob": 0.2, "train.num_epochs": 1000.0,
    },
    ("vicreg_cifar10", None): {
        "method": "vicreg", "optim.name": "lars", "optim.base_lr": 0.3,
        "optim.weight_decay": 1e-4, "vicreg.projector_hidden_dim": 2048,
        "vicreg.sim_coeff": 25.0, "vicreg.std_coeff": 50.0, "vicreg.cov_coeff": 1.0,
        "augment.crop_scale": (0.2, 1.0), "augment.solarize_prob": 0.1,
        "augment.blur_prob": 0.0,
    },
    ("dino_cifar10", None): {
        "method": "dino", "optim.name": "lars", "optim.base_lr": 0.3,
        "optim.weight_decay": 1e-6, "optim.grad_clip_per_param": 0.0,
        "dino.out_dim": 4096, "dino.head_hidden_dim": 2048, "dino.head_bottleneck_dim": 256,
        "dino.teacher_temp": 0.07, "dino.warmup_teacher_temp_epochs": 0,
        "dino.local_crops_number": 0, "teacher.momentum": 0.9995,
        "dino.global_1.blur_prob": 0.0, "dino.global_2.solarize_prob": 0.2,
    },
}


def get_field(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return tuple(node) if isinstance(node, (list, tuple)) else node


@pytest.mark.parametrize("preset, arg", sorted(EXPECTED, key=str))
def test_preset_holds_the_reference_values_and_validates(preset, arg):
    config = load_preset(preset, arg)
    validate_config(config, num_devices=8, num_processes=1)
    for field, want in EXPECTED[(preset, arg)].items():
        got = get_field(config, field)
        if isinstance(want, float):
            assert math.isclose(got, want, rel_tol=1e-12), (preset, arg, field, got, want)
        else:
            assert got == want, (preset, arg, field, got, want)


@pytest.mark.parametrize("preset", ["byol_imagenet", "simsiam_imagenet", "barlow_imagenet",
                                    "vicreg_imagenet", "dino_imagenet"])
def test_imagenet_presets_read_on_the_host(preset):
    config = load_preset(preset)
    assert config.data.name == "imagenet2012" and config.data.image_size == 224
    assert config.eval_crop_fraction == 0.875


def test_dino_views_are_two_globals_and_the_locals():
    config = load_preset("dino_imagenet", "vit_s16")
    crops = get_method_class("dino").view_spec(config).crop_groups()
    assert [(c.key, c.count, c.size, c.crop_scale) for c in crops] == [
        ("image", 2, 224, (0.4, 1.0)), ("image_1", 8, 96, (0.05, 0.4))]
    config = load_preset("dino_cifar10")
    crops = get_method_class("dino").view_spec(config).crop_groups()
    assert [(c.key, c.count, c.size) for c in crops] == [("image", 2, 32)]


# One step of DINO ViT-S/16's recipe shrunk to CPU size: a 1-block ViT, 32 px globals,
# 3 x 16 px locals, 64 prototypes, batch 8 on 2 devices.
DINO_TINY = dict(data__image_size=32, model__backbone="vit_tiny", model__patch_size=8,
                 model__vit_depth=1, model__vit_hidden_dim=32, model__vit_num_heads=2,
                 dino__out_dim=64, dino__head_hidden_dim=32, dino__head_bottleneck_dim=16,
                 dino__local_crops_number=3, dino__local_crop_size=16,
                 train__batch_size=8, train__num_steps=1, train__num_epochs=0.0,
                 train__log_every_steps=1, train__checkpoint_every_steps=1,
                 optim__warmup_epochs=0.0, eval__enabled=False, mesh__num_devices=2)


@pytest.mark.slow
def test_dino_imagenet_runs_one_multicrop_step_on_the_host_path(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from jaxssl import train
    config = load_preset("dino_imagenet", "vit_s16", **DINO_TINY)
    with tfds.testing.mock_data(num_examples=16):
        setup = train.Setup(config)
        assert setup.data.host_cropped
        batch = setup.data.source.get(np.arange(8), seed=0, step=0)
        assert batch["image"].shape == (8, 2, 32, 32, 3)      # global_1, global_2
        assert batch["image_1"].shape == (8, 3, 16, 16, 3)    # the local crops
        train.run(config, str(tmp_path))
    rows = [json.loads(line) for line in open(os.path.join(tmp_path, "metrics.jsonl"))]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses and all(np.isfinite(losses)), rows
