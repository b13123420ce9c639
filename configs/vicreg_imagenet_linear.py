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
from jaxssl.methods.classifier import classifier_config


def get_config(arg=None):
    c = classifier_config(load_preset("vicreg_imagenet", arg), "linear_eval")
    c.classifier.update(dict(head="linear", head_init="normal", head_init_std=0.01))
    c.augment.update(dict(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_prob=0.5,
                          resize_method="bilinear"))
    c.data.update(dict(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3),
                       resize_method="bilinear"))
    c.eval_crop_fraction = 224 / 256
    c.optim.update(dict(name="sgd", base_lr=0.02, lr_scaling="none", momentum=0.9,
                        nesterov=False, weight_decay=1e-6, decay_all_params=True,
                        warmup_epochs=0.0, schedule="cosine_epoch"))
    c.train.update(dict(batch_size=256, num_epochs=100.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2000))
    c.eval.batch_size = 1024
    return c.lock()
