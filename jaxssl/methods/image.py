"""What every image method shares: the pretraining feeder, views, and representation eval.

SimCLR, MoCo and MAE subclass :class:`ImageMethod` and add their model and loss.
"""
from __future__ import annotations

import abc
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl import rng
from jaxssl.augment import image as aug
from jaxssl.data import sources
from jaxssl.data.feeder import DeviceFeeder, HostFeeder
from jaxssl.evaluators import representation
from jaxssl.methods.base import Method


class ImageMethod(Method):
    unit = "img"

    @classmethod
    def validate_config(cls, config) -> None:
        from jaxssl.config import KNOWN_BACKBONES, fail
        if config.data.name not in sources.KNOWN_DATASETS:
            fail("data.name", config.data.name, f"use one of {list(sources.KNOWN_DATASETS)}")
        if config.model.backbone not in KNOWN_BACKBONES:
            fail("model.backbone", config.model.backbone, f"use one of {list(KNOWN_BACKBONES)}")

    def __init__(self, config, mesh):
        super().__init__(config, mesh)
        self.pretrain_source = sources.load_image_source(config.data, "pretrain")
        self.image_size = int(config.data.image_size)
        self.channels = (self.pretrain_source.image_shape[-1]
                         if self.pretrain_source.image_shape else 3)
        self.view_cfg = aug.ViewConfig.from_config(config.augment, output_size=self.image_size)
        if not self.pretrain_source.on_device:  # the host already cropped and resized each view
            self.view_cfg = aug.ViewConfig.from_config(
                dict(config.augment, crop=False), output_size=self.image_size)

    # ----- data -------------------------------------------------------------------------
    def make_feeder(self):
        src, c = self.pretrain_source, self.config
        if src.on_device:
            return DeviceFeeder({"image": src.images}, c.train.batch_size, c.seed, self.mesh)
        return HostFeeder(src, c.train.batch_size, c.seed, self.mesh, views=2)

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

    # ----- evaluation -------------------------------------------------------------------
    @abc.abstractmethod
    def backbone_features(self, params, model_state, images):
        """Frozen-backbone features ``[B, D]`` of eval-preprocessed float images."""

    def eval_preprocess(self, images):
        x = images.astype(jnp.float32) / 255.0 if images.dtype == jnp.uint8 else images
        return aug.center_crop_resize(x, self.image_size, crop_fraction=self.config.eval_crop_fraction)

    def embed_fn(self, params, model_state):
        @jax.jit
        def fn(images):
            return self.backbone_features(params, model_state, self.eval_preprocess(images))
        return fn

    def evaluate(self, state, workdir: str, final: bool) -> dict:
        """kNN and linear probe of the trained backbone and, at the end, of the baselines."""
        c = self.config
        results = {self.config.method: representation.evaluate_embedding(
            self.embed_fn(state.params, state.model_state), c, self.mesh)}
        if final:
            params0, model_state0 = jax.jit(self.init)(rng.root_key(c.seed, "init"))
            if "random_init" in c.eval.baselines:
                results["random_init"] = representation.evaluate_embedding(
                    self.embed_fn(params0, model_state0), c, self.mesh)
            if "raw_pixels" in c.eval.baselines:
                results["raw_pixels"] = representation.evaluate_embedding(
                    lambda x: x.reshape(x.shape[0], -1).astype(jnp.float32) / 255.0, c, self.mesh)
            if c.eval.embedding_map:
                self._save_embedding_map(state, params0, model_state0, workdir)
        return results

    def _save_embedding_map(self, state, params0, model_state0, workdir: str) -> None:
        """t-SNE of held-out features, pretrained vs random init, into WORKDIR/embedding_map.png."""
        from jaxssl import plots
        from jaxssl.evaluators import features
        c = self.config
        _, test = representation.labelled_splits(c.data)
        bs = int(c.eval.batch_size)
        # Feature extraction runs on every process; only process 0 draws and saves.
        f_ssl = features.extract_features(self.embed_fn(state.params, state.model_state),
                                          test.images, bs, self.mesh)
        f_rand = features.extract_features(self.embed_fn(params0, model_state0), test.images, bs,
                                           self.mesh)
        if jax.process_index() == 0:
            try:
                plots.save_embedding_map({f"{c.method} (pretrained)": (f_ssl, test.labels),
                                          "random init": (f_rand, test.labels)},
                                         os.path.join(workdir, "embedding_map.png"),
                                         random_state=c.seed)
            except ImportError as e:  # matplotlib is an optional extra ('.[plots]')
                print(f"embedding map skipped: {e}; pip install -e '.[plots]'", flush=True)
