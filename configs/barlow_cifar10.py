"""Barlow Twins on CIFAR-10 with ResNet-18 (CIFAR stem): solo-learn's recipe.

Command:   python -m jaxssl.main --config=configs/barlow_cifar10.py --workdir=runs/barlow_cifar10
           (prepare the data first: python scripts/prepare_data.py cifar10)
Hardware:  1 GPU (A100/H100) or a TPU v3-8; the batch is sharded over all visible devices.
Runtime:   not measured here (1000 epochs at batch 256: many hours on one A100-class GPU).
Expected:  linear top-1 92.10 (solo-learn README.md "CIFAR-10" table, "Barlow Twins ResNet18 1000
           epochs"). That number is solo-learn's online linear classifier (trained alongside
           on the augmented crops with a stop-gradient and its own LR ``classifier_lr`` 0.1 x
           B/256, ``solo/methods/base.py``), which jaxssl does not run: the preset's probe is
           jaxssl's on frozen, unaugmented features, so its number is not directly comparable.

Recipe (solo-learn scripts/pretrain/cifar/barlow.yaml + augmentations/asymmetric.yaml):
projector (Linear -> BN -> ReLU) x 2 -> Linear at 2048 (``proj_hidden_dim`` /
``proj_output_dim`` 2048; solo/methods/barlow_twins.py: its Linear biases cancel in BN or in
the loss's per-feature standardisation), lambda 0.0051 (``lamb`` default), loss scaled by 0.1
(``scale_loss``); one LR for weights and biases (``barlow.bias_lr_scale`` 1); LARS LR 0.3 x
B/256, weight decay 1e-4; views (asymmetric.yaml): crop area [0.08, 1], ColorJitter(0.4, 0.4,
0.2, 0.1) p=0.8, grayscale p=0.2, no blur, solarize p=0 / 0.2, flip.

Shared with solo-learn's other CIFAR recipes (batch 256, 1000 epochs, 10 warm-up epochs
then cosine, ResNet-18 CIFAR stem, view settings, CIFAR-10 mean/std, solo-learn's LARS with ``clip_lr``):
jaxssl/solo_learn.py, which names its references and the deviations they share.
"""
from jaxssl.config import no_arg
from jaxssl.methods.barlow_twins import barlow_config
from jaxssl.solo_learn import cifar_recipe, solo_lars


def get_config(arg=None):
    no_arg(arg, __file__)
    c = cifar_recipe(barlow_config())
    c.barlow.view2.update(dict(solarize_prob=0.2))
    c.barlow.update(dict(projector_hidden_dim=2048, projector_output_dim=2048,
                         projector_num_layers=3, lambda_offdiag=0.0051, loss_scale=0.1,
                         bias_lr_scale=1.0))
    solo_lars(c, base_lr=0.3, weight_decay=1e-4)
    return c.lock()
