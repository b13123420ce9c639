"""Frozen-feature extraction: run an embedding function over a dataset, batch by batch, on a mesh.

Evaluation protocols (kNN, linear probe) work on features extracted *once* from a frozen
backbone. This module owns that extraction and its one subtle point: every example must be
embedded exactly once, whatever the dataset size, the batch size and the device/process count.

Each global batch has a fixed size, ``batch_size`` rounded up to a multiple of the mesh's
device count and of the process count (:func:`jaxssl.data.batching.eval_batches`), so that it
splits evenly over devices (the ``NamedSharding`` requirement) and one compiled program serves
every batch. The last batch is padded, and the padding rows are dropped from the result.
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
