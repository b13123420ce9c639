"""Several JAX processes on one machine (docs/reliability.md).

Processes join ``jax.distributed`` on localhost (a free port) with gloo CPU collectives and
their own fake CPU devices (``drill_helpers.child_env``); children are always killed by pid
when a test ends.

Tolerance of the equivalence: every loss / gradient / BatchNorm-statistics leaf of 2 processes
x 2 devices agrees with 1 process x 4 devices within 1e-5 of that leaf's largest magnitude.
Both run the same per-device programs on the same shards; only the order of the cross-device
float32 sums differs (gloo vs the in-process all-reduce), which measured 1.6e-6 at most.
"""
from __future__ import annotations

import numpy as np
import pytest

import drill_helpers
from jaxssl import train

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "reliability_jax_cache"
    path.mkdir(exist_ok=True)
    return str(path)


def test_two_processes_match_one_process_and_cover_the_epoch_once(tmp_path, cache):
    row = drill_helpers.drill_equivalence(str(tmp_path), cache, tolerance=1e-5)
    f = row.facts
    assert "diffs" in f, [drill_helpers.tail(t) for t in f.get("logs", [])]
    assert f["rel"] <= 1e-5, (f["worst"], f["rel"])
    assert f["loss"][0] == pytest.approx(f["loss"][1], rel=1e-6)
    assert any(k.startswith("bn/batch_stats/") for k in f["diffs"])   # BN statistics compared
    assert any(k.startswith("grad/backbone/") for k in f["diffs"])    # gradients compared
    # Epoch 0 across the two processes: no example twice; only the n % B remainder is left.
    rows, n = f["rows"], f["n"]
    seen = np.concatenate([r.reshape(-1) for r in rows])
    assert len(np.unique(seen)) == seen.size == n - n % drill_helpers.EQUIV_BATCH
    assert not set(rows[0].reshape(-1)) & set(rows[1].reshape(-1))
    assert row.passed, row.figure


def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step(tmp_path, cache):
    row = drill_helpers.drill_sigterm_two_processes(str(tmp_path), cache)
    f = row.facts
    assert f["rcs"] == [train.EXIT_PREEMPTED] * 2, [drill_helpers.tail(t) for t in f["logs"]]
    assert f["steps"][0] == f["steps"][1] and len(f["steps"][0]) == 1
    assert f["meta"]["step"] == f["step"] and f["meta"]["process_count"] == 2
    assert row.passed, row.figure
