"""ResNet v1.5 backbones (ResNet-18/34/50) returning globally average-pooled features.

Architecture (He et al. 2016, "v1.5" as in torchvision): the stride of a downsampling
bottleneck sits on its 3x3 conv (``conv2``), not on the first 1x1; the projection shortcut is
a strided 1x1 conv + BN. There is no classifier: ``ResNet(...)(x, train)`` returns ``[B, D]``.

Names map one-to-one onto torchvision's ``resnet*`` state dict (for export), with ``.``
replaced by ``_`` inside a block index and Flax's ``kernel/scale/bias/mean/var`` leaves:

====================================  ==========================================
Flax path                             torchvision key
====================================  ==========================================
``conv1/kernel`` [kh,kw,in,out]       ``conv1.weight`` [out,in,kh,kw]
``bn1/{scale,bias}``                  ``bn1.{weight,bias}``
``bn1/{mean,var}`` (batch_stats)      ``bn1.{running_mean,running_var}``
``layer2_0/conv1/kernel``             ``layer2.0.conv1.weight``
``layer2_0/downsample_conv/kernel``   ``layer2.0.downsample.0.weight``
``layer2_0/downsample_bn/scale``      ``layer2.0.downsample.1.weight``
====================================  ==========================================

Initialisation follows torchvision: conv kernels ~ N(0, 2 / fan_out) (kaiming normal,
``mode='fan_out'``), BN gamma 1 / beta 0, and, with ``zero_init_last_bn=True`` (config
``model.zero_init_residual``) -- SimCLR (``tf2/resnet.py`` ``init_zero``), MoCo v3
(``zero_init_residual=True``), Goyal et al. 2017 -- the last BN gamma of every residual block
set to 0 so each block starts as the identity of its (ReLU'd) shortcut. MoCo v2 and
solo-learn build torchvision's default (``zero_init_residual=False``): gamma 1.

Input normalisation: ``input_mean`` / ``input_std`` (per channel, empty = off) make the first
op ``(x - mean) / std``, torchvision's ``Normalize`` inside the backbone, so pretraining views,
probe / kNN features and baselines all see the same input.

Batch normalisation and devices: under ``jax.jit`` over a batch sharded on the ``"data"``
mesh axis, ``nn.BatchNorm``'s mean over the batch axis is a global reduction, so the
statistics are those of the *global* batch -- SimCLR's cross-replica BN (MoCo v3's
SyncBatchNorm) with no extra code. Inside ``jax.shard_map`` a module sees only its device's
block: with ``bn_axis_name=None`` the statistics are then per device (MoCo v2's per-GPU BN,
the building block of shuffle BN); with ``bn_axis_name="data"`` they are all-reduced over the
mesh axis and global again.

Precision: ``dtype`` is the compute dtype of convs and activations (``jnp.bfloat16`` for
mixed precision); parameters are always float32 and BN statistics are reduced and stored in
float32. Running statistics use Flax's convention ``ra = momentum * ra + (1 - momentum) *
batch`` (momentum 0.9 == torch's 0.1) with the biased batch variance (torch stores the
unbiased one; the difference is a factor n / (n - 1)).
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxssl.models.remat import remat_block

STEMS = ("imagenet", "cifar")
# solo-learn's CIFAR stem (``solo/methods/base.py``): Conv2d(3, 64, 3, stride 1, padding=2).

# torchvision: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"), i.e. an
# (untruncated) normal with variance 2 / (out_channels * kh * kw).
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _pad(kernel_size: int, padding: int | None = None) -> tuple[tuple[int, int], tuple[int, int]]:
    """Symmetric padding, torchvision's ``k // 2`` unless ``padding`` is given (Flax's 'SAME'
    pads (0, 1) at stride 2)."""
    p = kernel_size // 2 if padding is None else padding
    return ((p, p), (p, p))


def _conv_factory(dtype: Any, batch_chunk: int = 0):
    """Bias-free conv, torchvision padding and init: ``f(features, kernel, stride, name,
    padding=None)`` (None: ``kernel // 2``).

    ``batch_chunk > 0`` applies the conv to consecutive slices of that many images and
    concatenates the results: the same function (the kernel gradient becomes a sum over the
    slices), but XLA's CPU convolutions -- above all the kernel-gradient one -- run 2-4x
    faster on 32-64 images than on 256 (docs/performance.md). A CPU lever for a one-device
    run; under a multi-device mesh the slices would cut across the sharded batch.
    """
    def make(features: int, kernel_size: int, strides: int, name: str, padding: int | None = None):
        layer = nn.Conv(features, (kernel_size, kernel_size), strides=(strides, strides),
                        padding=_pad(kernel_size, padding), use_bias=False, dtype=dtype,
                        param_dtype=jnp.float32, kernel_init=conv_kernel_init, name=name)
        if batch_chunk <= 0:
            return layer
        return lambda x: _apply_in_batch_chunks(layer, x, batch_chunk)
    return make


def _apply_in_batch_chunks(layer, x, chunk: int):
    """``layer(x)`` computed as ``concat([layer(x[i:i + chunk]) ...])`` along the batch axis."""
    if x.shape[0] <= chunk:
        return layer(x)
    return jnp.concatenate([layer(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)], axis=0)


def _norm_factory(module: Any, train: bool):
    """BatchNorm from a module's ``bn_*`` / ``dtype`` fields: ``f(name, zero_init=False)``."""
    def make(name: str, zero_init: bool = False) -> nn.BatchNorm:
        return nn.BatchNorm(
            use_running_average=not train, momentum=module.bn_momentum,
            epsilon=module.bn_epsilon, dtype=module.dtype, param_dtype=jnp.float32,
            axis_name=module.bn_axis_name, use_fast_variance=False,
            scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones,
            name=name)
    return make


class _ResidualBlock(nn.Module):
    """Fields shared by both block types. Output channels are ``filters * expansion``."""

    filters: int
    strides: int = 1
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None
    zero_init_last_bn: bool = True
    conv_batch_chunk: int = 0

    expansion: ClassVar[int] = 1

    def _shortcut(self, x, train: bool):
        """Identity, or strided 1x1 conv + BN if the shape changes (torchvision 'downsample')."""
        out_channels = self.filters * self.expansion
        if self.strides == 1 and x.shape[-1] == out_channels:
            return x
        x = _conv_factory(self.dtype, self.conv_batch_chunk)(out_channels, 1, self.strides,
                                                          "downsample_conv")(x)
        return _norm_factory(self, train)("downsample_bn")(x)


class BasicBlock(_ResidualBlock):
    """ResNet-18/34 block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    ``conv1`` is 3x3 with the block's stride, ``conv2`` 3x3 stride 1; x [B, H, W, C_in] ->
    [B, H / s, W / s, filters].
    """

    expansion: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x, train: bool):
        conv, norm = _conv_factory(self.dtype, self.conv_batch_chunk), _norm_factory(self, train)
        shortcut = self._shortcut(x, train)
        y = nn.relu(norm("bn1")(conv(self.filters, 3, self.strides, "conv1")(x)))
        y = norm("bn2", zero_init=self.zero_init_last_bn)(conv(self.filters, 3, 1, "conv2")(y))
        return nn.relu(y + shortcut)


class Bottleneck(_ResidualBlock):
    """ResNet-50 block (v1.5): 1x1 -> 3x3 (stride here) -> 1x1 (x4 channels), plus shortcut.

    x [B, H, W, C_in] -> [B, H / s, W / s, 4 * filters].
    """

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x, train: bool):
        conv, norm = _conv_factory(self.dtype, self.conv_batch_chunk), _norm_factory(self, train)
        shortcut = self._shortcut(x, train)
        y = nn.relu(norm("bn1")(conv(self.filters, 1, 1, "conv1")(x)))
        y = nn.relu(norm("bn2")(conv(self.filters, 3, self.strides, "conv2")(y)))
        y = norm("bn3", zero_init=self.zero_init_last_bn)(
            conv(self.filters * self.expansion, 1, 1, "conv3")(y))
        return nn.relu(y + shortcut)


class ResNet(nn.Module):
    """ResNet v1.5 feature extractor: images [B, H, W, C] -> pooled features [B, feature_dim].

    Attributes:
      stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18, (3, 4, 6, 3) for -50.
      block_cls: ``BasicBlock`` or ``Bottleneck``.
      num_filters: channels of the stem and of stage 1 (doubled at each later stage).
      width_multiplier: SimCLR's R50 (x2, x4): multiplies the stem and every block's width.
      stem: 'imagenet' = 7x7/2 conv + BN + ReLU + 3x3/2 max-pool (224 px);
        'cifar' = 3x3/1 conv + BN + ReLU, no max-pool (32 px; SimCLR appendix B.9).
      dtype: compute dtype (float32 or bfloat16); params and BN statistics stay float32.
      bn_momentum, bn_epsilon: BN running-average decay and epsilon (SimCLR: 0.9, 1e-5).
      zero_init_last_bn: initialise the last BN gamma of each block to zero (config
        ``model.zero_init_residual``; SimCLR and MoCo v3 True, MoCo v2 and solo-learn False).
      cifar_stem_padding: padding of the 'cifar' stem's 3x3 conv (config
        ``model.cifar_stem_padding``): 1 keeps 32x32 (SimCLR), 2 is solo-learn's
        ``Conv2d(3, 64, 3, 1, padding=2)``, which makes the first feature map 34x34.
      input_mean, input_std: per-channel input normalisation ``(x - mean) / std`` applied
        first (config ``model.input_mean`` / ``model.input_std``); empty (default) = off.
      bn_axis_name: mesh axis to all-reduce BN statistics over when called inside
        ``jax.shard_map`` (None: per-device statistics there; under plain ``jit`` the
        statistics are global either way -- see the module docstring).
      conv_batch_chunk: > 0 runs every conv on slices of this many images (same result; a
        CPU speed lever for one device, see ``_conv_factory``); 0 (default) off.
      remat: rematerialisation of each residual block, 'none' | 'full' | 'dots'
        (models/remat.py; convs are not dots, so 'dots' saves little).
    """

    stage_sizes: Sequence[int]
    block_cls: type = BasicBlock
    num_filters: int = 64
    width_multiplier: int = 1
    stem: str = "imagenet"
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    zero_init_last_bn: bool = True
    bn_axis_name: str | None = None
    conv_batch_chunk: int = 0
    remat: str = "none"
    cifar_stem_padding: int = 1
    input_mean: Sequence[float] = ()
    input_std: Sequence[float] = ()

    @property
    def feature_dim(self) -> int:
        """Output D = num_filters * width * 2^(stages - 1) * expansion (512 / 2048 x width)."""
        return (self.num_filters * self.width_multiplier * 2 ** (len(self.stage_sizes) - 1)
                * self.block_cls.expansion)

    @nn.compact
    def __call__(self, x, train: bool):
        """x: [B, H, W, C] images (any float dtype) -> [B, feature_dim] in ``dtype``.

        ``train=True`` normalises with batch statistics and updates ``batch_stats`` (apply
        with ``mutable=['batch_stats']``); ``train=False`` uses the running averages.
        """
        if self.stem not in STEMS:
            raise ValueError(
                f"ResNet stem={self.stem!r} is not supported (config field model.stem); use "
                "'imagenet' (7x7/2 conv + 3x3/2 max-pool, for 224 px images) or 'cifar' "
                "(3x3/1 conv, no max-pool, for 32 px images)")
        if self.width_multiplier < 1 or int(self.width_multiplier) != self.width_multiplier:
            raise ValueError(
                f"ResNet width_multiplier={self.width_multiplier!r} must be a positive integer "
                "(config field model.width_multiplier; SimCLR uses 1, 2 or 4)")
        conv, norm = _conv_factory(self.dtype, self.conv_batch_chunk), _norm_factory(self, train)
        width = self.num_filters * self.width_multiplier
        x = normalize_input(x, self.input_mean, self.input_std)
        x = jnp.asarray(x, self.dtype)
        if self.stem == "imagenet":
            x = conv(width, 7, 2, "conv1")(x)
        else:
            if self.cifar_stem_padding < 0:
                raise ValueError(f"ResNet cifar_stem_padding={self.cifar_stem_padding} must be >= 0 "
                                 "(config field model.cifar_stem_padding; 1 SimCLR, 2 solo-learn)")
            x = conv(width, 3, 1, "conv1", padding=int(self.cifar_stem_padding))(x)
        x = nn.relu(norm("bn1")(x))
        if self.stem == "imagenet":
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        block_cls = remat_block(self.block_cls, self.remat, static_argnums=(2,))
        for stage, num_blocks in enumerate(self.stage_sizes):
            for block in range(num_blocks):
                x = block_cls(
                    filters=width * 2 ** stage,
                    strides=2 if stage > 0 and block == 0 else 1,
                    dtype=self.dtype, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                    bn_axis_name=self.bn_axis_name, zero_init_last_bn=self.zero_init_last_bn,
                    conv_batch_chunk=self.conv_batch_chunk, name=f"layer{stage + 1}_{block}")(x, train)
        # Global average pool, accumulated in float32.
        return jnp.mean(x, axis=(1, 2), dtype=jnp.float32).astype(self.dtype)


def normalize_input(x, mean: Sequence[float], std: Sequence[float]):
    """``(x - mean) / std`` per channel in float32 (torchvision ``Normalize``); x [..., C].

    Empty ``mean`` and ``std`` return ``x`` unchanged. Raises ValueError naming the config
    fields when only one is set or their length is not C.
    """
    mean, std = tuple(mean or ()), tuple(std or ())
    if not mean and not std:
        return x
    channels = x.shape[-1]
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise ValueError(
            f"config fields model.input_mean={mean!r} and model.input_std={std!r} are invalid for "
            f"{channels}-channel images: give both, {channels} values each, std > 0 (e.g. CIFAR-10 "
            "(0.4914, 0.4822, 0.4465) / (0.247, 0.2435, 0.2616)), or leave both empty")
    x = jnp.asarray(x, jnp.float32)
    return ((x - jnp.broadcast_to(jnp.asarray(mean, jnp.float32), x.shape))
            / jnp.broadcast_to(jnp.asarray(std, jnp.float32), x.shape))


def resnet_options(model_cfg) -> dict:
    """The recipe options of ``config.model`` (``jaxssl.config.base_config``) that a ResNet takes.

    ``zero_init_residual`` -> ``zero_init_last_bn``; ``cifar_stem_padding``; ``input_mean`` /
    ``input_std``. Methods add these to the backbone's keyword arguments.
    """
    return dict(zero_init_last_bn=bool(model_cfg.zero_init_residual),
                cifar_stem_padding=int(model_cfg.cifar_stem_padding),
                input_mean=tuple(float(v) for v in model_cfg.input_mean),
                input_std=tuple(float(v) for v in model_cfg.input_std))


# Fields fixed by each standard depth (torchvision's resnet18 / resnet34 / resnet50).
RESNET_DEPTHS = {
    "resnet18": dict(stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock),
    "resnet34": dict(stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock),
    "resnet50": dict(stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck),
}


def resnet18(**kwargs) -> ResNet:
    """ResNet-18: BasicBlock x (2, 2, 2, 2), feature_dim 512 * width_multiplier."""
    return ResNet(**RESNET_DEPTHS["resnet18"], **kwargs)


def resnet34(**kwargs) -> ResNet:
    """ResNet-34: BasicBlock x (3, 4, 6, 3), feature_dim 512 * width_multiplier."""
    return ResNet(**RESNET_DEPTHS["resnet34"], **kwargs)


def resnet50(**kwargs) -> ResNet:
    """ResNet-50 v1.5: Bottleneck x (3, 4, 6, 3), feature_dim 2048 * width_multiplier."""
    return ResNet(**RESNET_DEPTHS["resnet50"], **kwargs)


__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50",
           "conv_kernel_init", "STEMS", "normalize_input", "resnet_options"]
