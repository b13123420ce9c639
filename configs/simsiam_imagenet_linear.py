"""SimSiam's linear evaluation on ImageNet: a linear classifier on the frozen ResNet-50.

Command:   python -m jaxssl.main --config=configs/simsiam_imagenet_linear.py --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR
           (PRETRAIN_WORKDIR: a run of configs/simsiam_imagenet.py)
Hardware:  one 8-GPU node in the reference (batch 4096 of frozen-backbone forward passes).
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (one
           step of it on mock data is in the tests).
Expected:  W/eval_results.json {"pretrained": {"linear_all": top-1 on ImageNet validation}}.
           facebookresearch/simsiam README: 68.1 (100-epoch pretraining, batch 512).

Protocol (facebookresearch/simsiam ``main_lincls.py`` with the README's ``--lars``): batch
4096, 90 epochs, lr 0.1 x B/256, SGD momentum 0.9 wrapped in apex ``LARC(trust_coefficient=
.001, clip=False)`` (the trust ratio scales the gradient before the momentum buffer: the
PyTorch form, ``optim.lars_classic_momentum=False``), weight decay 0, cosine set once per
epoch without warm-up (``adjust_learning_rate``), ``fc`` initialised N(0, 0.01^2) with zero
bias, frozen backbone in eval mode, RandomResizedCrop(224) + flip, Resize(256) +
CenterCrop(224) for evaluation (bilinear), ImageNet mean/std.
Deviation: LARC also adapts the classifier's bias (every parameter with a non-zero norm);
jaxssl's LARS adapts the 2-D kernel only (the bias takes the plain lr step).
"""
from jaxssl.config import load_preset
from jaxssl.linear_protocols import imagenet_linear_views
from jaxssl.methods.classifier import classifier_config


def get_config(arg=None):
    c = classifier_config(load_preset("simsiam_imagenet", arg), "linear_eval")
    c.classifier.update(dict(head="linear", head_init="normal", head_init_std=0.01))
    imagenet_linear_views(c, "bilinear")
    c.optim.update(dict(name="lars", base_lr=0.1, lr_scaling="linear", momentum=0.9,
                        weight_decay=0.0, trust_coefficient=1e-3, lars_classic_momentum=False,
                        warmup_epochs=0.0, schedule="cosine_epoch"))
    c.train.update(dict(batch_size=4096, num_epochs=90.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=1000))
    c.eval.batch_size = 1024
    return c.lock()
