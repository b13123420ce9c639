"""Loading a checkpoint outside of resuming its run: ``train.init_from`` and exports.

* :func:`resolve`: a step folder, a checkpoints folder or a workdir -> ``(directory, step)``.
* :func:`load_tree`: the whole stored state as a dict tree (verified), whatever model or device
  count wrote it.
* :func:`init_from`: the leaves of ``params`` / ``model_state`` that match a new state by path
  and shape (the lenient partial load, the default of ``train.init_from``).
* :func:`load_subtree`: one subtree loaded strictly (a classifier's pretrained backbone).
"""
from __future__ import annotations

from typing import Any

import jax
from etils import epath

from jaxssl import paths
from jaxssl.checkpoint.errors import CheckpointError
from jaxssl.checkpoint.integrity import flat_leaves, path_str
from jaxssl.checkpoint.manager import Checkpointer, is_finished


def resolve(path: paths.PathLike) -> tuple[epath.Path, int]:
    """``(checkpoints directory, step)`` for a step folder, a checkpoints folder or a workdir.

    Local paths are made absolute, URLs (``gs://...``) kept; only finished steps count.
    """
    path = paths.resolve(path)
    if path.name.isdigit() and (path / "state").is_dir():
        return path.parent, int(path.name)
    for directory in (path, path / "checkpoints"):
        if directory.is_dir():
            steps = [int(d.name) for d in directory.iterdir()
                     if d.name.isdigit() and (d / "state").is_dir() and is_finished(d)]
            if steps:
                return directory, max(steps)
    raise CheckpointError(
        f"train.init_from={str(path)!r} is not a checkpoint: pass a step folder "
        "(WORKDIR/checkpoints/<step>), a checkpoints folder or a workdir that holds one")


def load_tree(path: paths.PathLike, mesh=None) -> tuple[dict, dict]:
    """The full stored state of a checkpoint as a dict tree (verified), and its meta JSON.

    ``path`` is anything :func:`resolve` accepts. Arrays are restored replicated over ``mesh``
    (default: the first device), whatever device count wrote them.
    """
    directory, step = resolve(path)
    ckpt = Checkpointer.open(directory)
    try:
        if mesh is None:
            sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        else:
            sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                              ckpt.stored_tree_metadata(step))
        return ckpt.read_verified(step, target)
    finally:
        ckpt.manager.close()


def init_from(path: paths.PathLike, state: Any, mesh) -> tuple[Any, list[str], list[str]]:
    """Load the leaves of ``params`` and ``model_state`` that match by path and shape.

    A new run starting from another run's checkpoint (a pretrained backbone into a new head,
    a different projection width...). Returns ``(state, loaded, initialised)``: the state with
    matching leaves replaced by the checkpoint's, and the paths that were loaded and those
    that keep their fresh initialisation. The step, the optimizer state and the skip counter
    stay as initialised. Raises :class:`CheckpointError` if no leaf matches.
    """
    stored, _ = load_tree(path, mesh)
    stored_flat = flat_leaves({"params": stored.get("params", {}),
                               "model_state": stored.get("model_state", {})})
    loaded, initialised = [], []

    def pick(p, new):
        name = path_str(p)
        old = stored_flat.get(name)
        if old is not None and tuple(old.shape) == tuple(new.shape) and old.dtype == new.dtype:
            loaded.append(name)
            return jax.device_put(old, new.sharding)
        initialised.append(name)
        return new

    params = jax.tree_util.tree_map_with_path(
        lambda p, x: pick((jax.tree_util.DictKey("params"),) + tuple(p), x), state.params)
    model_state = jax.tree_util.tree_map_with_path(
        lambda p, x: pick((jax.tree_util.DictKey("model_state"),) + tuple(p), x), state.model_state)
    if not loaded:
        raise CheckpointError(
            f"train.init_from={str(path)!r}: no parameter matches the config's model by name and "
            f"shape (checkpoint has e.g. {sorted(stored_flat)[:5]}); check the path and the model")
    return state.replace(params=params, model_state=model_state), loaded, initialised


def load_subtree(mine: Any, theirs: Any, path: str, where: str, *,
                 may_be_new: tuple[str, ...] = ()) -> Any:
    """``theirs`` placed with ``mine``'s shardings: the strict partial load of one subtree (a
    pretrained backbone into a classifier).

    Every leaf of ``mine`` must exist in ``theirs`` with the same shape and dtype, except
    leaves under a first-level key in ``may_be_new`` (new modules, e.g. a fine-tuning
    ``fc_norm``), which keep their value. ``path`` (the checkpoint) and ``where`` (the
    subtree's name in it) only name things in the :class:`CheckpointError` raised otherwise.
    """
    mine_flat = {path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(mine)[0]}
    theirs_flat = {path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(theirs)[0]}
    for name, x in mine_flat.items():
        old = theirs_flat.get(name)
        if old is None and name.split("/")[0] in may_be_new:
            continue
        if old is None:
            raise CheckpointError(
                f"train.init_from={path!r}: {where}/{name} is missing from the checkpoint "
                f"(it holds e.g. {sorted(theirs_flat)[:3]}); the config's model.* fields must "
                "match the pretraining run's")
        if tuple(old.shape) != tuple(x.shape) or old.dtype != x.dtype:
            raise CheckpointError(
                f"train.init_from={path!r}: {where}/{name} is {old.dtype}{list(old.shape)} in "
                f"the checkpoint but {x.dtype}{list(x.shape)} here; the config's model.* "
                "fields must match the pretraining run's")
    return jax.tree_util.tree_map_with_path(
        lambda p, x: jax.device_put(theirs_flat[path_str(p)], x.sharding)
        if path_str(p) in theirs_flat else x, mine)
