"""Orbax checkpoints in ``WORKDIR/checkpoints``: async, atomic, verified, restored into current shardings.

One module per job, every public name re-exported here (``from jaxssl import checkpoint``):

* :mod:`~jaxssl.checkpoint.manager`: :class:`Checkpointer` (the verified orbax
  ``CheckpointManager`` of a run: save, restore, fall back past a damaged step) and
  :func:`check_workdir`.
* :mod:`~jaxssl.checkpoint.integrity`: leaf names (:func:`path_str`), per-leaf fingerprints and
  their verification, stored-vs-expected tree differences.
* :mod:`~jaxssl.checkpoint.partial`: loading outside a resume: :func:`resolve`,
  :func:`load_tree` (exports, ``init_from``), :func:`init_from` and :func:`load_subtree`.
* :mod:`~jaxssl.checkpoint.errors`: :class:`CheckpointError` and its subclasses.

Layout of one step (``WORKDIR/checkpoints/<step>/``): ``state/`` (the TrainState, orbax
``StandardSave``) and ``meta/`` (JSON: the step, a fingerprint of every state leaf, the device
and process count of the run that wrote it).

What this package guarantees (docs/reliability.md lists them for users):

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
from jaxssl.checkpoint.errors import (CheckpointCorruptError, CheckpointError,
                                      CheckpointMismatchError, CheckpointSaveError,
                                      NonFiniteStateError)
from jaxssl.checkpoint.integrity import (fingerprint, flat_leaves, path_str, to_host,
                                         tree_differences, verify)
from jaxssl.checkpoint.manager import FORMAT_VERSION, Checkpointer, check_workdir, is_finished
from jaxssl.checkpoint.partial import init_from, load_subtree, load_tree, resolve

__all__ = [
    "FORMAT_VERSION", "CheckpointCorruptError", "CheckpointError", "CheckpointMismatchError",
    "CheckpointSaveError", "Checkpointer", "NonFiniteStateError", "check_workdir", "fingerprint",
    "flat_leaves", "init_from", "is_finished", "load_subtree", "load_tree", "path_str",
    "resolve", "to_host",
    "tree_differences", "verify",
]
