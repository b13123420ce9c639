"""MAE's end-to-end fine-tuning of the pretrained ViT-B/16 on ImageNet (the 83.6 recipe).

Command:   python -m jaxssl.main --config=configs/mae_vit_base_imagenet_finetune.py --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR   (a run of configs/mae_vit_base_imagenet.py)
Hardware:  a TPU v3-128 / 4 x 8-GPU nodes (batch 1024).
Runtime:   not measured: jaxssl has no full ImageNet run of this preset on record (its
           2-step run on mock data is tests/test_protocol_presets.py).
Expected:  W/eval_results.json {"pretrained": {"finetune_all": ...}}: 83.6 top-1 for the
           1600-epoch ViT-B (facebookresearch/mae README and FINETUNE.md: 83.664 with the
           released checkpoint; paper Table 3).

Recipe (facebookresearch/mae ``main_finetune.py``, FINETUNE.md ViT-Base command): AdamW
(0.9, 0.999), blr 5e-4 x B/256 at batch 1024, weight decay 0.05 (not on 1-D parameters,
cls_token, pos_embed), layer-wise lr decay 0.65, 100 epochs with 5 warm-up epochs then a
half-cosine per iteration to min_lr 1e-6, drop path 0.1, RandAugment rand-m9-mstd0.5-inc1,
mixup 0.8 / cutmix 1.0 (switch 0.5), label smoothing 0.1, random erasing 0.25 ('pixel'),
RandomResizedCrop(224, bicubic) + flip; global average pooling of the patch tokens +
``fc_norm`` (``--global_pool``), head trunc-normal(2e-5); evaluation Resize(256) +
CenterCrop(224).
"""
from jaxssl.config import load_preset, no_arg
from jaxssl.methods.classifier import classifier_config


def get_config(arg=None):
    no_arg(arg, __file__)
    c = classifier_config(load_preset("mae_vit_base_imagenet"), "finetune")
    c.model.pool = "gap_fc_norm"
    c.classifier.update(dict(
        head="linear", head_init="trunc_normal", head_init_std=2e-5, layer_decay=0.65,
        drop_path_rate=0.1, label_smoothing=0.1, mixup_alpha=0.8, cutmix_alpha=1.0,
        mixup_switch_prob=0.5, randaugment="rand-m9-mstd0.5-inc1", random_erasing=0.25))
    c.augment.update(dict(crop_scale=(0.08, 1.0), flip_prob=0.5, resize_method="bicubic"))
    c.data.crop_scale = (0.08, 1.0)
    c.optim.update(dict(name="adamw", base_lr=5e-4, lr_scaling="linear", b1=0.9, b2=0.999,
                        eps=1e-8, weight_decay=0.05, warmup_epochs=5.0, schedule="cosine",
                        min_lr=1e-6, no_decay_names=("cls_token", "pos_embed"),
                        grad_clip_norm=0.0))
    c.train.update(dict(batch_size=1024, num_epochs=100.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=1000))
    c.eval.batch_size = 1024
    return c.lock()
