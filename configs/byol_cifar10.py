"""BYOL on CIFAR-10 with ResNet-18 (CIFAR stem): solo-learn's recipe.

Command:   python -m jaxssl.main --config=configs/byol_cifar10.py --workdir=runs/byol_cifar10
           (prepare the data first: python scripts/prepare_data.py cifar10)
Hardware:  1 GPU (A100/H100) or a TPU v3-8; the batch is sharded over all visible devices.
Runtime:   not measured here (1000 epochs at batch 256: many hours on one A100-class GPU).
Expected:  linear top-1 92.58 (solo-learn README.md "CIFAR-10" table, "BYOL ResNet18 1000
           epochs"). That number is solo-learn's online linear classifier (trained alongside
           on the augmented crops with a stop-gradient and its own LR ``classifier_lr`` 0.1 x
           B/256, ``solo/methods/base.py``), which jaxssl does not run: the preset's probe is
           jaxssl's on frozen, unaugmented features, so its number is not directly comparable.

Recipe (solo-learn scripts/pretrain/cifar/byol.yaml + augmentations/asymmetric.yaml):
projector and predictor Linear(4096) -> BN -> ReLU -> Linear(256) (``proj_hidden_dim``
4096, ``proj_output_dim`` 256, ``pred_hidden_dim`` 4096; solo/methods/byol.py); target
momentum 0.99 -> 1.0 on a half cosine (``momentum.base_tau`` / ``final_tau``); LARS LR 1.0 x
B/256, weight decay 1e-5; views (asymmetric.yaml): crop area [0.08, 1], ColorJitter(0.4, 0.4,
0.2, 0.1) p=0.8, grayscale p=0.2, no blur, solarize p=0 / 0.2, flip.

Shared with solo-learn's other CIFAR recipes (batch 256, 1000 epochs, 10 warm-up epochs
then cosine, ResNet-18 CIFAR stem, view settings, CIFAR-10 mean/std, solo-learn's LARS with ``clip_lr``):
jaxssl/solo_learn.py, which names its references and the deviations they share.
"""
from jaxssl.config import no_arg
from jaxssl.methods.byol import byol_config
from jaxssl.solo_learn import cifar_recipe, solo_lars


def get_config(arg=None):
    no_arg(arg, __file__)
    c = cifar_recipe(byol_config())
    c.byol.view2.update(dict(solarize_prob=0.2))
    c.byol.update(dict(projector_hidden_dim=4096, projector_output_dim=256,
                       predictor_hidden_dim=4096))
    c.teacher.update(dict(momentum=0.99, momentum_final=1.0, momentum_schedule="cosine"))
    solo_lars(c, base_lr=1.0, weight_decay=1e-5)
    return c.lock()
