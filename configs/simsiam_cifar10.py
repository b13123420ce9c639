"""SimSiam on CIFAR-10 with ResNet-18 (CIFAR stem): solo-learn's recipe.

Command:   python -m jaxssl.main --config=configs/simsiam_cifar10.py --workdir=runs/simsiam_cifar10
           (prepare the data first: python scripts/prepare_data.py cifar10)
Hardware:  1 GPU (A100/H100) or a TPU v3-8; the batch is sharded over all visible devices.
Runtime:   not measured here (1000 epochs at batch 256: many hours on one A100-class GPU).
Expected:  linear top-1 90.51 (solo-learn README.md "CIFAR-10" table, "Simsiam ResNet18 1000
           epochs"). That number is solo-learn's online linear classifier (trained alongside
           on the augmented crops with a stop-gradient and its own LR ``classifier_lr`` 0.1 x
           B/256, ``solo/methods/base.py``), which jaxssl does not run: the preset's probe is
           jaxssl's on frozen, unaugmented features, so its number is not directly comparable.

Recipe (solo-learn scripts/pretrain/cifar/simsiam.yaml + augmentations/symmetric_weak.yaml):
projector (Linear(no bias) -> BN -> ReLU) x 2 -> Linear -> BN(affine=False) at 2048
(``proj_hidden_dim`` / ``proj_output_dim`` 2048), predictor 2048 -> 512 -> 2048
(``pred_hidden_dim`` 512; solo/methods/simsiam.py); the predictor at a constant LR
(``static_lr: True``); SGD momentum 0.9, LR 0.5 x B/256, weight decay 1e-5 on every parameter
(``exclude_bias_n_norm_wd`` False); views (symmetric_weak.yaml): crop area [0.08, 1],
ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2, PIL blur sigma [0.1, 2] p=0.5, no
solarize, flip, both views alike.

Shared with solo-learn's other CIFAR recipes (batch 256, 1000 epochs, 10 warm-up epochs
then cosine, ResNet-18 CIFAR stem, view settings, CIFAR-10 mean/std):
jaxssl/solo_learn.py, which names its references and the deviations they share.
"""
from jaxssl.config import no_arg
from jaxssl.methods.simsiam import simsiam_config
from jaxssl.solo_learn import cifar_recipe


def get_config(arg=None):
    no_arg(arg, __file__)
    c = cifar_recipe(simsiam_config(), saturation=0.4, blur_prob=0.5)
    c.simsiam.update(dict(projector_hidden_dim=2048, projector_output_dim=2048,
                          projector_num_layers=3, predictor_hidden_dim=512,
                          fix_predictor_lr=True))
    c.optim.update(dict(name="sgd", base_lr=0.5, lr_scaling="linear", weight_decay=1e-5,
                        momentum=0.9, warmup_epochs=10.0, schedule="cosine",
                        decay_all_params=True))
    return c.lock()
