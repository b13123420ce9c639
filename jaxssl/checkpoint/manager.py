"""The verified orbax ``CheckpointManager`` of a run: :class:`Checkpointer` and :func:`check_workdir`.

Layout of one step (``WORKDIR/checkpoints/<step>/``): ``state/`` (the TrainState, orbax
``StandardSave``) and ``meta/`` (JSON: the step, a fingerprint of every state leaf
(:mod:`jaxssl.checkpoint.integrity`), the device and process count of the run that wrote it).
What it guarantees (atomic, verified, never partial, mismatch found before compiling, never a
non-finite state, save errors surface, local or ``gs://``) is listed in :mod:`jaxssl.checkpoint`.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from jaxssl import paths
from jaxssl.checkpoint.errors import (CheckpointCorruptError, CheckpointMismatchError,
                                      CheckpointSaveError, NonFiniteStateError)
from jaxssl.checkpoint.integrity import (fingerprint, flat_leaves, shapes, tree_differences,
                                         verify)
from jaxssl.metrics import log

FORMAT_VERSION = 1
_TMP_DIR = re.compile(r"^\d+\.orbax-checkpoint-tmp")


def _item_handlers() -> dict:
    # Named up front so that a fresh process can read a step's metadata before restoring it.
    return {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}


def _check_local_folder(workdir, path: str) -> None:
    """Raise if ``path`` (or a folder above it) is an existing file, or is not writable."""
    probe = path
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if os.path.exists(probe) and not os.path.isdir(probe):
        what = "is a file" if probe == path else f"is inside {probe}, which is a file"
        raise CheckpointSaveError(
            f"--workdir={workdir} {what}, not a folder; use a new or existing folder "
            "(e.g. --workdir=runs/NAME)")
    if os.path.isdir(probe) and not os.access(probe, os.W_OK | os.X_OK):
        raise CheckpointSaveError(
            f"--workdir={workdir}: {probe} is not writable; use a folder you can write to")


def check_workdir(workdir: paths.PathLike) -> epath.Path:
    """The resolved workdir, after proving this process can write it (one-line errors).

    A local path must not be (or lie inside) an existing file. A URL must be ``gs://`` (orbax
    writes arrays through tensorstore's ``gcs`` driver and finds steps with
    ``google-cloud-storage``; other schemes would be written to a local folder named after
    the scheme), and a probe object must be writable within
    :func:`jaxssl.paths.check_timeout_s`. Every process calls it (each host writes its own
    shards of a checkpoint); it touches no device. Raises :class:`CheckpointSaveError`.
    """
    try:
        path = paths.resolve(workdir)
    except paths.StorageError:
        raise CheckpointSaveError(
            f"--workdir={workdir}: the scheme {paths.scheme(workdir)}:// is not supported for a "
            "workdir; use a local path or gs://BUCKET/... (checkpoints are written to a local "
            "or mounted folder or to gs:// only)") from None
    if not paths.is_remote(path):
        _check_local_folder(workdir, os.fspath(path))
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

    def __init__(self, workdir: paths.PathLike, max_to_keep: int | None = 3,
                 async_save: bool = True, *, directory: paths.PathLike | None = None,
                 create: bool = True):
        """The checkpoints of ``workdir`` (in ``directory``, default ``WORKDIR/checkpoints``).

        ``create=True`` (a run): unfinished saves are removed and the folder is created.
        ``create=False`` (a reader, see :meth:`open`): the folder is left as it is.
        """
        self.workdir = paths.resolve(workdir)
        self.directory = (self.workdir / "checkpoints" if directory is None
                          else paths.resolve(directory))
        if create and jax.process_index() == 0:
            self._remove_unfinished()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=create,
            create=create,
        )
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options,
                                                 item_handlers=_item_handlers())
        except OSError as e:
            raise CheckpointSaveError(
                f"cannot create the checkpoint directory {self.directory}: {e}; make the "
                "--workdir writable or choose another one") from e
        self._pending: int | None = None

    @classmethod
    def open(cls, directory: paths.PathLike, create: bool = False) -> Checkpointer:
        """A Checkpointer on the checkpoints folder ``directory`` itself (any name; its parent is
        the workdir), keeping every step. ``create=False``: read only, nothing removed or created."""
        directory = paths.resolve(directory)
        return cls(directory.parent, max_to_keep=None, directory=directory, create=create)

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

    def stored_tree_metadata(self, step: int) -> Any:
        """orbax's metadata tree of the stored state (shape and dtype per leaf; no array read)."""
        meta = self.manager.item_metadata(step)["state"]
        return meta.tree if hasattr(meta, "tree") else meta

    def stored_shapes(self, step: int) -> dict[str, tuple]:
        """``{leaf path: (shape, dtype)}`` of the stored state, from orbax's metadata (no array read)."""
        path = self.step_path(step)
        try:
            tree = self.stored_tree_metadata(step)
            if tree is None:
                raise ValueError("orbax found no state/ item metadata")
            return {n: (tuple(m.shape), m.dtype) for n, m in flat_leaves(tree).items()}
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
        if step is not None and jax.process_index() == 0 and not is_finished(self.step_path(step)):
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
        diffs = tree_differences(self.stored_shapes(step), shapes(abstract_state))
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
        state, meta = self.read_verified(
            step, abstract_state, fix="; delete it to resume from the previous one, or set "
            "--config.train.restore_fallback=True")
        saved_devices, devices = meta.get("device_count"), _device_count(abstract_state)
        if saved_devices is not None and saved_devices != devices:
            msg = (f"warning: checkpoint {path} was written on {saved_devices} devices and is "
                   f"restored onto {devices}: the state is resharded exactly, but "
                   "bitwise replay of the uninterrupted run no longer holds (reductions are split "
                   "differently)")
            log(msg)
        return state

    def read_verified(self, step: int, target: Any, fix: str = "") -> tuple[Any, dict]:
        """``(state, meta)`` of ``step`` read into ``target`` (abstract arrays) and verified.

        The one place a stored state is read: an unreadable array raises
        :class:`CheckpointCorruptError` naming the path (``fix`` ends its message), and so does
        a leaf whose fingerprint differs from the one recorded at save time.
        """
        path = self.step_path(step)
        meta = self.metadata(step)
        try:
            state = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target)))["state"]
        except Exception as e:  # noqa: BLE001 - any read failure is a damaged checkpoint
            raise CheckpointCorruptError(
                f"checkpoint {path} is damaged (truncated or unreadable): {_first_line(e)}"
                f"{fix}") from e
        verify(path, state, meta)
        return state, meta

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


def is_finished(step_dir: epath.Path) -> bool:
    """Whether orbax finalised this step (renamed it locally, committed it on GCS)."""
    return step_dir.is_dir() and ocp.step.is_path_finalized(step_dir)


def _device_count(tree) -> int:
    """Devices the state lives on (its mesh), from the first leaf's sharding."""
    leaves = jax.tree.leaves(tree)
    sharding = getattr(leaves[0], "sharding", None) if leaves else None
    return len(sharding.device_set) if sharding is not None else jax.device_count()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:500]


