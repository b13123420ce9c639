"""MoCo v2 on ImageNet with ResNet-50: the facebookresearch/moco recipe (200 epochs).

Command:   python -m jaxssl.main --config=configs/mocov2_imagenet.py --workdir=runs/mocov2_r50
           (ImageNet needs its manual files: python scripts/prepare_data.py imagenet2012)
           Linear eval: python scripts/evaluate.py --config=configs/mocov2_imagenet.py
           --workdir=runs/mocov2_r50 (MoCo protocol: SGD LR 30, B 256, 100 epochs, steps 60/80).
Hardware:  8 GPUs (the reference: 8 V100, 32 images per GPU) or a TPU v3-8; shuffle BN
           'devices' needs at least 2 devices (on one device pass
           --config.moco.shuffle_bn=groups).
Runtime:   200 epochs: ~53 hours on 8 V100 (moco README); about a day on 8 A100-class GPUs
           (estimate, not measured end to end).
Expected:  linear eval top-1 67.5 +- 0.1 (moco README.md, "MoCo v2" 200-epoch row: mean of 5
           trials; the released checkpoint scores 67.7) and 71.1 with
           --config.train.num_epochs=800 (the 800-epoch row), with the MoCo linear protocol
           (main_lincls.py: SGD LR 30, B 256, 100 epochs, steps at 60/80, RandomResizedCrop
           + flip on the probe's inputs). The preset runs that pretraining recipe except for
           the named deviations below; jaxssl's probe trains on unaugmented features.

Recipe (moco README, main_moco.py with --mlp --moco-t 0.2 --aug-plus --cos): batch 256, SGD
LR 0.03 x B/256, momentum 0.9, weight decay 1e-4 on every parameter (PyTorch SGD over
model.parameters()), cosine decay without warm-up; queue K = 65536, T = 0.2, key momentum
0.999, head 2048 -> ReLU -> 128; aug+: crop area [0.2, 1] (bilinear, PIL), ColorJitter(0.4,
0.4, 0.4, 0.1) p=0.8, grayscale p=0.2, Gaussian blur sigma [0.1, 2] p=0.5 (PIL's, untruncated),
flip; ImageNet mean/std input normalisation (main_moco.py:323-325); torchvision ResNet-50 init
(``zero_init_residual=False``: last BN gamma 1); shuffle BN across devices.
Deviations (named): the reference's cosine is stepped per epoch, here per step; queries use
global (cross-replica) BN, the reference's are per GPU.
"""
from jaxssl.config import no_arg
from jaxssl.methods.moco import moco_config

# torchvision Normalize of main_moco.py:323-325.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config(arg=None):
    no_arg(arg, __file__)
    c = moco_config("v2")
    c.data.name = "imagenet2012"
    c.data.image_size = 224
    c.data.crop_scale = (0.2, 1.0)
    c.data.crop_ratio = (3 / 4, 4 / 3)
    c.augment.update(dict(crop_scale=(0.2, 1.0), resize_method="bilinear", resize_antialias=True,
                          flip_prob=0.5, jitter_prob=0.8, brightness=0.4, contrast=0.4,
                          saturation=0.4, hue=0.1, grayscale_prob=0.2, blur_prob=0.5,
                          blur_sigma=(0.1, 2.0), blur_kernel="sigma", solarize_prob=0.0))
    c.eval_crop_fraction = 0.875
    c.model.update(dict(backbone="resnet50", stem="imagenet", width_multiplier=1,
                        head_hidden_dim=2048, head_output_dim=128, zero_init_residual=False,
                        input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD))
    c.loss.temperature = 0.2
    c.moco.update(dict(queue_size=65536, momentum=0.999, momentum_schedule="constant",
                       shuffle_bn="devices", bn_groups=8, symmetric=False))
    c.optim.update(dict(name="sgd", base_lr=0.03, lr_scaling="linear", weight_decay=1e-4,
                        momentum=0.9, warmup_epochs=0.0, schedule="cosine",
                        decay_all_params=True))
    c.train.update(dict(batch_size=256, num_epochs=200.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=5000))
    # ImageNet is too large for the in-training probe; evaluate checkpoints with
    # scripts/evaluate.py (MoCo linear protocol).
    c.eval.update(dict(enabled=False, linear_protocol="moco", baselines=()))
    return c.lock()
