"""Frozen-feature extraction: run an embedding function over a dataset, batch by batch, on a mesh.

Evaluation protocols (kNN, linear probe) work on features extracted *once* from a frozen
backbone. This module owns that extraction and its one subtle point: every example must be
embedded exactly once, whatever the dataset size, the batch size and the device/process count.

Each global batch has a fixed size ``global_batch`` = ``batch_size`` rounded up to a multiple of
the mesh's device count and of the process count, so that it splits evenly over devices (the
``NamedSharding`` requirement) and one compiled program serves every batch. The last batch is
padded with zero rows, and the padding rows are dropped from the result.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from jaxssl import sharding as sharding_lib
from jaxssl.data import batching


def padded_batch_size(batch_size: int, mesh: Mesh) -> int:
    """``batch_size`` rounded up to a multiple of the device count and of the process count."""
    if batch_size <= 0:
        raise ValueError(f"extract_features batch_size={batch_size} must be a positive number of "
                         "examples per global batch; pass e.g. eval.batch_size=512")
    multiple = math.lcm(int(mesh.devices.size), jax.process_count())
    return -(-batch_size // multiple) * multiple


def extract_features(embed_fn: Callable[[jax.Array], jax.Array], images: np.ndarray,
                     batch_size: int, mesh: Mesh) -> np.ndarray:
    """Embed every row of ``images`` once; return host features ``[N, D]`` float32.

    Args:
      embed_fn: ``images_batch [b, ...] -> features [b, D]``, jitted or jittable. The caller
        closes over the frozen parameters and does the eval preprocessing inside it (e.g.
        uint8 -> float, centre crop), so the backbone cannot be updated here. It must treat
        rows independently (eval-mode BatchNorm), since padding rows share its batch.
      images: host array ``[N, ...]`` (uint8 or float), the *whole* dataset, identical on
        every process; each process feeds only its rows of each global batch.
      batch_size: requested global batch; rounded up by :func:`padded_batch_size`.
      mesh: the 1-D ``("data",)`` mesh; batches are sharded over it
        (:func:`jaxssl.sharding.batch_sharding`).

    Returns:
      ``np.ndarray [N, D]`` float32, row ``i`` = ``embed_fn(images)[i]``, on every process.
    """
    images = np.asarray(images)
    num_examples = images.shape[0]
    if num_examples == 0:
        raise ValueError("extract_features got images with 0 rows; pass a non-empty dataset")
    global_batch = padded_batch_size(batch_size, mesh)
    local_rows = sharding_lib.process_batch_slice(global_batch, mesh)
    out_sharding = sharding_lib.batch_sharding(mesh)
    embed = jax.jit(embed_fn, out_shardings=out_sharding)

    chunks = []
    for start in range(0, num_examples, global_batch):
        batch = images[start:start + global_batch]
        valid = batch.shape[0]
        if valid < global_batch:  # pad the last batch so every batch has the same shape
            pad = np.zeros((global_batch - valid,) + batch.shape[1:], batch.dtype)
            batch = np.concatenate([batch, pad], axis=0)
        batch_global = sharding_lib.global_batch_from_local(batch[local_rows], mesh)
        feats = embed(batch_global)
        if feats.ndim != 2 or feats.shape[0] != global_batch:
            raise ValueError(f"embed_fn returned shape {feats.shape} for a batch of {global_batch}"
                             " examples; it must return features [batch, D]")
        chunks.append(_to_host(feats)[:valid])
    return np.concatenate(chunks, axis=0).astype(np.float32)


def _to_host(x: jax.Array) -> np.ndarray:
    """The whole global array on this host (an all-gather when other processes hold rows)."""
    if x.is_fully_addressable:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def extract_split(embed_fn: Callable[[jax.Array], jax.Array], reader, num_examples: int,
                  batch_size: int, mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """Embed every example of a split once, streamed through ``reader``; ``(features, labels)``.

    Args:
      embed_fn: ``images_batch [b, ...] -> features [b, D]`` (jittable; rows independent).
      reader: a :class:`jaxssl.data.feeder.DeviceReader` or ``HostReader`` whose
        ``read(indices)`` returns ``{"image", "label"}`` global arrays for dataset indices.
      num_examples: the split's size ``N``.
      batch_size: requested global batch, rounded up to a multiple of devices x processes.
      mesh: the 1-D ``("data",)`` mesh.

    Returns:
      host ``features [N, D]`` float32 and ``labels [N]`` int32, row ``i`` for example ``i``,
      on every process. The split is read in order in fixed-shape batches; the last one is
      padded with copies of example 0 whose rows are dropped, so each example counts once.
    """
    if num_examples <= 0:
        raise ValueError("extract_split got an empty split; check the data config's split names")
    num_shards = math.lcm(int(mesh.devices.size), jax.process_count())
    embed = jax.jit(embed_fn, out_shardings=sharding_lib.batch_sharding(mesh))
    feats, labels = [], []
    for indices, valid in batching.eval_batches(num_examples, batch_size, num_shards):
        batch = reader.read(indices)
        out = embed(batch["image"])
        if out.ndim != 2 or out.shape[0] != len(indices):
            raise ValueError(f"embed_fn returned shape {out.shape} for a batch of {len(indices)} "
                             "examples; it must return features [batch, D]")
        feats.append(_to_host(out)[valid])
        labels.append(_to_host(batch["label"])[valid])
    return (np.concatenate(feats, axis=0).astype(np.float32),
            np.concatenate(labels, axis=0).astype(np.int32))
