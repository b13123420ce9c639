"""MoCo v3's end-to-end fine-tuning of a pretrained ViT on ImageNet (the DeiT recipe).

Command:   python -m jaxssl.main --config=configs/mocov3_imagenet_finetune.py:vit_base \
               --workdir=W --config.init_from=PRETRAIN_WORKDIR
           (a run of configs/mocov3_imagenet.py with the same argument: vit_small | vit_base)
Hardware:  a TPU v3-64 / 4 x 8-GPU nodes (batch 1024).
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (its
           2-step run on mock data is tests/test_protocol_presets.py).
Expected:  W/eval_results.json {"pretrained": {"finetune_all": ...}}: facebookresearch/moco-v3
           README, "end-to-end fine-tuning": ViT-S 81.4, ViT-B 83.2 (150 epochs), from the
           300-epoch pretrained models.

Recipe (moco-v3 README: "obtained using the DeiT repo, using all the default DeiT configs.
ViT-B is fine-tuned for 150 epochs"; convert to DeiT and run DeiT's ``main.py --epochs 150``):
ViT-S with DeiT's default 300 epochs, ViT-B 150; facebookresearch/deit ``main.py`` defaults
(the 2021 ``main.py`` MoCo v3 used): AdamW, lr 5e-4 x
B/512 at batch 1024, weight decay 0.05 (not on 1-D parameters, cls_token, pos_embed),
5 warm-up epochs then cosine to 1e-5, drop path 0.1, RandAugment rand-m9-mstd0.5-inc1,
mixup 0.8 / cutmix 1.0, label smoothing 0.1, random erasing 0.25, bicubic random crops +
flip (timm ``create_transform``, ``--train-interpolation bicubic``), evaluation Resize(256,
bicubic) + CenterCrop(224) (``datasets.build_transform``), class-token head. Deviations: no repeated augmentation (DeiT's ``--repeated-aug``),
cosine per step instead of per epoch, warm-up from 0 instead of 1e-6.
"""
from jaxssl.config import load_preset, parse_arg
from jaxssl.methods.classifier import classifier_config

EPOCHS = {"vit_small": 300.0,   # DeiT main.py --epochs default ("all the default DeiT configs")
          "vit_base": 150.0}   # moco-v3 README: "ViT-B is fine-tuned for 150 epochs"


def get_config(arg=None):
    variant = parse_arg(arg, EPOCHS, "vit_base")
    c = classifier_config(load_preset("mocov3_imagenet", variant), "finetune")
    c.classifier.update(dict(
        head="linear", head_init="trunc_normal", head_init_std=0.02, drop_path_rate=0.1,
        label_smoothing=0.1, mixup_alpha=0.8, cutmix_alpha=1.0, mixup_switch_prob=0.5,
        randaugment="rand-m9-mstd0.5-inc1", random_erasing=0.25))
    c.augment.update(dict(crop_scale=(0.08, 1.0), flip_prob=0.5, resize_method="bicubic"))
    # the host crop and the evaluation resize (ImageNet is read on the host): bicubic too
    c.data.update(dict(crop_scale=(0.08, 1.0), resize_method="bicubic"))
    c.optim.update(dict(name="adamw", base_lr=5e-4 * 256 / 512, lr_scaling="linear", b1=0.9,
                        b2=0.999, eps=1e-8, weight_decay=0.05, warmup_epochs=5.0,
                        schedule="cosine", min_lr=1e-5, no_decay_names=("cls_token", "pos_embed"),
                        decay_all_params=False, grad_clip_norm=0.0))
    c.train.update(dict(batch_size=1024, num_epochs=EPOCHS[variant], num_steps=0,
                        log_every_steps=100, checkpoint_every_steps=1000))
    c.eval.batch_size = 1024
    return c.lock()
