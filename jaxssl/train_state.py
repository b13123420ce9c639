"""The training state pytree and its sharded initialisation.

Every leaf that a resumed run needs is here and in the checkpoint: the step, the parameters,
the optimizer state, and ``model_state`` (BatchNorm statistics, and per method an EMA teacher
or a key queue). Data order and augmentation randomness are functions of (seed, step), so
nothing else is saved.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxssl import sharding as sharding_lib


@flax.struct.dataclass
class TrainState:
    step: jax.Array                # int32 scalar: number of optimizer steps taken
    params: Any                    # trainable parameters (float32)
    opt_state: Any                 # optax state
    model_state: Any               # non-trainable: {'batch_stats': ..., 'teacher': ..., 'queue': ...}
    nonfinite_steps: jax.Array     # int32 scalar: steps skipped for a NaN/Inf loss or gradient
    last_nonfinite_step: jax.Array  # int32 scalar: the last such step (-1: none yet)


def initial_state(params, model_state, tx: optax.GradientTransformation) -> TrainState:
    """The state at step 0 for freshly initialised ``params`` / ``model_state``."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      model_state=model_state, nonfinite_steps=jnp.zeros((), jnp.int32),
                      last_nonfinite_step=jnp.full((), -1, jnp.int32))


def create(init_fn: Callable[[], tuple[Any, Any]], tx: optax.GradientTransformation, mesh,
           param_sharding: str = "replicated") -> TrainState:
    """Initialise a TrainState directly on the mesh, laid out by ``param_sharding``.

    ``init_fn() -> (params, model_state)`` is traced once under ``jax.jit`` with the state's
    output shardings (:func:`state_shardings`), so no host copy of the parameters is made and
    under ``'fsdp'`` no device ever holds a whole leaf (this scales to models that only fit
    when sharded).
    """
    def _init():
        params, model_state = init_fn()
        return initial_state(params, model_state, tx)

    shardings = state_shardings(jax.eval_shape(_init), mesh, param_sharding)
    return jax.jit(_init, out_shardings=shardings)()


def state_shardings(abstract_state: Any, mesh, param_sharding: str = "replicated") -> Any:
    """Shardings of every state leaf (``mesh.param_sharding``).

    ``'replicated'``: every leaf whole on every device. ``'fsdp'`` (ZeRO-3): every leaf of
    params, optimizer state and model state (BatchNorm statistics, EMA teacher, queue) split
    over ``"data"`` along its largest dimension divisible by the device count
    (:func:`jaxssl.sharding.fsdp_spec`), replicated when it has none; the scalars (step,
    counters) stay replicated.
    """
    sharding_lib.check_param_sharding(param_sharding)
    return jax.tree.map(
        lambda x: sharding_lib.state_leaf_sharding(x.shape, mesh, param_sharding), abstract_state)


def abstract(init_fn, tx, mesh, param_sharding: str = "replicated") -> Any:
    """``jax.ShapeDtypeStruct`` tree (with shardings) of the state ``create`` would build."""
    def _init():
        params, model_state = init_fn()
        return initial_state(params, model_state, tx)
    shapes = jax.eval_shape(_init)
    shardings = state_shardings(shapes, mesh, param_sharding)
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)
