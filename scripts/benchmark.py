"""Throughput of jaxssl's train steps, side by side with the peers' steps on the same machine.

    python scripts/benchmark.py --cpu-quick               # the CPU comparisons (< 10 min, 2 cores)
    python scripts/benchmark.py --workloads simclr_r18_cifar --steps 20 --json out.json

Each row: median step time over ``--steps`` timed steps after compilation and one warm-up
step, on synthetic data already on the device (``simclr_r18_cifar``: the shapes of
../shared/peers/torch_simclr_step.py -- ResNet-18 CIFAR stem, 2-layer 512-512-128 head, NT-Xent
T=0.5, SGD momentum 0.9 wd 5e-4, B=128 images = 256 views, fp32; ``..._aug`` adds jaxssl's
on-device augmentation of uint8 images and the step's data gather, i.e. the real input path).
Model FLOPs come from XLA's cost analysis of the compiled step (and PERFORMANCE.md's formula
where one exists); MFU is printed where the device's peak is known (not on CPU).

With ``--peers DIR`` (default ~/.cache/jaxssl-peers, built by ../shared/peers/setup.sh) the
PyTorch/lightly peer runs in the same invocation, and the table gives jaxssl / peer.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_SCRIPTS = os.path.join(os.path.dirname(ROOT), "shared", "peers")


def simclr_r18_cifar_config(batch: int, dtype: str):
    from jaxssl.config import base_config
    c = base_config()
    c.method = "simclr"
    c.data.name = "synthetic"
    c.data.image_size = 32
    c.augment.update(dict(blur_prob=0.0, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1))
    c.model.update(dict(backbone="resnet18", stem="cifar", head="simclr_v1", head_hidden_dim=512,
                        head_output_dim=128, dtype=dtype))
    c.loss.temperature = 0.5
    c.optim.update(dict(name="sgd", base_lr=0.06, lr_scaling="none", weight_decay=5e-4,
                        momentum=0.9, warmup_epochs=0.0, schedule="constant"))
    c.train.update(dict(batch_size=batch, num_steps=100, num_epochs=0.0))
    c.eval.enabled = False
    return c.lock()


def bert_base_mlm_config(batch: int, dtype: str):
    """BERT-base MLM at T=128 with the peers' shapes: B=8, 30,522-token vocabulary, 15% masked,
    AdamW 1e-4 wd 0.01, dropout 0.1, on the embedded pydoc text (a 2,000-token WordPiece
    vocabulary padded with [unusedN] tokens to BERT's 30,522 so the embedding and the MLM head
    have BERT's shapes)."""
    import importlib.util
    import tempfile

    from jaxssl.data import corpus, text
    small = text.train_wordpiece(corpus.load_pydoc_corpus("train"), 2000)
    tokens = [small.id_to_token(i) for i in range(small.vocab_size)]
    tokens += [f"[unused{i}]" for i in range(30522 - len(tokens))]
    vocab = os.path.join(tempfile.mkdtemp(prefix="jaxssl_bench_"), "vocab.txt")
    with open(vocab, "w") as f:
        f.write("\n".join(tokens) + "\n")
    spec = importlib.util.spec_from_file_location("bert_base_mlm", os.path.join(ROOT, "configs", "bert_base_mlm.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config("phase1")
    with c.unlocked():
        c.data.update(dict(name="pydoc", train_split=None, test_split=None, max_test_documents=0,
                           vocab_file=vocab, sentence_pairs=True))
        c.model.dtype = dtype
        c.train.batch_size = batch
        c.eval.enabled = False
    return c


def time_train_step(config, given_views: bool, steps: int) -> dict:
    """Compile and time ``jaxssl.train``'s real jitted step for ``config``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxssl import flops, sharding, train, train_state

    setup = train.Setup(config)
    state = train_state.create(setup.init_fn, setup.tx, setup.mesh)
    step_fn = jax.jit(train.make_train_step(setup.method, setup.tx, setup.lr_fn), donate_argnums=0)
    b, s = setup.global_batch, int(config.data.image_size)
    if given_views:
        views = np.random.default_rng(0).standard_normal((b, 2, s, s, 3), dtype=np.float32)
        make_batch = lambda step, v=sharding.global_batch_from_local({"views": views}, setup.mesh): v  # noqa: E731
    else:
        make_batch = setup.feeder
    t0 = time.perf_counter()
    compiled = step_fn.lower(state, make_batch(0)).compile()
    compile_s = time.perf_counter() - t0
    model_flops = flops.compiled_flops(compiled)
    state, m = compiled(state, make_batch(0))
    jax.block_until_ready(m["loss"])
    times = []
    for i in range(1, steps + 1):
        t = time.perf_counter()
        state, m = compiled(state, make_batch(i))
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t)
    dt = statistics.median(times)
    mem = None
    stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        mem = stats["peak_bytes_in_use"] / 2**30
    util = flops.mfu(model_flops, 1.0 / dt, setup.mesh.devices.size)
    return {"step_ms": dt * 1e3, "steps_per_s": 1 / dt, "items_per_s": setup.method.items_per_step() / dt,
            "unit": setup.method.unit, "compile_s": compile_s, "gflop_per_step": (model_flops or 0) / 1e9,
            "mfu": util, "peak_mem_gib": mem, "loss": float(m["loss"]),
            "device": f"{jax.device_count()}x {jax.devices()[0].device_kind}"}


def run_peer(python: str, script: str, args: list[str]) -> dict | None:
    path = os.path.join(PEER_SCRIPTS, script)
    if not (os.path.exists(python) and os.path.exists(path)):
        return None
    out = subprocess.run([python, path, *args], capture_output=True, text=True, timeout=1200)
    text = out.stdout + out.stderr
    m = re.search(r"([\d.]+) img/s", text) or re.search(r"([\d.]+) tok/s", text)
    if out.returncode != 0 or not m:
        print(f"peer {script} failed:\n{text[-2000:]}", file=sys.stderr)
        return None
    line = next((l for l in text.splitlines() if m.group(0) in l), text.strip().splitlines()[-1])
    return {"items_per_s": float(m.group(1)), "line": line.strip()}


WORKLOADS = {
    # name: (config builder, given views?, peer (venv, script, args))
    "simclr_r18_cifar": (lambda a: simclr_r18_cifar_config(a.batch, "float32"), True,
                         ("vt", "torch_simclr_step.py", lambda a: [str(a.batch), str(a.threads)])),
    "simclr_r18_cifar_aug": (lambda a: simclr_r18_cifar_config(a.batch, "float32"), False, None),
    "simclr_r18_cifar_bf16": (lambda a: simclr_r18_cifar_config(a.batch, "bfloat16"), True,
                              ("vt", "torch_simclr_step_bf16.py", lambda a: [str(a.batch), str(a.threads)])),
}
WORKLOADS["bert_base_mlm_t128"] = (
    lambda a: bert_base_mlm_config(8, "float32"), False,
    [("vt", "torch_mlm_step.py", lambda a: ["8", "128", str(a.threads)]),
     ("vf", "flax_mlm_step.py", lambda a: ["8", "128"])])
CPU_QUICK = ("simclr_r18_cifar", "simclr_r18_cifar_aug", "bert_base_mlm_t128")


def format_table(rows: list[dict]) -> str:
    cols = ["workload", "device", "items/s", "step ms", "compile s", "GFLOP/step", "MFU",
            "peak GiB", "peer items/s", "ratio"]
    lines = [" | ".join(cols)]
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "n/a"
        mem = f"{r['peak_mem_gib']:.2f}" if r.get("peak_mem_gib") else "n/a"
        peer = f"{r['peer_items_per_s']:.1f}" if r.get("peer_items_per_s") else "-"
        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") else "-"
        lines.append(" | ".join([r["workload"], r["device"], f"{r['items_per_s']:.1f} {r['unit']}/s",
                                 f"{r['step_ms']:.0f}", f"{r['compile_s']:.1f}",
                                 f"{r['gflop_per_step']:.1f}", mfu, mem, peer, ratio]))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-quick", action="store_true", help=f"run {CPU_QUICK} with their peers")
    p.add_argument("--workloads", default=",".join(CPU_QUICK), help=f"comma list of {sorted(WORKLOADS)}")
    p.add_argument("--batch", type=int, default=128, help="images per step (peer: 128)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--threads", type=int, default=2, help="peer's torch threads")
    p.add_argument("--peers", default=os.path.expanduser("~/.cache/jaxssl-peers"),
                   help="folder of the peer venvs (../shared/peers/setup.sh); '' to skip peers")
    p.add_argument("--json", default="", help="also write the rows to this JSON file")
    a = p.parse_args()
    names = list(CPU_QUICK) if a.cpu_quick else [w for w in a.workloads.split(",") if w]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        p.error(f"unknown workloads {unknown}; known: {sorted(WORKLOADS)}")
    rows = []
    for name in names:
        build, given_views, peer = WORKLOADS[name]
        row = {"workload": name, **time_train_step(build(a), given_views, a.steps)}
        peers = peer if isinstance(peer, list) else [peer] if peer else []
        print(f"{name}: {row['items_per_s']:.1f} {row['unit']}/s", flush=True)
        if not (peers and a.peers):
            rows.append(row)
        for venv, script, args in (peers if a.peers else []):
            res = run_peer(os.path.join(a.peers, venv, "bin", "python"), script, args(a))
            prow = dict(row, workload=f"{name} vs {script}")
            if res:
                prow.update(peer_items_per_s=res["items_per_s"], peer_line=res["line"],
                            ratio=row["items_per_s"] / res["items_per_s"])
                print(f"  peer {res['line']}\n  ratio {prow['ratio']:.2f}x", flush=True)
            rows.append(prow)
    print(format_table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
