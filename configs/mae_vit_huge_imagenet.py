"""MAE ViT-H/14 on ImageNet: the paper's 1600-epoch pretraining of its ViT-Huge (He et al. 2022).

Command:   python -m jaxssl.main --config=configs/mae_vit_huge_imagenet.py --workdir=runs/mae_vith14 \
               --config.mesh.param_sharding=fsdp   (where the slice needs it: plan it first)
           then configs/mae_vit_huge_imagenet_finetune.py with --config.init_from=runs/mae_vith14
           (ImageNet needs its manual files: python scripts/prepare_data.py imagenet2012)
Hardware:  B=4096 global: a TPU v3-128 pod slice (the paper's TF/TPU setting) or 8 nodes x 8
           V100-32G (PRETRAIN.md trains ViT-H with the ViT-L command and ``--model
           mae_vit_huge_patch14``). Encoder 630M + decoder 26M parameters: 2.6 GB in float32,
           3x that with AdamW's moments, before gradients and activations.
Runtime:   not reported for 1600 epochs (PRETRAIN.md reports ViT-L only: ~42 h for 800 epochs
           on 64 V100); plan it with scripts/plan.py.
Expected:  86.9 ImageNet top-1 after end-to-end fine-tuning of the 1600-epoch model
           (facebookresearch/mae README.md fine-tuning table; FINETUNE.md: the released
           fine-tuned ViT-H evaluates to 86.928) with configs/mae_vit_huge_imagenet_finetune.py.
           Linear probe 76.6 (paper, TF/TPU) / 77.2 (PyTorch) under main_linprobe.py
           (FINETUNE.md "Linear Probing" table) -- not jaxssl's probe.

Recipe: configs/mae_vit_base_imagenet.py's (main_pretrain.py + PRETRAIN.md: mask 0.75,
norm_pix_loss, AdamW (0.9, 0.95), blr 1.5e-4 x B/256, wd 0.05 on ndim > 1, 40 warm-up epochs,
cosine, B=4096, 1600 epochs for the paper's checkpoints, random resized crop [0.2, 1] bicubic +
flip, ImageNet mean/std) with the encoder of models_mae.py ``mae_vit_huge_patch14_dec512d8b``:
patch 14 (a 16 x 16 grid of 256 patches at 224 px; 64 visible at mask 0.75), D 1280, 32 blocks,
16 heads, MLP ratio 4, LayerNorm eps 1e-6; the decoder 512-d, 8 blocks, 16 heads, predicting
14 x 14 x 3 = 588 values per patch. Deviations: those of the ViT-B preset (docs/recipes.md).
"""
from jaxssl.config import load_preset


def get_config(arg=None):
    del arg
    c = load_preset("mae_vit_base_imagenet")
    with c.unlocked():
        c.model.update(dict(backbone="vit_huge", patch_size=14))
    return c.lock()
