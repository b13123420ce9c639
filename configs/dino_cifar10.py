"""DINO on CIFAR-10 with ResNet-18 (CIFAR stem): solo-learn's recipe (no multi-crop).

Command:   python -m jaxssl.main --config=configs/dino_cifar10.py --workdir=runs/dino_cifar10
           (prepare the data first: python scripts/prepare_data.py cifar10)
Hardware:  1 GPU (A100/H100) or a TPU v3-8; the batch is sharded over all visible devices.
Runtime:   not measured here (1000 epochs at batch 256: many hours on one A100-class GPU).
Expected:  linear top-1 89.52 (solo-learn README.md "CIFAR-10" table, "DINO ResNet18 1000
           epochs"). That number is solo-learn's online linear classifier (trained alongside
           on the augmented crops with a stop-gradient and its own LR ``classifier_lr`` 0.1 x
           B/256, ``solo/methods/base.py``), which jaxssl does not run: the preset's probe is
           jaxssl's on frozen, unaugmented features, so its number is not directly comparable.

Recipe (solo-learn scripts/pretrain/cifar/dino.yaml + augmentations/asymmetric.yaml):
two 32 px crops and no local crops (asymmetric.yaml: ``num_crops`` 1 + 1); DINO head
(solo/methods/dino.py ``DINOHead``): 3 layers, hidden 2048 (``proj_hidden_dim``), GELU, no BN
(``use_bn_in_head`` False), bottleneck 256 (``proj_output_dim``), weight-normalised 4096
prototypes (``num_prototypes``), ``norm_last_layer`` True, last layer frozen for 1 epoch
(``freeze_last_layer``), no gradient clipping (``clip_grad`` 0); student temperature 0.1,
teacher 0.07 from the start (``warmup_teacher_temperature_epochs`` 0), center momentum 0.9
(solo/losses/dino.py); teacher momentum 0.9995 -> 1.0 on a half cosine; LARS LR 0.3 x B/256,
weight decay 1e-6 (no weight-decay schedule); views: crop area [0.08, 1], ColorJitter(0.4,
0.4, 0.2, 0.1) p=0.8, grayscale p=0.2, no blur, solarize p=0 / 0.2, flip.

Shared with solo-learn's other CIFAR recipes (batch 256, 1000 epochs, 10 warm-up epochs
then cosine, ResNet-18 CIFAR stem, view settings, CIFAR-10 mean/std, solo-learn's LARS with ``clip_lr``):
jaxssl/solo_learn.py, which names its references and the deviations they share.
"""
from jaxssl.config import no_arg
from jaxssl.methods.dino import dino_config
from jaxssl.solo_learn import cifar_recipe, solo_lars


def get_config(arg=None):
    no_arg(arg, __file__)
    c = cifar_recipe(dino_config())
    c.dino.global_1.update(dict(blur_prob=0.0, solarize_prob=0.0))
    c.dino.global_2.update(dict(blur_prob=0.0, solarize_prob=0.2))
    c.dino.local.update(dict(blur_prob=0.0, solarize_prob=0.0))
    c.dino.update(dict(out_dim=4096, head_hidden_dim=2048, head_bottleneck_dim=256,
                       head_num_layers=3, head_use_bn=False, norm_last_layer=True,
                       student_temp=0.1, teacher_temp=0.07, warmup_teacher_temp=0.04,
                       warmup_teacher_temp_epochs=0, center_momentum=0.9,
                       freeze_last_layer_epochs=1, local_crops_number=0))
    c.teacher.update(dict(momentum=0.9995, momentum_final=1.0, momentum_schedule="cosine"))
    solo_lars(c, base_lr=0.3, weight_decay=1e-6)
    return c.lock()
