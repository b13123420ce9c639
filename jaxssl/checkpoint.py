"""Orbax checkpoints in ``WORKDIR/checkpoints``: async, atomic, restored into current shardings.

Orbax writes each step into a temporary folder and renames it when the write has finished, so
a crash mid-save leaves no half-written step that looks finished. Restoring uses the abstract
state (shapes, dtypes and shardings of the *current* mesh), so a checkpoint taken on one device
count is restored onto another.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """A thin wrapper over ``ocp.CheckpointManager`` for one TrainState pytree."""

    def __init__(self, workdir: str, max_to_keep: int = 3, async_save: bool = True):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,   # unfinished saves from a crash are removed on start
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, force: bool = False) -> bool:
        """Start an (async) save of ``state`` at ``step``; returns whether a save was started."""
        return self.manager.save(step, args=ocp.args.StandardSave(state), force=force)

    def restore(self, step: int, abstract_state: Any) -> Any:
        """Restore ``step`` into the shapes, dtypes and shardings of ``abstract_state``."""
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def wait(self) -> None:
        """Block until any async save has finished (and surface its error, if any)."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
