"""Frozen-representation evaluation: kNN and the fast linear probe on the labelled splits.

:class:`RepresentationEvaluator` (``config.eval.evaluators`` entry ``'representation'``)
extracts frozen features of the labelled train split and the held-out test split through the
same sharded readers as training (in memory or streamed from the host, ``data.in_memory``;
every example exactly once, on any device and process count), then runs the weighted kNN
monitor and the linear probe of ``config.eval.linear_protocol``, with all labels and with
``eval.few_labels_per_class`` per class (:func:`jaxssl.evaluators.protocol.evaluate_features`).
At the end of a run it also reports the baselines ``eval.baselines`` names: the same backbone
at its random initialisation, and raw pixels. RankMe (the effective rank of the train
features, label-free) of the method and of ``random_init`` is printed and appended to
``WORKDIR/rankme.jsonl`` at every evaluation.

Eval preprocessing: uint8 -> float in [0, 1], then a centre crop of ``eval_crop_fraction``
resized to ``data.image_size`` -- on the device for in-memory splits, on the host (once) for
host-read sources such as ImageNet, whose reader already returns the centre crop.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl import rng
from jaxssl.augment import crop
from jaxssl.data import pipeline, sources
from jaxssl.data.feeder import DeviceReader, HostReader
from jaxssl.evaluators import features, protocol


class LabelledSplit:
    """One labelled split ready for feature extraction: its source and a reader over it."""

    def __init__(self, config, mesh, role: str):
        source = sources.load_image_source(
            config.data, role, host_crop="center",
            eval_crop_fraction=float(config.eval_crop_fraction))
        if source.labels is None and source.images is not None:
            raise ValueError(
                f"data.name={config.data.name!r} split {source.split!r} has no labels, so the "
                f"kNN / linear evaluation cannot use it as its {role!r} split; set "
                f"data.{role}_split to a labelled split, or eval.enabled=False")
        self.source = source
        self.role = role
        self.num_examples = int(source.num_examples)
        self.host_cropped = source.images is None
        if pipeline.use_in_memory(config.data, source):
            self.reader = DeviceReader({"image": source.images, "label": source.labels}, mesh)
        else:
            self.reader = HostReader(source, mesh, seed=int(config.seed), keys=("image", "label"))


def eval_preprocess(images, *, image_size: int, crop_fraction: float, host_cropped: bool):
    """uint8 (or float) ``[B, H, W, C]`` -> float ``[B, S, S, C]`` in [0, 1], centre-cropped
    and resized unless the host already did it."""
    if host_cropped:
        return crop.to_float_image(images)
    return crop.center_crop_resize(images, image_size, crop_fraction=crop_fraction)


class RepresentationEvaluator:
    """kNN + linear probe of ``features`` (and the baselines at the end of a run).

    ``features(params, model_state, images) -> [B, D]`` and ``init(key) -> (params,
    model_state)`` are the run's named functions (:mod:`jaxssl.evaluators.build`).
    """

    name = "representation"

    def __init__(self, config, mesh, *, features, init, **unused_functions):
        del unused_functions
        self.config = config
        self.mesh = mesh
        self.features = features
        self.init = init

    @functools.cached_property
    def splits(self) -> tuple[LabelledSplit, LabelledSplit]:
        return LabelledSplit(self.config, self.mesh, "train"), \
            LabelledSplit(self.config, self.mesh, "test")

    def embed_fn(self, params, model_state, host_cropped: bool):
        c = self.config

        def fn(images):
            x = eval_preprocess(images, image_size=int(c.data.image_size),
                                crop_fraction=float(c.eval_crop_fraction),
                                host_cropped=host_cropped)
            return self.features(params, model_state, x).astype(jnp.float32)
        return fn

    def split_features(self, embed_for_split) -> dict:
        """``{'train': (feats, labels), 'test': (feats, labels)}`` of ``embed_for_split(split)``."""
        bs = int(self.config.eval.batch_size)
        return {s.role: features.extract_split(embed_for_split(s), s.reader, s.num_examples, bs,
                                               self.mesh) for s in self.splits}

    def evaluate_embedding(self, embed_for_split, name: str | None = None) -> dict:
        feats = self.split_features(embed_for_split)
        (f_train, y_train), (f_test, y_test) = feats["train"], feats["test"]
        if name is not None:
            self.rankme[name] = rankme_of(f_train)
        num_classes = self.splits[0].source.num_classes
        return protocol.evaluate_features(f_train, y_train, f_test, y_test, num_classes,
                                          self.config.eval)

    def random_init(self):
        """``(params, model_state)`` at the run's initialisation (the seed's 'init' key)."""
        return jax.jit(self.init)(rng.root_key(self.config.seed, "init"))

    def __call__(self, state, workdir: str, final: bool) -> dict:
        c = self.config
        self.rankme = {}
        results = {c.method: self.evaluate_embedding(
            lambda s: self.embed_fn(state.params, state.model_state, s.host_cropped), c.method)}
        if final:
            if "random_init" in c.eval.baselines:
                params0, model_state0 = self.random_init()
                results["random_init"] = self.evaluate_embedding(
                    lambda s: self.embed_fn(params0, model_state0, s.host_cropped), "random_init")
            if "raw_pixels" in c.eval.baselines:
                results["raw_pixels"] = self.evaluate_embedding(lambda s: raw_pixels)
        log_rankme(workdir, int(jax.device_get(state.step)), self.rankme)
        return results


# RankMe's sample: the paper's 25,600 embeddings (the first rows of the train split).
RANKME_MAX_ROWS = 25_600


def rankme_of(train_features: np.ndarray) -> float:
    """RankMe (:mod:`jaxssl.evaluators.rankme`) of the first ``RANKME_MAX_ROWS`` train features."""
    from jaxssl.evaluators.rankme import rankme
    return float(rankme(jnp.asarray(np.asarray(train_features)[:RANKME_MAX_ROWS], jnp.float32)))


def log_rankme(workdir: str, step: int, values: dict) -> None:
    """Print RankMe per representation and append ``{"step", name: value}`` to
    ``WORKDIR/rankme.jsonl`` (process 0): the label-free monitor of every image method,
    logged beside, not inside, ``eval_results.json``."""
    if not values or jax.process_index() != 0:
        return
    print("RankMe (effective rank of the train features): " + ", ".join(
        f"{k} {v:.1f}" for k, v in values.items()), flush=True)
    if workdir:
        import json

        from jaxssl import paths
        path = paths.resolve(workdir) / "rankme.jsonl"
        old = path.read_text() if path.exists() else ""
        paths.write_text(path, old + json.dumps({"step": step, **values}) + "\n")


def raw_pixels(images):
    """The raw-pixel baseline: the stored (or host-cropped) image, flattened, in [0, 1]."""
    return images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0
