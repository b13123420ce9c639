"""Stateless randomness: every random draw is a pure function of (seed, stream, step, example).

docs/design.md: augmentations, masks and data order are keyed by
``fold_in(fold_in(fold_in(key(seed), stream), step), example_index)``, so a result does not
depend on the device count, and a resumed run replays the same draws bit for bit.

``example_index`` is the example's position in the *global* batch at that step
(``0 .. global_batch - 1``), never a per-device index.
"""
from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp


def stream_id(stream: str) -> int:
    """A stable 31-bit integer for a stream name ('augment', 'mask', 'data', 'init', ...)."""
    return zlib.crc32(stream.encode("utf-8")) & 0x7FFFFFFF


def root_key(seed: int, stream: str) -> jax.Array:
    """The key of one stream of randomness for a run with this seed (a typed PRNG key)."""
    return jax.random.fold_in(jax.random.key(seed), stream_id(stream))


def step_key(seed: int, stream: str, step) -> jax.Array:
    """Key for ``stream`` at training step ``step`` (int or traced int32 scalar)."""
    return jax.random.fold_in(root_key(seed, stream), step)


def example_keys(key: jax.Array, num_examples: int, offset=0) -> jax.Array:
    """Per-example keys ``[num_examples]``: ``fold_in(key, offset + i)`` for i in range(n).

    ``offset`` lets a caller derive the keys of a slice of the global batch (for example a
    process's or a device's rows) that agree with the keys of the whole batch.
    """
    idx = jnp.arange(num_examples, dtype=jnp.uint32) + jnp.asarray(offset, jnp.uint32)
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)
