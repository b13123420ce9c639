"""The linear-evaluation protocol of DINO and its successors, set once for the DINO, iBOT and
DINOv2 linear presets (``configs/{dino,ibot,dinov2}_imagenet_linear.py``).

All three train a linear classifier on frozen features of the EMA *teacher*
(``--checkpoint_key teacher``): for a ViT, the final-normed [CLS] token of each of the last
``n_last_blocks`` blocks, concatenated, then (``avgpool_patchtokens``) the mean of the last
block's patch tokens (``get_intermediate_layers`` / ``create_linear_input``). The classifier is
``nn.Linear`` with N(0, 0.01^2) weights and a zero bias, trained by SGD (momentum 0.9, no weight
decay) at ``lr x B / 256`` on a cosine to 0 without warm-up; RandomResizedCrop(224, bicubic) +
flip for training, Resize(256, bicubic) + CenterCrop(224) for evaluation.

What differs between the references (each preset passes its values):

* dino ``eval_linear.py`` / ibot ``evaluation/eval_linear.py``: 100 epochs,
  ``CosineAnnealingLR(epochs)`` stepped once per epoch (``schedule='cosine_epoch'``);
* dinov2 ``dinov2/eval/linear.py``: 10 "epochs" of 1250 iterations,
  ``CosineAnnealingLR(max_iter)`` stepped every iteration (``schedule='cosine'``).

One classifier per run: where a reference trains a grid of classifiers in one pass and reports
the best (ibot ``eval_linear_multi.py``: 45 learning rates x 2 weight decays x SGD/LARS;
dinov2: 13 learning rates x ``n_last_blocks`` {1, 4} x ``avgpool`` {False, True}), jaxssl runs
one point of it per command (``--config.optim.base_lr``, ``--config.classifier.n_last_blocks``,
``--config.classifier.avgpool_patchtokens``).
"""
from __future__ import annotations

from jaxssl.methods.classifier import classifier_config


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
    c.augment.update(dict(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_prob=0.5,
                          resize_method="bicubic", resize_antialias=True))
    c.data.update(dict(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3),
                       resize_method="bicubic"))
    c.eval_crop_fraction = 224 / 256
    c.optim.update(dict(name="sgd", base_lr=float(base_lr), lr_scaling="linear", momentum=0.9,
                        nesterov=False, weight_decay=0.0, weight_decay_end=-1.0,
                        grad_clip_per_param=0.0, warmup_epochs=0.0, schedule=schedule))
    c.train.update(dict(batch_size=int(batch_size), num_epochs=float(num_epochs),
                        num_steps=int(num_steps), log_every_steps=100,
                        checkpoint_every_steps=int(checkpoint_every_steps)))
    c.eval.batch_size = 1024
    return c


__all__ = ["vit_linear_protocol"]
