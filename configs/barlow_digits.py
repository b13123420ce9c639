"""Barlow Twins on scikit-learn's digits: the CPU quickstart (no download).

Command:   python -m jaxssl.main --config=configs/barlow_digits.py --workdir=runs/barlow_digits
Hardware:  2 CPU cores (any laptop); set JAX_NUM_CPU_DEVICES=8 to shard the batch over 8 fake devices.
Runtime:   2m35s wall for the command above on 2 otherwise idle cores, 1 device, training
           plus evaluation (one run, README's methods table); slower cores took up to
           about 5 minutes.
Expected:  eval_results.json / the printed table: kNN and linear-probe accuracy on the 540
           held-out digits with 10 labels per class and with all 1,257 training labels, for
           the Barlow Twins backbone, the same backbone at random initialisation and raw pixels.
           Measured: see README ("Methods"); a scaled-down recipe with no published number.

Recipe: solo-learn's CIFAR Barlow Twins scaled to 8x8 digits: the small conv backbone,
projector 3 x 256, lambda 0.0051, loss scale 0.1, LARS (trust 0.02) LR 0.3 x B/256 with the
biases / BN at the same LR (solo-learn), weight decay 1e-4, 300 epochs at batch 256.
"""
from jaxssl.config import no_arg
from jaxssl.methods.barlow_twins import barlow_config


def get_config(arg=None):
    no_arg(arg, __file__)
    c = barlow_config()
    c.seed = 0
    c.data.name = "digits"
    c.data.image_size = 16
    c.augment.update(dict(
        crop_scale=(0.4, 1.0), crop_ratio=(3 / 4, 4 / 3), resize_method="bilinear",
        flip_prob=0.0, jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.0, hue=0.0,
        grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0))
    c.eval_crop_fraction = 1.0  # 8x8 digits: keep the whole image, resize to 16x16
    c.model.update(dict(backbone="small_cnn"))
    c.train.update(dict(batch_size=256, num_epochs=300.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=400))
    c.eval.update(dict(batch_size=512, linear_protocol="lbfgs", embedding_map=False))
    c.barlow.update(dict(projector_hidden_dim=256, projector_output_dim=256, lambda_offdiag=0.0051,
                         loss_scale=0.1, bias_lr_scale=1.0))
    c.optim.update(dict(name="lars", base_lr=0.3, lr_scaling="linear", weight_decay=1e-4,
                        trust_coefficient=0.02, warmup_epochs=10.0, schedule="cosine"))
    return c.lock()
