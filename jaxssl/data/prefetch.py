"""A feeder whose next batches a background thread prepares while the device runs a step.

:class:`PrefetchingFeeder` wraps any ``feeder(step) -> batch``. After handing out the batch of
step ``t`` it asks one background thread for steps ``t+1 .. t+depth`` (host read, decode,
crop, ``device_put``), so the host work of the next step overlaps the device work of this one.
Batches stay a pure function of (seed, step): ``prefetching(step)`` returns exactly
``feeder(step)`` for any step asked, in any order; a step other than the next prefetched one
(a resume, a rollback) discards what was prepared and reads the step asked for. Every read
runs on the one background thread, in order, so the wrapped feeder is never called twice at
once. An exception raised by a read is raised again, with its message and traceback, by the
call that asks for that step.

``close()`` (or ``with``) cancels the reads not started, waits for the one running and stops
the thread; the trainer calls it on every way out of the loop (end, preemption, error).
"""
from __future__ import annotations

import collections
import concurrent.futures
from typing import Any, Callable


class PrefetchingFeeder:
    """``feeder(step)`` with up to ``depth`` following steps prepared ahead.

    Args:
      feeder: ``feeder(step) -> batch``; its other attributes (``steps_per_epoch``,
        ``num_examples``, ...) are readable through the wrapper.
      depth: how many steps ahead are prepared (>= 1; each holds one more batch in memory).
      end: steps ``>= end`` are never prepared ahead (the run's last step is ``end - 1``).
    """

    def __init__(self, feeder: Callable[[int], Any], depth: int, end: int | None = None):
        if int(depth) < 1:
            raise ValueError(f"data.prefetch={depth}: a prefetching feeder needs a depth >= 1 "
                             "(0 turns prefetching off: use the feeder itself)")
        self.feeder = feeder
        self.depth = int(depth)
        self.end = end
        self.discards = 0  # calls for another step than the next prepared one (a jump)
        self._ahead: collections.deque[tuple[int, concurrent.futures.Future]] = collections.deque()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxssl-prefetch"))

    def __getattr__(self, name: str):
        try:
            feeder = self.__dict__["feeder"]
        except KeyError:
            raise AttributeError(name) from None
        return getattr(feeder, name)

    def __call__(self, step: int):
        if self._pool is None:
            raise RuntimeError("PrefetchingFeeder is closed; build a new one to read batches")
        step = int(step)
        if self._ahead and self._ahead[0][0] == step:
            _, future = self._ahead.popleft()
        else:
            if self._ahead:
                self.discards += 1
            self._discard()
            future = self._pool.submit(self.feeder, step)
        self._prepare_after(step)
        return future.result()

    def _prepare_after(self, step: int) -> None:
        nxt = (self._ahead[-1][0] if self._ahead else step) + 1
        while len(self._ahead) < self.depth and (self.end is None or nxt < self.end):
            self._ahead.append((nxt, self._pool.submit(self.feeder, nxt)))
            nxt += 1

    def _discard(self) -> None:
        # A read already running finishes on the thread (its result or error is dropped);
        # the next read queues behind it, so reads never overlap.
        while self._ahead:
            self._ahead.popleft()[1].cancel()

    def close(self) -> None:
        """Cancel the reads not started, wait for the running one, stop the thread."""
        if self._pool is not None:
            self._discard()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "PrefetchingFeeder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def prefetching(feeder, depth: int, end: int | None = None):
    """``feeder`` wrapped in a :class:`PrefetchingFeeder` of ``depth`` if it reads on the host
    (``feeder.reads_on_host``, True when the feeder does not say) and ``depth > 0``; else
    ``feeder`` itself. A device-held feeder's call is an asynchronous gather on the device
    already: a thread would only add contention for the interpreter."""
    if int(depth) < 0:
        raise ValueError(f"data.prefetch={depth} must be >= 0 (0: off, N: N batches ahead)")
    if int(depth) == 0 or not getattr(feeder, "reads_on_host", True):
        return feeder
    return PrefetchingFeeder(feeder, depth, end)


__all__ = ["PrefetchingFeeder", "prefetching"]
