"""Barlow Twins on ImageNet: facebookresearch/barlowtwins ``main.py`` (ResNet-50, 1000 epochs).

Command:   python -m jaxssl.main --config=configs/barlow_imagenet.py --workdir=runs/barlow_r50
           (ImageNet needs its manual files: python scripts/prepare_data.py imagenet2012)
Hardware:  B = 2048: 16 V100 in the reference (README.md: "approximately 7 days on 16 v100
           GPUs", ``python main.py``); a TPU v3-64 or 16+ A100-class GPUs here.
Runtime:   not measured here.
Expected:  ImageNet linear top-1 73.2 (paper, Table 1); the released checkpoint of this recipe
           reaches 73.5 (barlowtwins README.md "Pretrained Model": 1000 epochs, batch 2048)
           under barlowtwins ``evaluate.py`` (linear: SGD, LR 0.3 classifier, 100 epochs).
           jaxssl's in-training probe is not that protocol (evaluation is off below).

Recipe (barlowtwins main.py argparse defaults and classes): batch 2048, 1000 epochs; projector
``8192-8192-8192`` (Linear(no bias) -> BN -> ReLU twice, Linear(no bias)), lambda 0.0051; LARS
(eta 1e-3, momentum 0.9 before the LR: ``mu = m mu + dp; p -= lr mu``; biases and BN out of
weight decay and adaptation: ``weight_decay_filter`` / ``lars_adaptation_filter``); LR
``B/256 x 0.2`` for weights and ``B/256 x 0.0048`` for biases and BN (``--learning-rate-weights``
/ ``--learning-rate-biases``; here ``barlow.bias_lr_scale = 0.0048 / 0.2``), 10 warm-up epochs,
then cosine to ``0.001 x`` the peak (``adjust_learning_rate``: ``end_lr = base_lr * 0.001``;
``optim.min_lr`` below is that value for B = 2048); weight decay 1e-6 (``--weight-decay``
default; the paper's text says 1.5e-6, the code and the released run use 1e-6); torchvision
ResNet-50 with ``zero_init_residual=True``; views (``Transform``): RandomResizedCrop(224) area
[0.08, 1] bicubic (PIL, antialiased), flip, ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.8, grayscale
p=0.2, PIL GaussianBlur sigma [0.1, 2] p=1.0 / 0.1, solarize p=0 / 0.2, ImageNet mean/std.

Gradient scale: the reference computes ``C`` per GPU, all-reduces it outside autograd
(``torch.distributed.all_reduce(c)``, main.py ``BarlowTwins.forward``) and DDP averages the
16 GPUs' gradients, so it trains on the exact gradient of the loss divided by 16; jaxssl's loss
has the exact gradient, so ``barlow.loss_scale = 1/16`` reproduces the reference's. LARS makes
this more than a learning-rate change: the biases' and BN's plain-SGD steps scale with it, and
so does the gradient's weight against weight decay inside the trust ratio.

Deviations: ``optim.min_lr`` is absolute: changing ``train.batch_size`` keeps the floor of
B = 2048 (the reference's floor scales with B); set ``optim.min_lr = 0.2 x B/256 x 0.001``.
"""
from jaxssl.config import no_arg
from jaxssl.methods.barlow_twins import barlow_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)   # main.py Transform: transforms.Normalize
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH = 2048
BASE_LR = 0.2                           # --learning-rate-weights
REFERENCE_GPUS = 16                     # README.md; the reference's gradient is the exact one / 16


def get_config(arg=None):
    no_arg(arg, __file__)
    c = barlow_config()
    c.data.name = "imagenet2012"
    c.data.image_size = 224
    c.augment.update(dict(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3),
                          resize_method="bicubic", resize_antialias=True, flip_prob=0.5,
                          jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2,
                          hue=0.1, brightness_mode="multiplicative", jitter_random_order=True,
                          grayscale_prob=0.2, blur_prob=1.0, blur_sigma=(0.1, 2.0),
                          blur_kernel="sigma", solarize_prob=0.0, solarize_threshold=0.5))
    c.barlow.view2.update(dict(blur_prob=0.1, solarize_prob=0.2))   # transform_prime
    c.eval_crop_fraction = 0.875   # evaluate.py: Resize(256) + CenterCrop(224)
    c.model.update(dict(backbone="resnet50", stem="imagenet", width_multiplier=1,
                        zero_init_residual=True, input_mean=IMAGENET_MEAN,
                        input_std=IMAGENET_STD))
    c.barlow.update(dict(projector_hidden_dim=8192, projector_output_dim=8192,
                         projector_num_layers=3, lambda_offdiag=0.0051,
                         loss_scale=1.0 / REFERENCE_GPUS,
                         bias_lr_scale=0.0048 / 0.2))
    c.optim.update(dict(name="lars", base_lr=BASE_LR, lr_scaling="linear", weight_decay=1e-6,
                        momentum=0.9, trust_coefficient=1e-3, warmup_epochs=10.0,
                        schedule="cosine", lars_classic_momentum=False,
                        min_lr=BASE_LR * BATCH / 256 * 0.001))
    c.train.update(dict(batch_size=BATCH, num_epochs=1000.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2500))
    c.eval.update(dict(enabled=False, linear_protocol="simclr", baselines=()))
    return c.lock()
