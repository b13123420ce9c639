"""VICReg's linear evaluation on ImageNet: a linear classifier on the frozen ResNet-50.

Command:   python -m jaxssl.main --config=configs/vicreg_imagenet_linear.py --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR
           (PRETRAIN_WORKDIR: a run of configs/vicreg_imagenet.py)
Hardware:  one 8-GPU node in the reference (batch 256).
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (one
           step of it on mock data is in the tests).
Expected:  W/eval_results.json {"pretrained": {"linear_all": top-1 on ImageNet validation}}.
           facebookresearch/vicreg README: 73.2 (ResNet-50, 1000 epochs); VICReg paper
           (Bardes et al. 2022) Table 1: 73.2.

Protocol (facebookresearch/vicreg ``evaluate.py`` defaults and the README's ``--lr-head
0.02``): batch 256, 100 epochs, ``optim.SGD(momentum=0.9, weight_decay=1e-6)`` on the head's
weight and bias, lr 0.02 (not scaled with the batch), ``CosineAnnealingLR(epochs)`` stepped
once per epoch, no warm-up, head initialised N(0, 0.01^2) with zero bias, frozen backbone in
eval mode, RandomResizedCrop(224) + flip, Resize(256) + CenterCrop(224) for evaluation
(bilinear), ImageNet mean/std.
"""
from jaxssl.config import load_preset
from jaxssl.linear_protocols import evaluate_py_protocol


def get_config(arg=None):
    return evaluate_py_protocol(load_preset("vicreg_imagenet", arg), base_lr=0.02).lock()
