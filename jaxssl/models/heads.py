"""MLP projection heads and predictors for contrastive / momentum methods.

One module, ``ProjectionHead``, covers the heads of the reference implementations; the
preset constructors below pin each one down:

=====================  ======================================================================
preset                 layers (Dense widths: hidden, ..., output)
=====================  ======================================================================
``simclr_v1_head``     Dense-BN-ReLU-Dense-BN(gamma, no beta); no Dense biases. The SimCLR
                       v1 code (google-research/simclr first commit ``model_util.py``
                       ``projection_head``: ``nl_0`` ``linear_layer(use_bias=True,
                       use_bn=True)``, then ``nl_1`` ``linear_layer(use_bias=False,
                       use_bn=True)``, i.e. BN with ``center=False`` on the 128-d output).
``simclr_v2_head``     3 x (Dense-BN), ReLU between; no Dense biases; last BN with gamma but
                       no beta (``center=False``). google-research/simclr ``tf2/model.py``
                       ``ProjectionHead`` with ``num_proj_layers=3`` (the code default).
``mocov2_head``        Dense(+bias)-ReLU-Dense(+bias), 2048 -> 128, no BN.
                       facebookresearch/moco ``builder.py`` (``mlp=True``).
``mocov3_projector``   (Dense-BN-ReLU) x (n-1), Dense-BN(no affine); no Dense biases.
                       facebookresearch/moco-v3 ``builder.py`` ``_build_mlp(last_bn=True)``;
                       n = 2 for ResNet-50, 3 for ViT; hidden 4096, out 256.
``mocov3_predictor``   Dense-BN-ReLU-Dense, no biases; ResNet: no last BN (``_build_mlp(2, dim,
                       mlp_dim, dim, False)``, builder.py ``MoCo_ResNet``); ViT
                       (``last_bn=True``): then BN without affine (``_build_mlp(2, dim,
                       mlp_dim, dim)``, ``last_bn`` defaults to True, builder.py ``MoCo_ViT``).
=====================  ======================================================================

A Dense layer followed by BN never has a bias: BN's mean subtraction cancels it (the
reference codes drop it too, and BN's beta plays its role). ``use_bias`` therefore only
concerns Dense layers that are not followed by BN.

Initialisation: the SimCLR presets use the TF code's ``RandomNormal(stddev=0.01)`` kernels;
the MoCo presets use PyTorch's default ``nn.Linear`` kernel init, U(+-1/sqrt(fan_in)).
Biases start at zero (PyTorch draws them from the same uniform; this is the one difference).
BN: momentum 0.9 (torch 0.1), eps 1e-5, statistics over the global batch under ``jit`` (the
references use SyncBN / cross-replica BN in their heads), ``bn_axis_name`` inside shard_map.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

# PyTorch nn.Linear default: kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_linear_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# google-research/simclr LinearLayer: tf.keras.initializers.RandomNormal(stddev=0.01).
simclr_kernel_init = nn.initializers.normal(stddev=0.01)


class ProjectionHead(nn.Module):
    """MLP x [B, D_in] -> [B, output_dim]: ``num_layers`` Dense layers, ReLU between them.

    Layer i (0-based) is ``dense_i`` (+ ``bn_i`` if it has BN); hidden layers have width
    ``hidden_dim`` and are followed by ReLU, the last has width ``output_dim`` and no ReLU.

    Attributes:
      hidden_dim: width of the hidden layers (SimCLR uses the backbone's feature dim).
      output_dim: width of the output.
      num_layers: number of Dense layers (>= 1).
      use_bn: BN after every hidden Dense.
      last_bn: BN after the last Dense.
      last_bn_scale: the last BN has a learned gamma (False in MoCo v3).
      last_bn_center: the last BN has a learned beta (False in SimCLR v2 and MoCo v3).
      use_bias: bias on Dense layers that are *not* followed by BN.
      kernel_init: Dense kernel initialiser.
      dtype: compute dtype; params and BN statistics stay float32.
      bn_momentum, bn_epsilon, bn_axis_name: as in ``ResNet``.
    """

    hidden_dim: int
    output_dim: int
    num_layers: int = 2
    use_bn: bool = True
    last_bn: bool = False
    last_bn_scale: bool = True
    last_bn_center: bool = True
    use_bias: bool = True
    kernel_init: Callable[..., Any] = torch_linear_kernel_init
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        """x: [B, D_in] -> [B, output_dim] in ``dtype``.

        ``train=True``: BN uses (global) batch statistics and updates ``batch_stats``.
        """
        if self.num_layers < 1:
            raise ValueError(
                f"ProjectionHead num_layers={self.num_layers} must be >= 1 (the number of Dense "
                "layers; the config's head/projector num_layers field)")
        x = jnp.asarray(x, self.dtype)
        for i in range(self.num_layers):
            last = i == self.num_layers - 1
            has_bn = self.last_bn if last else self.use_bn
            x = nn.Dense(self.output_dim if last else self.hidden_dim,
                         use_bias=self.use_bias and not has_bn, kernel_init=self.kernel_init,
                         dtype=self.dtype, param_dtype=jnp.float32, name=f"dense_{i}")(x)
            if has_bn:
                x = nn.BatchNorm(
                    use_running_average=not train, momentum=self.bn_momentum,
                    epsilon=self.bn_epsilon, dtype=self.dtype, param_dtype=jnp.float32,
                    use_scale=self.last_bn_scale if last else True,
                    use_bias=self.last_bn_center if last else True,
                    axis_name=self.bn_axis_name, use_fast_variance=False, name=f"bn_{i}")(x)
            if not last:
                x = nn.relu(x)
        return x


def simclr_v1_head(hidden_dim: int, output_dim: int = 128, **kwargs) -> ProjectionHead:
    """SimCLR v1 code: Dense-BN-ReLU-Dense-BN, no Dense biases, the output BN with gamma but
    no beta (``center=False``). Parameters: ``dense_0/kernel``, ``bn_0/{scale,bias}``,
    ``dense_1/kernel``, ``bn_1/scale``. kwargs: dtype, bn_* fields."""
    return ProjectionHead(hidden_dim, output_dim, num_layers=2, use_bn=True, last_bn=True,
                          last_bn_scale=True, last_bn_center=False, use_bias=False,
                          kernel_init=simclr_kernel_init, **kwargs)


def simclr_v2_head(hidden_dim: int, output_dim: int = 128, num_layers: int = 3,
                   **kwargs) -> ProjectionHead:
    """SimCLR v2 / tf2 code: BN in every layer, no Dense bias, last BN without beta."""
    return ProjectionHead(hidden_dim, output_dim, num_layers=num_layers, use_bn=True,
                          last_bn=True, last_bn_scale=True, last_bn_center=False,
                          use_bias=False, kernel_init=simclr_kernel_init, **kwargs)


def mocov2_head(hidden_dim: int = 2048, output_dim: int = 128, **kwargs) -> ProjectionHead:
    """MoCo v2: Dense(bias)-ReLU-Dense(bias), no BN."""
    return ProjectionHead(hidden_dim, output_dim, num_layers=2, use_bn=False, last_bn=False,
                          use_bias=True, kernel_init=torch_linear_kernel_init, **kwargs)


def mocov3_projector(hidden_dim: int = 4096, output_dim: int = 256, num_layers: int = 2,
                     **kwargs) -> ProjectionHead:
    """MoCo v3 projector: no Dense biases, BN-ReLU after hidden layers, last BN without affine.

    ``num_layers`` is 2 for ResNet-50 and 3 for ViT in the reference code.
    """
    return ProjectionHead(hidden_dim, output_dim, num_layers=num_layers, use_bn=True,
                          last_bn=True, last_bn_scale=False, last_bn_center=False,
                          use_bias=False, kernel_init=torch_linear_kernel_init, **kwargs)


def mocov3_predictor(hidden_dim: int = 4096, output_dim: int = 256, last_bn: bool = False,
                     **kwargs) -> ProjectionHead:
    """MoCo v3 predictor: Dense-BN-ReLU-Dense, no biases; ``last_bn=True`` appends a BN
    without scale or offset (``BatchNorm1d(dim, affine=False)``), as moco-v3's ViT predictor
    (builder.py ``MoCo_ViT``: ``_build_mlp(2, dim, mlp_dim, dim)``); ``False`` is its ResNet
    predictor (``MoCo_ResNet``: ``_build_mlp(2, dim, mlp_dim, dim, False)``)."""
    return ProjectionHead(hidden_dim, output_dim, num_layers=2, use_bn=True, last_bn=last_bn,
                          last_bn_scale=False, last_bn_center=False,
                          use_bias=False, kernel_init=torch_linear_kernel_init, **kwargs)


__all__ = ["ProjectionHead", "simclr_v1_head", "simclr_v2_head", "mocov2_head",
           "mocov3_projector", "mocov3_predictor", "torch_linear_kernel_init",
           "simclr_kernel_init"]
