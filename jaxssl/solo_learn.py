"""What solo-learn's CIFAR-10 recipes share, set once for the ``*_cifar10.py`` presets of
BYOL, SimSiam, Barlow Twins, VICReg and DINO (``configs/{byol,simsiam,barlow,vicreg,dino}_
cifar10.py``: each adds its method's head, loss and optimizer values).

solo-learn (``solo/args/pretrain.py``, ``solo/methods/base.py``,
``solo/data/pretrain_dataloader.py``, ``solo/backbones``, ``scripts/pretrain/cifar/*.yaml``):
batch 256, 1000 epochs, LR ``lr x B/256`` (``scale_factor``), 10 warm-up epochs then cosine to
0 per step (``warmup_cosine``); ResNet-18 (torchvision, ``zero_init_residual=False``) with
conv1 = Conv2d(3, 64, 3, 1, padding=2) and no max-pool; RandomResizedCrop(32) bicubic, ratio
3/4-4/3; ColorJitter(0.4, 0.4, saturation, 0.1) p=0.8 and RandomGrayscale p=0.2 from
torchvision (multiplicative brightness, random order); PIL blur / solarize; flip; CIFAR-10
mean/std (``MEANS_N_STD['cifar10']``); SyncBN.

solo-learn's LARS (``solo/utils/lars.py`` with ``clip_lr: True, eta: 0.02,
exclude_bias_n_norm: True`` in byol / barlow / vicreg / dino.yaml): momentum 0.9 before the LR
(``buf = m buf + d_p``, ``p -= lr buf``), biases and norms out of weight decay and adaptation,
trust ratio ``eta ||p|| / (||g|| + wd ||p||)`` clipped by the LR (``optim.lars_clip_lr``).

Deviations every preset shares: the warm-up starts at 0 (solo-learn: ``warmup_start_lr``
3e-5); solo-learn's online linear classifier (its README numbers) is jaxssl's
``online_probe`` only where a preset turns it on.
"""
from __future__ import annotations

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)   # solo/data/pretrain_dataloader.py MEANS_N_STD
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def cifar_recipe(c, *, crop_scale=(0.08, 1.0), saturation=0.2, blur_prob=0.0,
                 solarize_prob=0.0):
    """Set the shared solo-learn CIFAR-10 fields on ``c`` (a method's config, unlocked): data,
    views (the per-method knobs are the arguments), ResNet-18 CIFAR backbone, batch, epochs,
    evaluation. Returns ``c``."""
    c.data.name = "cifar10"
    c.data.image_size = 32
    c.augment.update(dict(crop_scale=tuple(crop_scale), crop_ratio=(3 / 4, 4 / 3),
                          resize_method="bicubic",
                          resize_antialias=True, flip_prob=0.5, jitter_prob=0.8,
                          brightness=0.4, contrast=0.4, saturation=saturation, hue=0.1,
                          brightness_mode="multiplicative", jitter_random_order=True,
                          grayscale_prob=0.2, blur_prob=blur_prob, blur_sigma=(0.1, 2.0),
                          blur_kernel="sigma", solarize_prob=solarize_prob,
                          solarize_threshold=0.5))
    c.eval_crop_fraction = 1.0  # 32x32: evaluate on the whole image
    c.model.update(dict(backbone="resnet18", stem="cifar", width_multiplier=1,
                        zero_init_residual=False, cifar_stem_padding=2,
                        input_mean=CIFAR10_MEAN, input_std=CIFAR10_STD))
    c.train.update(dict(batch_size=256, num_epochs=1000.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2000, eval_every_steps=0))
    c.eval.update(dict(batch_size=1024, linear_protocol="moco", baselines=()))
    return c


def solo_lars(c, *, base_lr: float, weight_decay: float):
    """solo-learn's LARS (module docstring) with the script's ``lr`` and ``weight_decay``,
    10 warm-up epochs then cosine. Returns ``c``."""
    c.optim.update(dict(name="lars", base_lr=base_lr, lr_scaling="linear",
                        weight_decay=weight_decay, momentum=0.9, trust_coefficient=0.02,
                        warmup_epochs=10.0, schedule="cosine", lars_classic_momentum=False,
                        lars_clip_lr=True))
    return c


__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "cifar_recipe", "solo_lars"]
