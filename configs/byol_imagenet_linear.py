"""BYOL's linear evaluation on ImageNet: a linear classifier on the frozen ResNet-50.

Command:   python -m jaxssl.main --config=configs/byol_imagenet_linear.py:VARIANT --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR
           (VARIANT and PRETRAIN_WORKDIR: a run of configs/byol_imagenet.py:VARIANT)
Hardware:  a TPU v3-32 / 8-GPU node (batch 4096 of frozen-backbone forward passes).
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (one
           step of it on mock data is in the tests).
Expected:  W/eval_results.json {"pretrained": {"linear_all": top-1 on ImageNet validation}}.
           deepmind-research/byol README: 74.0-74.5 for the 1000-epoch recipe (released
           R50 1x checkpoint: ~74.4); BYOL paper (Grill et al. 2020) Table 1: 74.3; 300
           epochs: 72.5 (paper, Table 19 / Fig. 3).

Protocol (deepmind-research ``byol/configs/eval.py``, ``byol/eval_experiment.py``,
``byol/utils/schedules.py``, ``byol/utils/dataset.py``): ``optax.sgd`` with Nesterov momentum
0.9, lr 0.2 x B/256, cosine decay per step to 0 without warm-up (``learning_schedule``,
``warmup_steps=0``), no weight decay, 80 epochs of the whole train split, batch 4096
(``main_loop.py`` default), a ``hk.Linear`` classifier (truncated normal, std 1/sqrt(2048),
zero bias), frozen backbone in eval mode (``freeze_backbone=True``: BN running statistics);
training images: random crop (area 0.08-1, ratio 3/4-4/3) + flip, bicubic resize to 224;
evaluation: centre crop 224/256 of the shorter side, bicubic.
Deviations: the crop sampler is torchvision's (10 attempts, then a centre crop) where
BYOL draws once and clamps the box to the image; the host resize is PIL's (antialiased).
"""
from jaxssl.config import load_preset
from jaxssl.linear_protocols import imagenet_linear_views
from jaxssl.methods.classifier import classifier_config

FEATURE_DIM = 2048   # ResNet-50


def get_config(arg=None):
    c = classifier_config(load_preset("byol_imagenet", arg), "linear_eval")
    c.classifier.update(dict(head="linear", head_init="trunc_normal",
                             head_init_std=FEATURE_DIM ** -0.5))
    imagenet_linear_views(c, "bicubic")
    c.optim.update(dict(name="sgd", base_lr=0.2, lr_scaling="linear", momentum=0.9,
                        nesterov=True, weight_decay=0.0, warmup_epochs=0.0, schedule="cosine"))
    c.train.update(dict(batch_size=4096, num_epochs=80.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=1000))
    c.eval.batch_size = 1024
    return c.lock()
