"""Throughput, FLOPs, MFU and memory of jaxssl's train steps, side by side with the peers.

    bash scripts/setup_peers.sh                             # the peers' environments (once)
    python scripts/benchmark.py --cpu-quick                 # the CPU comparisons (2 cores)
    python scripts/benchmark.py --workloads simclr_r50_224,bert_base_mlm_t128 --dtype bfloat16
    python scripts/benchmark.py --workloads mocov2_r50_224 --batch 4 --steps 3   # small, on a CPU
    python scripts/benchmark.py --aug                       # on-device augmentation vs lightly
    python scripts/benchmark.py --ntxent-table              # NT-Xent at 4096-16384 on 8 devices
    python scripts/benchmark.py --remat-table               # remat policies x dtype
    ... --json out.json                                     # the same rows as JSON

One module of ``jaxssl/benchmarks/`` per table: ``steps`` (train-step rows of the
``workloads``), ``augment``, ``ntxent``, ``remat``; this script only parses flags, runs the
tables asked for and prints them.

Train-step rows (``--workloads``): jaxssl's real jitted step (``train.make_train_step``) for
each method and size, timed as the median of ``--steps`` steps after compilation and one
warm-up step. Two input modes per workload: plain names take a batch that already sits on the
device (views for SimCLR/MoCo -- no augmentation; uint8 images for MAE -- its augmentation
runs in the step; the first packed text batch for BERT); ``_pipeline`` names call the real
feeder every step (host->device transfer, sharding, on-device augmentation), so the two
agree when the input pipeline keeps up. Model FLOPs come from XLA's cost analysis of the
compiled step; MFU is printed where the device's peak is known (``jaxssl.flops``, not on
CPU); memory is the device's peak where it reports one, else the compiled step's buffers
(arguments + outputs + temporaries, per device, from XLA's memory analysis).

CPU levers (docs/performance.md): ResNet rows on one CPU device run their convs on slices of
64 images (``model.conv_batch_chunk``, the same function; 2.2x on the R18 CIFAR step).
``--set model.conv_batch_chunk=0`` shows the step without it.

Peers: the scripts in ``jaxssl/benchmarks/peers/`` run with the environments that
``bash scripts/setup_peers.sh`` builds under ``--peers`` (default ``.peers/`` of this
checkout), in the same invocation with the same shapes; the table gives jaxssl / peer, or
says "peer not installed: run <command>". ``--peers ''`` skips them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # benchmark this checkout, installed or not
    sys.path.insert(0, ROOT)

from jaxssl.benchmarks import augment, ntxent, remat, steps  # noqa: E402
from jaxssl.benchmarks.workloads import (CPU_QUICK, WORKLOADS, apply_overrides,  # noqa: E402,F401
                                         check_names)

DEFAULT_PEERS_DIR = os.path.join(ROOT, ".peers")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-quick", action="store_true",
                   help=f"the CPU comparisons: {CPU_QUICK} with their peers, and --aug")
    p.add_argument("--workloads", default="", help=f"comma list of {sorted(WORKLOADS)}")
    p.add_argument("--batch", type=int, default=0, help="global batch (0: each workload's default)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="config override for every row, e.g. model.remat=full (repeatable)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--threads", type=int, default=2, help="the torch peers' threads")
    p.add_argument("--peers", default=DEFAULT_PEERS_DIR,
                   help="folder of the peer environments (bash scripts/setup_peers.sh; "
                        "default %(default)s); '' to skip peers")
    p.add_argument("--aug", action="store_true", help="per-core augmentation vs lightly")
    p.add_argument("--ntxent-table", action="store_true", help="large-batch NT-Xent time/memory")
    p.add_argument("--ntxent-batches", default="4096,8192,16384")
    p.add_argument("--ntxent-devices", type=int, default=8,
                   help="fake CPU devices for --ntxent-table (0: the real devices)")
    p.add_argument("--ntxent-block", type=int, default=4096, help="blockwise columns per chunk")
    p.add_argument("--ntxent-budget-gib", type=float, default=12.0,
                   help="run a form only if all devices' buffers fit in this much memory")
    p.add_argument("--remat-table", action="store_true", help="remat policy x dtype table")
    p.add_argument("--remat-workloads", default="simclr_r18_cifar,bert_base_mlm_t128")
    p.add_argument("--json", default="", help="also write all rows to this JSON file")
    # the per-table workers, kept for old command lines: now python -m jaxssl.benchmarks.<table>
    p.add_argument("--_aug-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_ntxent-worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    try:
        check_names([w for w in (a.workloads + "," + a.remat_workloads).split(",") if w])
    except ValueError as e:
        p.error(str(e))
    return a


def main(argv=None):
    a = parse_args(argv)
    if a._aug_worker:
        print(json.dumps(augment.measure()))
        return
    if a._ntxent_worker:
        ntxent.main(["--batches", a.ntxent_batches, "--block", str(a.ntxent_block),
                     "--budget-gib", str(a.ntxent_budget_gib)])
        return
    if not (a.cpu_quick or a.workloads or a.aug or a.ntxent_table or a.remat_table):
        a.cpu_quick = True
    t0 = time.perf_counter()
    results, tables = {}, []
    if a.cpu_quick or a.workloads:
        names = list(CPU_QUICK) if a.cpu_quick else [w for w in a.workloads.split(",") if w]
        results["train_steps"] = steps.train_step_rows(
            names, batch=a.batch, dtype=a.dtype, overrides=tuple(a.set), steps=a.steps,
            peers_dir=a.peers, default_peers_dir=DEFAULT_PEERS_DIR, threads=a.threads)
        tables.append(steps.format_train_table(results["train_steps"]))
    if a.cpu_quick or a.aug:
        results["augmentation"] = augment.aug_rows(a.peers, DEFAULT_PEERS_DIR)
        tables.append(augment.format_aug_table(results["augmentation"]))
    if a.remat_table:
        results["remat"] = remat.remat_rows([w for w in a.remat_workloads.split(",") if w],
                                            batch=a.batch, overrides=tuple(a.set), steps=a.steps)
        tables.append(remat.format_remat_table(results["remat"]))
    if a.ntxent_table:
        results["ntxent"] = ntxent.ntxent_rows(a.ntxent_batches, a.ntxent_devices, a.ntxent_block,
                                               a.ntxent_budget_gib)
        tables.append(ntxent.format_ntxent_table(results["ntxent"]))
    print("\n\n".join(tables))
    print(f"benchmark took {time.perf_counter() - t0:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
