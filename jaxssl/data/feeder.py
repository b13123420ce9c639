"""Feeding global batches: readers that turn dataset indices into sharded global arrays.

A *reader* answers ``read(indices, step) -> dict of global jax.Arrays`` for the dataset
indices of a whole global batch (``indices`` is the same host array on every process; each
process loads only its own rows of it). Two readers, one contract:

* :class:`DeviceReader` -- small datasets (digits, CIFAR, STL-10, packed text) held on the
  device, replicated: each process turns *its* rows of ``indices`` into a global index array
  (``jax.make_array_from_process_local_data``) and the rows are gathered on the device.
* :class:`HostReader` -- a source read on the host (``source.get``: ImageNet JPEGs decoded and
  cropped by worker threads, an image folder, or an in-memory split forced through the host
  path with ``data.in_memory=False``); the global batch is assembled from per-process slices.

Training feeders (:class:`DeviceFeeder`, :class:`HostFeeder`) are ``feeder(step) -> batch``:
the step's indices come from :func:`jaxssl.data.batching.batch_indices`, a pure function of
(seed, step), so resume needs no iterator state. The trainer prepares the next host-read
batches in a background thread (:mod:`jaxssl.data.prefetch`, ``data.prefetch``). Evaluation reads a split in order with
:func:`jaxssl.data.batching.eval_batches` through the same readers (padding rows masked).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import jax
import numpy as np

from jaxssl import sharding as sharding_lib
from jaxssl.data import batching


class DeviceReader:
    """Rows of device-resident arrays ``{name: [N, ...]}`` (replicated), gathered on the device."""

    def __init__(self, arrays: Mapping[str, np.ndarray], mesh):
        sizes = {k: len(v) for k, v in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"DeviceFeeder arrays differ in length: {sizes}")
        self.num_examples = next(iter(sizes.values()))
        self.mesh = mesh
        self.arrays = sharding_lib.replicate(dict(arrays), mesh)
        out = sharding_lib.batch_sharding(mesh)
        self._gather = jax.jit(lambda data, idx: jax.tree.map(lambda a: a[idx], data),
                               out_shardings=out)

    def read(self, indices: np.ndarray, step: int = 0) -> dict:
        """The rows ``indices`` (host int ``[B]``, all processes alike) as global arrays."""
        del step
        rows = sharding_lib.process_batch_slice(len(indices), self.mesh)
        idx = sharding_lib.global_batch_from_local(np.asarray(indices)[rows].astype(np.int32),
                                                   self.mesh)
        return self._gather(self.arrays, idx)


class HostReader:
    """Rows read (decoded, cropped) on the host by ``source.get``, one slice per process."""

    def __init__(self, source, mesh, seed: int = 0, keys: Sequence[str] = ("image",)):
        self.source = source
        self.num_examples = source.num_examples
        self.mesh = mesh
        self.seed = seed
        self.keys = tuple(keys)

    def read(self, indices: np.ndarray, step: int = 0) -> dict:
        """The rows ``indices`` at ``step``; random host crops of global row ``r`` are keyed by
        ``(seed, step, r)`` whichever process reads it."""
        rows = sharding_lib.process_batch_slice(len(indices), self.mesh)
        batch = self.source.get(np.asarray(indices)[rows], seed=self.seed, step=step,
                                row_offset=rows.start)
        missing = [k for k in self.keys if k not in batch]
        if missing:
            raise ValueError(f"{self.source.name}/{self.source.split}: the reader returns "
                             f"{sorted(batch)}, not {missing}")
        return sharding_lib.global_batch_from_local({k: batch[k] for k in self.keys}, self.mesh)


class _StepFeeder:
    """``feeder(step)``: the rows of :func:`batching.batch_indices` (seed, step) via a reader."""

    reader: DeviceReader | HostReader

    def _setup(self, reader, global_batch: int, seed: int, mesh) -> None:
        self.reader = reader
        self.num_examples = reader.num_examples
        self.global_batch = int(global_batch)
        self.seed = int(seed)
        self.mesh = mesh
        self.steps_per_epoch = batching.steps_per_epoch(self.num_examples, self.global_batch)
        self.rows = sharding_lib.process_batch_slice(self.global_batch, mesh)

    def indices(self, step: int) -> np.ndarray:
        """Dataset indices of the whole global batch at ``step`` (host numpy, int64)."""
        return batching.batch_indices(self.seed, step, self.num_examples, self.global_batch)

    def __call__(self, step: int) -> dict:
        return self.reader.read(self.indices(step), step)


class DeviceFeeder(_StepFeeder):
    """Training batches gathered on the device from arrays held there (:class:`DeviceReader`).

    A call only dispatches a gather to the device (``reads_on_host = False``): the trainer
    does not prefetch it (:func:`jaxssl.data.prefetch.prefetching`)."""

    reads_on_host = False

    def __init__(self, arrays: Mapping[str, np.ndarray], global_batch: int, seed: int, mesh):
        self._setup(DeviceReader(arrays, mesh), global_batch, seed, mesh)

    def __call__(self, step: int) -> dict:
        return self.reader.read(self.indices(step), step)


class HostFeeder(_StepFeeder):
    """Training batches read on the host by ``source.get`` (:class:`HostReader`).

    A call reads, decodes and crops on the host, then copies to the devices
    (``reads_on_host = True``): the trainer prefetches it (``data.prefetch``)."""

    reads_on_host = True

    def __init__(self, source, global_batch: int, seed: int, mesh,
                 keys: Sequence[str] = ("image",)):
        self.source = source
        self._setup(HostReader(source, mesh, seed, keys), global_batch, seed, mesh)


__all__ = ["DeviceReader", "HostReader", "DeviceFeeder", "HostFeeder"]
