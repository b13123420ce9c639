"""MAE ViT-B/16 on ImageNet: the paper's 1600-epoch pretraining (He et al. 2022).

Command:   python -m jaxssl.main --config=configs/mae_vit_base_imagenet.py --workdir=runs/mae_vitb16
           (ImageNet needs its manual files: python scripts/prepare_data.py imagenet2012)
Hardware:  a TPU v3-128 pod slice (the paper's setting) or an equivalent GPU cluster; B=4096 global.
Runtime:   the MAE paper reports ~31 hours for ViT-L, 1600 epochs, on 128 TPU v3 cores; ViT-B
           is cheaper (not reported). The encoder runs on 49 of 196 patches, the decoder is light.
Expected:  83.6 ImageNet top-1 after end-to-end fine-tuning (MAE ViT-B/16, 1600-epoch
           pretraining; facebookresearch/mae README.md fine-tuning table, FINETUNE.md: the
           released checkpoint evaluates to 83.664) -- fine-tuning is NOT implemented in
           jaxssl; and 68.0 linear-probe top-1 (FINETUNE.md "Linear Probing" table, paper /
           TF-TPU; the PyTorch repo gives 67.8) under MAE's main_linprobe.py protocol:
           BatchNorm1d(affine=False) before the classifier, LARS, blr 0.1 x B/256, B 16384,
           90 epochs, 10 warm-up epochs. The pretraining below is that recipe (remaining
           deviations: docs/recipes.md); jaxssl's own linear probe is not
           MAE's protocol, so its number is not comparable to 68.0.

Recipe (MAE paper appendix A.1, main_pretrain.py): ViT-B/16 encoder on 224x224 images with
fixed 2-D sin-cos positions (util/pos_embed.py layout); mask ratio 0.75 (49 of 196 patches
visible); decoder 512-d, 8 blocks, 16 heads; loss = MSE on per-patch-normalised pixels of the
removed patches (norm_pix_loss); augmentation = random resized crop, area [0.2, 1], bicubic,
then horizontal flip, inputs normalised by the ImageNet mean/std; AdamW, LR 1.5e-4 x B/256
(= 2.4e-3), betas (0.9, 0.95), weight decay 0.05, 40 warm-up epochs, cosine decay, B=4096,
1600 epochs. Initialisation as models_mae.py: xavier on every Linear (the fused qkv too),
class and mask tokens N(0, 0.02^2).

Weight decay as MAE's (timm 0.3.2 add_weight_decay, no skip list): every parameter with
ndim > 1 -- kernels, cls_token and mask_token -- is decayed; biases and LayerNorm are not.
The linear-probe settings below are MAE's (base LR 0.1 x B/256, B=16384, 90 epochs, wd 0)
mapped onto the 'simclr' protocol (Nesterov SGD, no feature BatchNorm); the in-training
probe is off, as for the SimCLR ImageNet preset: evaluate checkpoints with scripts/evaluate.py.
"""
from jaxssl.config import base_config, no_arg
from jaxssl.methods import mae


def get_config(arg=None):
    no_arg(arg, __file__)
    c = base_config()
    c.method = "mae"
    c.data.name = "imagenet2012"
    c.data.image_size = 224
    c.data.crop_scale = (0.2, 1.0)     # host-side random resized crop (ImageNet-scale source)
    c.data.crop_ratio = (3 / 4, 4 / 3)
    c.augment.update(dict(crop=True, crop_scale=(0.2, 1.0), crop_ratio=(3 / 4, 4 / 3),
                          resize_method="bicubic", flip_prob=0.5, jitter_prob=0.0,
                          grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0))
    c.eval_crop_fraction = 0.875
    c.model.update(dict(backbone="vit_base", patch_size=16, dtype="float32"))
    c.mae = mae.section_defaults()
    c.mae.update(dict(mask_ratio=0.75, norm_pix_loss=True, decoder_dim=512, decoder_depth=8,
                      decoder_heads=16, pool="cls",
                      pixel_mean=mae.IMAGENET_MEAN, pixel_std=mae.IMAGENET_STD))
    c.optim.update(dict(name="adamw", base_lr=1.5e-4, lr_scaling="linear", weight_decay=0.05,
                        b1=0.9, b2=0.95, eps=1e-8, warmup_epochs=40.0, warmup_fraction=0.0,
                        schedule="cosine", grad_clip_norm=0.0))
    c.optim.no_decay_names = ()  # MAE decays cls_token / mask_token (ndim > 1)
    c.optim.decay_all_params = False  # but not biases / LayerNorm (timm 0.3.2 add_weight_decay)
    c.train.update(dict(batch_size=4096, num_epochs=1600.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=5000))
    c.eval.update(dict(enabled=False, linear_protocol="simclr", linear_epochs=90,
                       linear_batch_size=16384, linear_lr=0.1, linear_weight_decay=0.0,
                       baselines=()))
    return c.lock()
