"""SimSiam (Chen & He 2021): a predictor and a stop-gradient, no teacher, no negatives.

``z_v = projector(backbone(x_v))``, ``p_v = predictor(z_v)`` and (eq. 1-2)

    L = D(p_1, z_2) / 2 + D(p_2, z_1) / 2,   D(p, z) = -mean_i cos(p_i, stopgrad(z_i))

computed as ``byol_loss(p, z) / 2 - 1`` (the same cosine, no gradient into ``z``).
facebookresearch/simsiam ``simsiam/builder.py``: projector ``(Linear(no bias) -> BN -> ReLU)
x 2 -> Linear -> BN(affine=False)`` at width 2048 (the last Linear's bias is frozen and
followed by BN, so it is dropped here); predictor ``Linear(2048 -> 512, no bias) -> BN ->
ReLU -> Linear(512 -> 2048)``. ``simsiam.fix_predictor_lr`` (``--fix-pred-lr``, on in the
paper's recipe): the predictor keeps the initial learning rate while the rest follows the
cosine schedule.
"""
from __future__ import annotations

import ml_collections
import optax

from jaxssl import losses, optim
from jaxssl.methods.siamese import Siamese, siamese_config
from jaxssl.models import heads


def simsiam_config():
    """``base_config()`` + ``config.simsiam`` (head widths, ``fix_predictor_lr``, ``view2``)."""
    return siamese_config("simsiam", dict(projector_hidden_dim=2048, projector_output_dim=2048,
                                          projector_num_layers=3, predictor_hidden_dim=512,
                                          fix_predictor_lr=True))


class SimSiam(Siamese):
    section = "simsiam"

    def make_projector(self):
        return heads.ProjectionHead(
            int(self.sec.projector_hidden_dim), int(self.sec.projector_output_dim),
            num_layers=int(self.sec.projector_num_layers), use_bn=True, last_bn=True,
            last_bn_scale=False, last_bn_center=False, use_bias=False, dtype=self.dtype())

    def make_predictor(self):
        return heads.ProjectionHead(
            int(self.sec.predictor_hidden_dim), int(self.sec.projector_output_dim), num_layers=2,
            use_bn=True, last_bn=False, use_bias=True, dtype=self.dtype())

    def objective(self, online, targets):
        (z1, p1), (z2, p2) = online
        d12 = losses.byol_loss(p1, z2) / 2.0 - 1.0   # -mean cos(p1, sg(z2))
        d21 = losses.byol_loss(p2, z1) / 2.0 - 1.0
        return 0.5 * d12 + 0.5 * d21

    def chance_loss(self):
        return None

    def wrap_optimizer(self, tx, schedule_inputs):
        """``fix_predictor_lr``: the predictor's updates come from the same optimizer with a
        constant learning rate (``base_lr`` scaled by the batch, no warm-up, no decay)."""
        if not bool(self.sec.fix_predictor_lr):
            return tx
        constant = ml_collections.ConfigDict(self.config.optim.to_dict())
        constant.update(dict(schedule="constant", warmup_epochs=0.0, warmup_fraction=0.0))
        tx_fixed, _ = optim.build_optimizer(constant, **schedule_inputs)
        labels = lambda params: {k: ("fixed" if k == "predictor" else "main")  # noqa: E731
                                 for k in params}
        return optax.multi_transform({"main": tx, "fixed": tx_fixed}, labels)


__all__ = ["SimSiam", "simsiam_config"]
