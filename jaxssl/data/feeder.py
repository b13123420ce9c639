"""Feeding the global batch of each step: a pure function of (seed, step).

Two feeders, one contract: ``feeder(step) -> dict of global jax.Arrays`` sharded over ``"data"``.

* :class:`DeviceFeeder` — small datasets (digits, CIFAR, STL-10, packed text) live on the
  device, replicated; each process computes the dataset indices of *its* rows of the global
  batch (``batching.batch_indices`` is the same on every process), the global index array is
  assembled with ``jax.make_array_from_process_local_data``, and the rows are gathered on the
  device. Cropping and colour augmentation then run on the device too.
* :class:`HostFeeder` — ImageNet-scale sources: each process reads and decodes its rows on the
  host (``source.get``), and the global batch is assembled from the per-process slices.

Resume needs no iterator state: ``feeder(step)`` at step k is the same whether or not the run
was interrupted before k.
"""
from __future__ import annotations

from typing import Mapping

import jax
import numpy as np

from jaxssl import sharding as sharding_lib
from jaxssl.data import batching


class DeviceFeeder:
    """Rows of device-resident arrays ``{name: [N, ...]}`` chosen by the step's permutation."""

    def __init__(self, arrays: Mapping[str, np.ndarray], global_batch: int, seed: int, mesh):
        sizes = {k: len(v) for k, v in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"DeviceFeeder arrays differ in length: {sizes}")
        self.num_examples = next(iter(sizes.values()))
        self.global_batch = global_batch
        self.seed = seed
        self.mesh = mesh
        self.steps_per_epoch = batching.steps_per_epoch(self.num_examples, global_batch)
        self.rows = sharding_lib.process_batch_slice(global_batch, mesh)
        self.arrays = sharding_lib.replicate(dict(arrays), mesh)
        out = sharding_lib.batch_sharding(mesh)
        self._gather = jax.jit(lambda data, idx: jax.tree.map(lambda a: a[idx], data),
                               out_shardings=out)

    def indices(self, step: int) -> np.ndarray:
        """Dataset indices of the whole global batch at ``step`` (host numpy, int32)."""
        return batching.batch_indices(self.seed, step, self.num_examples, self.global_batch)

    def __call__(self, step: int):
        local = self.indices(step)[self.rows].astype(np.int32)
        idx = sharding_lib.global_batch_from_local(local, self.mesh)
        return self._gather(self.arrays, idx)


class HostFeeder:
    """Rows decoded and cropped on the host by ``source.get`` (per-process slices)."""

    def __init__(self, source, global_batch: int, seed: int, mesh, views: int = 2):
        self.source = source
        self.num_examples = source.num_examples
        self.global_batch = global_batch
        self.seed = seed
        self.mesh = mesh
        self.views = views
        self.steps_per_epoch = batching.steps_per_epoch(self.num_examples, global_batch)
        self.rows = sharding_lib.process_batch_slice(global_batch, mesh)

    def indices(self, step: int) -> np.ndarray:
        return batching.batch_indices(self.seed, step, self.num_examples, self.global_batch)

    def __call__(self, step: int):
        local = self.indices(step)[self.rows]
        batch = self.source.get(local, seed=self.seed, step=step, row_offset=self.rows.start)
        batch = {k: v for k, v in batch.items() if k == "image"}
        return sharding_lib.global_batch_from_local(batch, self.mesh)
