"""SimSiam on CIFAR-10 with ResNet-18 (CIFAR stem): solo-learn's recipe.

Command:   python -m jaxssl.main --config=configs/simsiam_cifar10.py --workdir=runs/simsiam_cifar10
           (prepare the data first: python scripts/prepare_data.py cifar10)
Hardware:  1 GPU (A100/H100) or a TPU v3-8; the batch is sharded over all visible devices.
Runtime:   not measured here (1000 epochs at batch 256: many hours on one A100-class GPU).
Expected:  linear top-1 90.51 (solo-learn README.md "CIFAR-10" table, "Simsiam ResNet18 1000
           epochs"). That number is solo-learn's online linear classifier (trained alongside
           on the augmented crops with a stop-gradient and its own LR ``classifier_lr`` 0.1 x
           B/256, ``solo/methods/base.py``), which jaxssl does not run: the preset's probe is
           jaxssl's on frozen, unaugmented features, so its number is not directly comparable.

Recipe (solo-learn scripts/pretrain/cifar/simsiam.yaml + augmentations/symmetric_weak.yaml):
projector (Linear(no bias) -> BN -> ReLU) x 2 -> Linear -> BN(affine=False) at 2048
(``proj_hidden_dim`` / ``proj_output_dim`` 2048), predictor 2048 -> 512 -> 2048
(``pred_hidden_dim`` 512; solo/methods/simsiam.py); the predictor at a constant LR
(``static_lr: True``); SGD momentum 0.9, LR 0.5 x B/256, weight decay 1e-5 on every parameter
(``exclude_bias_n_norm_wd`` False); views (symmetric_weak.yaml): crop area [0.08, 1],
ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2, PIL blur sigma [0.1, 2] p=0.5, no
solarize, flip, both views alike.

Common to solo-learn's CIFAR recipes (solo/args/pretrain.py, solo/methods/base.py,
solo/data/pretrain_dataloader.py, solo/backbones): batch 256, 1000 epochs, LR ``lr x B/256``
(``scale_factor``), 10 warm-up epochs then cosine to 0 per step (``warmup_cosine``); ResNet-18
(torchvision, ``zero_init_residual=False``) with conv1 = Conv2d(3, 64, 3, 1, padding=2) and no
max-pool; RandomResizedCrop(32) bicubic; ColorJitter and RandomGrayscale from torchvision
(multiplicative brightness, random order); PIL blur / solarize; CIFAR-10 mean/std; SyncBN.

Deviations: the warm-up starts at 0 (solo-learn: ``warmup_start_lr`` 3e-5); no online
linear classifier.
"""
from jaxssl.config import no_arg
from jaxssl.methods.simsiam import simsiam_config

# solo/data/pretrain_dataloader.py MEANS_N_STD["cifar10"].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def get_config(arg=None):
    no_arg(arg, __file__)
    c = simsiam_config()
    c.data.name = "cifar10"
    c.data.image_size = 32
    c.augment.update(dict(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3),
                          resize_method="bicubic",
                          resize_antialias=True, flip_prob=0.5, jitter_prob=0.8,
                          brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
                          brightness_mode="multiplicative", jitter_random_order=True,
                          grayscale_prob=0.2, blur_prob=0.5, blur_sigma=(0.1, 2.0),
                          blur_kernel="sigma", solarize_prob=0.0, solarize_threshold=0.5))
    c.eval_crop_fraction = 1.0  # 32x32: evaluate on the whole image
    c.model.update(dict(backbone="resnet18", stem="cifar", width_multiplier=1,
                        zero_init_residual=False, cifar_stem_padding=2,
                        input_mean=CIFAR10_MEAN, input_std=CIFAR10_STD))
    c.train.update(dict(batch_size=256, num_epochs=1000.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2000, eval_every_steps=0))
    c.eval.update(dict(batch_size=1024, linear_protocol="moco", baselines=()))
    c.simsiam.update(dict(projector_hidden_dim=2048, projector_output_dim=2048,
                          projector_num_layers=3, predictor_hidden_dim=512,
                          fix_predictor_lr=True))
    c.optim.update(dict(name="sgd", base_lr=0.5, lr_scaling="linear", weight_decay=1e-5,
                        momentum=0.9, warmup_epochs=10.0, schedule="cosine",
                        decay_all_params=True))
    return c.lock()
