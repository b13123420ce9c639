"""DINO on scikit-learn's digits: the CPU quickstart (no download).

Command:   python -m jaxssl.main --config=configs/dino_digits.py --workdir=runs/dino_digits
Hardware:  2 CPU cores (any laptop); set JAX_NUM_CPU_DEVICES=8 to shard the batch over 8 fake devices.
Runtime:   3m24s wall for the command above on 2 otherwise idle cores, 1 device, training
           plus evaluation (one run, README's methods table); slower cores took up to
           about 6 minutes.
Expected:  eval_results.json / the printed table: kNN and linear-probe accuracy on the 540
           held-out digits with 10 labels per class and with all 1,257 training labels, for
           the DINO backbone, the same backbone at random initialisation and raw pixels.
           Measured: see README ("Methods"); a scaled-down recipe with no published number.

Recipe: DINO with multi-crop scaled to 8x8 digits: 2 global crops of 16 px (area [0.4, 1])
and 4 local crops of 8 px (area [0.1, 0.4]), no blur or solarize (digits); the small conv
backbone, DINO head 256 -> 64 bottleneck -> 1024 prototypes with BN in the head (DINO's
``use_bn_in_head``, its ResNet option; last layer not normalised, frozen in epoch 1), student temperature 0.1, teacher 0.04 -> 0.07 over 30 epochs, center
momentum 0.9, teacher momentum 0.99 -> 1; LARS (trust 0.02) LR 0.3 x B/256, weight decay
1e-6, 150 epochs at batch 256 (solo-learn's CIFAR DINO, shortened: multi-crop costs 2x).

Why BN in the head: at initialisation the small CNN's features of different digits are
nearly identical, and without BN the head passes that on; centering then removes the one
common output and the teacher goes uniform. Measured with ``dino.head_use_bn=False``: the
loss and the teacher entropy sit at ln 1024 = 6.93 from step 200 on and linear_10 is 0.891
(random init 0.878); the same happens with AdamW (wd 0.04 -> 0.4, clip 3) and at a 6x lower
LR. With BN in the head the teacher entropy stays below ln K and the features beat random
init (README, "Methods").
"""
from jaxssl.config import no_arg
from jaxssl.methods.dino import dino_config


def get_config(arg=None):
    no_arg(arg, __file__)
    c = dino_config()
    c.seed = 0
    c.data.name = "digits"
    c.data.image_size = 16
    c.augment.update(dict(
        crop_scale=(0.4, 1.0), crop_ratio=(3 / 4, 4 / 3), resize_method="bilinear",
        flip_prob=0.0, jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.0, hue=0.0,
        grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0))
    c.eval_crop_fraction = 1.0  # 8x8 digits: keep the whole image, resize to 16x16
    c.model.update(dict(backbone="small_cnn"))
    c.train.update(dict(batch_size=256, num_epochs=150.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=400))
    c.eval.update(dict(batch_size=512, linear_protocol="lbfgs", embedding_map=False))
    c.augment.crop_scale = (0.4, 1.0)
    c.dino.update(dict(out_dim=1024, head_hidden_dim=256, head_bottleneck_dim=64, head_use_bn=True,
                       norm_last_layer=False, teacher_temp=0.07, warmup_teacher_temp=0.04,
                       warmup_teacher_temp_epochs=30, local_crops_number=4, local_crop_size=8,
                       local_crop_scale=(0.1, 0.4), freeze_last_layer_epochs=1))
    for group in ("global_1", "global_2", "local"):
        c.dino[group].update(dict(blur_prob=0.0, solarize_prob=0.0))
    c.teacher.update(dict(momentum=0.99, momentum_final=1.0, momentum_schedule="cosine"))
    c.optim.update(dict(name="lars", base_lr=0.3, lr_scaling="linear", weight_decay=1e-6,
                        trust_coefficient=0.02, warmup_epochs=10.0, schedule="cosine"))
    return c.lock()
