"""VICReg (Bardes, Ponce & LeCun 2022): invariance, variance and covariance terms.

``z_v = expander(backbone(x_v))`` and (eq. 6, ``jaxssl.losses.vicreg_loss``)

    L = 25 * mse(z_1, z_2) + 25 * (v(z_1) + v(z_2)) / 2 + 1 * (c(z_1) + c(z_2))

with ``v`` the mean hinge ``relu(1 - sqrt(Var + 1e-4))`` per feature and ``c`` the sum of
squared off-diagonal covariances over the feature count, all over the global batch.
facebookresearch/vicreg ``main_vicreg.py``: expander ``(Linear -> BN -> ReLU) x 2 -> Linear``
at 8192 (``--mlp 8192-8192-8192``; the hidden Linears keep their bias, the last has none,
``bias=False``). jaxssl's last Dense has a bias: the same vector is added to both views'
embeddings, so it cancels in the MSE, the variance and the (centred) covariance and never
receives a gradient (it stays 0, as initialised); LARS base LR 0.2 x B/256, weight decay 1e-6,
biases and BN excluded.
"""
from __future__ import annotations

from jaxssl import losses
from jaxssl.methods.siamese import Siamese, siamese_config
from jaxssl.models import heads


def vicreg_config():
    """``base_config()`` + ``config.vicreg`` (expander widths, coefficients, ``view2``)."""
    return siamese_config("vicreg", dict(projector_hidden_dim=8192, projector_output_dim=8192,
                                         projector_num_layers=3, sim_coeff=25.0, std_coeff=25.0,
                                         cov_coeff=1.0))


class VICReg(Siamese):
    section = "vicreg"

    def make_projector(self):
        return heads.ProjectionHead(
            int(self.sec.projector_hidden_dim), int(self.sec.projector_output_dim),
            num_layers=int(self.sec.projector_num_layers), use_bn=True, last_bn=False,
            use_bias=True, dtype=self.dtype())

    def objective(self, online, targets):
        (z1, _), (z2, _) = online
        s = self.sec
        return losses.vicreg_loss(z1, z2, sim_coeff=float(s.sim_coeff),
                                  std_coeff=float(s.std_coeff), cov_coeff=float(s.cov_coeff))


__all__ = ["VICReg", "vicreg_config"]
