"""Stop requests (SIGTERM, Ctrl-C) answered at the same step on every process.

:class:`PreemptionWatch` is read before every step of :func:`jaxssl.train.run`; a stop request
makes the trainer save the current step and exit with :data:`EXIT_PREEMPTED` (SIGTERM) or
:data:`EXIT_INTERRUPTED` (Ctrl-C), raised as :class:`Preempted` / :class:`Interrupted`.
"""
from __future__ import annotations

import os
import signal

import jax
import numpy as np

EXIT_PREEMPTED = 75


class Preempted(SystemExit):
    def __init__(self):
        super().__init__(EXIT_PREEMPTED)


EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT) after the current step was saved: 128 + SIGINT


class Interrupted(Preempted):
    """Ctrl-C stopped the run after saving the current step: exit code :data:`EXIT_INTERRUPTED`."""

    def __init__(self):
        SystemExit.__init__(self, EXIT_INTERRUPTED)


class PreemptionWatch:
    """Has a SIGTERM or a Ctrl-C asked this run to stop? Answers the same at the same step on
    every process.

    SIGTERM and the first Ctrl-C (SIGINT) are stop requests: the current step finishes, is
    saved, and the run exits with 75 (SIGTERM) or 130 (Ctrl-C). A second Ctrl-C stops the
    process at once (SIGINT's default action, no save): the last completed checkpoint stays
    valid, and an unfinished save is ignored and cleaned up by the next start. With JAX's
    preemption service (several processes), a Ctrl-C is passed on to it as a SIGTERM, so all
    processes stop at the same step. ``PreemptionWatch.stop_signal`` is the signal of this
    process's first stop request (None for none, or a SIGTERM caught by the service).
    """

    stop_signal: int | None = None

    def __init__(self):
        self._flag = False
        self._old_handler = None
        self._old_int_handler = None
        PreemptionWatch.stop_signal = None
        self._service = jax.process_count() > 1
        if self._service:
            from jax.experimental import multihost_utils
            try:
                multihost_utils.reached_preemption_sync_point(-1)
            except RuntimeError:  # jax_enable_preemption_service is off: own handler + all-gather
                self._service = False
        if not self._service:
            self._old_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._old_int_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigterm(self, signum, frame):
        del signum, frame
        self._flag = True
        if PreemptionWatch.stop_signal is None:
            PreemptionWatch.stop_signal = signal.SIGTERM

    def _on_sigint(self, signum, frame):
        del signum, frame
        if PreemptionWatch.stop_signal == signal.SIGINT:  # the second Ctrl-C: stop now
            os.write(2, b"\nCtrl-C again: stopping now without saving; the last completed "
                        b"checkpoint stays valid\n")
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
            return
        os.write(2, b"\nCtrl-C: finishing the current step and saving it (Ctrl-C again to stop "
                    b"at once without saving)\n")
        if PreemptionWatch.stop_signal is None:
            PreemptionWatch.stop_signal = signal.SIGINT
        if self._service:  # the service handles SIGTERM and syncs the stop step over processes
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            self._flag = True

    def should_stop(self, step: int) -> bool:
        from jax.experimental import multihost_utils
        if self._service:
            return bool(multihost_utils.reached_preemption_sync_point(step))
        if jax.process_count() > 1:
            flags = multihost_utils.process_allgather(np.array([self._flag], np.int32))
            return bool(np.any(flags))
        return self._flag

    def close(self) -> None:
        if self._old_handler is not None:
            signal.signal(signal.SIGTERM, self._old_handler)
            self._old_handler = None
        if self._old_int_handler is not None:
            signal.signal(signal.SIGINT, self._old_int_handler)
            self._old_int_handler = None


__all__ = ["EXIT_PREEMPTED", "EXIT_INTERRUPTED", "Preempted", "Interrupted", "PreemptionWatch"]
