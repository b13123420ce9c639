"""MoCo v3's linear classification protocol on ImageNet (ResNet-50 or ViT), frozen backbone.

Command:   python -m jaxssl.main --config=configs/mocov3_imagenet_linear.py:VARIANT --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR
           (VARIANT and PRETRAIN_WORKDIR: a run of configs/mocov3_imagenet.py:VARIANT)
Hardware:  one 8-GPU node (batch 1024).
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (its
           2-step run on mock data is tests/test_protocol_presets.py).
Expected:  W/eval_results.json {"pretrained": {"linear_all": ...}}; facebookresearch/moco-v3
           README: R50 100 ep 68.9, 300 ep 72.8, 1000 ep 74.6; ViT-S 300 ep 73.2;
           ViT-B 300 ep 76.7.

Protocol (facebookresearch/moco-v3 ``main_lincls.py``; CONFIG.md): SGD momentum 0.9, lr
0.1 x B/256 for ResNet-50 and 3 x B/256 for ViT (``--lr=3``), batch 1024, 90 epochs, cosine
set once per epoch (``adjust_learning_rate``), weight decay 0, ``fc`` initialised
N(0, 0.01^2) with zero bias, no LARS, frozen backbone in eval mode, RandomResizedCrop(224) +
flip for training, Resize(256) + CenterCrop(224) for evaluation.
"""
from jaxssl.config import load_preset
from jaxssl.methods.classifier import classifier_config


def get_config(arg=None):
    pretrain = load_preset("mocov3_imagenet", arg)
    c = classifier_config(pretrain, "linear_eval")
    vit = c.model.backbone.startswith("vit")
    c.classifier.update(dict(head="linear", head_init="normal", head_init_std=0.01))
    c.augment.update(dict(crop_scale=(0.08, 1.0), flip_prob=0.5))
    c.data.crop_scale = (0.08, 1.0)
    c.optim.update(dict(name="sgd", base_lr=3.0 if vit else 0.1, lr_scaling="linear",
                        momentum=0.9, nesterov=False, weight_decay=0.0, warmup_epochs=0.0,
                        schedule="cosine_epoch"))
    c.train.update(dict(batch_size=1024, num_epochs=90.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=1000))
    c.eval.batch_size = 1024
    return c.lock()
