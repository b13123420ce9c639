"""What every image objective shares: its views of the step's images and a frozen feature.

SimCLR, MoCo and MAE subclass :class:`ImageMethod` and add their model and loss. The trainer
hands the method its :class:`~jaxssl.data.pipeline.TrainData`; views are cropped on the
device unless the host already cropped them (``data.host_cropped``, the ImageNet path).
"""
from __future__ import annotations

import abc

import jax
import jax.numpy as jnp

from jaxssl import rng
from jaxssl.augment import image as aug
from jaxssl.data import sources
from jaxssl.methods.base import Method


class ImageMethod(Method):
    unit = "img"
    data_kind = "image"
    default_evaluators = ("representation",)

    @classmethod
    def validate_config(cls, config) -> None:
        from jaxssl.config import fail
        from jaxssl.models.registry import BACKBONE_NAMES
        if config.data.name not in sources.KNOWN_DATASETS:
            fail("data.name", config.data.name, f"use one of {list(sources.KNOWN_DATASETS)}")
        if config.model.backbone not in BACKBONE_NAMES:
            fail("model.backbone", config.model.backbone, f"use one of {list(BACKBONE_NAMES)}")

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        self.image_size = int(config.data.image_size)
        self.channels = int(data.channels)
        self.view_cfg = self.view_config(config.augment)

    def view_config(self, augment_cfg) -> aug.ViewConfig:
        """The on-device :class:`ViewConfig` of ``augment_cfg``, without the crop when the host
        already cropped and resized each view."""
        fields = dict(augment_cfg.to_dict() if hasattr(augment_cfg, "to_dict") else augment_cfg)
        if self.data.host_cropped:
            fields["crop"] = False
        return aug.ViewConfig.from_config(fields, output_size=self.image_size)

    def items_per_step(self) -> int:
        return int(self.config.train.batch_size)

    def two_views(self, batch, step, view_cfg_b=None):
        """The two augmented views ``[B, S, S, C]`` of the step's images, keyed by (seed, step).

        A batch may instead carry ``"views"``: float ``[B, 2, S, S, C]`` views augmented
        elsewhere (benchmarks against peers that time the step on given tensors), used as is.
        """
        if "views" in batch:
            return batch["views"][:, 0], batch["views"][:, 1]
        key = rng.step_key(self.config.seed, "augment", step)
        images = batch["image"]
        cfg_b = view_cfg_b or self.view_cfg
        if images.ndim == 5:  # host-cropped [B, 2, S, S, C]
            ka, kb = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
            n = images.shape[0]
            va = aug.augment_batch(rng.example_keys(ka, n), images[:, 0], self.view_cfg)
            vb = aug.augment_batch(rng.example_keys(kb, n), images[:, 1], cfg_b)
            return va, vb
        return aug.two_views(key, images, self.view_cfg, cfg_b)

    def dummy_input(self, batch: int = 2) -> jnp.ndarray:
        return jnp.zeros((batch, self.image_size, self.image_size, self.channels), jnp.float32)

    def features(self, params, model_state, inputs):
        """Frozen-backbone features ``[B, D]`` of eval-preprocessed float images."""
        return self.backbone_features(params, model_state, inputs)

    @abc.abstractmethod
    def backbone_features(self, params, model_state, images):
        """The backbone in eval mode on float images ``[B, S, S, C]`` -> ``[B, D]``."""
