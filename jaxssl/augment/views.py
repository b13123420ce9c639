"""Views as a spec: named groups of augmented views, the same on every data path.

A method declares a :class:`ViewSpec`: an ordered tuple of :class:`ViewGroup` (name, count,
and the :class:`~jaxssl.augment.image.ViewConfig` of its views: output size, crop scale,
colour / blur / solarize settings). SimCLR is one group of two identical views; MoCo v3 and
BYOL are two groups of one (the second view's blur / solarize differ); DINO is
``global_1`` (1), ``global_2`` (1) and ``local`` (N smaller crops).

The spec is consumed in two places, with one key per view:

* the host reader (ImageNet path) crops and resizes the views on the host. Consecutive groups
  with the same crop geometry (size, scale, ratio, resize) form one *crop group*
  (:meth:`ViewSpec.crop_groups`), delivered as one batch entry ``[B, count, S, S, C]`` under
  :func:`crop_key` (``"image"`` for the first, ``"image_1"``, ... after it);
* :func:`make_views` on the device: crops (unless the host did), then flips and colour.

View ``v`` (counted over all groups, in order) of global example ``i`` at ``step`` is keyed
by ``fold_in(fold_in(step_key, v), i)``: randomness is a pure function of (seed, step,
example, view), independent of the batch's sharding. For one group of two views this is
exactly :func:`jaxssl.augment.image.two_views`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from jaxssl import rng
from jaxssl.augment.image import ViewConfig, augment_batch


@dataclasses.dataclass(frozen=True)
class ViewGroup:
    """``count`` views drawn with ``augment`` (its ``output_size`` is the views' side)."""

    name: str
    count: int
    augment: ViewConfig

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"view group name {self.name!r} must be a non-empty string")
        if int(self.count) < 1:
            raise ValueError(f"view group {self.name!r}: count={self.count} must be >= 1")

    @property
    def size(self) -> int:
        return int(self.augment.output_size)

    def geometry(self) -> tuple:
        a = self.augment
        return (a.output_size, tuple(a.crop_scale), tuple(a.crop_ratio), a.resize_method)


@dataclasses.dataclass(frozen=True)
class CropGroup:
    """Views the host crops with one geometry, delivered as ``batch[key]`` ``[B, count, S, S, C]``."""

    key: str
    count: int
    size: int
    crop_scale: tuple[float, float]
    crop_ratio: tuple[float, float]
    resize_method: str
    members: tuple[str, ...]


def crop_key(index: int) -> str:
    """The batch entry of crop group ``index``: ``"image"``, then ``"image_1"``, ``"image_2"``..."""
    return "image" if index == 0 else f"image_{index}"


@dataclasses.dataclass(frozen=True)
class ViewSpec:
    """The ordered view groups of a method (hashable: usable as a static jit argument)."""

    groups: tuple[ViewGroup, ...]

    def __post_init__(self):
        if not self.groups:
            raise ValueError("a ViewSpec needs at least one view group")
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"view group names must be distinct, got {names}")

    @property
    def num_views(self) -> int:
        return sum(int(g.count) for g in self.groups)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def group(self, name: str) -> ViewGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no view group {name!r}; the spec has {self.names}")

    def crop_groups(self) -> tuple[CropGroup, ...]:
        """Consecutive groups of equal crop geometry merged, in order (what the host crops)."""
        merged: list[list[ViewGroup]] = []
        for g in self.groups:
            if merged and merged[-1][0].geometry() == g.geometry():
                merged[-1].append(g)
            else:
                merged.append([g])
        out = []
        for i, members in enumerate(merged):
            a = members[0].augment
            out.append(CropGroup(key=crop_key(i), count=sum(int(m.count) for m in members),
                                 size=int(a.output_size), crop_scale=tuple(a.crop_scale),
                                 crop_ratio=tuple(a.crop_ratio), resize_method=a.resize_method,
                                 members=tuple(m.name for m in members)))
        return tuple(out)


def group_from_config(name: str, count: int, augment_cfg: Any, size: int,
                      overrides: Mapping[str, Any] | None = None) -> ViewGroup:
    """A :class:`ViewGroup` from an ``augment`` config section plus ``overrides`` (a field of
    the group that differs from the base, e.g. BYOL's view 2 ``blur_prob=0.1``)."""
    fields = dict(augment_cfg.to_dict() if hasattr(augment_cfg, "to_dict") else augment_cfg)
    over = dict(overrides.to_dict() if hasattr(overrides, "to_dict") else (overrides or {}))
    fields.update(over)
    try:
        return ViewGroup(name, int(count), ViewConfig.from_config(fields, output_size=int(size)))
    except (TypeError, ValueError) as err:
        raise ValueError(f"view group {name!r} (augment overrides {over}) is invalid: {err}") from None


def make_views(spec: ViewSpec, key_step: jax.Array, batch: Mapping[str, jax.Array], *,
               host_cropped: bool, offset: int = 0) -> dict[str, jax.Array]:
    """The step's views: ``{group name: float32 [count, B, S_g, S_g, C]}`` in [0, 1].

    Args:
      spec: the method's views.
      key_step: the step's augmentation key (``rng.step_key(seed, 'augment', step)``).
      batch: ``"image"`` ``[B, H, W, C]`` (whole images, cropped here), or, when
        ``host_cropped``, one entry per crop group (:meth:`ViewSpec.crop_groups`) of shape
        ``[B, count, S, S, C]`` already cropped and resized (only flips / colour remain).
      offset: global index of the batch's first example (a slice of a larger batch).
    """
    out: dict[str, jax.Array] = {}
    v = 0
    for crop in spec.crop_groups():
        if host_cropped:
            if crop.key not in batch:
                raise ValueError(f"the batch has {sorted(batch)}, not the host crops {crop.key!r} of "
                                 f"view groups {crop.members}; was the source built from this spec?")
            stack = batch[crop.key]
            if stack.ndim != 5 or stack.shape[1] != crop.count:
                raise ValueError(f"batch[{crop.key!r}] has shape {tuple(stack.shape)}; view groups "
                                 f"{crop.members} need [B, {crop.count}, {crop.size}, {crop.size}, C]")
        j = 0
        for name in crop.members:
            group = spec.group(name)
            cfg = dataclasses.replace(group.augment, crop=False) if host_cropped else group.augment
            views = []
            for _ in range(group.count):
                images = stack[:, j] if host_cropped else batch["image"]
                keys = rng.example_keys(jax.random.fold_in(key_step, v), images.shape[0], offset)
                views.append(augment_batch(keys, images, cfg))
                v += 1
                j += 1
            out[name] = jnp.stack(views)
        del j
    return out


def host_crop_groups(spec: ViewSpec) -> Sequence[tuple]:
    """``(count, size, crop_scale, crop_ratio, resize_method)`` per crop group (host readers)."""
    return tuple((c.count, c.size, c.crop_scale, c.crop_ratio, c.resize_method)
                 for c in spec.crop_groups())


__all__ = ["ViewGroup", "ViewSpec", "CropGroup", "crop_key", "group_from_config", "make_views",
           "host_crop_groups"]
