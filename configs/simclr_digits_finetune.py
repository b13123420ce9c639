"""SimCLR's semi-supervised fine-tuning at digits scale: 10 labels per class, from the quickstart.

Command:   python -m jaxssl.main --config=configs/simclr_digits_finetune.py --workdir=W \
               --config.init_from=runs/simclr_digits
           (first run the quickstart, configs/simclr_digits.py, into runs/simclr_digits)
Hardware:  2 CPU cores.
Runtime:   about 2 minutes (the pretrained fine-tune, then the same recipe from random init).
Expected:  W/eval_results.json = {"pretrained": {"finetune_10": acc},
           "random_init": {"finetune_10": acc}}: top-1 on the 540 held-out digits after
           fine-tuning on 100 labelled digits (10 per class, the kNN / probe ``*_10`` subset).
           Measured (seed 0, 1 CPU device): pretrained 0.935, random init 0.885.

Recipe (google-research/simclr README, semi-supervised fine-tuning on ImageNet 1% / 10%:
``--train_mode=finetune --fine_tune_after_block=-1 --ft_proj_selector=1 --global_bn=True
--optimizer=lars --learning_rate=0.005 --learning_rate_scaling=sqrt --weight_decay=0
--warmup_epochs=0 --zero_init_logits_layer=True``): the whole network trains from the first
projection-head layer (Dense-BN-ReLU kept), BN in train mode over the global batch, a
zero-initialised classifier left out of LARS's weight decay and trust ratio
(``head_supervised``), cosine decay without warm-up, crops as in pretraining. Scaled to digits:
batch 32 of the 100 labelled examples and more epochs; the learning rate is raised (the
reference's 0.005 x sqrt(B) assumes 60 epochs of 12.8k ImageNet images).
"""
from jaxssl.config import load_preset, no_arg
from jaxssl.methods.classifier import classifier_config


def get_config(arg=None):
    no_arg(arg, __file__)
    c = classifier_config(load_preset("simclr_digits"), "finetune")
    c.classifier.update(dict(from_head_layers=1, labels_per_class=10, head_init="zeros",
                             baselines=("random_init",)))
    c.augment.update(dict(crop_scale=(0.4, 1.0), flip_prob=0.0))
    c.optim.update(dict(name="lars", base_lr=0.1, lr_scaling="sqrt", weight_decay=0.0,
                        momentum=0.9, warmup_epochs=0.0, schedule="cosine",
                        no_decay_names=("classifier",)))
    c.train.update(dict(batch_size=32, num_epochs=200.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=300))
    c.eval.update(dict(batch_size=512))
    return c.lock()
