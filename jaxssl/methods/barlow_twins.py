"""Barlow Twins (Zbontar et al. 2021): the cross-correlation of the two views' embeddings
driven to the identity.

``z_v = projector(backbone(x_v))``; each embedding standardised per feature over the global
batch (the reference's ``BatchNorm1d(affine=False)`` under SyncBN), ``C = z_1n^T z_2n / N`` and
(eq. 1)

    L = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2       (``jaxssl.losses.barlow_twins_loss``)

times ``barlow.loss_scale`` (solo-learn's CIFAR recipe: 0.1). ``jaxssl.losses.barlow_twins_loss``
has the exact gradient of the global objective; facebookresearch/barlowtwins ``main.py``
all-reduces ``C`` outside autograd and DDP averages the ranks' gradients, so the reference
trains on that gradient divided by its GPU count (16 V100, README): ``configs/barlow_imagenet.py``
sets ``loss_scale = 1/16`` to train on the reference's gradient (under LARS the scale matters:
it sets the bias / BN steps and the weight decay's weight against the gradient).
facebookresearch/barlowtwins ``main.py``: projector ``(Linear(no bias) -> BN -> ReLU) x 2 ->
Linear(no bias)`` at 8192; lambda 0.0051; LARS with weights at LR 0.2 and biases / BN at
0.0048 (``barlow.bias_lr_scale = 0.0048 / 0.2``), both excluded from weight decay and LARS
adaptation.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxssl import losses
from jaxssl.methods.siamese import Siamese, siamese_config
from jaxssl.models import heads


def barlow_config():
    """``base_config()`` + ``config.barlow`` (projector, lambda, bias LR scale, ``view2``)."""
    return siamese_config("barlow", dict(projector_hidden_dim=8192, projector_output_dim=8192,
                                         projector_num_layers=3, lambda_offdiag=0.0051,
                                         loss_scale=1.0, bias_lr_scale=0.0048 / 0.2))


class BarlowTwins(Siamese):
    section = "barlow"

    @classmethod
    def validate_config(cls, config) -> None:
        from jaxssl.config import fail
        super().validate_config(config)
        if not config.barlow.bias_lr_scale > 0:
            fail("barlow.bias_lr_scale", config.barlow.bias_lr_scale,
                 "the biases' / BN parameters' LR relative to the weights' must be > 0 "
                 "(the reference: 0.0048 / 0.2 = 0.024)")

    def make_projector(self):
        return heads.ProjectionHead(
            int(self.sec.projector_hidden_dim), int(self.sec.projector_output_dim),
            num_layers=int(self.sec.projector_num_layers), use_bn=True, last_bn=False,
            use_bias=False, dtype=self.dtype())

    def objective(self, online, targets):
        (z1, _), (z2, _) = online
        return float(self.sec.loss_scale) * losses.barlow_twins_loss(
            z1, z2, float(self.sec.lambda_offdiag))

    def lr_scales(self):
        """``bias_lr_scale`` on every vector leaf (biases, BN scale and offset), 1 elsewhere."""
        params = jax.eval_shape(lambda: self.init(jax.random.key(0))[0])
        scale = float(self.sec.bias_lr_scale)
        return jax.tree.map(lambda p: jnp.float32(scale if p.ndim <= 1 else 1.0), params)


__all__ = ["BarlowTwins", "barlow_config"]
