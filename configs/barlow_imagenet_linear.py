"""Barlow Twins' linear evaluation on ImageNet: a linear classifier on the frozen ResNet-50.

Command:   python -m jaxssl.main --config=configs/barlow_imagenet_linear.py --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR
           (PRETRAIN_WORKDIR: a run of configs/barlow_imagenet.py)
Hardware:  one 8-GPU node in the reference (batch 256).
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (one
           step of it on mock data is in the tests).
Expected:  W/eval_results.json {"pretrained": {"linear_all": top-1 on ImageNet validation}}.
           Barlow Twins paper (Zbontar et al. 2021) Table 1: 73.2; facebookresearch/
           barlowtwins README: 73.5 for its released 1000-epoch, batch-2048 checkpoint.

Protocol (facebookresearch/barlowtwins ``evaluate.py`` defaults and the README's
``--lr-classifier 0.3``): batch 256, 100 epochs, ``optim.SGD(momentum=0.9,
weight_decay=1e-6)`` on the classifier's weight and bias (PyTorch's coupled L2 on every
parameter it is given), lr 0.3 (not scaled with the batch), ``CosineAnnealingLR(epochs)``
stepped once per epoch, no warm-up, ``fc`` initialised N(0, 0.01^2) with zero bias, frozen
backbone in eval mode, RandomResizedCrop(224) + flip, Resize(256) + CenterCrop(224) for
evaluation (bilinear), ImageNet mean/std.
"""
from jaxssl.config import load_preset
from jaxssl.linear_protocols import evaluate_py_protocol


def get_config(arg=None):
    return evaluate_py_protocol(load_preset("barlow_imagenet", arg), base_lr=0.3).lock()
