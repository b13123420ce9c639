"""The classifier models of linear evaluation and fine-tuning (:mod:`jaxssl.methods.classifier`).

``logits = classifier(probe_bn(head_prefix(backbone(x))))`` where

    head_prefix   :class:`HeadPrefix`, the first ``num_layers`` layers of the pretraining
                  projection head (Dense-BN-ReLU each; loaded from the checkpoint), or nothing
    probe_bn      MAE's linear probe: ``BatchNorm1d(affine=False, eps=1e-6)`` when
                  ``probe == 'bn_linear'``, else nothing
    classifier    ``Dense(num_classes)``: zero-initialised (SimCLR ``zero_init_logits_layer``),
                  N(0, std^2) (MoCo ``fc.weight.normal_(0, 0.01)``) or truncated normal
                  (MAE ``trunc_normal_(head.weight, std=0.01)``), zero bias
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class HeadPrefix(nn.Module):
    """The first ``num_layers`` hidden layers of a :class:`jaxssl.models.heads.ProjectionHead`
    (same names ``dense_i`` / ``bn_i``, so the pretrained layers load): Dense[-BN]-ReLU each."""
    hidden_dim: int
    num_layers: int
    use_bn: bool = True
    use_bias: bool = True
    dtype: object = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        for i in range(self.num_layers):
            x = nn.Dense(self.hidden_dim, use_bias=self.use_bias and not self.use_bn,
                         dtype=self.dtype, param_dtype=jnp.float32, name=f"dense_{i}")(x)
            if self.use_bn:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                 dtype=self.dtype, param_dtype=jnp.float32,
                                 use_fast_variance=False, name=f"bn_{i}")(x)
            x = nn.relu(x)
        return x


class ImageClassifier(nn.Module):
    """``images [B, S, S, C] -> logits [B, num_classes]`` (float32); see the module docstring."""
    backbone: nn.Module
    num_classes: int
    frozen: bool
    probe: str = "linear"          # classifier.head: 'linear' | 'bn_linear'
    head_init: str = "zeros"
    head_init_std: float = 0.01
    head: nn.Module | None = None  # the pretrained projection layers kept (HeadPrefix)

    @nn.compact
    def __call__(self, x, train: bool):
        h = self.backbone(x, train=train and not self.frozen)
        if self.frozen:
            h = jax.lax.stop_gradient(h)
        if self.head is not None:
            h = self.head(h, train=train and not self.frozen)
        h = h.astype(jnp.float32)
        if self.probe == "bn_linear":
            h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-6,
                             use_scale=False, use_bias=False, use_fast_variance=False,
                             name="probe_bn")(h)
        kernel_init = {"zeros": nn.initializers.zeros,
                       "normal": nn.initializers.normal(self.head_init_std),
                       "trunc_normal": nn.initializers.truncated_normal(self.head_init_std)
                       }[self.head_init]
        return nn.Dense(self.num_classes, kernel_init=kernel_init,
                        bias_init=nn.initializers.zeros, name="classifier")(h)

    def features(self, x):
        return self.backbone(x, train=False)


__all__ = ["HeadPrefix", "ImageClassifier"]
