"""Linear-evaluation protocols that several presets share, each set once here.

:func:`vit_linear_protocol`: DINO and its successors
(``configs/{dino,ibot,dinov2}_imagenet_linear.py``).
All three train a linear classifier on frozen features of the EMA *teacher*
(``--checkpoint_key teacher``): for a ViT, the final-normed [CLS] token of each of the last
``n_last_blocks`` blocks, concatenated, then (``avgpool_patchtokens``) the mean of the last
block's patch tokens (``get_intermediate_layers`` / ``create_linear_input``). The classifier is
``nn.Linear`` with N(0, 0.01^2) weights and a zero bias, trained by SGD (momentum 0.9, no weight
decay) at ``lr x B / 256`` on a cosine to 0 without warm-up; RandomResizedCrop(224, bicubic) +
flip for training, Resize(256, bicubic) + CenterCrop(224) for evaluation. What differs between
the references (each preset passes its values): dino ``eval_linear.py`` / ibot
``evaluation/eval_linear.py``: 100 epochs, ``CosineAnnealingLR(epochs)`` stepped once per epoch
(``schedule='cosine_epoch'``); dinov2 ``dinov2/eval/linear.py``: 10 "epochs" of 1250
iterations, ``CosineAnnealingLR(max_iter)`` stepped every iteration (``schedule='cosine'``).
One classifier per run: where a reference trains a grid of classifiers in one pass and reports
the best (ibot ``eval_linear_multi.py``: 45 learning rates x 2 weight decays x SGD/LARS;
dinov2: 13 learning rates x ``n_last_blocks`` {1, 4} x ``avgpool`` {False, True}), jaxssl runs
one point of it per command (``--config.optim.base_lr``, ``--config.classifier.n_last_blocks``,
``--config.classifier.avgpool_patchtokens``).

:func:`evaluate_py_protocol`: Barlow Twins' ``evaluate.py`` and VICReg's copy of it
(``configs/{barlow,vicreg}_imagenet_linear.py``): batch 256, 100 epochs, ``optim.SGD(momentum=
0.9, weight_decay=1e-6)`` on the classifier's weight and bias, an lr that is not scaled with the
batch (``--lr-classifier`` / ``--lr-head``), ``CosineAnnealingLR(epochs)`` stepped once per epoch,
no warm-up, N(0, 0.01^2) weights and zero bias, RandomResizedCrop(224) + flip, Resize(256) +
CenterCrop(224) for evaluation (bilinear).
"""
from __future__ import annotations

from jaxssl.methods.classifier import classifier_config


def imagenet_linear_views(c, resize_method: str, antialias: bool | None = None):
    """The linear-evaluation views every torchvision reference uses, set on ``c`` (unlocked):
    RandomResizedCrop(224, scale (0.08, 1), ratio (3/4, 4/3)) + horizontal flip for training
    (the host crop and the device view share them), Resize(256) + CenterCrop(224) for
    evaluation, both with ``resize_method`` (``antialias``: ``augment.resize_antialias``)."""
    c.augment.update(dict(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_prob=0.5,
                          resize_method=resize_method))
    if antialias is not None:
        c.augment.resize_antialias = bool(antialias)
    c.data.update(dict(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3),
                       resize_method=resize_method))
    c.eval_crop_fraction = 224 / 256
    return c


def vit_linear_protocol(pretrain_config, *, n_last_blocks: int, avgpool_patchtokens: bool,
                        batch_size: int, base_lr: float, num_epochs: float = 100.0,
                        num_steps: int = 0, schedule: str = "cosine_epoch",
                        checkpoint_every_steps: int = 2000):
    """The linear-evaluation config (unlocked) of a DINO-family pretraining config.

    ``n_last_blocks`` / ``avgpool_patchtokens`` apply to a ViT backbone (a ResNet: its pooled
    output, 1 / False); ``base_lr`` is scaled by ``batch_size / 256``. Train for
    ``num_epochs`` (``num_steps`` 0) or ``num_steps``.
    """
    c = classifier_config(pretrain_config, "linear_eval")
    vit = c.model.backbone.startswith("vit")
    c.classifier.update(dict(head="linear", head_init="normal", head_init_std=0.01,
                             n_last_blocks=int(n_last_blocks) if vit else 1,
                             avgpool_patchtokens=bool(avgpool_patchtokens) and vit))
    imagenet_linear_views(c, "bicubic", antialias=True)
    c.optim.update(dict(name="sgd", base_lr=float(base_lr), lr_scaling="linear", momentum=0.9,
                        nesterov=False, weight_decay=0.0, weight_decay_end=-1.0,
                        grad_clip_per_param=0.0, warmup_epochs=0.0, schedule=schedule))
    c.train.update(dict(batch_size=int(batch_size), num_epochs=float(num_epochs),
                        num_steps=int(num_steps), log_every_steps=100,
                        checkpoint_every_steps=int(checkpoint_every_steps)))
    c.eval.batch_size = 1024
    return c


def evaluate_py_protocol(pretrain_config, *, base_lr: float):
    """Barlow Twins' / VICReg's ``evaluate.py`` linear evaluation (unlocked config) of
    ``pretrain_config``, at the fixed learning rate ``base_lr`` (module docstring)."""
    c = classifier_config(pretrain_config, "linear_eval")
    c.classifier.update(dict(head="linear", head_init="normal", head_init_std=0.01))
    imagenet_linear_views(c, "bilinear")
    c.optim.update(dict(name="sgd", base_lr=float(base_lr), lr_scaling="none", momentum=0.9,
                        nesterov=False, weight_decay=1e-6, decay_all_params=True,
                        warmup_epochs=0.0, schedule="cosine_epoch"))
    c.train.update(dict(batch_size=256, num_epochs=100.0, num_steps=0, log_every_steps=100,
                        checkpoint_every_steps=2000))
    c.eval.batch_size = 1024
    return c


__all__ = ["imagenet_linear_views", "vit_linear_protocol", "evaluate_py_protocol"]
