"""VICReg on ImageNet: facebookresearch/vicreg ``main_vicreg.py`` (ResNet-50, 1000 epochs).

Command:   python -m jaxssl.main --config=configs/vicreg_imagenet.py --workdir=runs/vicreg_r50
           (ImageNet needs its manual files: python scripts/prepare_data.py imagenet2012)
Hardware:  B = 2048: 32 GPUs (4 nodes x 8) in the reference (README.md ``run_with_submitit.py
           --nodes 4 --ngpus 8 ... --epochs 1000 --batch-size 2048 --base-lr 0.2``); a TPU
           v3-64 or 16+ A100-class GPUs here.
Runtime:   not measured here.
Expected:  ImageNet linear top-1 73.2 (vicreg README.md pretrained ResNet-50; paper Table 1)
           under vicreg ``evaluate.py`` (linear head, ``--lr-head 0.02``, 100 epochs). jaxssl's
           in-training probe is not that protocol (evaluation is off below).

Recipe (main_vicreg.py + augmentations.py + resnet.py): batch 2048, 1000 epochs (the README's
1000-epoch command; the argparse default is 100); expander ``--mlp 8192-8192-8192``
(Linear -> BN -> ReLU twice, then Linear); coefficients sim 25, std 25, cov 1; LARS (eta 1e-3,
momentum 0.9 before the LR, biases and BN out of weight decay and adaptation:
``exclude_bias_and_norm``), LR ``base_lr x B/256`` with base 0.2, 10 warm-up epochs then
cosine to ``0.001 x`` the peak (``adjust_learning_rate``: ``end_lr = base_lr * 0.001``;
``optim.min_lr`` below is that value for B = 2048), weight decay 1e-6; ResNet-50 with
``zero_init_residual=True``; views (``TrainTransform``): RandomResizedCrop(224) area
[0.08, 1] bicubic (antialiased), flip, ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.8, grayscale p=0.2,
PIL GaussianBlur sigma [0.1, 2] p=1.0 / 0.1, solarize p=0 / 0.2, ImageNet mean/std.

Deviations: ``optim.min_lr`` is absolute: changing ``train.batch_size`` keeps the floor of
B = 2048 (the reference's floor scales with B); set ``optim.min_lr = 0.2 x B/256 x 0.001``.
"""
from jaxssl.config import no_arg
from jaxssl.methods.vicreg import vicreg_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)   # augmentations.py transforms.Normalize
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH = 2048
BASE_LR = 0.2                           # --base-lr


def get_config(arg=None):
    no_arg(arg, __file__)
    c = vicreg_config()
    c.data.name = "imagenet2012"
    c.data.image_size = 224
    c.augment.update(dict(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3),
                          resize_method="bicubic", resize_antialias=True, flip_prob=0.5,
                          jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2,
                          hue=0.1, brightness_mode="multiplicative", jitter_random_order=True,
                          grayscale_prob=0.2, blur_prob=1.0, blur_sigma=(0.1, 2.0),
                          blur_kernel="sigma", solarize_prob=0.0, solarize_threshold=0.5))
    c.vicreg.view2.update(dict(blur_prob=0.1, solarize_prob=0.2))   # transform_prime
    c.eval_crop_fraction = 0.875   # evaluate.py: Resize(256) + CenterCrop(224)
    c.model.update(dict(backbone="resnet50", stem="imagenet", width_multiplier=1,
                        zero_init_residual=True, input_mean=IMAGENET_MEAN,
                        input_std=IMAGENET_STD))
    c.vicreg.update(dict(projector_hidden_dim=8192, projector_output_dim=8192,
                         projector_num_layers=3, sim_coeff=25.0, std_coeff=25.0,
                         cov_coeff=1.0))
    c.optim.update(dict(name="lars", base_lr=BASE_LR, lr_scaling="linear", weight_decay=1e-6,
                        momentum=0.9, trust_coefficient=1e-3, warmup_epochs=10.0,
                        schedule="cosine", lars_classic_momentum=False,
                        min_lr=BASE_LR * BATCH / 256 * 0.001))
    c.train.update(dict(batch_size=BATCH, num_epochs=1000.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2500))
    c.eval.update(dict(enabled=False, linear_protocol="simclr", baselines=()))
    return c.lock()
