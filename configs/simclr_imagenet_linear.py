"""SimCLR's linear evaluation on ImageNet: a linear classifier on the frozen ResNet-50.

Command:   python -m jaxssl.main --config=configs/simclr_imagenet_linear.py:v1 --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR
           (PRETRAIN_WORKDIR: a run of configs/simclr_imagenet.py with the same argument)
Hardware:  a TPU v3-32 / 8-GPU node (batch 4096 of frozen-backbone forward passes).
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (its
           2-step run on mock data is tests/test_protocol_presets.py).
Expected:  W/eval_results.json {"pretrained": {"linear_all": top-1 on ImageNet validation}}.
           google-research/simclr README: "around 64.5%" for its 100-epoch pretraining
           command (README, "Pretraining" / "Fine-tuning a linear head"); the released
           SimCLR v1 R50 (1x) checkpoint, trained 1000 epochs, reaches 69.1 (README table);
           SimCLR v2 R50 (1x): 71.7 (README table, with the v2 memory buffer, which
           jaxssl's v2 preset does not have).

Protocol (google-research/simclr README, ImageNet linear eval: ``--train_mode=finetune
--fine_tune_after_block=4 --zero_init_logits_layer=True --optimizer=momentum
--learning_rate=0.1 --weight_decay=1e-6 --train_epochs=90 --train_batch_size=4096
--warmup_epochs=0``): SGD with Nesterov momentum 0.9 (tf2 ``momentum`` optimizer), lr 0.1 x
B/256, cosine decay per step without warm-up, a zero-initialised classifier, weight decay
1e-6 as an L2 loss on the classifier's kernel and bias (``model_util.add_weight_decay``:
every trainable variable but BN's, i.e. coupled decay on both),
frozen backbone (BN running statistics), trained on random crops + flips
(``preprocess_for_train(color_distort=False)``); centre crop 0.875 for evaluation.
"""
from jaxssl.config import load_preset
from jaxssl.methods.classifier import classifier_config


def get_config(arg=None):
    c = classifier_config(load_preset("simclr_imagenet", arg), "linear_eval")
    c.classifier.update(dict(head="linear", head_init="zeros"))
    c.augment.update(dict(crop_scale=(0.08, 1.0), flip_prob=0.5))
    c.data.crop_scale = (0.08, 1.0)
    c.optim.update(dict(name="sgd", base_lr=0.1, lr_scaling="linear", momentum=0.9,
                        nesterov=True, weight_decay=1e-6, decay_all_params=True,
                        warmup_epochs=0.0, schedule="cosine"))
    c.train.update(dict(batch_size=4096, num_epochs=90.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=1000))
    c.eval.batch_size = 1024
    return c.lock()
