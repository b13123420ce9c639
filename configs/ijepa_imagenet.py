"""I-JEPA ViT-H/14 on ImageNet-1k, 300 epochs: facebookresearch/ijepa configs/in1k_vith14_ep300.yaml.

Command:   python -m jaxssl.main --config=configs/ijepa_imagenet.py --workdir=runs/ijepa_vith14
           (ImageNet needs its manual files: python scripts/prepare_data.py imagenet2012)
Hardware:  the reference: 16 A100 80GB (2 nodes x 8, batch 16 x 128 = 2048), "under 72 hours"
           (paper abstract); here a TPU v4-32-class slice or 16 80GB GPUs.
Runtime:   not measured here.
Expected:  79.3 ImageNet top-1 linear probe for ViT-H/14, 300 epochs (I-JEPA paper, Table 1),
           under the paper's protocol (configs/ijepa_imagenet_linear.py); jaxssl's in-training
           probe is off below.

Recipe (in1k_vith14_ep300.yaml; src/train.py, src/helper.py, src/transforms.py): ViT-H/14
(1280 wide, 32 blocks, 16 heads) at 224 px (16 x 16 patches), fixed 2-D sin-cos positions;
predictor 384 wide, 12 blocks, 16 heads (the encoder's); masks: 4 target blocks of area
(0.15, 0.2), aspect (0.75, 1.5), one context block of area (0.85, 1.0) without them,
min_keep 10, no overlap; one RandomResizedCrop(224, scale (0.3, 1.0)), no flip, no colour, no
blur, ImageNet mean/std; smooth-L1 loss on layer-normalised target features; target EMA
0.996 -> 1.0 linear over the run (ipe_scale 1.0); AdamW, lr 0.001 (absolute, batch 2048) after
40 warm-up epochs, cosine to 1e-6, weight decay 0.04 -> 0.4 (cosine), none on biases and 1-D
parameters; bfloat16 compute (``use_bfloat16``). Deviations: jaxssl/methods/ijepa.py (class
token kept as an extra token, xavier encoder init, warm-up from 0 instead of 2e-4).
"""
from jaxssl.methods.ijepa import IMAGENET_MEAN, IMAGENET_STD, ijepa_config


def get_config(arg=None):
    del arg
    c = ijepa_config()
    c.data.name = "imagenet2012"
    c.data.image_size = 224
    c.augment.update(dict(crop=True, crop_scale=(0.3, 1.0), crop_ratio=(3 / 4, 4 / 3),
                          resize_method="bilinear", flip_prob=0.0, jitter_prob=0.0,
                          grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0))
    c.eval_crop_fraction = 0.875
    c.model.update(dict(backbone="vit_huge", patch_size=14, pool="gap", posemb="sincos2d",
                        sincos_layout="mae", dtype="bfloat16"))
    c.ijepa.update(dict(num_targets=4, target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                        context_scale=(0.85, 1.0), min_keep=10, predictor_dim=384,
                        predictor_depth=12, predictor_heads=0, loss="smooth_l1",
                        context_budget=0, ipe_scale=1.0, pixel_mean=IMAGENET_MEAN,
                        pixel_std=IMAGENET_STD))
    c.teacher.update(dict(momentum=0.996, momentum_final=1.0, momentum_schedule="linear"))
    c.optim.update(dict(name="adamw", base_lr=0.001, lr_scaling="none", weight_decay=0.04,
                        weight_decay_end=0.4, b1=0.9, b2=0.999, eps=1e-8, warmup_epochs=40.0,
                        warmup_fraction=0.0, schedule="cosine", min_lr=1e-6,
                        grad_clip_norm=0.0))
    c.train.update(dict(batch_size=2048, num_epochs=300.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2500))
    c.eval.update(dict(enabled=False, linear_protocol="simclr", baselines=()))
    return c.lock()
