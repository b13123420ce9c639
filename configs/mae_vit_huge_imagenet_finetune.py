"""MAE's end-to-end fine-tuning of the pretrained ViT-H/14 on ImageNet (the 86.9 recipe).

Command:   python -m jaxssl.main --config=configs/mae_vit_huge_imagenet_finetune.py --workdir=W \
               --config.init_from=PRETRAIN_WORKDIR   (a run of configs/mae_vit_huge_imagenet.py)
Hardware:  batch 1024: a TPU v3-128, or FINETUNE.md's 8 nodes x 8 V100-32G; plan the slice
           with scripts/plan.py (``--config.mesh.param_sharding=fsdp`` where it does not fit).
Runtime:   FINETUNE.md: ~13 h 9 min on 64 V100 (50 epochs).
Expected:  W/eval_results.json {"pretrained": {"finetune_all": ...}}: 86.9 top-1 from the
           1600-epoch ViT-H (facebookresearch/mae README.md; FINETUNE.md: the released fine-tuned
           model evaluates to 86.928).

Recipe (facebookresearch/mae FINETUNE.md "Script for ViT-Huge", main_finetune.py): the ViT-B
recipe of configs/mae_vit_base_imagenet_finetune.py (AdamW (0.9, 0.999), wd 0.05, 5 warm-up
epochs then a half cosine to min_lr 1e-6, RandAugment rand-m9-mstd0.5-inc1, mixup 0.8 /
cutmix 1.0, label smoothing 0.1, random erasing 0.25, global pool + fc_norm, batch 1024) with
``--model vit_huge_patch14 --epochs 50 --blr 1e-3 --layer_decay 0.75 --drop_path 0.3``
(batch 16 x 8 nodes x 8 GPUs = 1024). FINETUNE.md notes the global pool (used here) avoids
the NaNs the class-token head can hit when fine-tuning ViT-H with mixed precision on GPUs.
"""
from jaxssl.config import load_preset


def get_config(arg=None):
    del arg
    c = load_preset("mae_vit_base_imagenet_finetune")
    with c.unlocked():
        c.model.update(dict(backbone="vit_huge", patch_size=14))    # mae_vit_huge_imagenet's encoder
        c.classifier.update(dict(layer_decay=0.75, drop_path_rate=0.3))
        c.optim.base_lr = 1e-3
        c.train.update(dict(batch_size=1024, num_epochs=50.0))
    return c.lock()
