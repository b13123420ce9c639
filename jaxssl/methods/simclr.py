"""SimCLR (Chen et al., 2020; v2: Chen et al., 2020b).

One step: two augmented views of each image of the global batch, one forward pass of
backbone + projection head over the 2N views (BatchNorm statistics over all 2N views of the
*global* batch, the reference's cross-replica BN), and the NT-Xent loss

    l(i, j) = -log  exp(sim(z_i, z_j) / T) / sum_{k != i} exp(sim(z_i, z_k) / T)

averaged over all 2N anchors, with negatives from every device (``jaxssl.losses.nt_xent``),
times ``config.loss.scale``. The reference (``tf2/objective.py``) optimises
``mean(loss_a + loss_b)``, twice that mean: the SimCLR presets set ``loss.scale = 2``. Under
LARS the factor is not absorbed by the learning rate: the trust ratio cancels it on adapted
kernels (leaving the weight decay relatively 2x stronger at scale 1), while BN and bias
updates are proportional to it (``tests/test_recipes_simclr_moco.py``).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp

from jaxssl import losses
from jaxssl.methods.image import ImageMethod
from jaxssl.models import heads, registry


class BackboneWithHead(nn.Module):
    """``backbone(x) -> h [B, D]`` then ``head(h) -> z [B, d]``; returns ``(h, z)``."""
    backbone: nn.Module
    head: nn.Module

    def __call__(self, x, train: bool):
        h = self.backbone(x, train=train)
        return h, self.head(h, train=train)

    def features(self, x):
        return self.backbone(x, train=False)


def projection_head(model_cfg) -> nn.Module:
    dtype = registry.compute_dtype(model_cfg)
    presets = {"simclr_v1": heads.simclr_v1_head, "simclr_v2": heads.simclr_v2_head}
    if model_cfg.head not in presets:
        raise ValueError(f"config field model.head={model_cfg.head!r} is unknown for SimCLR; "
                         f"use one of {sorted(presets)}")
    return presets[model_cfg.head](model_cfg.head_hidden_dim, model_cfg.head_output_dim, dtype=dtype)


class SimCLR(ImageMethod):

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        m = config.model
        self.model = BackboneWithHead(registry.build_backbone(m), projection_head(m))
        self.loss_scale = float(config.loss.scale)

    @classmethod
    def validate_config(cls, config) -> None:
        from jaxssl.config import fail
        super().validate_config(config)
        scale = config.loss.scale
        if not scale > 0:
            fail("loss.scale", scale, "the objective's factor must be > 0 (2.0 reproduces the "
                 "SimCLR reference's mean(loss_a + loss_b), 1.0 the paper's mean over 2N anchors)")

    def chance_loss(self) -> float:
        """``scale * log(2N - 1)``: the loss when all similarities are equal (monitor)."""
        return self.loss_scale * math.log(2 * int(self.config.train.batch_size) - 1)

    def init(self, key):
        variables = self.model.init(key, self.dummy_input(), train=True)
        params = variables["params"]
        return params, {k: v for k, v in variables.items() if k != "params"}

    def loss(self, params, model_state, batch, step):
        views = self.make_views(batch, step)["views"]  # [2, B, S, S, C]
        view_a, view_b = views[0], views[1]
        n = view_a.shape[0]
        x = jnp.concatenate([view_a, view_b], axis=0)
        (h, z), updates = self.model.apply({"params": params, **model_state}, x, train=True,
                                           mutable=list(model_state.keys()))
        z = z.astype(jnp.float32)
        z_a, z_b = z[:n], z[n:]
        t = self.config.loss.temperature
        if self.config.loss.blockwise:
            loss = losses.nt_xent_blockwise(z_a, z_b, t, mesh=self.mesh,
                                            block_size=self.config.loss.block_size)
        else:
            loss = losses.nt_xent(z_a, z_b, t)
        loss = self.loss_scale * loss
        zn = z / jnp.linalg.norm(z, axis=-1, keepdims=True).clip(1e-12)
        metrics = {"embedding_std": jnp.mean(jnp.std(zn, axis=0)) * jnp.sqrt(z.shape[-1])}
        return loss, ({**model_state, **updates}, metrics)

    def backbone_features(self, params, model_state, images):
        return self.model.apply({"params": params, **model_state}, self.normalize(images),
                                method=BackboneWithHead.features)
