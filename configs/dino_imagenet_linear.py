"""DINO's linear evaluation on ImageNet: a linear classifier on the frozen *teacher* backbone.

Command:   python -m jaxssl.main --config=configs/dino_imagenet_linear.py:VARIANT --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR
           (VARIANT and PRETRAIN_WORKDIR: a run of configs/dino_imagenet.py:VARIANT)
Hardware:  one 8-GPU node in the reference.
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (one
           step of it on mock data is in the tests).
Expected:  W/eval_results.json {"pretrained": {"linear_all": top-1 on ImageNet validation}}.
           facebookresearch/dino README: vit_s16 (100 epochs, "Vanilla DINO training") 74.0;
           vit_s16_300ep ("Boosting DINO performance") 76.0; r50: no number is published for
           that training command. DINO's kNN numbers (69.3 / 73.3) come from the pretraining
           run's own evaluation (configs/dino_imagenet.py: eval.knn_k 20, T 0.07, teacher).

Protocol (facebookresearch/dino ``eval_linear.py`` defaults): the teacher's weights
(``--checkpoint_key teacher``; jaxssl loads ``model_state/teacher`` of the DINO checkpoint);
ViT features: the final-normed [CLS] token of each of the last ``n_last_blocks`` blocks,
concatenated (``get_intermediate_layers``; 4 for ViT-S, the default), without the
average-pooled patch tokens (``avgpool_patchtokens`` False for ViT-S; ``:vit_b16`` uses 1 /
True, the README's ViT-B command); the protocol is jaxssl/linear_protocols.py's;
ResNet-50: the pooled 2048-d output. ``LinearClassifier``: N(0, 0.01^2) weight, zero bias;
SGD momentum 0.9, lr 0.001 x B/256, weight decay 0, ``CosineAnnealingLR(100, eta_min=0)``
stepped once per epoch, 100 epochs; RandomResizedCrop(224) + flip for training,
Resize(256, bicubic) + CenterCrop(224) for evaluation, ImageNet mean/std where the
pretraining normalised its inputs. Batch: 256, the batch of the README's evaluation logs for
the 74.0 / 76.0 runs (the README command on 8 GPUs x 128 gives 1024 and lr 0.004:
``--config.train.batch_size=1024``).
Deviation: one resample filter serves the training crops and the evaluation resize
(``data.resize_method``): bicubic here, where DINO trains on bilinear crops.
"""
from jaxssl.config import load_preset, parse_arg
from jaxssl.linear_protocols import vit_linear_protocol

#: pretraining variant -> (n_last_blocks, avgpool_patchtokens): the dino README's commands
#: (4 / False for ViT-S, the eval_linear.py defaults; 1 / True for ViT-B)
FEATURES = {"vit_s16": (4, False), "vit_s16_300ep": (4, False), "vit_b16": (1, True),
            "r50": (1, False)}


def get_config(arg=None):
    variant = parse_arg(arg, {v: v for v in FEATURES}, "vit_s16")
    n_last_blocks, avgpool = FEATURES[variant]
    c = vit_linear_protocol(load_preset("dino_imagenet", variant), n_last_blocks=n_last_blocks,
                            avgpool_patchtokens=avgpool, batch_size=256, base_lr=0.001)
    return c.lock()
