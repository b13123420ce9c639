"""BYOL (Grill et al. 2020): predict an EMA teacher's projection of the other view.

Online network ``backbone -> projector -> predictor``; target network: the EMA of
``backbone -> projector`` (``config.teacher``: tau 0.996 -> 1 on a half cosine). With
``p_v`` the online prediction and ``z'_v`` the target projection of view v (eq. 2 and the
symmetrised loss of section 3.1):

    L = byol_loss(p_1, z'_2) + byol_loss(p_2, z'_1),   byol_loss(p, z) = mean_i (2 - 2 cos(p_i, z_i))

MLPs (deepmind-research ``byol/utils/networks.py`` ``MLP``): Linear(4096) -> BN -> ReLU ->
Linear(256), projector and predictor alike (``byol.projector_hidden_dim``,
``projector_output_dim``, ``predictor_hidden_dim``). The Dense before BN has no bias here
(BN's mean subtraction cancels it; the reference's bias is excluded from weight decay and
LARS adaptation, so the only difference is a parameter that never matters).
"""
from __future__ import annotations

import flax.linen as nn

from jaxssl import losses
from jaxssl.methods.siamese import Siamese, siamese_config
from jaxssl.models import heads

# haiku.Linear's default initialiser: truncated normal, stddev 1 / sqrt(fan_in).
haiku_linear_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


def byol_config():
    """``base_config()`` + ``config.byol`` (head widths, ``view2``) + ``config.teacher``."""
    return siamese_config("byol", dict(projector_hidden_dim=4096, projector_output_dim=256,
                                       predictor_hidden_dim=4096), teacher=True)


def byol_mlp(hidden_dim: int, output_dim: int, dtype) -> nn.Module:
    return heads.ProjectionHead(hidden_dim, output_dim, num_layers=2, use_bn=True, last_bn=False,
                                use_bias=True, kernel_init=haiku_linear_kernel_init, dtype=dtype)


class BYOL(Siamese):
    section = "byol"
    uses_teacher = True

    def make_projector(self):
        return byol_mlp(int(self.sec.projector_hidden_dim), int(self.sec.projector_output_dim),
                        self.dtype())

    def make_predictor(self):
        return byol_mlp(int(self.sec.predictor_hidden_dim), int(self.sec.projector_output_dim),
                        self.dtype())

    def objective(self, online, targets):
        (_, p1), (_, p2) = online
        return losses.byol_loss(p1, targets[1]) + losses.byol_loss(p2, targets[0])


__all__ = ["BYOL", "byol_config", "byol_mlp"]
