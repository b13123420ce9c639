"""Shuffling BN for MoCo's key encoder (He et al. 2020, Sec. 3.3), on any device count.

The leak: with BatchNorm, a query and its positive key computed in the *same* group of
samples share the group's statistics, and the model can find the positive through them
instead of learning good features. MoCo computes the keys' BN statistics on a batch whose
order has been shuffled across GPUs (``_batch_shuffle_ddp`` / ``_batch_unshuffle_ddp`` in
facebookresearch/moco ``builder.py``): each GPU normalises the keys of a random subset of the
global batch, then the keys are put back in the original order.

Here the queries' BN sees the global batch (the trainer's ``jit`` over a sharded batch), and the key encoder runs in one of three modes (config ``moco.shuffle_bn``):

``'devices'``  the reference's mechanism. A permutation of the *global* batch, keyed by
               ``(seed, 'shuffle_bn', step)``, is applied as a gather before a
               ``jax.shard_map`` over the ``"data"`` axis (under ``jit`` the gather of a
               batch-sharded array is XLA's collective permutation / all-to-all); inside it
               each device runs the key encoder with per-device BN statistics
               (``bn_axis_name=None``) on its block of the shuffled batch; the inverse
               permutation restores the order. Needs a mesh of more than one device.
``'groups'``   the same on any number of devices: the permuted batch is split into
               ``moco.bn_groups`` contiguous groups and the key encoder is ``vmap``-ped over
               the groups, so every group gets its own BN statistics. With G equal to the
               device count and the same seed this computes exactly what ``'devices'`` does
               (the same permutation and the same groups).
``'off'``      keys use the global-batch statistics of their own view (SyncBN); leaks.

The permutation depends only on (seed, step, global batch), never on the device count, so a
run is deterministic and a resumed run replays it. The BN running statistics that the key
encoder keeps are updated with the mean over groups (devices) of the per-group batch
statistics.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from jaxssl import rng
from jaxssl.sharding import DATA_AXIS

MODES = ("devices", "groups", "off")

ApplyFn = Callable[[Any, jax.Array], tuple[Any, Any]]
"""``apply_fn(variables, x [n, ...]) -> (outputs (leading axis n), batch_stats_update)``."""


def shuffle_permutation(seed: int, step, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """``(perm, inverse)``: int32 ``[B]`` permutation of the global batch at ``step`` and its
    inverse (``x[perm][inverse] == x``), keyed by ``(seed, 'shuffle_bn', step)``."""
    key = rng.step_key(seed, "shuffle_bn", step)
    perm = jax.random.permutation(key, batch_size).astype(jnp.int32)
    return perm, jnp.argsort(perm).astype(jnp.int32)


def _mean_over_leading(tree: Any) -> Any:
    return jax.tree.map(lambda a: jnp.mean(a, axis=0), tree)


def forward_grouped(apply_fn: ApplyFn, variables: Any, x: jax.Array,
                    num_groups: int) -> tuple[Any, Any]:
    """Per-group BN: rows ``[g * B/G, (g + 1) * B/G)`` of ``x`` form group ``g``.

    ``x``: ``[B, ...]`` with ``B % num_groups == 0``. Returns the outputs in the order of ``x``
    and the batch-stats update averaged over the groups.
    """
    batch = x.shape[0]
    if batch % num_groups:
        raise ValueError(f"config field moco.bn_groups={num_groups} must divide the global batch "
                         f"train.batch_size={batch}")
    grouped = x.reshape(num_groups, batch // num_groups, *x.shape[1:])
    out, updates = jax.vmap(lambda xg: apply_fn(variables, xg))(grouped)
    out = jax.tree.map(lambda o: o.reshape(batch, *o.shape[2:]), out)
    return out, _mean_over_leading(updates)


def forward_per_device(apply_fn: ApplyFn, variables: Any, x: jax.Array, mesh) -> tuple[Any, Any]:
    """Per-device BN: ``jax.shard_map`` over ``"data"``; device ``d`` normalises its block of
    ``x`` (rows ``[d * B/n, (d + 1) * B/n)``). The batch-stats update is ``pmean``-ed, so it
    comes back replicated; the outputs come back sharded like ``x``."""
    def per_device(variables_local, x_local):
        out, updates = apply_fn(variables_local, x_local)
        return out, jax.lax.pmean(updates, DATA_AXIS)

    return jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(DATA_AXIS)),
                         out_specs=(P(DATA_AXIS), P()))(variables, x)


def shuffled_forward(apply_fn: ApplyFn, variables: Any, x: jax.Array, *, mode: str, seed: int,
                     step, mesh=None, num_groups: int = 1) -> tuple[Any, Any]:
    """The key encoder's forward pass under shuffle BN (module docstring).

    Args:
      apply_fn: ``(variables, x) -> (outputs, batch_stats_update)`` in training mode.
      variables: the key encoder's variables (replicated).
      x: ``[B, ...]`` the global batch of key views (sharded over ``"data"``).
      mode: 'devices' | 'groups' | 'off'.
      seed, step: key the permutation.
      mesh: the ``("data",)`` mesh ('devices' only).
      num_groups: G ('groups' only).

    Returns:
      ``(outputs, batch_stats_update)``, outputs in the order of ``x``.
    """
    if mode not in MODES:
        raise ValueError(f"config field moco.shuffle_bn={mode!r} is invalid: use one of {MODES}")
    if mode == "off":
        return apply_fn(variables, x)
    perm, inverse = shuffle_permutation(seed, step, x.shape[0])
    shuffled = x[perm]
    if mode == "devices":
        if mesh is None or mesh.devices.size < 2:
            raise ValueError(
                "config field moco.shuffle_bn='devices' needs a mesh of at least 2 devices (per-"
                "device BN on one device is global BN); use moco.shuffle_bn='groups' with "
                "moco.bn_groups > 1 on a single device")
        out, updates = forward_per_device(apply_fn, variables, shuffled, mesh)
    else:
        out, updates = forward_grouped(apply_fn, variables, shuffled, num_groups)
    return jax.tree.map(lambda o: o[inverse], out), updates


__all__ = ["MODES", "shuffle_permutation", "forward_grouped", "forward_per_device",
           "shuffled_forward"]
