"""Device mesh, shardings and multi-host assembly of the global batch.

Parallelism is ``jax.jit`` over global ``jax.Array``s with ``NamedSharding`` (docs/design.md).
The mesh has one axis, ``"data"``; its axis type is ``Auto`` (deliberately: the compiler
propagates shardings through the model and the contrastive matmul, and ``shard_map`` is used
where code must see per-device blocks). Batches are sharded along their leading axis over
``"data"``. The training state (parameters, optimizer state, BatchNorm statistics, EMA
teachers, queues) is either replicated (``mesh.param_sharding='replicated'``, the default) or
sharded ZeRO-3 style (``'fsdp'``, :func:`state_leaf_sharding`): each leaf split over ``"data"``
along one dimension, so a device holds about 1/N of it, and XLA gathers a leaf where a
computation needs it whole (the parameter all-gathers and gradient reduce-scatters of FSDP).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
PARAM_SHARDINGS = ("replicated", "fsdp")
"""Values of ``mesh.param_sharding``: how the training state is laid out over the mesh."""


def make_mesh(num_devices: int | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D ``("data",)`` mesh with an ``Auto`` axis over ``num_devices`` (default: all) devices."""
    if devices is None:
        devices = jax.devices()
        if num_devices is not None:
            if num_devices > len(devices):
                raise ValueError(
                    f"mesh.num_devices={num_devices} but only {len(devices)} devices are visible; "
                    f"set it to at most {len(devices)} (or 0 / None for all)")
            devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``"data"``, other axes whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Whole array on every device of the mesh (parameters, optimizer state, small datasets)."""
    return NamedSharding(mesh, P())


def fsdp_spec(shape: Sequence[int], axis_size: int) -> P:
    """The ``PartitionSpec`` of a leaf of ``shape`` under FSDP over an axis of ``axis_size``.

    The leaf is split along its largest dimension divisible by ``axis_size`` (the first such
    one on a tie); a scalar, or a leaf with no such dimension, is replicated (``P()``).
    """
    candidates = [(d, -i) for i, d in enumerate(shape) if d >= axis_size and d % axis_size == 0]
    if axis_size <= 1 or not candidates:
        return P()
    _, neg_i = max(candidates)
    spec = [None] * len(shape)
    spec[-neg_i] = DATA_AXIS
    return P(*spec)


def state_leaf_sharding(shape: Sequence[int], mesh: Mesh, param_sharding: str = "replicated"
                        ) -> NamedSharding:
    """Sharding of one training-state leaf of ``shape``: replicated, or :func:`fsdp_spec`."""
    check_param_sharding(param_sharding)
    if param_sharding == "replicated":
        return replicated(mesh)
    return NamedSharding(mesh, fsdp_spec(tuple(shape), mesh.shape[DATA_AXIS]))


def gather_for_use(mesh: Mesh, param_sharding: str):
    """``tree -> tree`` that all-gathers FSDP-sharded state where the step uses it (a
    sharding constraint to replicated), or ``None`` for replicated state.

    Without it XLA may instead split a matmul's contraction over the sharded weight dimension,
    which computes the same values with other rounding; with it every device runs the same
    per-device computation as under replicated state, and the gradient's transpose becomes the
    reduce-scatter of FSDP.
    """
    check_param_sharding(param_sharding)
    if param_sharding == "replicated":
        return None
    rep = replicated(mesh)
    return lambda tree: jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, rep), tree)


def check_param_sharding(value: str, field: str = "mesh.param_sharding") -> None:
    if value not in PARAM_SHARDINGS:
        raise ValueError(f"config field {field}={value!r} is invalid; use one of "
                         f"{list(PARAM_SHARDINGS)} ('fsdp' shards parameters, optimizer state, "
                         "teachers and queues over the devices)")


def check_batch_divisible(global_batch: int, mesh: Mesh, field: str = "train.batch_size") -> None:
    """Raise a clear error unless the global batch splits evenly over devices and processes."""
    n_dev = mesh.devices.size
    n_proc = jax.process_count()
    if global_batch % n_dev or global_batch % n_proc:
        raise ValueError(
            f"{field}={global_batch} is not divisible by the {n_dev} devices in the mesh "
            f"({n_proc} processes); use a multiple of {np.lcm(n_dev, n_proc)}")


def process_batch_slice(global_batch: int, mesh: Mesh) -> slice:
    """The rows of the global batch that this process loads (contiguous, by process index).

    With one process this is the whole batch. Rows map to devices in mesh order, and a
    process's addressable devices hold a contiguous block of rows.
    """
    sharding = batch_sharding(mesh)
    idx_map = sharding.addressable_devices_indices_map((global_batch,))
    starts = sorted({(s[0].start or 0) for s in idx_map.values()})
    stops = sorted({(s[0].stop if s[0].stop is not None else global_batch) for s in idx_map.values()})
    return slice(starts[0], stops[-1])


def global_batch_from_local(local: Any, mesh: Mesh) -> Any:
    """Assemble per-process numpy slices (a pytree) into global arrays sharded over ``"data"``.

    Each process passes the rows ``process_batch_slice`` gave it; the global leading dimension
    is ``local_rows * process_count``.
    """
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put a pytree of host arrays on every device of the mesh."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)
