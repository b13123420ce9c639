"""iBOT on scikit-learn's digits: the CPU quickstart of masked patch self-distillation.

Command:   python -m jaxssl.main --config=configs/ibot_digits.py --workdir=runs/ibot_digits
Hardware:  2 CPU cores; set JAX_NUM_CPU_DEVICES=8 to shard the batch over 8 fake devices.
Runtime:   see docs/recipes.md ("ibot_digits") for the measured wall time and machine load.
Expected:  eval_results.json / the printed table: kNN and linear-probe accuracy on the 540
           held-out digits (10 labels per class and all 1,257 training labels) for the iBOT
           ViT, the same ViT at random initialisation and raw pixels; measured numbers in
           docs/recipes.md. A scaled-down recipe with no published number.

Recipe: iBOT (configs/ibot_imagenet.py) scaled to 8x8 digits upsampled to 16 px: a ViT of
D 64, 4 blocks, 4 heads, patch 4 (a 4 x 4 grid, 16 patches); 2 global crops of 16 px (area
[0.4, 1]) and 4 local crops of 8 px (area [0.1, 0.4]); no flip, blur or solarize (digits);
block masks on half of the global crops, 10-50% of their patches, blocks of >= 1 patch
(iBOT's (min(H, W) // 3)^2 rule); one shared head (iBOT README: ``--shared_head true``)
128 -> 32 bottleneck -> 256 prototypes with BN in the MLP (DINO's ``use_bn_in_head``, as
configs/dino_digits.py: without it the features collapse, RankMe 1.4, linear_10 +2.4 points), last layer not normalised and frozen in epoch 1;
student temperature 0.1, teacher 0.04 -> 0.07 ([CLS] and patches) over 10 epochs, centers
momentum 0.9, teacher EMA 0.99 -> 1; AdamW 2e-3 x B/256 (wd 0.04 -> 0.4, per-parameter clip
3), 5 warm-up epochs, cosine; 40 epochs at batch 256 (160 steps). Sized for a few minutes
of 2 cores: the ImageNet recipe's 30 + 10 warm-up epochs would not fit.
"""
from jaxssl.methods.ibot import ibot_config


def get_config(arg=None):
    del arg
    c = ibot_config()
    c.seed = 0
    c.data.name = "digits"
    c.data.image_size = 16
    c.augment.update(dict(
        crop_scale=(0.4, 1.0), crop_ratio=(3 / 4, 4 / 3), resize_method="bilinear",
        flip_prob=0.0, jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.0, hue=0.0,
        grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0))
    c.eval_crop_fraction = 1.0
    c.model.update(dict(backbone="vit_tiny", patch_size=4, vit_hidden_dim=64, vit_depth=4,
                        vit_num_heads=4, pool="cls", posemb="sincos2d", dtype="float32"))
    c.train.update(dict(batch_size=256, num_epochs=40.0, num_steps=0, log_every_steps=50,
                        checkpoint_every_steps=400))
    c.eval.update(dict(batch_size=512, linear_protocol="lbfgs", embedding_map=False))
    c.dino.update(dict(out_dim=256, head_hidden_dim=128, head_bottleneck_dim=32,
                       head_use_bn=True, norm_last_layer=False, teacher_temp=0.07,
                       warmup_teacher_temp=0.04, warmup_teacher_temp_epochs=10,
                       local_crops_number=4, local_crop_size=8, local_crop_scale=(0.1, 0.4),
                       freeze_last_layer_epochs=1))
    for group in ("global_1", "global_2", "local"):
        c.dino[group].update(dict(blur_prob=0.0, solarize_prob=0.0))
    c.ibot.update(dict(shared_head=True, teacher_patch_temp=0.07, warmup_teacher_patch_temp=0.04,
                       mask_prob=0.5, mask_ratio=(0.1, 0.5), mask_min_num_patches=0))
    c.teacher.update(dict(momentum=0.99, momentum_final=1.0, momentum_schedule="cosine"))
    c.optim.update(dict(name="adamw", base_lr=2e-3, lr_scaling="linear", weight_decay=0.04,
                        weight_decay_end=0.4, b1=0.9, b2=0.999, eps=1e-8, warmup_epochs=5.0,
                        schedule="cosine", min_lr=1e-6, grad_clip_per_param=3.0))
    return c.lock()
