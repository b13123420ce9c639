"""DINOv2's linear evaluation on ImageNet: a linear classifier on the frozen *teacher* backbone.

Command:   python -m jaxssl.main --config=configs/dinov2_imagenet_linear.py --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR
           (PRETRAIN_WORKDIR: a run of configs/dinov2_imagenet.py)
Hardware:  one 8-GPU node in the reference.
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (one
           step of it on mock data is in the tests).
Expected:  W/eval_results.json {"pretrained": {"linear_all": top-1 on ImageNet validation}}.
           facebookresearch/dinov2 README ("Fast setup", vitl16_short): 82.9 linear, the best
           classifier of the grid below.

Protocol (facebookresearch/dinov2 ``dinov2/eval/linear.py`` defaults): the teacher's backbone
(``load_pretrained_weights(model, ..., "teacher")``); features: the final-normed [CLS] of the
last 4 blocks and the mean of the last block's patch tokens (``create_linear_input`` with
``use_n_blocks=4, use_avgpool=True``; register tokens are not patch tokens); N(0, 0.01^2)
weights, zero bias; SGD momentum 0.9, weight decay 0, lr x B/256, ``CosineAnnealingLR(max_iter,
eta_min=0)`` stepped every iteration over 10 x 1250 = 12,500 iterations at batch 8 x 128 =
1024; RandomResizedCrop(224, bicubic) + flip, Resize(256, bicubic) + CenterCrop(224). The
shared recipe: jaxssl/linear_protocols.py.
Deviations: the reference trains 52 classifiers in one pass (learning rates 1e-5 .. 0.1 x
``n_last_blocks`` {1, 4} x ``avgpool`` {False, True}) and reports the best on the validation
set; this preset is one point of that grid (lr 1e-3), so sweep ``--config.optim.base_lr``,
``--config.classifier.n_last_blocks`` and ``--config.classifier.avgpool_patchtokens`` to
compare with the README. ImageNet mean/std input normalisation, as the pretraining preset and
DINOv2.
"""
from jaxssl.config import load_preset, parse_arg
from jaxssl.linear_protocols import vit_linear_protocol

EPOCH_LENGTH = 1250   # dinov2/eval/linear.py epoch_length (iterations per "epoch")


def get_config(arg=None):
    parse_arg(arg, {"vitl16_short": "vitl16_short"}, "vitl16_short")
    c = vit_linear_protocol(load_preset("dinov2_imagenet", "vitl16_short"), n_last_blocks=4,
                            avgpool_patchtokens=True, batch_size=1024, base_lr=0.001,
                            num_epochs=0.0, num_steps=10 * EPOCH_LENGTH, schedule="cosine",
                            checkpoint_every_steps=EPOCH_LENGTH)
    return c.lock()
