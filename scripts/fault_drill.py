"""End-to-end fault drills on the CPU: every reliability promise that needs real processes.

    python scripts/fault_drill.py [--workdir DIR] [--seed N]

Runs, with the real command line (``python -m jaxssl.main``) on a 40-step SimCLR-on-digits
run (batch 32, a checkpoint every 4 steps, 2 fake CPU devices per process):

1. SIGKILL at a random step, then the same command: the final state (params, BN statistics,
   optimizer state, step, counters) hashes bit-identical to an uninterrupted run.
2. SIGTERM to one process (in the middle of the resumed run of 1.): exit code 75 and a
   finished checkpoint at the step it stopped (the run of 1. then finishes from it).
3. SIGTERM to process 1 of 2 (``jax.distributed`` on localhost, gloo): both processes save the
   same step and exit 75.
4. A damaged checkpoint directory (an unfinished tmp save plus a truncated latest step): the
   tmp folder is removed, the run fails with exit code 1 naming the damaged path, and with
   ``--config.train.restore_fallback=True`` it resumes from the previous step and finishes.
5. 2 processes x 2 devices vs 1 process x 4 devices: the same loss, gradients and BN
   statistics (max relative difference <= 1e-5), and epoch 0 covers every example at most
   once across processes.

Prints one table (drill, result, the figure behind it, seconds) and exits 0 only if every row
is PASS. Takes about 4 minutes on 2 idle cores (under 10 on a busy machine).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

import drill_helpers as drills  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=None, help="keep the drills' workdirs and logs here")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random kill steps")
    args = parser.parse_args()
    # The drill process itself only hashes checkpoints: one CPU device, no GPU.
    os.environ.update(drills.child_env(1))
    tmp = args.workdir or tempfile.mkdtemp(prefix="jaxssl_fault_drill_")
    os.makedirs(tmp, exist_ok=True)
    cache = os.path.join(tmp, "compilation_cache")
    rows, started = [], time.time()

    def timed(fn, *a):
        t = time.time()
        out = fn(*a)
        return out, time.time() - t

    (kill_row, term_row), dt = timed(drills.drill_kill_and_resume, tmp, cache, args.seed)
    rows += [(kill_row, dt), (term_row, float("nan"))]
    ref = os.path.join(tmp, "uninterrupted")
    rows.append(timed(drills.drill_damaged_checkpoint, tmp, cache, ref))
    rows.append(timed(drills.drill_sigterm_two_processes, tmp, cache))
    rows.append(timed(drills.drill_equivalence, tmp, cache))

    width = max(len(r.drill) for r, _ in rows)
    print(f"\n{'drill':<{width}} | result | seconds | figure")
    print(f"{'-' * width}-|--------|---------|-------")
    for row, seconds in rows:
        sec = "   (1.)" if seconds != seconds else f"{seconds:7.0f}"
        print(f"{row.drill:<{width}} | {row.result:<6} | {sec} | {row.figure}")
    ok = all(r.passed for r, _ in rows)
    print(f"\n{'ALL PASS' if ok else 'SOME DRILLS FAILED'} in {time.time() - started:.0f} s; "
          f"workdirs and logs in {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
