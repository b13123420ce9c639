"""SimSiam on ImageNet: facebookresearch/simsiam's pretraining command (ResNet-50, 100 epochs).

Command:   python -m jaxssl.main --config=configs/simsiam_imagenet.py --workdir=runs/simsiam_r50
           (ImageNet needs its manual files: python scripts/prepare_data.py imagenet2012)
Hardware:  B = 512: 8 V100 in the reference (README.md "Models and Logs"); one 8-GPU node or a
           TPU v3-8 here.
Runtime:   not measured here.
Expected:  ImageNet linear top-1 68.1 (simsiam README.md "Models and Logs", 100 epochs, batch
           512; paper Table 4: 68.1) under simsiam's linear protocol (main_lincls.py --lars:
           LARS, batch 4096, 90 epochs). jaxssl's in-training probe is not that protocol
           (evaluation is off below), so a number from it is not comparable to this one.

Recipe (simsiam main_simsiam.py defaults + README command ``--fix-pred-lr``, simsiam/builder.py,
simsiam/loader.py): batch 512 (``-b 512``), 100 epochs; SGD momentum 0.9, LR 0.05 x B/256
(``init_lr = args.lr * args.batch_size / 256``), weight decay 1e-4 on every parameter
(``torch.optim.SGD(optim_params, ...)``, biases and BN included), cosine set once per epoch with
no warm-up (``adjust_learning_rate``: ``init_lr * 0.5 * (1 + cos(pi * epoch / epochs))``), the
predictor at the constant ``init_lr`` (``fix_lr``); projector 3 x 2048 (last BN without
affine), predictor 2048 -> 512 -> 2048; torchvision ResNet-50 with ``zero_init_residual=True``;
views (MoCo v2's): RandomResizedCrop(224, scale=(0.2, 1)) bilinear (PIL, antialiased),
ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2, PIL GaussianBlur sigma [0.1, 2] p=0.5,
flip, ImageNet mean/std normalisation; both views drawn alike.

Deviations: none known in the pretraining recipe beyond what docs/recipes.md lists for every
preset (SyncBN statistics over the global batch; TPU-friendly augmentation ops).
"""
from jaxssl.config import no_arg
from jaxssl.methods.simsiam import simsiam_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)   # main_simsiam.py transforms.Normalize
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config(arg=None):
    no_arg(arg, __file__)
    c = simsiam_config()
    c.data.name = "imagenet2012"
    c.data.image_size = 224
    c.augment.update(dict(crop_scale=(0.2, 1.0), crop_ratio=(3 / 4, 4 / 3),
                          resize_method="bilinear", resize_antialias=True, flip_prob=0.5,
                          jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.4,
                          hue=0.1, brightness_mode="multiplicative", jitter_random_order=True,
                          grayscale_prob=0.2, blur_prob=0.5, blur_sigma=(0.1, 2.0),
                          blur_kernel="sigma", solarize_prob=0.0))
    c.eval_crop_fraction = 0.875   # main_lincls.py: Resize(256) + CenterCrop(224)
    c.model.update(dict(backbone="resnet50", stem="imagenet", width_multiplier=1,
                        zero_init_residual=True, input_mean=IMAGENET_MEAN,
                        input_std=IMAGENET_STD))
    c.simsiam.update(dict(projector_hidden_dim=2048, projector_output_dim=2048,
                          projector_num_layers=3, predictor_hidden_dim=512,
                          fix_predictor_lr=True))
    c.optim.update(dict(name="sgd", base_lr=0.05, lr_scaling="linear", weight_decay=1e-4,
                        momentum=0.9, nesterov=False, warmup_epochs=0.0,
                        schedule="cosine_epoch", decay_all_params=True))
    c.train.update(dict(batch_size=512, num_epochs=100.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2500))
    c.eval.update(dict(enabled=False, linear_protocol="simclr", baselines=()))
    return c.lock()
