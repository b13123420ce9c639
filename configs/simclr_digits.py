"""SimCLR on scikit-learn's digits: the CPU quickstart (no download).

Command:   python -m jaxssl.main --config=configs/simclr_digits.py --workdir=runs/simclr_digits
Hardware:  2 CPU cores (any laptop); set JAX_NUM_CPU_DEVICES=8 to shard the batch over 8 fake devices.
Runtime:   about 3 minutes of training plus 1 minute of evaluation for the command above on
           2 CPU cores, 1 device (README: ~4 min).
Expected:  eval_results.json / the printed table: kNN and linear-probe accuracy on the 540
           held-out digits with 10 labels per class and with all 1,257 training labels, for the
           SimCLR backbone, the same backbone at random initialisation, and raw pixels.
           SimCLR's linear_10 beats random_init's by well over 0.05; raw pixels with logistic
           regression reach about 0.90 at 10 labels per class (README: where SimCLR stands).
           Source: jaxssl's own runs of this preset (README table); a scaled-down recipe with
           no published reference number.

Recipe: the SimCLR recipe scaled to 8x8 grayscale digits: random resized crop (area
[0.4, 1]) upsampled to 16x16, brightness/contrast jitter, no flip (a flipped digit is another
symbol), no blur, no colour; a small conv backbone; the SimCLR v1 2-layer head (output BN
without beta); NT-Xent T=0.5 (the SimCLR CIFAR value) at loss.scale 1 (the paper's mean; the
LR was chosen for it); LARS, 300 epochs of 4 steps at batch 256.
"""
from jaxssl.config import base_config, no_arg


def get_config(arg=None):
    no_arg(arg, __file__)
    c = base_config()
    c.method = "simclr"
    c.seed = 0
    c.data.name = "digits"
    c.data.image_size = 16
    c.augment.update(dict(
        crop_scale=(0.4, 1.0), crop_ratio=(3 / 4, 4 / 3), resize_method="bilinear",
        flip_prob=0.0, jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.0, hue=0.0,
        grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0))
    c.eval_crop_fraction = 1.0  # 8x8 digits: keep the whole image, resize to 16x16
    c.model.update(dict(backbone="small_cnn", head="simclr_v1", head_hidden_dim=128,
                        head_output_dim=64))
    c.loss.temperature = 0.5
    c.optim.update(dict(name="lars", base_lr=1.0, lr_scaling="linear", weight_decay=1e-5,
                        warmup_epochs=5.0, schedule="cosine"))
    c.train.update(dict(batch_size=256, num_epochs=300.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=200))
    c.eval.update(dict(batch_size=512, linear_protocol="lbfgs", embedding_map=True))
    return c.lock()
