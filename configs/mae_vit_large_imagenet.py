"""MAE ViT-L/16 on ImageNet: the paper's pretraining of its ViT-Large (He et al. 2022).

Variants (``--config=configs/mae_vit_large_imagenet.py:VARIANT``):
  1600ep (default)  1600 epochs: the released ViT-L checkpoint behind the README's 85.9
  800ep             PRETRAIN.md's command as written (``--epochs 800``): 85.5 fine-tuned

Command:   python -m jaxssl.main --config=configs/mae_vit_large_imagenet.py --workdir=runs/mae_vitl16
           then configs/mae_vit_large_imagenet_finetune.py with --config.init_from=runs/mae_vitl16
           (ImageNet needs its manual files: python scripts/prepare_data.py imagenet2012)
Hardware:  B=4096 global: a TPU v3-128 pod slice (the paper's TF/TPU setting) or 8 nodes x 8
           V100-32G (PRETRAIN.md: ``--nodes 8 --use_volta32 --batch_size 64``); plan the slice
           (encoder 303M + decoder 26M parameters: 1.3 GB in float32, 3x that with AdamW's moments,
           before gradients and activations).
Runtime:   PRETRAIN.md: ~42 h for 800 epochs on 64 V100 (PyTorch); 1600 epochs about twice that.
Expected:  85.9 ImageNet top-1 after end-to-end fine-tuning of the 1600-epoch model
           (facebookresearch/mae README.md fine-tuning table; FINETUNE.md: the released
           fine-tuned ViT-L evaluates to 85.952; four fine-tuning seeds 85.95 / 85.87 / 85.76 /
           85.88) with configs/mae_vit_large_imagenet_finetune.py; 800ep: 85.5 (PRETRAIN.md,
           PyTorch; 85.4 in the paper's Table 1d, TF/TPU). Linear probe 75.8 (paper, TF/TPU) /
           76.0 (PyTorch) under main_linprobe.py (FINETUNE.md "Linear Probing" table) -- not
           jaxssl's probe, so a jaxssl probe number is not comparable.

Recipe: configs/mae_vit_base_imagenet.py's (main_pretrain.py + PRETRAIN.md: mask 0.75,
norm_pix_loss, AdamW (0.9, 0.95), blr 1.5e-4 x B/256, wd 0.05 on ndim > 1, 40 warm-up epochs,
cosine, B=4096, random resized crop [0.2, 1] bicubic + flip, ImageNet mean/std) with the
encoder of models_mae.py ``mae_vit_large_patch16_dec512d8b``: patch 16, D 1024, 24 blocks, 16
heads, MLP ratio 4, LayerNorm eps 1e-6; the decoder is the same 512-d, 8 blocks, 16 heads.
PRETRAIN.md: "The exact same hyper-parameters and configs (initialization, augmentation, etc.)
are used as our TF/TPU implementation". Deviations: those of the ViT-B preset (docs/recipes.md).
"""
from jaxssl.config import load_preset, parse_arg

EPOCHS = {"1600ep": 1600.0, "800ep": 800.0}


def get_config(arg=None):
    variant = parse_arg(arg, EPOCHS, "1600ep")
    c = load_preset("mae_vit_base_imagenet")
    with c.unlocked():
        c.model.update(dict(backbone="vit_large", patch_size=16))
        c.train.num_epochs = EPOCHS[variant]
    return c.lock()
