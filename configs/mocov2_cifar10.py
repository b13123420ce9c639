"""MoCo V2+ on CIFAR-10 with ResNet-18 (CIFAR stem): solo-learn's recipe.

Command:   python -m jaxssl.main --config=configs/mocov2_cifar10.py --workdir=runs/mocov2_cifar10
           (prepare the data first: python scripts/prepare_data.py cifar10)
Hardware:  1 GPU (A100/H100) or a TPU v3-8; the batch is sharded over all visible devices.
Runtime:   1000 epochs at batch 256: about 20 hours on one A100-class GPU (estimate: the
           symmetric loss runs both encoders on both views, twice MoCo v2's forward work;
           not yet measured end to end).
Expected:  linear top-1 92.94 (solo-learn README.md:223, "MoCo V2+ ResNet18 1000 epochs") for
           the recipe below, which the preset runs (pretraining). That number is, as far as
           solo-learn's code shows, its online linear classifier (trained on the augmented
           crops with a stop-gradient, ``solo/methods/base.py``), which jaxssl does not run:
           the preset's probe is the MoCo protocol on frozen, unaugmented features, so its
           number is not directly comparable. For orientation only, another recipe: lightly's
           "Moco*" kNN 0.899 (lightly benchmarks.rst:189: 800 epochs, batch 512, memory bank
           8192, T 0.1, SGD wd 5e-4, max over epochs).

Recipe (solo-learn scripts/pretrain/cifar/mocov2plus.yaml + augmentations/symmetric_weak.yaml,
solo/methods/mocov2plus.py, solo/methods/base.py, solo/data/pretrain_dataloader.py): batch
256, 1000 epochs, SGD momentum 0.9 (solo/args/pretrain.py default), LR 0.3 x B/256, weight
decay 1e-4 on every parameter (``exclude_bias_n_norm_wd=False``), 10 warm-up epochs then
cosine; symmetric loss with two queues (moco.symmetric), K = 32768 each, T = 0.2, head
2048 -> ReLU -> 256 with biases, key momentum 0.99 -> 0.999 on a half cosine; crop area
[0.08, 1] bicubic, ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2, PIL Gaussian blur
sigma [0.1, 2] p=0.5, flip; CIFAR-10 mean/std normalisation; torchvision ResNet-18 without
zero-init (``zero_init_residual=False``) and with conv1 = Conv2d(3, 64, 3, 1, padding=2), no
max-pool; SyncBN in both encoders, no shuffle (moco.shuffle_bn='off').
"""
from jaxssl.config import no_arg
from jaxssl.methods.moco import moco_config

# solo/data/pretrain_dataloader.py MEANS_N_STD["cifar10"].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def get_config(arg=None):
    no_arg(arg, __file__)
    c = moco_config("v2")
    c.data.name = "cifar10"
    c.data.image_size = 32
    c.augment.update(dict(crop_scale=(0.08, 1.0), resize_method="bicubic", resize_antialias=True,
                          flip_prob=0.5, jitter_prob=0.8, brightness=0.4, contrast=0.4,
                          saturation=0.4, hue=0.1, brightness_mode="multiplicative",
                          grayscale_prob=0.2, blur_prob=0.5, blur_sigma=(0.1, 2.0),
                          blur_kernel="sigma", solarize_prob=0.0))
    c.eval_crop_fraction = 1.0  # 32x32: evaluate on the whole image
    c.model.update(dict(backbone="resnet18", stem="cifar", width_multiplier=1,
                        head_hidden_dim=2048, head_output_dim=256, zero_init_residual=False,
                        cifar_stem_padding=2, input_mean=CIFAR10_MEAN, input_std=CIFAR10_STD))
    c.loss.temperature = 0.2
    c.moco.update(dict(queue_size=32768, momentum=0.99, momentum_final=0.999,
                       momentum_schedule="cosine", shuffle_bn="off", bn_groups=8,
                       symmetric=True))
    c.optim.update(dict(name="sgd", base_lr=0.3, lr_scaling="linear", weight_decay=1e-4,
                        momentum=0.9, warmup_epochs=10.0, schedule="cosine",
                        decay_all_params=True))
    c.train.update(dict(batch_size=256, num_epochs=1000.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2000, eval_every_steps=0))
    c.eval.update(dict(batch_size=1024, linear_protocol="moco", baselines=()))
    return c.lock()
