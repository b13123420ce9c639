"""MoCo v3 on ImageNet: ResNet-50 (``:r50``, default), ViT-Small (``:vit_small``), ViT-Base
(``:vit_base``), the facebookresearch/moco-v3 CONFIG.md commands.

Command:   python -m jaxssl.main --config=configs/mocov3_imagenet.py:r50 --workdir=runs/mocov3_r50
           python -m jaxssl.main --config=configs/mocov3_imagenet.py:vit_small --workdir=runs/mocov3_vits
           python -m jaxssl.main --config=configs/mocov3_imagenet.py:vit_base --workdir=runs/mocov3_vitb
           (ImageNet needs its manual files: python scripts/prepare_data.py imagenet2012;
           linear eval with scripts/evaluate.py, MoCo protocol)
Hardware:  B = 4096: r50 on 16 V100-32G (reference) / a TPU v3-32 or 16+ A100-class GPUs;
           vit_small 32 GPUs, vit_base 64 GPUs in the reference (TPU v3-64 / v3-128 here).
Runtime:   not measured here; the reference reports r50 100 epochs in about 1.5 days on 16
           V100; ViT-B 300 epochs in about 2.5 days on 64 V100 (estimates from its logs).
Expected:  linear eval top-1 (moco-v3 README / CONFIG.md): r50 100 epochs 68.9 (300: 72.8,
           1000: 74.6); vit_small 300 epochs 73.2; vit_base 300 epochs 76.7.

Recipe (moco-v3 main_moco.py defaults + CONFIG.md): batch 4096; projector 2 layers (ResNet) /
3 layers (ViT), hidden 4096, out 256, BN, last BN without affine; predictor 2 layers; loss
ctr(q1, k2) + ctr(q2, k1), each scaled by 2T; key momentum 0.99 -> 1 on a half cosine; BYOL
views with crop area [0.2, 1], ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.8, grayscale p=0.2, blur
p=1.0 / 0.1, solarize p=0 / 0.2, flip.
  r50: LARS (moco-v3 optimizer.LARS: momentum before the LR, lars_classic_momentum=False),
       LR 0.6 x B/256, weight decay 1e-6, 10 warm-up epochs, cosine, 100 epochs, T = 1.0.
  vit_*: AdamW LR 1.5e-4 x B/256, weight decay 0.1 on every trainable parameter (torch
       AdamW(model.parameters())), 40 warm-up epochs, 300 epochs, T = 0.2, patch 16,
       sine-cosine positions, class token, frozen patch projection ("stop-grad conv1").
"""
from jaxssl.config import parse_arg
from jaxssl.methods.moco import moco_config


def get_config(arg=None):
    variant = parse_arg(arg, {"r50": 0, "vit_small": 1, "vit_base": 2}, "r50")
    c = moco_config("v3")
    c.data.name = "imagenet2012"
    c.data.image_size = 224
    c.data.crop_scale = (0.2, 1.0)
    c.data.crop_ratio = (3 / 4, 4 / 3)
    c.augment.update(dict(crop_scale=(0.2, 1.0), resize_method="bilinear", resize_antialias=True,
                          flip_prob=0.5, jitter_prob=0.8, brightness=0.4, contrast=0.4,
                          saturation=0.2, hue=0.1, grayscale_prob=0.2, blur_prob=1.0,
                          blur_sigma=(0.1, 2.0), solarize_prob=0.0, solarize_threshold=0.5))
    c.moco.view2.update(dict(blur_prob=0.1, solarize_prob=0.2))
    c.eval_crop_fraction = 0.875
    c.model.update(dict(head_hidden_dim=4096, head_output_dim=256))
    c.moco.update(dict(momentum=0.99, momentum_final=1.0, momentum_schedule="cosine",
                       predictor_hidden_dim=4096))
    c.train.update(dict(batch_size=4096, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2500))
    if variant == "r50":
        c.model.update(dict(backbone="resnet50", stem="imagenet", width_multiplier=1))
        c.moco.projector_num_layers = 2
        c.loss.temperature = 1.0
        c.optim.update(dict(name="lars", base_lr=0.6, lr_scaling="linear", weight_decay=1e-6,
                            momentum=0.9, trust_coefficient=1e-3, warmup_epochs=10.0,
                            schedule="cosine", lars_classic_momentum=False))
        c.train.num_epochs = 100.0
    else:
        c.model.update(dict(backbone=variant, patch_size=16, pool="cls", posemb="sincos2d",
                            freeze_patch_embed=True))
        c.moco.projector_num_layers = 3
        c.loss.temperature = 0.2
        c.optim.update(dict(name="adamw", base_lr=1.5e-4, lr_scaling="linear", weight_decay=0.1,
                            b1=0.9, b2=0.999, eps=1e-8, warmup_epochs=40.0, schedule="cosine",
                            decay_all_params=True, frozen_params=("patch_embed",)))
        c.train.num_epochs = 300.0
    c.eval.update(dict(enabled=False, linear_protocol="moco", baselines=()))
    return c.lock()
