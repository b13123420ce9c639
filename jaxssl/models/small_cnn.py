"""A small conv backbone for the CPU quickstart (8x8 .. 16x16 grayscale digits).

Three conv3x3-BN-ReLU stages (32, 64, 128 channels, each with stride 2 by default) and a
global average pool: [B, 16, 16, 1] -> 8x8x32 -> 4x4x64 -> 2x2x128 -> [B, 128]. About 93k
parameters and ~0.3 GFLOP forward per 256 images at 16x16: a SimCLR step (2 views of 256,
forward + backward, SGD) took 0.39 s on two busy CPU cores (load average 8), versus 1.2 s
with strides (1, 2, 2), so a few hundred steps fit in a couple of minutes. For 8x8 inputs
pass ``strides=(1, 2, 2)`` to keep a 2x2 final map.

It follows the ResNet conventions of this package (bias-free convs with kaiming-normal
fan_out init, BN momentum 0.9 / eps 1e-5, the same call signature and BN semantics: global
statistics under ``jit``, ``bn_axis_name`` inside ``shard_map``), so a method written against
``ResNet`` runs on it unchanged.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxssl.models.resnet import conv_kernel_init


class SmallCNN(nn.Module):
    """Images [B, H, W, C] -> features [B, widths[-1]].

    Attributes:
      widths: output channels of the conv stages (one conv3x3-BN-ReLU each).
      strides: stride of each stage's conv (same length as ``widths``).
      dtype: compute dtype; params and BN statistics stay float32.
      bn_momentum, bn_epsilon, bn_axis_name: as in ``ResNet``.
    """

    widths: Sequence[int] = (32, 64, 128)
    strides: Sequence[int] = (2, 2, 2)
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None

    @property
    def feature_dim(self) -> int:
        """D of the output (the last stage's width)."""
        return int(self.widths[-1])

    @nn.compact
    def __call__(self, x, train: bool):
        """x: [B, H, W, C] -> [B, widths[-1]] in ``dtype``; ``train`` as in ``ResNet``."""
        if len(self.widths) != len(self.strides) or not self.widths:
            raise ValueError(
                f"SmallCNN widths={tuple(self.widths)} and strides={tuple(self.strides)} must be "
                "non-empty and of equal length (one stride per conv stage)")
        x = jnp.asarray(x, self.dtype)
        for i, (width, stride) in enumerate(zip(self.widths, self.strides)):
            x = nn.Conv(width, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)),
                        use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                        kernel_init=conv_kernel_init, name=f"conv{i + 1}")(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                             epsilon=self.bn_epsilon, dtype=self.dtype, param_dtype=jnp.float32,
                             axis_name=self.bn_axis_name, use_fast_variance=False,
                             name=f"bn{i + 1}")(x)
            x = nn.relu(x)
        return jnp.mean(x, axis=(1, 2), dtype=jnp.float32).astype(self.dtype)


__all__ = ["SmallCNN"]
