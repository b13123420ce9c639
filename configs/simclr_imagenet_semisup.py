"""SimCLR's semi-supervised fine-tuning on 1% or 10% of ImageNet's labels.

Command:   python -m jaxssl.main --config=configs/simclr_imagenet_semisup.py:1pct --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR   (a run of configs/simclr_imagenet.py:v2)
           (tfds ``imagenet2012_subset/1pct`` or ``/10pct``: scripts/prepare_data.py)
Hardware:  a TPU v3-32 / 8-GPU node (batch 1024).
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (its
           2-step run on mock data is tests/test_protocol_presets.py).
Expected:  W/eval_results.json {"pretrained": {"finetune_all": top-1 on ImageNet validation}}.
           google-research/simclr README, SimCLR v2 R50 (1x, no SK) fine-tuned: 57.9 (1%),
           68.4 (10%); SimCLR v1 paper Table 7, R50 (1x): 48.3 (1%), 65.6 (10%). These
           need the pretraining checkpoints they come from (v2: 800 epochs with the memory
           buffer jaxssl's v2 preset lacks).

Protocol (google-research/simclr README, "Semi-supervised learning and fine-tuning the
whole network": ``--train_mode=finetune --fine_tune_after_block=-1 --ft_proj_selector=1
--zero_init_logits_layer=True --global_bn=True --optimizer=lars --learning_rate=0.005
--learning_rate_scaling=sqrt --weight_decay=0 --train_epochs=60 --train_batch_size=1024
--warmup_epochs=0``; 30 epochs for 10%): the whole network from the first projection-head
layer trains, BN over the global batch, a zero-initialised classifier left out of LARS's
weight decay and trust ratio (``head_supervised``), cosine per step, random crops + flips.
"""
from jaxssl.config import load_preset, parse_arg
from jaxssl.methods.classifier import classifier_config

SUBSETS = {"1pct": 60.0, "10pct": 30.0}  # subset -> fine-tuning epochs


def get_config(arg=None):
    subset = parse_arg(arg, SUBSETS, "1pct")
    c = classifier_config(load_preset("simclr_imagenet", "v2"), "finetune")
    c.data.name = f"imagenet2012_subset/{subset}"
    c.classifier.update(dict(head="linear", head_init="zeros", from_head_layers=1))
    c.augment.update(dict(crop_scale=(0.08, 1.0), flip_prob=0.5))
    c.data.crop_scale = (0.08, 1.0)
    c.optim.update(dict(name="lars", base_lr=0.005, lr_scaling="sqrt", momentum=0.9,
                        weight_decay=0.0, warmup_epochs=0.0, schedule="cosine",
                        no_decay_names=("classifier",)))
    c.train.update(dict(batch_size=1024, num_epochs=SUBSETS[subset], num_steps=0,
                        log_every_steps=50, checkpoint_every_steps=500))
    c.eval.batch_size = 1024
    return c.lock()
