"""The parts ``jaxssl.train.run`` is assembled from, one job each.

* :mod:`~jaxssl.train_loop.throughput` -- :class:`ThroughputMeter`: steps/s, img/s (tok/s) and
  MFU over the timed intervals, the compiling first interval left out.
* :mod:`~jaxssl.train_loop.nonfinite` -- :class:`NonFinitePolicy`: ``train.nonfinite_policy``
  (skip / abort / rollback) decided from the step's non-finite counters, and the rollback's
  restore.
* :mod:`~jaxssl.train_loop.periodic` -- :class:`Every`: "every N steps (and at the last)",
  the one shape of the log, checkpoint and evaluation schedules.
* :mod:`~jaxssl.train_loop.step_read` -- :class:`StepReader`: the host side of a checked
  step: read its metrics, log them, carry out the policy's decision.
* :mod:`~jaxssl.train_loop.step_log` -- :class:`StepLog`: the log action (metrics row,
  progress line, collapse monitor) of a step whose metrics are on the host.
* :mod:`~jaxssl.train_loop.preemption` -- :class:`PreemptionWatch`: SIGTERM / Ctrl-C stop
  requests, answered at the same step on every process.

The batch prefetcher is a data part: :class:`jaxssl.data.prefetch.PrefetchingFeeder`.
"""
