"""Orbax checkpoints in ``WORKDIR/checkpoints``: async, atomic, verified, restored into current shardings.

Layout of one step (``WORKDIR/checkpoints/<step>/``): ``state/`` (the TrainState, orbax
``StandardSave``) and ``meta/`` (JSON: the step, a fingerprint of every state leaf, the device
and process count of the run that wrote it).

What this module guarantees (docs/reliability.md lists them for users):

* **Atomic**: orbax writes each step into ``<step>.orbax-checkpoint-tmp-<time>`` and renames it
  when every item is written. A crash in between leaves a tmp folder that is never restored;
  :class:`Checkpointer` removes such folders when it opens the directory (logging each one).
* **Verified, never partial**: every save records a fingerprint per leaf (the sum of the
  leaf's bit patterns weighted by ``2 i + 1``, modulo 2^32, computed on the device; exact and
  independent of the reduction order). :meth:`Checkpointer.restore` restores the whole tree,
  recomputes the fingerprints and raises :class:`CheckpointCorruptError` naming the path and
  the damaged leaves if any differs (zstd chunks carry no checksum, so flipped bytes in a
  finished checkpoint otherwise restore silently). Either the full, verified state is
  returned or an error is raised.
* **Mismatch before compiling**: the stored tree (orbax's metadata: keys, shapes, dtypes) is
  compared with the abstract state before anything is read; a difference raises
  :class:`CheckpointMismatchError` listing every differing key and shape. Loading a subset is
  only done by :func:`init_from` (``train.init_from``).
* **Never a non-finite state**: :meth:`Checkpointer.save` refuses a state with NaN/Inf
  (:class:`NonFiniteStateError`), naming the leaves.
* **Save errors surface**: an async save that fails raises :class:`CheckpointSaveError` at the
  next :meth:`save`, :meth:`wait` or :meth:`close` (orbax only logs some of them).
* **Local or on GCS**: the workdir is a local folder or a ``gs://`` URL (:mod:`jaxssl.paths`;
  every path here is an ``etils.epath.Path``). On GCS orbax writes a step in place and marks
  it finished with a ``commit_success.txt`` object instead of renaming a tmp folder; an
  unfinished step is removed and never restored either way. :func:`check_workdir` proves the
  workdir writable from every process before any device work.
"""
from __future__ import annotations

import re
import shutil
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from jaxssl import paths
from jaxssl.metrics import log

FORMAT_VERSION = 1
_TMP_DIR = re.compile(r"^\d+\.orbax-checkpoint-tmp")


class CheckpointError(RuntimeError):
    """Base class of every checkpoint failure; the message names the checkpoint path."""


class CheckpointCorruptError(CheckpointError):
    """A finished checkpoint is unreadable, truncated, or its contents fail verification."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's keys or shapes differ from the config's model (found before any read)."""


class CheckpointSaveError(CheckpointError):
    """Writing a checkpoint failed (e.g. the workdir is not writable)."""


class NonFiniteStateError(CheckpointError):
    """A state holding NaN or Inf was passed to :meth:`Checkpointer.save`."""


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


def _flat(tree) -> dict[str, Any]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {path_str(p): leaf for p, leaf in leaves}


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


def _to_host(x: jax.Array) -> np.ndarray:
    """A replicated (possibly multi-process) array as a host numpy array."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_shards[0].data)
    return np.asarray(x)


def fingerprint(tree: Any) -> tuple[dict[str, int], list[str]]:
    """``({leaf path: uint32 fingerprint}, [paths of leaves holding NaN/Inf])`` of a state tree."""
    flat = _flat(tree)
    names = sorted(flat)
    prints, finite = _fingerprints_and_finite([jnp.asarray(flat[n]) for n in names])
    prints, finite = _to_host(prints), _to_host(finite)
    return ({n: int(p) for n, p in zip(names, prints)},
            [n for n, ok in zip(names, finite) if not ok])


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


def _shapes(tree) -> dict[str, tuple]:
    return {n: (tuple(x.shape), x.dtype) for n, x in _flat(tree).items()}


def _item_handlers() -> dict:
    # Named up front so that a fresh process can read a step's metadata before restoring it.
    return {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}


def check_workdir(workdir: paths.PathLike) -> epath.Path:
    """The resolved workdir, after proving this process can write it (one-line errors).

    Local folders are left to the first write, as always. A URL must be ``gs://`` (orbax
    writes arrays through tensorstore's ``gcs`` driver and finds steps with
    ``google-cloud-storage``; other schemes would be written to a local folder named after
    the scheme), and a probe object must be writable within
    :func:`jaxssl.paths.check_timeout_s`. Every process calls it (each host writes its own
    shards of a checkpoint); it touches no device. Raises :class:`CheckpointSaveError`.
    """
    try:
        path = paths.resolve(workdir)
    except paths.StorageError as e:
        raise CheckpointSaveError(f"--workdir={workdir}: {e}") from None
    if not paths.is_remote(path):
        return path
    scheme = paths.scheme(path)
    if scheme != "gs":
        raise CheckpointSaveError(
            f"--workdir={path}: checkpoints cannot be written to {scheme}:// (orbax-checkpoint "
            "writes arrays to a local or mounted folder or to gs:// only); use gs://BUCKET/... "
            "or a local path, and copy the run elsewhere afterwards")
    try:
        import google.cloud.storage  # noqa: F401  (orbax lists gs:// steps with it)
    except ImportError as e:
        raise CheckpointSaveError(
            f"--workdir={path}: orbax-checkpoint needs google-cloud-storage for gs:// "
            f"checkpoints ({e}); pip install gcsfs google-cloud-storage "
            "(or pip install -e '.[gcs]')") from None
    try:
        paths.check_writable(path)
    except paths.StorageError as e:
        raise CheckpointSaveError(str(e)) from None
    return path


class Checkpointer:
    """A verified, atomic ``ocp.CheckpointManager`` for one TrainState pytree."""

    def __init__(self, workdir: paths.PathLike, max_to_keep: int = 3, async_save: bool = True):
        self.workdir = paths.resolve(workdir)
        self.directory = self.workdir / "checkpoints"
        if jax.process_index() == 0:
            self._remove_unfinished()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
            create=True,
        )
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options,
                                                 item_handlers=_item_handlers())
        except OSError as e:
            raise CheckpointSaveError(
                f"cannot create the checkpoint directory {self.directory}: {e}; make the "
                "--workdir writable or choose another one") from e
        self._pending: int | None = None

    # ----- discovery ---------------------------------------------------------------------
    def _remove_unfinished(self) -> None:
        if not self.directory.is_dir():
            return
        remote = paths.is_remote(self.directory)
        for path in sorted(self.directory.iterdir()):
            # Local: a tmp folder orbax did not rename. GCS: a step folder without the
            # commit_success.txt orbax writes last.
            if _TMP_DIR.match(path.name) or (remote and path.name.isdigit() and path.is_dir()
                                               and not ocp.step.is_path_finalized(path)):
                log(f"checkpoint: removing unfinished save {path} (interrupted before it was "
                    "finalised; it is never restored)")
                if remote:
                    path.rmtree(missing_ok=True)
                else:
                    shutil.rmtree(path, ignore_errors=True)

    def step_path(self, step: int) -> epath.Path:
        return self.directory / str(int(step))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def metadata(self, step: int) -> dict:
        """The ``meta`` JSON of a step (``{}`` for checkpoints without one)."""
        if not (self.step_path(step) / "meta").is_dir():
            return {}
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - any read failure is a damaged checkpoint
            raise CheckpointCorruptError(
                f"checkpoint {self.step_path(step)} is damaged: its meta/ item cannot be read "
                f"({_first_line(e)})") from e
        return dict(out["meta"])

    def stored_shapes(self, step: int) -> dict[str, tuple]:
        """``{leaf path: (shape, dtype)}`` of the stored state, from orbax's metadata (no array read)."""
        path = self.step_path(step)
        try:
            meta = self.manager.item_metadata(step)["state"]
            tree = meta.tree if hasattr(meta, "tree") else meta
            if tree is None:
                raise ValueError("orbax found no state/ item metadata")
            return {n: (tuple(m.shape), m.dtype) for n, m in _flat(tree).items()}
        except Exception as e:  # noqa: BLE001
            raise CheckpointCorruptError(
                f"checkpoint {path} is damaged: the metadata of its state/ item cannot be read "
                f"({_first_line(e)})") from e

    # ----- save --------------------------------------------------------------------------
    def save(self, step: int, state: Any, force: bool = False) -> bool:
        """Start an (async) save of ``state`` at ``step``; returns whether a save was started.

        Raises :class:`NonFiniteStateError` (nothing written) if a float leaf holds NaN/Inf, and
        :class:`CheckpointSaveError` if this or the previous async save failed.
        """
        step = int(step)
        prints, bad = fingerprint(state)
        if bad:
            raise NonFiniteStateError(
                f"refusing to save step {step} to {self.step_path(step)}: NaN/Inf in "
                f"{', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}; the last finished "
                f"checkpoint ({self.latest_step()}) is kept")
        meta = {"format": FORMAT_VERSION, "step": step, "fingerprints": prints,
                "device_count": _device_count(state), "process_count": jax.process_count(),
                "time": time.time()}
        self._raise_pending_error()
        try:
            started = self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)
        except Exception as e:  # noqa: BLE001
            raise CheckpointSaveError(
                f"saving step {step} to {self.step_path(step)} failed: {_first_line(e)}; check "
                "that the workdir is writable and has free space") from e
        if started:
            self._pending = step
        return started

    def _raise_pending_error(self) -> None:
        step, self._pending = self._pending, None
        try:
            self.manager.wait_until_finished()
            self.manager.check_for_errors()
        except Exception as e:  # noqa: BLE001
            raise CheckpointSaveError(
                f"the async save of step {step} to {self.step_path(step or 0)} failed: "
                f"{_first_line(e)}; check that the workdir is writable and has free space") from e
        if step is not None and jax.process_index() == 0 and not _finished(self.step_path(step)):
            raise CheckpointSaveError(
                f"the async save of step {step} did not finish: {self.step_path(step)} was not "
                "written (orbax skipped finalising it after a write error); check that the "
                "workdir is writable and has free space")

    def wait(self) -> None:
        """Block until any async save has finished; raise :class:`CheckpointSaveError` if it failed."""
        self._raise_pending_error()

    def close(self) -> None:
        """Await the last save (raising its error), then release the manager."""
        try:
            self._raise_pending_error()
        finally:
            self.manager.close()

    # ----- restore -----------------------------------------------------------------------
    def check_compatible(self, step: int, abstract_state: Any) -> None:
        """Raise :class:`CheckpointMismatchError` unless the stored keys/shapes/dtypes equal the model's."""
        diffs = tree_differences(self.stored_shapes(step), _shapes(abstract_state))
        if diffs:
            shown = "\n  ".join(diffs[:40]) + ("\n  ..." if len(diffs) > 40 else "")
            raise CheckpointMismatchError(
                f"checkpoint {self.step_path(step)} does not match the model of this config "
                f"({len(diffs)} differing leaves):\n  {shown}\nUse a new --workdir for a "
                f"different model, or start one from this checkpoint with "
                f"--config.train.init_from={self.step_path(step)} (loads the matching "
                "parameters, initialises the rest)")

    def restore(self, step: int, abstract_state: Any) -> Any:
        """The whole state of ``step``, verified, in the shapes/dtypes/shardings of ``abstract_state``.

        Raises :class:`CheckpointMismatchError` (before reading any array) if the structure
        differs, :class:`CheckpointCorruptError` if anything cannot be read or a leaf's
        fingerprint differs from the one recorded at save time. Never returns a partial state.
        """
        path = self.step_path(step)
        if step not in self.all_steps():
            raise CheckpointCorruptError(f"checkpoint {path} does not exist; available steps: "
                                         f"{self.all_steps()}")
        self.check_compatible(step, abstract_state)
        meta = self.metadata(step)
        try:
            state = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state)))["state"]
        except Exception as e:  # noqa: BLE001
            raise CheckpointCorruptError(
                f"checkpoint {path} is damaged (truncated or unreadable): {_first_line(e)}; "
                "delete it to resume from the previous one, or set "
                "--config.train.restore_fallback=True") from e
        _verify(path, state, meta)
        saved_devices, devices = meta.get("device_count"), _device_count(abstract_state)
        if saved_devices is not None and saved_devices != devices:
            msg = (f"warning: checkpoint {path} was written on {saved_devices} devices and is "
                   f"restored onto {devices}: the state is resharded exactly, but "
                   "bitwise replay of the uninterrupted run no longer holds (reductions are split "
                   "differently)")
            log(msg)
        return state

    def restore_latest(self, abstract_state: Any, fallback: bool = False) -> tuple[int | None, Any]:
        """``(step, state)`` of the newest checkpoint, or ``(None, None)`` when there is none.

        With ``fallback`` a damaged checkpoint (:class:`CheckpointCorruptError`) is moved to
        ``WORKDIR/corrupt_checkpoints/<step>`` and the previous one is tried; without it the
        error propagates. A mismatched checkpoint always raises.
        """
        for step in reversed(self.all_steps()):
            try:
                return step, self.restore(step, abstract_state)
            except CheckpointCorruptError as e:
                if not fallback:
                    raise
                self._quarantine(step, e)
        return None, None

    def _quarantine(self, step: int, error: Exception) -> None:
        src = self.step_path(step)
        dst = self.workdir / "corrupt_checkpoints" / f"{step}-{int(time.time())}"
        log(f"warning: {error}\nrestore_fallback: moving {src} to {dst} and trying the "
            "previous checkpoint")
        if jax.process_index() == 0:
            paths.move(src, dst)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"jaxssl_quarantine_{step}")
        self.manager.reload()


def _finished(step_dir: epath.Path) -> bool:
    """Whether orbax finalised this step (renamed it locally, committed it on GCS)."""
    return step_dir.is_dir() and ocp.step.is_path_finalized(step_dir)


def _device_count(tree) -> int:
    """Devices the state lives on (its mesh), from the first leaf's sharding."""
    leaves = jax.tree.leaves(tree)
    sharding = getattr(leaves[0], "sharding", None) if leaves else None
    return len(sharding.device_set) if sharding is not None else jax.device_count()


def _verify(path: paths.PathLike, state: Any, meta: dict) -> None:
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


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:500]


# ----------------------------------------------------------------------------- init_from
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
                     if d.name.isdigit() and (d / "state").is_dir() and _finished(d)]
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
    ckpt = Checkpointer.__new__(Checkpointer)
    ckpt.workdir, ckpt.directory, ckpt._pending = directory.parent, directory, None
    ckpt.manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
        create=False), item_handlers=_item_handlers())
    try:
        if mesh is None:
            sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        else:
            sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        meta_tree = ckpt.manager.item_metadata(step)["state"]
        meta_tree = meta_tree.tree if hasattr(meta_tree, "tree") else meta_tree
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                              meta_tree)
        meta = ckpt.metadata(step)
        try:
            tree = ckpt.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target)))["state"]
        except Exception as e:  # noqa: BLE001
            raise CheckpointCorruptError(
                f"checkpoint {ckpt.step_path(step)} is damaged (truncated or unreadable): "
                f"{_first_line(e)}") from e
        _verify(ckpt.step_path(step), tree, meta)
        return tree, meta
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
    stored_flat = _flat({"params": stored.get("params", {}),
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
