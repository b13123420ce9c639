"""ResNet backbone -> torchvision ``resnet18`` / ``resnet34`` / ``resnet50`` state dict.

The Flax names of :mod:`jaxssl.models.resnet` were chosen to map one-to-one onto torchvision's
(``layer2_0/downsample_conv`` -> ``layer2.0.downsample.0``); the values change layout only:

* conv kernels ``[kh, kw, in, out]`` -> ``weight [out, in, kh, kw]``;
* BN ``scale, bias`` -> ``weight, bias``; ``batch_stats`` ``mean, var`` -> ``running_mean,
  running_var``; ``num_batches_tracked`` is set to the training step count (torch uses it only
  with ``momentum=None``).

**The classifier (``fc``) is omitted**: a pretrained SSL backbone has none. Load with
``model.fc = torch.nn.Identity()`` and ``load_state_dict(sd)`` (strict) to get the pooled
features ``[B, D]`` that jaxssl's backbone returns, or keep a fresh ``fc`` for fine-tuning
with ``load_state_dict(sd, strict=False)`` (the only missing keys are then ``fc.weight`` and
``fc.bias``). :func:`build_torch_resnet` builds the matching model (stem, input channels).

**Running variance**: Flax's BatchNorm averages the *biased* batch variance (divide by n),
torch's the *unbiased* one (n - 1). The stored value is copied unchanged, so inference
(``model.eval()``, which normalises with the stored value in both frameworks) gives the same
outputs. Only if training continues in torch do new updates mix in unbiased estimates, a
factor n / (n - 1) per update (n = batch x H x W, at least 256 x 7 x 7 for ResNet-50 on
ImageNet: a relative difference below 1e-4).

Not exportable: ``width_multiplier > 1`` (SimCLR's R50x2/x4 widen the stem and every layer;
torchvision's ``wide_resnet50_2`` widens only the bottleneck's inner convs), and the
``small_cnn`` backbone (no torchvision counterpart).
"""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np

ARCHS = ("resnet18", "resnet34", "resnet50")


def _conv(kernel) -> np.ndarray:
    """Flax conv kernel ``[kh, kw, in, out]`` -> torch ``[out, in, kh, kw]``."""
    return np.ascontiguousarray(np.transpose(np.asarray(kernel, np.float32), (3, 2, 0, 1)))


def _torch_prefix(flax_name: str) -> str:
    """``layer2_0`` -> ``layer2.0``; ``downsample_conv`` -> ``downsample.0``; ``downsample_bn``
    -> ``downsample.1``; other names (``conv1``, ``bn2``) unchanged."""
    name = re.sub(r"^(layer\d+)_(\d+)$", r"\1.\2", flax_name)
    return {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(name, name)


def resnet_state_dict(params: Mapping, batch_stats: Mapping, *,
                      num_batches_tracked: int = 0) -> dict[str, np.ndarray]:
    """torchvision ResNet state dict (without ``fc``) of a jaxssl ResNet's variables.

    Args:
      params: the backbone's ``params`` tree (``{'conv1': {'kernel'}, 'bn1': {...},
        'layer1_0': {...}, ...}``), leaves array-like float32.
      batch_stats: the backbone's ``batch_stats`` tree (same BN names, ``mean`` / ``var``).
      num_batches_tracked: value of every BN's ``num_batches_tracked`` (int64 scalar).

    Returns:
      ``{torch key: float32 array}`` plus int64 ``num_batches_tracked`` scalars; the stem's
      keys first, then the blocks in (stage, block) order (``load_state_dict`` does not
      depend on the order).
    """
    out: dict[str, np.ndarray] = {}

    def visit(p: Mapping, s: Mapping, prefix: str):
        for name in p:
            key = prefix + _torch_prefix(name)
            leaf = p[name]
            if "kernel" in leaf:
                out[key + ".weight"] = _conv(leaf["kernel"])
            elif "scale" in leaf:
                if name not in s:
                    raise ValueError(f"BatchNorm {key} has params but no batch_stats; pass the "
                                     "backbone's batch_stats (model_state['batch_stats'] subtree)")
                out[key + ".weight"] = np.asarray(leaf["scale"], np.float32)
                out[key + ".bias"] = np.asarray(leaf["bias"], np.float32)
                out[key + ".running_mean"] = np.asarray(s[name]["mean"], np.float32)
                out[key + ".running_var"] = np.asarray(s[name]["var"], np.float32)
                out[key + ".num_batches_tracked"] = np.asarray(num_batches_tracked, np.int64)
            else:
                visit(leaf, s.get(name, {}), key + ".")

    for top in _ordered(params):
        visit({top: params[top]}, batch_stats, "")
    return out


def _ordered(params: Mapping) -> list[str]:
    """Stem modules first, then ``layer<i>_<j>`` in (i, j) order."""
    def rank(name: str):
        m = re.match(r"layer(\d+)_(\d+)$", name)
        return (1, int(m.group(1)), int(m.group(2))) if m else (0, name, 0)
    return sorted(params, key=rank)


def check_exportable(backbone: str, width_multiplier: int = 1) -> None:
    """Raise ``ValueError`` naming the config field if the backbone has no torchvision twin."""
    if backbone not in ARCHS:
        raise ValueError(f"config field model.backbone={backbone!r} cannot be exported to "
                         f"torchvision; --format=torchvision supports {list(ARCHS)} "
                         "(use --format=timm for ViT backbones)")
    if int(width_multiplier) != 1:
        raise ValueError(f"config field model.width_multiplier={width_multiplier!r}: "
                         "torchvision has no ResNet whose stem and every layer are widened "
                         "(SimCLR's R50x2/x4); only width_multiplier=1 is exportable")


def build_torch_resnet(arch: str, stem: str = "imagenet", in_chans: int = 3):
    """The torchvision model that loads :func:`resnet_state_dict` strictly.

    ``torchvision.models.<arch>(weights=None)`` with ``fc = Identity`` (outputs the pooled
    features ``[B, D]``); for ``stem='cifar'`` the stem is replaced as in SimCLR's CIFAR
    model (``conv1`` 3x3 stride 1 padding 1, no bias; ``maxpool = Identity``); ``in_chans``
    other than 3 replaces ``conv1`` with one of that many input channels.
    """
    from jaxssl import optional

    torch = optional.require("torch", "build_torch_resnet")
    torchvision = optional.require("torchvision", "build_torch_resnet")
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r} is not one of {list(ARCHS)}")
    model = getattr(torchvision.models, arch)(weights=None)
    width = model.conv1.out_channels
    if stem == "cifar":
        model.conv1 = torch.nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
    elif stem == "imagenet":
        if in_chans != 3:
            model.conv1 = torch.nn.Conv2d(in_chans, width, 7, 2, 3, bias=False)
    else:
        raise ValueError(f"stem={stem!r} (config field model.stem) must be 'imagenet' or 'cifar'")
    model.fc = torch.nn.Identity()
    return model


__all__ = ["resnet_state_dict", "build_torch_resnet", "check_exportable", "ARCHS"]
