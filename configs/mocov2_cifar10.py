"""MoCo v2 ("v2+") on CIFAR-10 with ResNet-18 (CIFAR stem): solo-learn's recipe.

Command:   python -m jaxssl.main --config=configs/mocov2_cifar10.py --workdir=runs/mocov2_cifar10
           (prepare the data first: python scripts/prepare_data.py cifar10)
Hardware:  1 GPU (A100/H100) or a TPU v3-8; the batch is sharded over all visible devices.
           Shuffle BN is 'groups' (8 groups of 32, the MoCo paper's 32 per GPU), which does
           not depend on the device count; 'devices' is the reference mechanism on 8 devices.
Runtime:   1000 epochs at batch 256: about 12 hours on one A100-class GPU (estimate from
           the SimCLR CIFAR step time: one key forward replaces SimCLR's second backward;
           not yet measured end to end).
Expected:  linear-probe top-1 92.94 (solo-learn README, MoCo v2+ ResNet-18, 1000 epochs) and
           kNN ~89.9 (lightly benchmarks, MoCo ResNet-18, 800 epochs, batch 512).

Recipe (solo-learn scripts/pretrain/cifar/mocov2plus.yaml + augmentations/symmetric_weak.yaml):
batch 256, 1000 epochs, SGD momentum 0.9, LR 0.3 x B/256, weight decay 1e-4 on every parameter
(solo-learn's default exclude_bias_n_norm_wd=False), 10 warm-up epochs then cosine; queue
K = 32768, T = 0.2, head 2048 -> 256, key momentum 0.99 -> 0.999 on a half cosine; crop area
[0.08, 1], ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2, blur p=0.5, flip. Deviation
(named): shuffle BN groups here vs solo-learn's SyncBN in both encoders (moco.shuffle_bn='off'
reproduces that). Linear eval: the MoCo protocol (SGD LR 30, 100 epochs, steps at 60/80) on
frozen features.
"""
from jaxssl.methods.moco import moco_config


def get_config(arg=None):
    del arg
    c = moco_config("v2")
    c.data.name = "cifar10"
    c.data.image_size = 32
    c.augment.update(dict(crop_scale=(0.08, 1.0), resize_method="bilinear", resize_antialias=True,
                          flip_prob=0.5, jitter_prob=0.8, brightness=0.4, contrast=0.4,
                          saturation=0.4, hue=0.1, grayscale_prob=0.2, blur_prob=0.5,
                          blur_sigma=(0.1, 2.0), solarize_prob=0.0))
    c.eval_crop_fraction = 1.0  # 32x32: evaluate on the whole image
    c.model.update(dict(backbone="resnet18", stem="cifar", width_multiplier=1,
                        head_hidden_dim=2048, head_output_dim=256))
    c.loss.temperature = 0.2
    c.moco.update(dict(queue_size=32768, momentum=0.99, momentum_final=0.999,
                       momentum_schedule="cosine", shuffle_bn="groups", bn_groups=8))
    c.optim.update(dict(name="sgd", base_lr=0.3, lr_scaling="linear", weight_decay=1e-4,
                        momentum=0.9, warmup_epochs=10.0, schedule="cosine",
                        decay_all_params=True))
    c.train.update(dict(batch_size=256, num_epochs=1000.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2000, eval_every_steps=0))
    c.eval.update(dict(batch_size=1024, linear_protocol="moco", baselines=()))
    return c.lock()
