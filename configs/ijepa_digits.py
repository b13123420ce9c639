"""I-JEPA on scikit-learn's digits: the CPU quickstart (no download).

Command:   python -m jaxssl.main --config=configs/ijepa_digits.py --workdir=runs/ijepa_digits
Hardware:  2 CPU cores (any laptop); set JAX_NUM_CPU_DEVICES=8 to shard the batch over 8 fake devices.
Runtime:   240 steps plus evaluation: 5.5 user-CPU minutes (+3.3 system) in all; measured at
           60 minutes wall on 2 cores shared with a load average of 22-44, so not timed alone.
Expected:  eval_results.json / the printed table: kNN and linear-probe accuracy on the 540
           held-out digits with 10 labels per class and with all 1,257 training labels, for
           the target encoder, the same encoder at random initialisation and raw pixels.
           Measured (seed 0; knn_10 / knn_all / linear_10 / linear_all, %): I-JEPA 36.7 / 61.1
           / 81.1 / 92.2, random init 28.9 / 55.0 / 82.2 / 93.1, raw pixels 90.6 / 93.3 /
           87.6 / 97.2: kNN gains, linear_10 does not (docs/recipes.md, ijepa_digits, says
           why: the batch-minimum context is 8 of 64 patches here).

Recipe: I-JEPA (Assran et al. 2023) scaled to 8x8 grayscale digits upsampled to 16x16:
patches of 2x2 (an 8 x 8 grid, one digit pixel per patch); 4 target blocks of 15-20% of the
grid, aspect 0.75-1.5, a context block of 85-100% without them (I-JEPA's mask settings;
min_keep 4 instead of 10 for the 64-patch grid); a small ViT encoder (D 64, 4 blocks, 4
heads) with mean-pooled patch tokens, a predictor of width 32, 2 blocks, 4 heads; one random
resized crop (area [0.3, 1], no flip: a flipped digit is another symbol), inputs normalised
by the digits' mean/std (0.305 / 0.376); smooth-L1 loss on layer-normalised target features;
target EMA 0.99 -> 1 (linear; I-JEPA 0.996 over ~190k steps,
too slow a teacher for a few hundred); AdamW, weight decay 0.04 -> 0.4 (cosine). Deviations from the
ImageNet recipe, for a few-minute run of a tiny model: base LR 1e-3 at batch 256 with 10
warm-up epochs of 5 steps (I-JEPA 40 of ~625), 60 epochs.
"""
from jaxssl.methods.ijepa import ijepa_config


def get_config(arg=None):
    del arg
    c = ijepa_config()
    c.seed = 0
    c.data.name = "digits"
    c.data.image_size = 16
    c.augment.update(dict(crop=True, crop_scale=(0.3, 1.0), crop_ratio=(3 / 4, 4 / 3),
                          resize_method="bilinear", flip_prob=0.0))
    c.eval_crop_fraction = 1.0  # 8x8 digits: keep the whole image, resize to 16x16
    c.model.update(dict(backbone="vit_tiny", patch_size=2, vit_hidden_dim=64, vit_depth=4,
                        vit_num_heads=4, pool="gap", dtype="float32"))
    c.ijepa.update(dict(num_targets=4, target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                        context_scale=(0.85, 1.0), min_keep=4, predictor_dim=32,
                        predictor_depth=2, predictor_heads=4, loss="smooth_l1",
                        pixel_mean=(0.305,), pixel_std=(0.376,)))
    c.teacher.update(dict(momentum=0.99, momentum_final=1.0, momentum_schedule="linear"))
    c.optim.update(dict(name="adamw", base_lr=1e-3, lr_scaling="linear", weight_decay=0.04,
                        weight_decay_end=0.4, warmup_epochs=10.0, schedule="cosine",
                        min_lr=1e-6))
    c.train.update(dict(batch_size=256, num_epochs=60.0, num_steps=0, log_every_steps=50,
                        checkpoint_every_steps=150))
    c.eval.update(dict(batch_size=512, linear_protocol="lbfgs"))
    return c.lock()
