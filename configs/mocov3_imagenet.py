"""MoCo v3 on ImageNet: the facebookresearch/moco-v3 CONFIG.md pretraining commands.

Variants (``--config=configs/mocov3_imagenet.py:VARIANT``):
  r50 (default)  ResNet-50, 100 epochs    CONFIG.md "ResNet-50, 100-epoch pre-training"
  r50_300ep      ResNet-50, 300 epochs    CONFIG.md: --lr=.3 --epochs=300
  r50_1000ep     ResNet-50, 1000 epochs   CONFIG.md: --lr=.3 --wd=1.5e-6 --epochs=1000 --moco-m=0.996
  vit_small      ViT-S/16 (12 heads), 300 epochs, the 4-node (32-GPU) batch-4096 command
  vit_base       ViT-B/16, 300 epochs, the 8-node (64-GPU) batch-4096 command
  vit_large      ViT-L/16 (the paper's; 16 heads), 300 epochs: the vit_base command with the
                 paper's ViT-L (moco-v3 has no ViT-L command or ``vit_large`` arch)

Command:   python -m jaxssl.main --config=configs/mocov3_imagenet.py:r50 --workdir=runs/mocov3_r50
           python -m jaxssl.main --config=configs/mocov3_imagenet.py:vit_small --workdir=runs/mocov3_vits
           python -m jaxssl.main --config=configs/mocov3_imagenet.py:vit_base --workdir=runs/mocov3_vitb
           python -m jaxssl.main --config=configs/mocov3_imagenet.py:vit_large --workdir=runs/mocov3_vitl
           (ImageNet needs its manual files: python scripts/prepare_data.py imagenet2012)
Hardware:  B = 4096: r50 on 16 V100-32G (reference) / a TPU v3-32 or 16+ A100-class GPUs;
           vit_small 32 GPUs, vit_base 64 GPUs in the reference (TPU v3-64 / v3-128 here);
           vit_large: the paper trained on TPUs (no GPU command); plan it with scripts/plan.py.
Runtime:   not measured here.
Expected:  ImageNet linear-probe top-1 of the reference's pretrained models, under the
           reference's linear protocol (moco-v3 main_lincls.py: SGD, lr 0.1 x B/256 (R50) /
           3 x B/256 (ViT, CONFIG.md), B 1024, 90 epochs, cosine, RandomResizedCrop + flip):
             r50 68.9, r50_300ep 72.8, r50_1000ep 74.6   (moco-v3 README.md ResNet-50 table,
                                                         CONFIG.md lines 76-96)
             vit_small 73.2, vit_base 76.7               (README.md ViT table, CONFIG.md 194-209)
             vit_large 77.6 linear, 84.1 fine-tuned      (the MoCo v3 paper, Chen, Xie & He 2021,
                                                         ViT-L/16, 300 epochs; quoted from the
                                                         paper, not re-read for this preset: the
                                                         repository's tables stop at ViT-B)
           Each variant runs the pretraining command of its row; the deviations that remain
           are listed in docs/recipes.md (SyncBN statistics over the global
           batch, per-step schedules, the TPU-friendly augmentation ops). jaxssl's own linear
           probe is not moco-v3's protocol (eval.linear_protocol below), so a number from it is
           not comparable to these.

Recipe (moco-v3 main_moco.py defaults + CONFIG.md): batch 4096; projector 2 layers (ResNet) /
3 layers (ViT), hidden 4096, out 256, BN, last BN without affine; predictor 2 layers, ending
in BN without affine for ViT only (builder.py MoCo_ViT); loss ctr(q1, k2) + ctr(q2, k1), each
scaled by 2T; key momentum m -> 1 on a half cosine; BYOL views: RandomResizedCrop area
[0.2, 1] (ResNet: --crop-min=.2) / [0.08, 1] (ViT: the main_moco.py default), ColorJitter(0.4,
0.4, 0.2, 0.1) p=0.8, grayscale p=0.2, blur p=1.0 / 0.1, solarize p=0 / 0.2, flip, then
ImageNet mean/std normalisation of both views (main_moco.py:258).
  r50*: LARS (moco-v3 optimizer.LARS: momentum before the LR), LR 0.6 (100 ep) / 0.3 (300,
       1000 ep) x B/256, weight decay 1e-6 (1000 ep: 1.5e-6), m 0.99 (1000 ep: 0.996),
       10 warm-up epochs, cosine, T = 1.0, zero-init last BN of each block.
  vit_*: AdamW LR 1.5e-4 x B/256, weight decay 0.1 on every trainable parameter (torch
       AdamW(model.parameters())), 40 warm-up epochs, 300 epochs, T = 0.2, patch 16,
       moco-v3's sine-cosine table (row first), class token N(0, 1e-6), frozen patch
       projection ("stop-grad conv1"); ViT-S is moco-v3's: 12 heads (vits.py), not DeiT's 6.
  vit_large: the paper's ViT-L/16 (D 1024, 24 blocks, 16 heads, MLP 4096) with the ViT-B
       command's optimizer and schedule above. The paper tunes lr / wd per model in its
       appendix; those values are not in the repository and were not re-read for this
       variant, so lr 1.5e-4 x B/256 and wd 0.1 are CONFIG.md's ViT-B values.
"""
from jaxssl.config import parse_arg
from jaxssl.methods.moco import moco_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ResNet-50 rows of CONFIG.md: variant -> (epochs, base lr, weight decay, momentum m_0).
R50_ROWS = {"r50": (100.0, 0.6, 1e-6, 0.99),
            "r50_300ep": (300.0, 0.3, 1e-6, 0.99),
            "r50_1000ep": (1000.0, 0.3, 1.5e-6, 0.996)}
VIT_VARIANTS = ("vit_small", "vit_base", "vit_large")


def get_config(arg=None):
    variant = parse_arg(arg, {**R50_ROWS, **{v: None for v in VIT_VARIANTS}}, "r50")
    vit = variant in VIT_VARIANTS
    crop_scale = (0.08, 1.0) if vit else (0.2, 1.0)
    c = moco_config("v3")
    c.data.name = "imagenet2012"
    c.data.image_size = 224
    c.data.crop_scale = crop_scale
    c.data.crop_ratio = (3 / 4, 4 / 3)
    c.data.normalize_mean = IMAGENET_MEAN
    c.data.normalize_std = IMAGENET_STD
    c.augment.update(dict(crop_scale=crop_scale, resize_method="bilinear", resize_antialias=True,
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
    if not vit:
        epochs, lr, wd, momentum = R50_ROWS[variant]
        c.model.update(dict(backbone="resnet50", stem="imagenet", width_multiplier=1))
        c.moco.update(dict(projector_num_layers=2, predictor_last_bn=False, momentum=momentum))
        c.loss.temperature = 1.0
        c.optim.update(dict(name="lars", base_lr=lr, lr_scaling="linear", weight_decay=wd,
                            momentum=0.9, trust_coefficient=1e-3, warmup_epochs=10.0,
                            schedule="cosine", lars_classic_momentum=False))
        c.train.num_epochs = epochs
    else:
        c.model.update(dict(backbone=variant, patch_size=16, pool="cls", posemb="sincos2d",
                            sincos_layout="mocov3", freeze_patch_embed=True,
                            vit_num_heads=12))  # moco-v3 vits.py: ViT-S and ViT-B, 12 heads
        if variant == "vit_large":
            c.model.vit_num_heads = 0   # the named size's 16 heads (the paper's ViT-L)
        c.moco.update(dict(projector_num_layers=3, predictor_last_bn=True))
        c.loss.temperature = 0.2
        c.optim.update(dict(name="adamw", base_lr=1.5e-4, lr_scaling="linear", weight_decay=0.1,
                            b1=0.9, b2=0.999, eps=1e-8, warmup_epochs=40.0, schedule="cosine",
                            decay_all_params=True, frozen_params=("patch_embed",)))
        c.train.num_epochs = 300.0
    c.eval.update(dict(enabled=False, linear_protocol="moco", baselines=()))
    return c.lock()
