"""Streamed (host-read) training throughput with and without batch prefetching.

Runs ``jaxssl.train.run`` in this process on a host-read training path, once per
``data.prefetch`` depth and repeat, alternating the depths (0, 2, 0, 2, ...) so that both
see the same machine, and prints the img/s of each run (the trainer's own meter: every
interval after the first, compiling one) with the median per depth.

    python scripts/measure_prefetch.py digits --steps 60
    python scripts/measure_prefetch.py imagenet_mock --steps 30

``digits``: ``configs/simclr_digits.py`` with ``data.in_memory=False`` (the batch is gathered
from host memory and copied to the device each step). ``imagenet_mock``:
``configs/simclr_imagenet.py:v1`` under ``tfds.testing.mock_data`` (random JPEGs decoded and
cropped on the host, as ImageNet is), shrunk to digits' small CNN at 32 px, batch 64, so that a CPU step takes about as long as
the host work it overlaps.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile

COMMON = {"eval__enabled": False, "train__num_epochs": 0.0, "train__log_every_steps": 10}

WORKLOADS = {
    "digits": ("simclr_digits", None, {"data__in_memory": False}),
    "imagenet_mock": ("simclr_imagenet", "v1", {
        "data__image_size": 32, "train__batch_size": 64, "model__backbone": "small_cnn",
        "model__head_hidden_dim": 128, "optim__warmup_epochs": 0.0,
        "optim__warmup_fraction": 0.0, "mesh__num_devices": 1}),
}


def data_context(workload: str):
    if workload != "imagenet_mock":
        return contextlib.nullcontext()
    import tensorflow_datasets as tfds
    return tfds.testing.mock_data(num_examples=512)


def measure(workload: str, steps: int, depth: int) -> float:
    """img/s of one run of ``steps`` steps at prefetch ``depth`` (last metrics row)."""
    from jaxssl import train
    from jaxssl.config import load_preset
    name, arg, overrides = WORKLOADS[workload]
    config = load_preset(name, arg, **{**COMMON, **overrides, "train__num_steps": steps,
                                       "train__checkpoint_every_steps": steps,
                                       "data__prefetch": depth})
    with tempfile.TemporaryDirectory() as workdir, data_context(workload):
        train.run(config, workdir)
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f]
    return float(rows[-1]["img_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--depths", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    load_before = os.getloadavg()
    results: dict[int, list[float]] = {d: [] for d in args.depths}
    for repeat in range(args.repeats):
        for depth in args.depths:
            results[depth].append(measure(args.workload, args.steps, depth))
            print(f"RESULT {args.workload} repeat {repeat} prefetch {depth}: "
                  f"{results[depth][-1]:.1f} img/s", flush=True)
    base = statistics.median(results[args.depths[0]])
    print(f"\n{args.workload}, {args.steps} steps, load average before "
          f"{load_before[0]:.2f} / after {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    print("| data.prefetch | img/s (each run) | median | vs first |")
    print("|---|---|---|---|")
    for depth in args.depths:
        med = statistics.median(results[depth])
        runs = ", ".join(f"{v:.1f}" for v in results[depth])
        print(f"| {depth} | {runs} | {med:.1f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
