"""MoCo v2's linear classification protocol on ImageNet: a linear classifier on the frozen R50.

Command:   python -m jaxssl.main --config=configs/mocov2_imagenet_linear.py --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR   (a run of configs/mocov2_imagenet.py)
Hardware:  one 8-GPU node (batch 256).
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (its
           2-step run on mock data is tests/test_protocol_presets.py).
Expected:  W/eval_results.json {"pretrained": {"linear_all": ...}}: 67.5 +- 0.1 top-1 for the
           200-epoch pretraining (facebookresearch/moco README, "MoCo v2, 200 epochs";
           71.1 after 800 epochs).

Protocol (facebookresearch/moco ``main_lincls.py``): SGD momentum 0.9, lr 30, batch 256,
100 epochs, lr x 0.1 at epochs 60 and 80, weight decay 0, ``fc`` initialised N(0, 0.01^2)
with zero bias, frozen backbone in eval mode, RandomResizedCrop(224) + flip for training,
Resize(256) + CenterCrop(224) for evaluation.
"""
from jaxssl.config import load_preset, no_arg
from jaxssl.methods.classifier import classifier_config


def get_config(arg=None):
    no_arg(arg, __file__)
    c = classifier_config(load_preset("mocov2_imagenet"), "linear_eval")
    c.classifier.update(dict(head="linear", head_init="normal", head_init_std=0.01))
    c.augment.update(dict(crop_scale=(0.08, 1.0), flip_prob=0.5))
    c.data.crop_scale = (0.08, 1.0)
    c.optim.update(dict(name="sgd", base_lr=30.0, lr_scaling="none", momentum=0.9,
                        nesterov=False, weight_decay=0.0, warmup_epochs=0.0, schedule="step",
                        step_boundaries_epochs=(60, 80), step_factor=0.1))
    c.train.update(dict(batch_size=256, num_epochs=100.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2000))
    c.eval.batch_size = 1024
    return c.lock()
