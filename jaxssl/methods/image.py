"""What every image objective shares: its views of the step's images and a frozen feature.

SimCLR, MoCo, BYOL, SimSiam, Barlow Twins, VICReg, DINO and MAE subclass :class:`ImageMethod`
and add their model and loss. A method declares its views as a
:class:`~jaxssl.augment.views.ViewSpec` (``view_spec``) and reads them with ``make_views``;
they are cropped on the device unless the host already cropped them (``data.host_cropped``,
the ImageNet path).
"""
from __future__ import annotations

import abc

import jax.numpy as jnp

from jaxssl import rng
from jaxssl.augment import image as aug
from jaxssl.augment import views as views_lib
from jaxssl.data import normalize as normalize_lib
from jaxssl.methods.base import Method


class ImageMethod(Method):
    unit = "img"
    data_kind = "image"
    default_evaluators = ("representation",)

    @classmethod
    def validate_config(cls, config) -> None:
        """The backbone's name (the dataset's is the data builder's check:
        :func:`jaxssl.data.pipeline.validate_data`)."""
        from jaxssl.config import fail
        from jaxssl.models.registry import BACKBONE_NAMES
        if config.model.backbone not in BACKBONE_NAMES:
            fail("model.backbone", config.model.backbone, f"use one of {list(BACKBONE_NAMES)}")

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        self.image_size = int(config.data.image_size)
        self.channels = int(data.channels)
        self.view_cfg = self.view_config(config.augment)
        self.spec = self.view_spec(config)
        mean, std, field = normalize_lib.input_normalization(config)
        if len(mean) not in (0, 1, self.channels):
            raise ValueError(f"config field {field}={mean!r} has {len(mean)} values but "
                             f"data.name={config.data.name!r} images have {self.channels} "
                             f"channel(s); give 1 or {self.channels} values")
        self.input_mean, self.input_std = mean, std

    def view_config(self, augment_cfg) -> aug.ViewConfig:
        """The on-device :class:`ViewConfig` of ``augment_cfg``, without the crop when the host
        already cropped and resized each view."""
        fields = dict(augment_cfg.to_dict() if hasattr(augment_cfg, "to_dict") else augment_cfg)
        if self.data.host_cropped:
            fields["crop"] = False
        return aug.ViewConfig.from_config(fields, output_size=self.image_size)

    def items_per_step(self) -> int:
        return int(self.config.train.batch_size)

    @classmethod
    def view_spec(cls, config) -> views_lib.ViewSpec:
        """The method's views (:mod:`jaxssl.augment.views`): by default one group ``views`` of
        ``num_views`` views drawn with ``config.augment`` at ``data.image_size``. The trainer
        builds host-read sources from it before the method exists, hence a classmethod."""
        size = int(config.data.image_size)
        return views_lib.ViewSpec((views_lib.group_from_config("views", cls.num_views,
                                                               config.augment, size),))

    def normalize(self, images):
        """The input normalisation (:mod:`jaxssl.data.normalize`, ``data.normalize_*``) of
        float images in [0, 1] ``[..., C]``; unchanged when the config sets none."""
        return normalize_lib.normalize_images(images, self.input_mean, self.input_std)

    def make_views(self, batch, step) -> dict:
        """``{group: float32 [count, B, S_g, S_g, C]}``: the step's views of ``view_spec``,
        keyed by (seed, step, example, view), cropped here unless the host cropped them, and
        normalised (:meth:`normalize`)."""
        key = rng.step_key(self.config.seed, "augment", step)
        views = views_lib.make_views(self.spec, key, batch, host_cropped=self.data.host_cropped)
        return {name: self.normalize(v) for name, v in views.items()}

    def two_views(self, batch, step):
        """The first two views ``[B, S, S, C]`` of ``make_views`` in spec order (two-view
        methods; the spec holds every view's settings)."""
        views = self.make_views(batch, step)
        flat = [v for name in self.spec.names for v in views[name]]
        return flat[0], flat[1]

    def dummy_input(self, batch: int = 2) -> jnp.ndarray:
        return jnp.zeros((batch, self.image_size, self.image_size, self.channels), jnp.float32)

    def features(self, params, model_state, inputs):
        """Frozen-backbone features ``[B, D]`` of eval-preprocessed float images."""
        return self.backbone_features(params, model_state, inputs)

    @abc.abstractmethod
    def backbone_features(self, params, model_state, images):
        """The backbone in eval mode on float images ``[B, S, S, C]`` in [0, 1] -> ``[B, D]``
        (the method normalises them, :meth:`normalize`)."""
