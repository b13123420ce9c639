"""BYOL on ImageNet: the deepmind-research ``byol`` pretraining presets (ResNet-50).

Variants (``--config=configs/byol_imagenet.py:VARIANT``):
  1000ep (default)  1000 epochs   byol/configs/byol.py presets for num_epochs=1000
  300ep             300 epochs    byol/configs/byol.py presets for num_epochs=300

Command:   python -m jaxssl.main --config=configs/byol_imagenet.py --workdir=runs/byol_r50
           python -m jaxssl.main --config=configs/byol_imagenet.py:300ep --workdir=runs/byol_r50_300
           (ImageNet needs its manual files: python scripts/prepare_data.py imagenet2012)
Hardware:  B = 4096: 512 TPU v3 cores in the reference (byol/README.md: "about 8h"); a TPU
           v3-128+ or 32+ A100-class GPUs here.
Runtime:   not measured here.
Expected:  ImageNet linear top-1 of ResNet-50 under BYOL's linear protocol (paper, Table 1 /
           section 4.1): 1000ep 74.3 (byol/README.md: "between 74.0% and 74.5%"; the released
           checkpoint ~74.4), 300ep 72.5 (paper section 5: the 300-epoch baseline of the
           ablations). jaxssl's
           in-training probe is not BYOL's protocol (evaluation is off below), so a number
           from it is not comparable to these.

Recipe (deepmind-research byol/configs/byol.py, byol_experiment.py, utils/augmentations.py,
utils/dataset.py, utils/optimizers.py, utils/schedules.py): batch 4096; projector and predictor
Linear(4096) -> BN -> ReLU -> Linear(256) (``projector_hidden_size=4096``,
``projector_output_size=256``, ``predictor_hidden_size=4096``); target EMA tau_base -> 1 on a
half cosine over training (``_EMA_PRESETS``: 0.996 at 1000 epochs, 0.99 at 300); LARS
(eta 1e-3, momentum 0.9 applied before the LR, ``scale_by_lars`` then ``scale(-lr)``; biases
and BN excluded from weight decay and adaptation), LR base x B/256 (``_LR_PRESETS``: 0.2 at
1000, 0.3 at 300), weight decay (``_WD_PRESETS``: 1.5e-6 at 1000, 1e-6 at 300), 10 warm-up
epochs then cosine to 0; views: random crop area [0.08, 1], aspect [3/4, 4/3], bicubic resize
to 224 without antialiasing (tf.image.resize), flip, colour jitter (0.4, 0.4, 0.2, 0.1; additive
brightness; random order) p=0.8, grayscale p=0.2, Gaussian blur (kernel ~ side / 10, sigma
[0.1, 2]) p=1.0 / 0.1, solarize p=0 / 0.2 (``augment_config`` view1 / view2), then ImageNet
mean/std normalisation (``dataset.normalize_images``); ResNet-50 v1 with every BN gamma
initialised to 1 (byol/README.md "Note on batch normalization": the paper's results are
without the zero-initialised last BN of each block).

Deviations: the epoch count uses the 1,281,167 training images (byol's TRAIN_AND_VALID: the
same set); the Dense before each head BN has no bias (cancelled by BN; see
jaxssl/methods/byol.py); the reference's online linear classifier trained alongside (no
gradient into the encoder) is not run.
"""
from jaxssl.config import parse_arg
from jaxssl.methods.byol import byol_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)   # byol/utils/dataset.py normalize_images
IMAGENET_STD = (0.229, 0.224, 0.225)

# byol/configs/byol.py: variant -> (epochs, _LR_PRESETS, _WD_PRESETS, _EMA_PRESETS).
VARIANTS = {"1000ep": (1000.0, 0.2, 1.5e-6, 0.996),
            "300ep": (300.0, 0.3, 1e-6, 0.99)}


def get_config(arg=None):
    variant = parse_arg(arg, VARIANTS, "1000ep")
    epochs, lr, wd, tau = VARIANTS[variant]
    c = byol_config()
    c.data.name = "imagenet2012"
    c.data.image_size = 224
    c.augment.update(dict(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3),
                          resize_method="bicubic", resize_antialias=False, flip_prob=0.5,
                          jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2,
                          hue=0.1, brightness_mode="additive", jitter_random_order=True,
                          grayscale_prob=0.2, blur_prob=1.0, blur_sigma=(0.1, 2.0),
                          blur_kernel="fraction", blur_kernel_fraction=0.1,
                          solarize_prob=0.0, solarize_threshold=0.5))
    c.byol.view2.update(dict(blur_prob=0.1, solarize_prob=0.2))
    c.eval_crop_fraction = 0.875   # byol dataset._decode_and_center_crop: 224 / (224 + 32)
    c.model.update(dict(backbone="resnet50", stem="imagenet", width_multiplier=1,
                        zero_init_residual=False, input_mean=IMAGENET_MEAN,
                        input_std=IMAGENET_STD))
    c.byol.update(dict(projector_hidden_dim=4096, projector_output_dim=256,
                       predictor_hidden_dim=4096))
    c.teacher.update(dict(momentum=tau, momentum_final=1.0, momentum_schedule="cosine"))
    c.optim.update(dict(name="lars", base_lr=lr, lr_scaling="linear", weight_decay=wd,
                        momentum=0.9, trust_coefficient=1e-3, warmup_epochs=10.0,
                        schedule="cosine", lars_classic_momentum=False))
    c.train.update(dict(batch_size=4096, num_epochs=epochs, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2500))
    c.eval.update(dict(enabled=False, linear_protocol="simclr", baselines=()))
    return c.lock()
