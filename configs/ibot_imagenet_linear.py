"""iBOT's linear evaluation on ImageNet: a linear classifier on the frozen *teacher* backbone.

Command:   python -m jaxssl.main --config=configs/ibot_imagenet_linear.py:VARIANT --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR
           (VARIANT and PRETRAIN_WORKDIR: a run of configs/ibot_imagenet.py:VARIANT)
Hardware:  one 8-GPU node in the reference (run.sh imagenet_linear ... 8).
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (one
           step of it on mock data is in the tests).
Expected:  W/eval_results.json {"pretrained": {"linear_all": top-1 on ImageNet validation}}.
           bytedance/ibot README: vit_s16 (800 epochs) 77.9, vit_b16 (400 epochs) 79.5, each
           the best of eval_linear_multi.py's sweep (below).

Protocol (bytedance/ibot ``evaluation/eval_linear.py`` defaults, features as ``run.sh`` sets
them per architecture): the teacher's weights (``--checkpoint_key teacher``); ViT-S: the
final-normed [CLS] of the last 4 blocks (``LINEAR_N_LAST_BLOCKS=4``, ``LINEAR_AVGPOOL=0``);
ViT-B: the last block's [CLS] and the mean of its patch tokens (1, ``LINEAR_AVGPOOL=2``, which
is jaxssl's ``avgpool_patchtokens=True``); N(0, 0.01^2) weights, zero bias; SGD momentum 0.9,
lr 0.001 x B/256, weight decay 0, ``CosineAnnealingLR(100, eta_min=0)`` per epoch, 100 epochs,
batch 8 x 128 = 1024; RandomResizedCrop(224) + flip, Resize(256, bicubic) + CenterCrop(224).
The shared recipe: jaxssl/linear_protocols.py.
Deviations: the README's numbers come from ``eval_linear_multi.py``, which trains 180
classifiers at once (learning rates 1e-4 .. 9, weight decay 0 / 1e-6, SGD / LARS) and reports
the best on the validation set; this preset is one point of that sweep (the single-classifier
script's default), so sweep ``--config.optim.base_lr`` to compare with the README. One resample
filter (bicubic) serves the training crops and the evaluation resize.
"""
from jaxssl.config import load_preset, parse_arg
from jaxssl.linear_protocols import vit_linear_protocol

#: pretraining variant -> (n_last_blocks, avgpool_patchtokens), as run.sh sets them
FEATURES = {"vit_s16": (4, False), "vit_b16": (1, True)}


def get_config(arg=None):
    variant = parse_arg(arg, {v: v for v in FEATURES}, "vit_s16")
    n_last_blocks, avgpool = FEATURES[variant]
    c = vit_linear_protocol(load_preset("ibot_imagenet", variant), n_last_blocks=n_last_blocks,
                            avgpool_patchtokens=avgpool, batch_size=1024, base_lr=0.001)
    return c.lock()
