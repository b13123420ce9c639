"""MoCo on scikit-learn's digits: the CPU quickstart (no download). v2 (default), v3, v3_vit.

Command:   python -m jaxssl.main --config=configs/moco_digits.py --workdir=runs/moco_digits
           python -m jaxssl.main --config=configs/moco_digits.py:v3 --workdir=runs/mocov3_digits
           python -m jaxssl.main --config=configs/moco_digits.py:v3_vit --workdir=runs/mocov3_vit_digits
Hardware:  2 CPU cores (any laptop); set JAX_NUM_CPU_DEVICES=8 to shard the batch over 8 fake
           devices (shuffle BN stays 'groups', which is device-count independent).
Runtime:   v2: about 3 minutes of training plus 1 minute of evaluation on 2 busy cores.
Expected:  eval_results.json / the printed table, as the SimCLR quickstart: kNN and linear-probe
           accuracy on the 540 held-out digits with 10 labels per class and with all 1,257
           training labels, for the MoCo backbone, the same backbone at random initialisation
           and raw pixels. MoCo v2's linear_10 beats random_init's by well over 0.05
           (measured: see the report table in README / the run's eval_results.json).
           Source: jaxssl's own runs of this preset; a scaled-down recipe with no published
           reference number.

Recipe: MoCo v2 scaled to 8x8 grayscale digits: random resized crop (area [0.4, 1])
upsampled to 16x16, brightness/contrast jitter, no flip (a flipped digit is another symbol),
no blur, no colour; the small conv backbone; the MoCo v2 head (2 layers, no BN) 128 -> 64;
a queue of K = 256 keys (one batch, a fifth of the 1,257 images, so an image's own stale key
is rarely a negative), T = 0.2, key momentum 0.99 (a short run: 0.999 would move the key
encoder too slowly in 1,200 steps), shuffle BN by 8 groups of 32 (the paper's 32 per GPU),
SGD with momentum 0.9, LR 0.06 x B/256 cosine, weight decay 5e-4 on every parameter.
v3: the MoCo v3 loss (in-batch negatives, T = 0.2), projector 2 layers 256 -> 64 and predictor,
momentum 0.99 -> 1 cosine, LARS. v3_vit: a 2-block ViT-Tiny (patch 4 on 16x16), AdamW, frozen
patch projection.
"""
from jaxssl.config import parse_arg
from jaxssl.methods.moco import moco_config


def get_config(arg=None):
    variant = parse_arg(arg, {"v2": 0, "v3": 1, "v3_vit": 2}, "v2")
    version = "v2" if variant == "v2" else "v3"
    c = moco_config(version)
    c.seed = 0
    c.data.name = "digits"
    c.data.image_size = 16
    c.augment.update(dict(
        crop_scale=(0.4, 1.0), crop_ratio=(3 / 4, 4 / 3), resize_method="bilinear",
        flip_prob=0.0, jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.0, hue=0.0,
        grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0))
    c.eval_crop_fraction = 1.0  # 8x8 digits: keep the whole image, resize to 16x16
    c.model.update(dict(backbone="small_cnn", head_hidden_dim=128, head_output_dim=64))
    c.train.update(dict(batch_size=256, num_epochs=300.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=400))
    c.eval.update(dict(batch_size=512, linear_protocol="lbfgs", embedding_map=False))
    if version == "v2":
        c.loss.temperature = 0.2
        c.moco.update(dict(queue_size=256, momentum=0.99, momentum_schedule="constant",
                           shuffle_bn="groups", bn_groups=8))
        c.optim.update(dict(name="sgd", base_lr=0.06, lr_scaling="linear", weight_decay=5e-4,
                            momentum=0.9, warmup_epochs=0.0, schedule="cosine",
                            decay_all_params=True))
    else:
        c.loss.temperature = 0.2
        c.model.update(dict(head_hidden_dim=256, head_output_dim=64))
        c.moco.update(dict(momentum=0.99, momentum_final=1.0, momentum_schedule="cosine",
                           projector_num_layers=2, predictor_hidden_dim=256))
        c.optim.update(dict(name="lars", base_lr=1.0, lr_scaling="linear", weight_decay=1e-5,
                            warmup_epochs=5.0, schedule="cosine", lars_classic_momentum=False))
    if variant == "v3_vit":
        c.model.update(dict(backbone="vit_tiny", patch_size=4, pool="cls", posemb="sincos2d",
                            freeze_patch_embed=True, vit_depth=2))
        c.moco.projector_num_layers = 3
        c.optim.update(dict(name="adamw", base_lr=1e-3, weight_decay=0.1, warmup_epochs=10.0,
                            decay_all_params=True, frozen_params=("patch_embed",)))
        c.train.num_epochs = 100.0
    return c.lock()
