"""DINO's projection head: MLP, L2-normalised bottleneck, weight-normalised prototypes.

facebookresearch/dino ``vision_transformer.py`` ``DINOHead``:

    h = MLP(x)            Linear -> [BN] -> GELU, (num_layers - 1) times, then Linear(bottleneck)
    h = h / max(||h||, 1e-12)
    y = h @ (g * V / ||V||_col)          weight-normalised Linear(bottleneck -> K), no bias

``V [bottleneck, K]`` starts as PyTorch's default ``nn.Linear`` init and ``g [K]`` at 1; with
``norm_last_layer`` (the default) ``g`` is fixed at 1, so each prototype column has unit norm.
The MLP's Dense kernels start as ``trunc_normal(std=0.02)``, biases at 0. BN (the ResNet-50
recipe's ``use_bn_in_head``) has momentum 0.9 (torch 0.1) and eps 1e-5. GELU is the exact erf
form (``torch.nn.GELU``).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxssl.models.heads import torch_linear_kernel_init

_TRUNC_NORMAL_002 = nn.initializers.truncated_normal(stddev=0.02)


class DINOHead(nn.Module):
    """``[B, D] -> [B, out_dim]`` logits. Parameters: ``mlp_{i}``, ``bn_{i}``, ``last_layer``."""

    out_dim: int
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    num_layers: int = 3
    use_bn: bool = False
    norm_last_layer: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        if self.num_layers < 1:
            raise ValueError(f"dino.head_num_layers={self.num_layers} must be >= 1 (DINO: 3)")
        x = jnp.asarray(x, self.dtype)
        for i in range(self.num_layers - 1):
            x = nn.Dense(self.hidden_dim, kernel_init=_TRUNC_NORMAL_002, dtype=self.dtype,
                         param_dtype=jnp.float32, name=f"mlp_{i}")(x)
            if self.use_bn:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                 dtype=self.dtype, param_dtype=jnp.float32,
                                 use_fast_variance=False, name=f"bn_{i}")(x)
            x = nn.gelu(x, approximate=False)
        x = nn.Dense(self.bottleneck_dim, kernel_init=_TRUNC_NORMAL_002, dtype=self.dtype,
                     param_dtype=jnp.float32, name=f"mlp_{self.num_layers - 1}")(x)
        x = x.astype(jnp.float32)
        x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        return WeightNormDense(self.out_dim, learn_norm=not self.norm_last_layer,
                               name="last_layer")(x)


class WeightNormDense(nn.Module):
    """``x @ (g * V / ||V||)`` with column norms over the input axis, no bias (torch
    ``weight_norm(Linear(..., bias=False))``, ``dim=0``). ``g`` is a parameter only when
    ``learn_norm``; otherwise it is 1."""

    features: int
    learn_norm: bool = False

    @nn.compact
    def __call__(self, x):
        v = self.param("kernel_v", torch_linear_kernel_init, (x.shape[-1], self.features), jnp.float32)
        w = v / jnp.linalg.norm(v, axis=0, keepdims=True)
        if self.learn_norm:
            w = w * self.param("kernel_g", nn.initializers.ones, (self.features,), jnp.float32)[None, :]
        return jnp.dot(x, w, precision="highest")


__all__ = ["DINOHead", "WeightNormDense"]
