"""MAE's linear probing on ImageNet: BatchNorm (no affine) + linear head on the frozen ViT-B/16.

Command:   python -m jaxssl.main --config=configs/mae_vit_base_imagenet_linprobe.py --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR   (a run of configs/mae_vit_base_imagenet.py)
Hardware:  a TPU v3-128 / 2 x 8-GPU nodes (batch 16384 of frozen forward passes).
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (its
           2-step run on mock data is tests/test_protocol_presets.py).
Expected:  W/eval_results.json {"pretrained": {"linear_all": ...}}: 68.0 top-1 for the
           1600-epoch ViT-B (MAE paper Table; facebookresearch/mae FINETUNE.md "Linear
           probing": 68.0 in the paper, 67.8 with the released PyTorch code).

Protocol (facebookresearch/mae ``main_linprobe.py``, FINETUNE.md): the class token after the
encoder's final LayerNorm (``--cls_token``), then ``BatchNorm1d(affine=False, eps=1e-6)``
and a linear head initialised trunc-normal(0.01); LARS (momentum 0.9, trust 0.001, the
PyTorch form: momentum after the trust ratio), weight decay 0, blr 0.1 x B/256 at batch
16384, 90 epochs with 10 warm-up epochs then a half-cosine per iteration to 0;
RandomResizedCrop(224, bicubic) + flip for training, Resize(256) + CenterCrop(224) for
evaluation; ImageNet mean/std input normalisation as in pretraining.
"""
from jaxssl.config import load_preset, no_arg
from jaxssl.methods.classifier import classifier_config


def get_config(arg=None):
    no_arg(arg, __file__)
    c = classifier_config(load_preset("mae_vit_base_imagenet"), "linear_eval")
    c.classifier.update(dict(head="bn_linear", head_init="trunc_normal", head_init_std=0.01))
    c.augment.update(dict(crop_scale=(0.08, 1.0), flip_prob=0.5, resize_method="bicubic"))
    c.data.crop_scale = (0.08, 1.0)
    c.optim.update(dict(name="lars", base_lr=0.1, lr_scaling="linear", momentum=0.9,
                        weight_decay=0.0, trust_coefficient=0.001, lars_classic_momentum=False,
                        warmup_epochs=10.0, schedule="cosine", min_lr=0.0))
    c.train.update(dict(batch_size=16384, num_epochs=90.0, num_steps=0, log_every_steps=20,
                        checkpoint_every_steps=500))
    c.eval.batch_size = 1024
    return c.lock()
