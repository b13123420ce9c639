"""Linear probe of an I-JEPA ViT-H/14 (configs/ijepa_imagenet.py) on ImageNet-1k.

Command:   python -m jaxssl.main --config=configs/ijepa_imagenet_linear.py --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR   (a run of configs/ijepa_imagenet.py)
Hardware:  a TPU v4-32-class slice or 16 80GB GPUs (frozen ViT-H/14 forward passes).
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (one
           step of it on mock data is in the tests).
Expected:  W/eval_results.json {"pretrained": {"linear_all": ...}}: 79.3 top-1 is the I-JEPA
           paper's ViT-H/14, 300-epoch linear-probe number (Table 1).

Protocol: the feature is the one the paper names for I-JEPA, which has no class token: the
TARGET encoder (the EMA, read from the checkpoint's model_state/teacher/params) on the whole
image, the mean of its last layer's patch tokens after the final LayerNorm
(``model.pool='gap'``). facebookresearch/ijepa releases no evaluation code, and the
optimisation settings of the paper's appendix could not be checked here; the head and
optimiser below are MAE's linear-probe recipe (BatchNorm without affine before the linear
layer, LARS, base LR 0.1 x B/256, batch 16384, 90 epochs with 10 warm-up epochs, no weight
decay; RandomResizedCrop + flip for training, Resize + CenterCrop 224 for evaluation) --
a standard protocol for frozen ViT features, not a claim about I-JEPA's.
"""
from jaxssl.config import load_preset
from jaxssl.methods.classifier import classifier_config


def get_config(arg=None):
    del arg
    c = classifier_config(load_preset("ijepa_imagenet"), "linear_eval")
    c.classifier.update(dict(head="bn_linear", head_init="trunc_normal", head_init_std=0.01))
    c.augment.update(dict(crop_scale=(0.08, 1.0), flip_prob=0.5, resize_method="bicubic"))
    c.data.crop_scale = (0.08, 1.0)
    c.optim.update(dict(name="lars", base_lr=0.1, lr_scaling="linear", momentum=0.9,
                        weight_decay=0.0, weight_decay_end=-1.0, trust_coefficient=0.001,
                        lars_classic_momentum=False, warmup_epochs=10.0, schedule="cosine",
                        min_lr=0.0))
    c.train.update(dict(batch_size=16384, num_epochs=90.0, num_steps=0, log_every_steps=20,
                        checkpoint_every_steps=500))
    c.eval.batch_size = 1024
    return c.lock()
