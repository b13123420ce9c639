"""The benchmarked train steps: a config per method and size, what its timed batch holds,
and the peers it is compared with.

Each :class:`Workload` builds a full jaxssl config from a preset (``configs/``) pointed at
data that needs no download. Every name also exists as ``<name>_pipeline``: the same config
fed by the real feeder every step instead of one device-resident batch.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from typing import Callable

from jaxssl.benchmarks.peers import PeerStep

CPU_CONV_BATCH_CHUNK = 64


def load_preset(name: str, arg: str | None = None):
    """``configs/<name>.py``'s ``get_config(arg)``, unlocked for the benchmark's overrides."""
    from jaxssl import config as config_lib
    c = config_lib.load_preset(name, arg)
    c.unlock()
    return c


def synthetic_images(c, batch: int, dtype: str, image_size: int):
    """Point an image preset at on-the-fly synthetic uint8 data (no download), no eval."""
    c.data.name = "synthetic"
    c.data.image_size = image_size
    c.model.dtype = dtype
    # a long run, so the preset's warmup (in epochs of the small synthetic set) fits
    c.train.update(dict(batch_size=batch, num_steps=1_000_000, num_epochs=0.0))
    c.eval.enabled = False
    return c


def simclr_r18_cifar_config(batch: int, dtype: str):
    """The shapes of ``peers/torch_simclr_step.py``: ResNet-18 CIFAR stem, 2-layer
    512-512-128 head, NT-Xent T=0.5, SGD momentum 0.9 wd 5e-4, B images = 2B views."""
    from jaxssl.config import base_config
    c = base_config()
    c.method = "simclr"
    c.data.name = "synthetic"
    c.data.image_size = 32
    c.augment.update(dict(blur_prob=0.0, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1))
    c.model.update(dict(backbone="resnet18", stem="cifar", head="simclr_v1", head_hidden_dim=512,
                        head_output_dim=128, dtype=dtype))
    c.loss.temperature = 0.5
    c.optim.update(dict(name="sgd", base_lr=0.06, lr_scaling="none", weight_decay=5e-4,
                        momentum=0.9, warmup_epochs=0.0, schedule="constant"))
    c.train.update(dict(batch_size=batch, num_steps=100, num_epochs=0.0))
    c.eval.enabled = False
    return c


def bert_base_mlm_config(batch: int, dtype: str):
    """BERT-base MLM at T=128 with the peers' shapes: 30,522-token vocabulary, 15% masked,
    AdamW 1e-4 wd 0.01, dropout 0.1, on the embedded pydoc text (a 2,000-token WordPiece
    vocabulary padded with [unusedN] tokens to BERT's 30,522 so the embedding and the MLM head
    have BERT's shapes). The preset ``configs/bert_base_mlm.py`` phase 1 otherwise."""
    from jaxssl.data import corpus, text
    small = text.train_wordpiece(corpus.load_pydoc_corpus("train"), 2000)
    tokens = [small.id_to_token(i) for i in range(small.vocab_size)]
    tokens += [f"[unused{i}]" for i in range(30522 - len(tokens))]
    vocab = os.path.join(tempfile.mkdtemp(prefix="jaxssl_bench_"), "vocab.txt")
    with open(vocab, "w") as f:
        f.write("\n".join(tokens) + "\n")
    c = load_preset("bert_base_mlm", "phase1")
    c.data.update(dict(name="pydoc", train_split=None, test_split=None, max_test_documents=0,
                       vocab_file=vocab, sentence_pairs=True))
    c.model.dtype = dtype
    c.train.batch_size = batch
    c.eval.enabled = False
    return c


def mocov2_r50_224_config(batch: int, dtype: str):
    """``configs/mocov2_imagenet.py`` on synthetic data. Its shuffle BN is per device; on a
    one-device mesh it becomes the same shuffle over ``gcd(8, batch)`` BN groups."""
    import jax
    c = synthetic_images(load_preset("mocov2_imagenet"), batch, dtype, 224)
    if jax.device_count() == 1:
        c.moco.update(dict(shuffle_bn="groups", bn_groups=math.gcd(8, batch)))
    return c


def _bf16_flag(dtype: str) -> list[str]:
    return ["--bf16"] if dtype == "bfloat16" else []


SIMCLR_PEERS = (PeerStep("torch", "torch_simclr_step.py",
                         lambda b, t, d: ["--batch", str(b), "--threads", str(t), *_bf16_flag(d)],
                         label="torch + lightly SimCLR"),)
MLM_PEERS = (PeerStep("torch", "torch_mlm_step.py",
                      lambda b, t, d: ["--batch", str(b), "--seq-len", "128", "--threads", str(t),
                                       *_bf16_flag(d)], label="PyTorch BertForMaskedLM"),
             PeerStep("flax", "flax_mlm_step.py",
                      lambda b, t, d: ["--batch", str(b), "--seq-len", "128", *_bf16_flag(d)],
                      label="HF FlaxBertForMaskedLM"))


@dataclasses.dataclass(frozen=True)
class Workload:
    """``build(batch, dtype) -> config``; ``inputs``: what the timed batch holds --
    ``views`` (pre-made float views, no augmentation), ``images`` (uint8 images, augmented in
    the step), ``feeder_once`` (the feeder's first batch, reused) or ``feeder`` (the real
    feeder every step); ``peers``: compared with, same shapes."""
    build: Callable
    default_batch: int
    inputs: str
    peers: tuple = ()


_BASE = {
    "simclr_r18_cifar": Workload(simclr_r18_cifar_config, 128, "views", SIMCLR_PEERS),
    "simclr_r50_224": Workload(
        lambda b, d: synthetic_images(load_preset("simclr_imagenet", "v1"), b, d, 224), 128, "views"),
    "mocov2_r50_224": Workload(mocov2_r50_224_config, 128, "views"),
    "mocov3_vitb16": Workload(
        lambda b, d: synthetic_images(load_preset("mocov3_imagenet", "vit_base"), b, d, 224), 128, "views"),
    "mae_vitb16": Workload(
        lambda b, d: synthetic_images(load_preset("mae_vit_base_imagenet"), b, d, 224), 128, "images"),
    "bert_base_mlm_t128": Workload(bert_base_mlm_config, 8, "feeder_once", MLM_PEERS),
    # BYOL R50: online + predictor on both views, EMA target forward on both (no gradient).
    "byol_r50_224": Workload(
        lambda b, d: synthetic_images(load_preset("byol_imagenet"), b, d, 224), 128, "views"),
    # DINO ViT-S/16 multi-crop: 2 x 224 global + 8 x 96 local crops made in the step from
    # uint8 images (views of two sizes cannot be one pre-made tensor).
    "dino_vits16_multicrop": Workload(
        lambda b, d: synthetic_images(load_preset("dino_imagenet", "vit_s16"), b, d, 224), 64,
        "images"),
    # I-JEPA ViT-H/14: target encoder on all 256 patches, context encoder and predictor on the
    # padded context / target sequences; the crop and the multi-block masks made in the step.
    "ijepa_vith14": Workload(
        lambda b, d: synthetic_images(load_preset("ijepa_imagenet"), b, d, 224), 32, "images"),
    # iBOT ViT-S/16: DINO's multi-crop (2 x 224 + 10 x 96) plus block masks drawn in the step,
    # the shared head on every global patch token (8192 prototypes), unmasked teacher pass.
    "ibot_vits16_multicrop": Workload(
        lambda b, d: synthetic_images(load_preset("ibot_imagenet", "vit_s16"), b, d, 224), 64,
        "images"),
}
WORKLOADS: dict[str, Workload] = {}
for _name, _w in _BASE.items():
    WORKLOADS[_name] = _w
    # the real input pipeline: no peer, the row is compared with its plain twin
    WORKLOADS[f"{_name}_pipeline"] = dataclasses.replace(_w, inputs="feeder", peers=())
WORKLOADS["simclr_r18_cifar_bf16"] = dataclasses.replace(
    WORKLOADS["simclr_r18_cifar"], build=lambda b, d: simclr_r18_cifar_config(b, "bfloat16"))
CPU_QUICK = ("simclr_r18_cifar", "simclr_r18_cifar_pipeline", "bert_base_mlm_t128")


def check_names(names: list[str]) -> None:
    """Raise naming the unknown workloads and the known ones."""
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workloads {unknown}; known: {sorted(WORKLOADS)}")


def apply_overrides(config, overrides: list[str]):
    """``--set a.b=value`` overrides, typed like the existing field."""
    for item in overrides:
        key, _, raw = item.partition("=")
        *path, last = key.split(".")
        node = config
        for p in path:
            node = node[p]
        old = node[last]
        value = (raw.lower() in ("1", "true", "yes") if isinstance(old, bool) else
                 type(old)(raw) if isinstance(old, (int, float, str)) else json.loads(raw))
        node[last] = value
    return config


def cpu_levers(config, overrides: list[str]) -> list[str]:
    """Turn on the measured CPU levers for a one-device CPU run (unless overridden):
    ResNet convs on slices of 64 images (``model.conv_batch_chunk``, docs/performance.md)."""
    import jax
    levers = []
    if (jax.default_backend() == "cpu" and jax.device_count() == 1
            and config.model.backbone.startswith("resnet")
            and not any(o.startswith("model.conv_batch_chunk=") for o in overrides)):
        config.model.conv_batch_chunk = CPU_CONV_BATCH_CHUNK
        levers.append(f"conv_batch_chunk={CPU_CONV_BATCH_CHUNK}")
    return levers
