"""Step-indexed batching: which examples a training or evaluation step reads.

docs/design.md, "Data position is a function of the step": the dataset indices of the global batch
at step ``s`` are a pure function of ``(seed, s, n, global_batch)``. There is no iterator
state, so a run resumed at step ``k`` reads exactly the batches the uninterrupted run would
have read, on any number of processes and devices.

Training order (the usual "shuffle each epoch, drop the remainder" loader)::

    steps_per_epoch = n // B                    # the last n % B examples of an epoch are dropped
    epoch, pos      = divmod(step, steps_per_epoch)
    batch(step)     = permutation(seed, epoch)[pos * B : (pos + 1) * B]

Every process computes the same global ``[B]`` index vector and loads only its contiguous
rows (:func:`process_rows`, which agrees with :func:`jaxssl.sharding.process_batch_slice`).

Permutations are built from raw 64-bit words of ``PCG64(SeedSequence([seed, stream, epoch]))``
(``argsort`` of the words). NumPy guarantees that ``SeedSequence`` and the ``PCG64`` bit stream
are stable across versions (NEP 19), whereas ``Generator.permutation``'s algorithm is not,
so the order does not change with the NumPy version.
"""
from __future__ import annotations

import functools
import math
from typing import Iterator

import numpy as np

from jaxssl.rng import stream_id

_DATA_STREAM = stream_id("data")


def _check_nonneg_int(value, field: str) -> int:
    if int(value) != value or value < 0:
        raise ValueError(f"{field}={value!r} must be a non-negative integer")
    return int(value)


@functools.lru_cache(maxsize=4)
def _cached_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    bits = np.random.PCG64(np.random.SeedSequence([seed, _DATA_STREAM, epoch]))
    keys = bits.random_raw(n)  # uint64 [n]: the stable bit stream
    perm = np.argsort(keys, kind="stable").astype(np.int64)  # ties (p ~ n^2 / 2^65) break by index
    perm.setflags(write=False)
    return perm


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the ``n`` examples in ``epoch``: int64 ``[n]``, a permutation of ``0..n-1``.

    ``argsort`` of ``n`` raw words of ``PCG64(SeedSequence([seed, stream_id('data'), epoch]))``,
    a uniformly random permutation that is stable across NumPy versions. The result is cached
    (the last few epochs) and read-only: one permutation serves every step of its epoch.
    """
    seed = _check_nonneg_int(seed, "seed")
    epoch = _check_nonneg_int(epoch, "epoch")
    n = _check_nonneg_int(n, "num_examples")
    return _cached_permutation(seed, epoch, n)


def steps_per_epoch(n: int, global_batch: int) -> int:
    """Full training batches per epoch: ``n // global_batch``.

    The remaining ``n % global_batch`` examples of each epoch's permutation are dropped (they
    differ from epoch to epoch, so every example is still seen). Raises if the batch is larger
    than the dataset, since no step could be formed.
    """
    if global_batch <= 0:
        raise ValueError(f"train.batch_size={global_batch} must be positive")
    if global_batch > n:
        raise ValueError(
            f"train.batch_size={global_batch} is larger than the {n} training examples; "
            f"use a batch size of at most {n}")
    return n // global_batch


def batch_indices(seed: int, step: int, n: int, global_batch: int) -> np.ndarray:
    """Dataset indices of the global batch at training ``step``: int64 ``[global_batch]``.

    ``epoch = step // steps_per_epoch``; the batch is the ``step % steps_per_epoch``-th block of
    ``global_batch`` entries of :func:`epoch_permutation` ``(seed, epoch, n)``. No index repeats
    within an epoch.
    """
    step = _check_nonneg_int(step, "step")
    spe = steps_per_epoch(n, global_batch)
    epoch, pos = divmod(step, spe)
    return epoch_permutation(seed, epoch, n)[pos * global_batch:(pos + 1) * global_batch].copy()


def process_rows(global_batch: int, process_index: int, process_count: int) -> slice:
    """The contiguous rows of the global batch that process ``process_index`` loads.

    Process ``p`` of ``P`` gets rows ``[p * B/P, (p + 1) * B/P)``, which is what
    :func:`jaxssl.sharding.process_batch_slice` returns on a 1-D ``"data"`` mesh whose devices
    are ordered by process. ``global_batch`` must be divisible by ``process_count``.
    """
    if process_count <= 0 or not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index={process_index} must lie in [0, process_count={process_count})")
    if global_batch % process_count:
        raise ValueError(
            f"train.batch_size={global_batch} is not divisible by the {process_count} processes; "
            f"use a multiple of {process_count}")
    rows = global_batch // process_count
    return slice(process_index * rows, (process_index + 1) * rows)


def eval_batch_size(batch_size: int, num_shards: int) -> int:
    """Rows of every evaluation batch: ``batch_size`` rounded up to a multiple of ``num_shards``."""
    if batch_size <= 0:
        raise ValueError(f"eval batch_size={batch_size} must be positive")
    if num_shards <= 0:
        raise ValueError(f"num_shards={num_shards} must be positive (devices x processes)")
    return math.ceil(batch_size / num_shards) * num_shards


def eval_batches(n: int, batch_size: int, num_shards: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every example ``0..n-1`` exactly once, in order, in fixed-shape padded batches.

    Yields ``(indices, mask)``: ``indices`` int64 ``[L]`` and ``mask`` bool ``[L]``, where
    ``L = eval_batch_size(batch_size, num_shards)`` is ``batch_size`` rounded up to a multiple
    of ``num_shards`` (so each batch splits evenly over devices and processes and a jitted
    evaluation step compiles once). The last batch is padded with index 0 and ``mask=False``;
    real rows have ``mask=True``. Nothing is dropped.
    """
    n = _check_nonneg_int(n, "num_examples")
    rows = eval_batch_size(batch_size, num_shards)
    for start in range(0, n, rows):
        real = np.arange(start, min(start + rows, n), dtype=np.int64)
        indices = np.zeros(rows, np.int64)
        indices[:real.size] = real
        mask = np.zeros(rows, bool)
        mask[:real.size] = True
        yield indices, mask
