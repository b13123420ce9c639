"""VICReg on CIFAR-10 with ResNet-18 (CIFAR stem): solo-learn's recipe.

Command:   python -m jaxssl.main --config=configs/vicreg_cifar10.py --workdir=runs/vicreg_cifar10
           (prepare the data first: python scripts/prepare_data.py cifar10)
Hardware:  1 GPU (A100/H100) or a TPU v3-8; the batch is sharded over all visible devices.
Runtime:   not measured here (1000 epochs at batch 256: many hours on one A100-class GPU).
Expected:  linear top-1 92.07 (solo-learn README.md "CIFAR-10" table, "VICReg ResNet18 1000
           epochs"). That number is solo-learn's online linear classifier (trained alongside
           on the augmented crops with a stop-gradient and its own LR ``classifier_lr`` 0.1 x
           B/256, ``solo/methods/base.py``), which jaxssl does not run: the preset's probe is
           jaxssl's on frozen, unaugmented features, so its number is not directly comparable.

Recipe (solo-learn scripts/pretrain/cifar/vicreg.yaml (its inline augmentations)):
expander (Linear -> BN -> ReLU) x 2 -> Linear at 2048 (``proj_hidden_dim`` /
``proj_output_dim`` 2048; solo/methods/vicreg.py); weights sim 25, var 25, cov 1
(``sim_loss_weight`` / ``var_loss_weight`` / ``cov_loss_weight``). solo/losses/vicreg.py
``variance_loss`` sums the two branches' hinge means where facebookresearch/vicreg (and
``jaxssl.losses.vicreg_loss``) averages them, so solo-learn's var weight 25 is
``vicreg.std_coeff = 50`` here (the same objective); LARS LR 0.3 x B/256, weight decay 1e-4;
views (vicreg.yaml ``augmentations``, both views alike): crop area [0.2, 1], ColorJitter(0.4,
0.4, 0.2, 0.1) p=0.8, grayscale p=0.2, no blur, solarize p=0.1, flip.

Shared with solo-learn's other CIFAR recipes (batch 256, 1000 epochs, 10 warm-up epochs
then cosine, ResNet-18 CIFAR stem, view settings, CIFAR-10 mean/std, solo-learn's LARS with ``clip_lr``):
jaxssl/solo_learn.py, which names its references and the deviations they share.
"""
from jaxssl.config import no_arg
from jaxssl.methods.vicreg import vicreg_config
from jaxssl.solo_learn import cifar_recipe, solo_lars


def get_config(arg=None):
    no_arg(arg, __file__)
    c = cifar_recipe(vicreg_config(), crop_scale=(0.2, 1.0), solarize_prob=0.1)
    c.vicreg.update(dict(projector_hidden_dim=2048, projector_output_dim=2048,
                         projector_num_layers=3, sim_coeff=25.0,
                         std_coeff=2 * 25.0,  # solo-learn sums the two variance terms
                         cov_coeff=1.0))
    solo_lars(c, base_lr=0.3, weight_decay=1e-4)
    return c.lock()
