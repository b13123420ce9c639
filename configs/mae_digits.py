"""MAE on scikit-learn's digits: the masked-image-modelling CPU quickstart (no download).

Command:   python -m jaxssl.main --config=configs/mae_digits.py --workdir=runs/mae_digits
Hardware:  2 CPU cores (any laptop); set JAX_NUM_CPU_DEVICES=8 to shard the batch over 8 fake devices.
Runtime:   about 3 minutes of training (240 steps) plus 1 minute of evaluation on 2 idle
           cores (2.3 user-CPU minutes in all; 10.7 minutes wall on a machine shared by many jobs).
Expected:  the reconstruction loss (MSE on per-patch-normalised pixels of the removed
           patches) falls from ~0.74 (step 40) to ~0.64 (step 240); eval_results.json / the
           printed table: kNN and linear-probe accuracy on the 540 held-out digits with 10
           labels per class and with all 1,257 training labels, for the MAE encoder, the same
           encoder at random initialisation, and raw pixels. Measured (seed 0, top-1 %,
           knn_10 / knn_all / linear_10 / linear_all; this preset as it is, MAE's init and
           token weight decay): MAE 23.0 / 38.2 / 65.9 / 90.4, random init 19.1 / 39.8 /
           67.2 / 90.6, raw pixels 90.6 / 93.3 / 87.6 / 97.2. MAE does NOT beat random init
           here: 16 patches, 4 visible, on 8x8 digits is far from the regime where MAE's
           features pay off (and MAE's paper numbers are after fine-tuning). (An earlier
           measurement, with MoCo v3's ViT init and undecayed tokens: MAE 26.7 / 44.8 / 69.3 /
           88.3; with norm_pix_loss=False the loss fell to ~0.43 and kNN was worse.)

Recipe: the MAE recipe (He et al. 2022) scaled to 8x8 grayscale digits upsampled to 16x16:
patches of 4x4 (N = 16; 75% masked, so the encoder sees 4 patches + the class token); a
small ViT encoder (D 128, 4 blocks, 4 heads) and decoder (D 64, 2 blocks, 4 heads);
augmentation = random resized crop only (area [0.4, 1]; no flip, a flipped digit is another
symbol); inputs normalised by the digits' mean/std (0.305 / 0.376); AdamW betas (0.9, 0.95),
weight decay 0.05 (not on norms and biases; cls_token and mask_token decayed, as MAE's
timm 0.3.2 add_weight_decay), cosine schedule; MAE's init (fused-qkv xavier, tokens N(0, 0.02^2)).
Deviations from the ImageNet recipe, for a 3-minute run of a tiny model: base LR 2e-3 x B/256
(MAE 1.5e-4), 10 warm-up epochs of 4 steps (MAE 40), 60 epochs; evaluation on the mean of the
patch tokens ('gap'; MAE's linear probe uses the class token).
"""
from jaxssl.config import base_config, no_arg
from jaxssl.methods import mae


def get_config(arg=None):
    no_arg(arg, __file__)
    c = base_config()
    c.method = "mae"
    c.seed = 0
    c.data.name = "digits"
    c.data.image_size = 16
    c.augment.update(dict(
        crop=True, crop_scale=(0.4, 1.0), crop_ratio=(3 / 4, 4 / 3), resize_method="bilinear",
        flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0))
    c.eval_crop_fraction = 1.0  # 8x8 digits: keep the whole image, resize to 16x16
    c.model.update(dict(backbone="vit_tiny", patch_size=4, dtype="float32"))
    c.mae = mae.section_defaults()
    c.mae.update(dict(
        mask_ratio=0.75, norm_pix_loss=True,
        encoder_hidden_dim=128, encoder_depth=4, encoder_heads=4,
        decoder_dim=64, decoder_depth=2, decoder_heads=4,
        pool="gap", pixel_mean=(0.305,), pixel_std=(0.376,)))
    c.optim.update(dict(name="adamw", base_lr=2e-3, lr_scaling="linear", weight_decay=0.05,
                        b1=0.9, b2=0.95, eps=1e-8, warmup_epochs=10.0, warmup_fraction=0.0,
                        schedule="cosine", grad_clip_norm=0.0))
    c.optim.no_decay_names = ()  # MAE decays cls_token / mask_token (ndim > 1)
    c.optim.decay_all_params = False  # but not biases / LayerNorm (timm 0.3.2 add_weight_decay)
    c.train.update(dict(batch_size=256, num_epochs=60.0, num_steps=0, log_every_steps=40,
                        checkpoint_every_steps=120))
    c.eval.update(dict(batch_size=512, linear_protocol="lbfgs"))
    return c.lock()
