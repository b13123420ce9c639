"""Leaf names and fingerprints of a state tree: what a save records and a restore verifies.

* :func:`path_str` / :func:`flat_leaves`: one name per leaf (``'params/head/kernel'``), the
  same in a TrainState and in orbax's stored dict tree.
* :func:`fingerprint`: per leaf, the sum of its bit patterns weighted by ``2 i + 1`` modulo
  2^32, computed on the device (exact and independent of the reduction order), and which
  leaves hold NaN/Inf. :func:`verify` compares a restored tree with the recorded prints.
* :func:`tree_differences`: stored vs expected ``{path: (shape, dtype)}``, human-readable.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl import paths
from jaxssl.checkpoint.errors import CheckpointCorruptError


# ----------------------------------------------------------------------------- tree paths
def path_str(path) -> str:
    """``('params', 'head', 'kernel')``-like key path as ``'params/head/kernel'``.

    Attribute keys (``TrainState.params``), dict keys and sequence indices all become plain
    names, so the same leaf has the same name in a TrainState and in orbax's stored dict tree.
    """
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def flat_leaves(tree) -> dict[str, Any]:
    """``{path_str(leaf path): leaf}`` of a pytree."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {path_str(p): leaf for p, leaf in leaves}


def shapes(tree) -> dict[str, tuple]:
    """``{leaf path: (shape, dtype)}`` of a pytree of arrays or ``ShapeDtypeStruct``s."""
    return {n: (tuple(x.shape), x.dtype) for n, x in flat_leaves(tree).items()}


# ----------------------------------------------------------------------------- fingerprints
def _leaf_words(x: jax.Array) -> jax.Array:
    """The bit pattern of ``x`` as uint32 words ``[size * max(1, bits / 32)]``."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32).reshape(-1)
    bits = x.dtype.itemsize * 8
    unsigned = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32, 64: jnp.uint32}[bits]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32).reshape(-1)


@jax.jit
def _fingerprints_and_finite(leaves: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Per leaf: ``sum_i word_i * (2 i + 1) mod 2^32`` (uint32) and whether all values are finite."""
    prints, finite = [], []
    for x in leaves:
        w = _leaf_words(x)
        weights = jnp.arange(w.size, dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1)
        prints.append(jnp.sum(w * weights, dtype=jnp.uint32))
        if jnp.issubdtype(x.dtype, jnp.inexact):
            finite.append(jnp.all(jnp.isfinite(x)))
        else:
            finite.append(jnp.array(True))
    if not leaves:
        return jnp.zeros((0,), jnp.uint32), jnp.zeros((0,), bool)
    return jnp.stack(prints), jnp.stack(finite)


def to_host(x: jax.Array) -> np.ndarray:
    """A replicated (possibly multi-process) array as a host numpy array."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_shards[0].data)
    return np.asarray(x)


def fingerprint(tree: Any) -> tuple[dict[str, int], list[str]]:
    """``({leaf path: uint32 fingerprint}, [paths of leaves holding NaN/Inf])`` of a state tree."""
    flat = flat_leaves(tree)
    names = sorted(flat)
    prints, finite = _fingerprints_and_finite([jnp.asarray(flat[n]) for n in names])
    prints, finite = to_host(prints), to_host(finite)
    return ({n: int(p) for n, p in zip(names, prints)},
            [n for n, ok in zip(names, finite) if not ok])


def verify(path: paths.PathLike, state: Any, meta: dict) -> None:
    """Raise :class:`CheckpointCorruptError` naming ``path`` if a leaf's fingerprint differs
    from ``meta['fingerprints']`` (recorded at save time); no-op for a checkpoint without them."""
    expected = meta.get("fingerprints")
    if expected is None:
        return  # written without a meta/ item: nothing to verify against
    got, _ = fingerprint(state)
    bad = sorted(n for n in set(got) | set(expected) if got.get(n) != expected.get(n))
    if bad:
        raise CheckpointCorruptError(
            f"checkpoint {path} is damaged: {len(bad)} leaves differ from what was saved "
            f"({', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''}); delete it to resume from the "
            "previous one, or set --config.train.restore_fallback=True")


# ----------------------------------------------------------------------------- structure
def _describe(shape, dtype) -> str:
    return f"{tuple(shape)} {np.dtype(dtype).name if dtype is not None else '?'}"


def tree_differences(stored: dict[str, tuple], expected: dict[str, tuple]) -> list[str]:
    """Human-readable differences between ``{path: (shape, dtype)}`` maps (stored vs expected)."""
    out = []
    for name in sorted(set(stored) | set(expected)):
        if name not in stored:
            out.append(f"{name}: missing in the checkpoint (config has {_describe(*expected[name])})")
        elif name not in expected:
            out.append(f"{name}: only in the checkpoint ({_describe(*stored[name])}), "
                       "not in the config's model")
        else:
            (s_shape, s_dtype), (e_shape, e_dtype) = stored[name], expected[name]
            if tuple(s_shape) != tuple(e_shape) or np.dtype(s_dtype) != np.dtype(e_dtype):
                out.append(f"{name}: checkpoint {_describe(s_shape, s_dtype)}, "
                           f"config {_describe(e_shape, e_dtype)}")
    return out
