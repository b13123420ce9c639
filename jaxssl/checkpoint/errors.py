"""The checkpoint errors; every message names the checkpoint path (and the fix)."""
from __future__ import annotations


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
