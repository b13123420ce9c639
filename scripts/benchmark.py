"""Throughput, FLOPs, MFU and memory of jaxssl's train steps, side by side with the peers.

    python scripts/benchmark.py --cpu-quick                 # the CPU comparisons (< 10 min, 2 cores)
    python scripts/benchmark.py --workloads simclr_r50_224,bert_base_mlm_t128 --dtype bfloat16
    python scripts/benchmark.py --workloads mocov2_r50_224 --batch 4 --steps 3   # small, on a CPU
    python scripts/benchmark.py --aug                       # on-device augmentation vs lightly
    python scripts/benchmark.py --ntxent-table              # NT-Xent at 4096-16384 on 8 devices
    python scripts/benchmark.py --remat-table               # remat policies x dtype
    ... --json out.json                                     # the same rows as JSON

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

With ``--peers DIR`` (default ~/.cache/jaxssl-peers, built by ../shared/peers/setup.sh) the
peers run in the same invocation with the same shapes and the table gives jaxssl / peer.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_SCRIPTS = os.path.join(os.path.dirname(ROOT), "shared", "peers")
CPU_CONV_BATCH_CHUNK = 64


# --------------------------------------------------------------------------- configs

def load_preset(name: str, arg: str | None = None):
    """``configs/<name>.py``'s ``get_config(arg)``, unlocked for the benchmark's overrides."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config(arg)
    c.unlock()
    return c


def _synthetic_images(c, batch: int, dtype: str, image_size: int):
    """Point an image preset at on-the-fly synthetic uint8 data (no download), no eval."""
    c.data.name = "synthetic"
    c.data.image_size = image_size
    c.model.dtype = dtype
    # a long run, so the preset's warmup (in epochs of the small synthetic set) fits
    c.train.update(dict(batch_size=batch, num_steps=1_000_000, num_epochs=0.0))
    c.eval.enabled = False
    return c


def simclr_r18_cifar_config(batch: int, dtype: str):
    """The shapes of ../shared/peers/torch_simclr_step.py: ResNet-18 CIFAR stem, 2-layer
    512-512-128 head, NT-Xent T=0.5, SGD momentum 0.9 wd 5e-4, B images = 2B views."""
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
    return c


def bert_base_mlm_config(batch: int, dtype: str):
    """BERT-base MLM at T=128 with the peers' shapes: 30,522-token vocabulary, 15% masked,
    AdamW 1e-4 wd 0.01, dropout 0.1, on the embedded pydoc text (a 2,000-token WordPiece
    vocabulary padded with [unusedN] tokens to BERT's 30,522 so the embedding and the MLM head
    have BERT's shapes). The preset ``configs/bert_base_mlm.py`` phase 1 otherwise."""
    import tempfile

    from jaxssl.data import corpus, text
    small = text.train_wordpiece(corpus.load_pydoc_corpus("train"), 2000)
    tokens = [small.id_to_token(i) for i in range(small.vocab_size)]
    tokens += [f"[unused{i}]" for i in range(30522 - len(tokens))]
    vocab = os.path.join(tempfile.mkdtemp(prefix="jaxssl_bench_"), "vocab.txt")
    with open(vocab, "w") as f:
        f.write("\n".join(tokens) + "\n")
    c = load_preset("bert_base_mlm", "phase1")
    c.data.update(dict(name="pydoc", train_split=None, test_split=None, max_test_documents=0,
                       vocab_file=vocab, sentence_pairs=True))
    c.model.dtype = dtype
    c.train.batch_size = batch
    c.eval.enabled = False
    return c


def mocov2_r50_224_config(batch: int, dtype: str):
    """``configs/mocov2_imagenet.py`` on synthetic data. Its shuffle BN is per device; on a
    one-device mesh it becomes the same shuffle over ``gcd(8, batch)`` BN groups."""
    import math

    import jax
    c = _synthetic_images(load_preset("mocov2_imagenet"), batch, dtype, 224)
    if jax.device_count() == 1:
        c.moco.update(dict(shuffle_bn="groups", bn_groups=math.gcd(8, batch)))
    return c


@dataclasses.dataclass(frozen=True)
class Workload:
    """build(batch, dtype) -> config; ``inputs``: what the device-resident batch holds."""
    build: Callable
    default_batch: int
    inputs: str                      # 'views' | 'images' | 'feeder_once'
    peers: tuple = ()                # (venv, script, args(batch, threads) -> list[str])
    unit_note: str = ""


_SIMCLR_PEER = ("vt", "torch_simclr_step.py", lambda b, t: [str(b), str(t)])
_SIMCLR_PEER_BF16 = ("vt", "torch_simclr_step_bf16.py", lambda b, t: [str(b), str(t)])
_MLM_PEERS = (("vt", "torch_mlm_step.py", lambda b, t: [str(b), "128", str(t)]),
              ("vf", "flax_mlm_step.py", lambda b, t: [str(b), "128"]))

_BASE = {
    "simclr_r18_cifar": Workload(lambda b, d: simclr_r18_cifar_config(b, d), 128, "views"),
    "simclr_r50_224": Workload(lambda b, d: _synthetic_images(load_preset("simclr_imagenet", "v1"), b, d, 224),
                               128, "views"),
    "mocov2_r50_224": Workload(lambda b, d: mocov2_r50_224_config(b, d), 128, "views"),
    "mocov3_vitb16": Workload(lambda b, d: _synthetic_images(load_preset("mocov3_imagenet", "vit_base"), b, d, 224),
                              128, "views"),
    "mae_vitb16": Workload(lambda b, d: _synthetic_images(load_preset("mae_vit_base_imagenet"), b, d, 224),
                           128, "images"),
    "bert_base_mlm_t128": Workload(bert_base_mlm_config, 8, "feeder_once"),
}
WORKLOADS: dict[str, Workload] = {}
for _name, _w in _BASE.items():
    WORKLOADS[_name] = _w
    WORKLOADS[f"{_name}_pipeline"] = dataclasses.replace(_w, inputs="feeder")
WORKLOADS["simclr_r18_cifar"] = dataclasses.replace(WORKLOADS["simclr_r18_cifar"], peers=(_SIMCLR_PEER,))
WORKLOADS["simclr_r18_cifar_bf16"] = dataclasses.replace(
    WORKLOADS["simclr_r18_cifar"], build=lambda b, d: simclr_r18_cifar_config(b, "bfloat16"),
    peers=(_SIMCLR_PEER_BF16,))
WORKLOADS["bert_base_mlm_t128"] = dataclasses.replace(WORKLOADS["bert_base_mlm_t128"], peers=_MLM_PEERS)
CPU_QUICK = ("simclr_r18_cifar", "simclr_r18_cifar_pipeline", "bert_base_mlm_t128")


def apply_overrides(config, overrides: list[str]):
    """``--set a.b=value`` overrides, typed like the existing field."""
    for item in overrides:
        key, _, raw = item.partition("=")
        *path, last = key.split(".")
        node = config
        for p in path:
            node = node[p]
        old = node[last]
        value = (raw.lower() in ("1", "true", "yes") if isinstance(old, bool) else
                 type(old)(raw) if isinstance(old, (int, float, str)) else json.loads(raw))
        node[last] = value
    return config


def cpu_levers(config, overrides: list[str]) -> list[str]:
    """Turn on the measured CPU levers for a one-device CPU run (unless overridden)."""
    import jax
    levers = []
    if (jax.default_backend() == "cpu" and jax.device_count() == 1
            and config.model.get("backbone", "").startswith("resnet")
            and not any(o.startswith("model.conv_batch_chunk=") for o in overrides)):
        config.model.conv_batch_chunk = CPU_CONV_BATCH_CHUNK
        levers.append(f"conv_batch_chunk={CPU_CONV_BATCH_CHUNK}")
    return levers


# --------------------------------------------------------------------------- train steps

def memory_gib(compiled) -> float | None:
    """Peak device memory in GiB if the device reports it, else XLA's buffers of ``compiled``."""
    import jax
    stats = None
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # CPU devices may not implement it
        stats = None
    if stats and stats.get("peak_bytes_in_use"):
        return stats["peak_bytes_in_use"] / 2**30
    return xla_buffer_gib(compiled)


def xla_buffer_gib(compiled) -> float | None:
    """Arguments + outputs + temporaries - aliased, per device, from XLA's memory analysis."""
    try:
        m = compiled.memory_analysis()
    except Exception:
        return None
    if m is None:
        return None
    total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)
    return total / 2**30


def time_train_step(config, inputs: str, steps: int) -> dict:
    """Compile and time ``jaxssl.train``'s real jitted step for ``config``."""
    import jax
    import numpy as np

    from jaxssl import flops, sharding, train, train_state

    setup = train.Setup(config)
    state = train_state.create(setup.init_fn, setup.tx, setup.mesh)
    step_fn = jax.jit(train.make_train_step(setup.method, setup.tx, setup.lr_fn), donate_argnums=0)
    b, s = setup.global_batch, int(config.data.get("image_size", 0) or 0)
    rng = np.random.default_rng(0)
    if inputs == "views":
        fixed = sharding.global_batch_from_local(
            {"views": rng.standard_normal((b, 2, s, s, 3), dtype=np.float32)}, setup.mesh)
    elif inputs == "images":
        fixed = sharding.global_batch_from_local(
            {"image": rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8),
             "label": np.zeros((b,), np.int32)}, setup.mesh)
    elif inputs == "feeder_once":
        fixed = jax.block_until_ready(setup.feeder(0))
    else:
        fixed = None
    make_batch = (lambda step: fixed) if fixed is not None else setup.feeder
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
    util = flops.mfu(model_flops, 1.0 / dt, setup.mesh.devices.size)
    return {"batch": b, "step_ms": dt * 1e3, "steps_per_s": 1 / dt,
            "items_per_s": setup.method.items_per_step() / dt, "unit": setup.method.unit,
            "compile_s": compile_s, "gflop_per_step": (model_flops or 0) / 1e9, "mfu": util,
            "mem_gib": memory_gib(compiled), "loss": float(m["loss"]),
            "device": f"{jax.device_count()}x {jax.devices()[0].device_kind}"}


def run_peer(python: str, script: str, args: list[str], pattern: str | None = None) -> dict | None:
    """Run a peer script; its throughput is the first ``pattern`` (default img/s or tok/s)."""
    path = os.path.join(PEER_SCRIPTS, script)
    if not (os.path.exists(python) and os.path.exists(path)):
        print(f"peer {script} skipped: {python} or {path} is missing "
              "(build the peers with ../shared/peers/setup.sh)", file=sys.stderr)
        return None
    out = subprocess.run([python, path, *args], capture_output=True, text=True, timeout=1800)
    text = out.stdout + out.stderr
    m = (re.search(pattern, text) if pattern else
         re.search(r"([\d.]+) img/s", text) or re.search(r"([\d.]+) tok/s", text))
    if out.returncode != 0 or not m:
        print(f"peer {script} failed:\n{text[-2000:]}", file=sys.stderr)
        return None
    line = next((ln for ln in text.splitlines() if m.group(0) in ln), text.strip().splitlines()[-1])
    return {"items_per_s": float(m.group(1)), "line": line.strip(), "text": text}


def train_step_rows(a) -> list[dict]:
    names = list(CPU_QUICK) if a.cpu_quick else [w for w in a.workloads.split(",") if w]
    rows = []
    for name in names:
        w = WORKLOADS[name]
        batch = a.batch or w.default_batch
        config = w.build(batch, a.dtype)
        levers = cpu_levers(config, a.set)
        apply_overrides(config, a.set)
        row = {"workload": name, "levers": ",".join(levers + a.set) or "-",
               **time_train_step(config, w.inputs, a.steps)}
        print(f"{name}: {row['items_per_s']:.1f} {row['unit']}/s ({row['step_ms']:.0f} ms/step, "
              f"batch {row['batch']}, {row['levers']})", flush=True)
        peers = w.peers if a.peers else ()
        if not peers:
            rows.append(row)
        for venv, script, args in peers:
            res = run_peer(os.path.join(a.peers, venv, "bin", "python"), script, args(batch, a.threads))
            prow = dict(row, workload=f"{name} vs {script}")
            if res:
                prow.update(peer_items_per_s=res["items_per_s"], peer_line=res["line"],
                            ratio=row["items_per_s"] / res["items_per_s"])
                print(f"  peer {res['line']}\n  ratio {prow['ratio']:.2f}x", flush=True)
            rows.append(prow)
    return rows


def format_train_table(rows: list[dict]) -> str:
    cols = ["workload", "device", "batch", "items/s", "steps/s", "step ms", "compile s",
            "GFLOP/step", "MFU", "mem GiB", "peer items/s", "ratio", "levers"]
    lines = [" | ".join(cols)]
    for r in rows:
        lines.append(" | ".join([
            r["workload"], r["device"], str(r["batch"]), f"{r['items_per_s']:.1f} {r['unit']}/s",
            f"{r['steps_per_s']:.3f}", f"{r['step_ms']:.0f}", f"{r['compile_s']:.1f}",
            f"{r['gflop_per_step']:.1f}", f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "n/a",
            f"{r['mem_gib']:.2f}" if r.get("mem_gib") else "n/a",
            f"{r['peer_items_per_s']:.1f}" if r.get("peer_items_per_s") else "-",
            f"{r['ratio']:.2f}x" if r.get("ratio") else "-", r.get("levers", "-")]))
    return "\n".join(lines)


# --------------------------------------------------------------------------- augmentation

AUG_PEER_LINES = {
    "aug_32": r"CIFAR 32x32 .*?: (\d+) images/s/core",
    "aug_224": r"decode \+ SimCLRTransform\(224, blur\), 2 views: (\d+) images/s/core",
    "aug_224_noblur": r"decode \+ SimCLRTransform\(224, no blur\), 2 views: (\d+) images/s/core",
}


def _peer_like_jpegs(count: int = 16) -> list[bytes]:
    """The peer's ImageNet-like inputs: a smooth 500x375 gradient plus noise, JPEG q90."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    base = (np.stack(np.meshgrid(np.linspace(0, 255, 500), np.linspace(0, 255, 375)), -1)
            .mean(-1)[..., None] * np.ones(3)).astype(np.uint8)
    out = []
    for _ in range(count):
        b = io.BytesIO()
        noisy = np.clip(base.astype(int) + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(b, "JPEG", quality=90)
        out.append(b.getvalue())
    return out


def aug_worker() -> list[dict]:
    """Per-core augmentation throughput of jaxssl (run pinned to one core, see ``aug_rows``).

    32 px: ``augment.two_views`` (on-device random resized crop, flip, colour jitter, grey;
    no blur -- lightly's SimCLRTransform(input_size=32, gaussian_blur=0)) on a uint8 batch.
    224 px: the ImageNet path -- host JPEG decode + two random resized crops
    (``HostCropReader``, one thread) then on-device flip/jitter/grey/blur of the two views;
    the per-core rate of the two stages in sequence is ``1 / (1/host + 1/device)``.
    """
    import jax
    import numpy as np

    from jaxssl import rng as rng_lib
    from jaxssl.augment import image as aug
    from jaxssl.data.tfds_images import HostCropReader

    def device_rate(cfg, images, reps=5):
        f = jax.jit(lambda key, x: aug.two_views(key, x, cfg, cfg))
        key = rng_lib.step_key(0, "augment", 0)
        jax.block_until_ready(f(key, images))
        times = []
        for i in range(reps):
            t = time.perf_counter()
            jax.block_until_ready(f(jax.random.fold_in(key, i + 1), images))
            times.append(time.perf_counter() - t)
        return images.shape[0] / statistics.median(times)

    rows = []
    gen = np.random.default_rng(0)
    small = jax.device_put(gen.integers(0, 256, (512, 32, 32, 3), dtype=np.uint8))
    cfg32 = aug.ViewConfig(output_size=32, blur_prob=0.0)
    rows.append({"workload": "aug_32", "what": "on-device two_views, 32 px, no blur",
                 "images_per_s_core": device_rate(cfg32, small)})

    jpegs = _peer_like_jpegs()
    reader = HostCropReader([{"image": j, "label": 0} for j in jpegs], image_size=224,
                            mode="random", num_views=2, num_threads=1)
    n = 64
    reader(np.arange(4) % len(jpegs), seed=0, step=0)
    t = time.perf_counter()
    out = reader(np.arange(n) % len(jpegs), seed=0, step=1)
    host = n / (time.perf_counter() - t)
    reader.close()
    views = jax.device_put(out["image"][:32, 0])
    for blur, name in ((0.5, "aug_224"), (0.0, "aug_224_noblur")):
        cfg = aug.ViewConfig(output_size=224, crop=False, blur_prob=blur)
        dev = device_rate(cfg, views, reps=3)
        rows.append({"workload": name, "what": f"host JPEG decode + 2 crops ({host:.0f}/s) + "
                     f"device two_views blur p={blur} ({dev:.0f}/s)",
                     "images_per_s_core": 1.0 / (1.0 / host + 1.0 / dev)})
    return rows


def aug_rows(a) -> list[dict]:
    """jaxssl's per-core augmentation rate (a subprocess pinned to one core) vs the peer's."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") +
                          " --xla_cpu_multi_thread_eigen=false").strip())
    cmd = [sys.executable, os.path.abspath(__file__), "--_aug-worker"]
    if hasattr(os, "sched_getaffinity"):
        cmd = ["taskset", "-c", str(min(os.sched_getaffinity(0))), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"augmentation worker failed:\n{out.stderr[-3000:]}")
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    peer = None
    if a.peers:
        peer = run_peer(os.path.join(a.peers, "vt", "bin", "python"), "aug_throughput.py", [],
                        pattern=r"(\d+) images/s/core")
    for r in rows:
        if peer:
            m = re.search(AUG_PEER_LINES[r["workload"]], peer["text"])
            if m:
                r["peer_images_per_s_core"] = float(m.group(1))
                r["ratio"] = r["images_per_s_core"] / r["peer_images_per_s_core"]
        print(f"{r['workload']}: {r['images_per_s_core']:.0f} images/s/core ({r['what']})"
              + (f" vs lightly {r['peer_images_per_s_core']:.0f}: {r['ratio']:.2f}x"
                 if r.get("ratio") else ""), flush=True)
    return rows


def format_aug_table(rows: list[dict]) -> str:
    lines = ["augmentation | jaxssl images/s/core | lightly images/s/core | ratio | jaxssl path"]
    for r in rows:
        lines.append(" | ".join([r["workload"], f"{r['images_per_s_core']:.0f}",
                                 f"{r['peer_images_per_s_core']:.0f}" if r.get("peer_images_per_s_core") else "-",
                                 f"{r['ratio']:.2f}x" if r.get("ratio") else "-", r["what"]]))
    return "\n".join(lines)


# --------------------------------------------------------------------------- large-batch NT-Xent

def ntxent_worker(batches: list[int], dim: int, block_size: int, budget_gib: float) -> list[dict]:
    """NT-Xent loss + gradient at global batch N (2N views) on the mesh of all devices.

    ``direct``: ``losses.nt_xent`` under jit (XLA partitions the [2N, 2N] similarity matrix);
    ``blockwise``: ``losses.nt_xent_blockwise`` (shard_map, gathered columns, chunked online
    logsumexp). Memory is XLA's per-device buffer total of the compiled program; a form is
    only run when all devices' buffers fit in ``budget_gib`` of host memory.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from jaxssl import losses, sharding

    mesh = sharding.make_mesh()
    devices = mesh.devices.size
    rows = []
    for n in batches:
        key = jax.random.key(n)
        za = jax.device_put(jax.random.normal(key, (n, dim)), NamedSharding(mesh, P("data")))
        zb = jax.device_put(jax.random.normal(jax.random.fold_in(key, 1), (n, dim)),
                            NamedSharding(mesh, P("data")))
        forms = {
            "direct": lambda a, b: losses.nt_xent(a, b, 0.1),
            "blockwise": lambda a, b: losses.nt_xent_blockwise(a, b, 0.1, mesh=mesh,
                                                               block_size=block_size),
        }
        values = {}
        for form, loss in forms.items():
            f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
            t = time.perf_counter()
            compiled = f.lower(za, zb).compile()
            compile_s = time.perf_counter() - t
            gib = xla_buffer_gib(compiled)
            row = {"global_batch": n, "views": 2 * n, "devices": devices, "form": form,
                   "mem_gib_per_device": gib, "compile_s": compile_s}
            if gib is not None and gib * devices > budget_gib:
                row["skipped"] = f"needs {gib * devices:.1f} GiB of host memory for {devices} devices"
            else:
                out = compiled(za, zb)
                jax.block_until_ready(out)
                times = []
                for _ in range(3):
                    t = time.perf_counter()
                    out = compiled(za, zb)
                    jax.block_until_ready(out)
                    times.append(time.perf_counter() - t)
                row["time_ms"] = statistics.median(times) * 1e3
                row["loss"] = float(out[0])
                values[form] = out
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        if len(values) == 2:
            (l0, g0), (l1, g1) = values["direct"], values["blockwise"]
            diff = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(g0, g1))
            scale = max(float(jnp.max(jnp.abs(x))) for x in g0)
            rows[-1]["max_grad_rel_diff_vs_direct"] = diff / scale
            rows[-1]["loss_diff_vs_direct"] = abs(float(l0) - float(l1))
        del za, zb
    return rows


def ntxent_rows(a) -> list[dict]:
    """Run ``ntxent_worker`` in a subprocess with ``--devices`` fake CPU devices (or the real ones)."""
    env = dict(os.environ)
    if a.ntxent_devices:
        env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(a.ntxent_devices),
                   XLA_FLAGS=(env.get("XLA_FLAGS", "") +
                              f" --xla_force_host_platform_device_count={a.ntxent_devices}").strip())
    cmd = [sys.executable, os.path.abspath(__file__), "--_ntxent-worker",
           "--ntxent-batches", a.ntxent_batches, "--ntxent-block", str(a.ntxent_block),
           "--ntxent-budget-gib", str(a.ntxent_budget_gib)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"NT-Xent worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def format_ntxent_table(rows: list[dict]) -> str:
    lines = ["global batch | views | devices | form | XLA buffers GiB/device | loss+grad ms | note"]
    for r in rows:
        note = r.get("skipped", "")
        if "max_grad_rel_diff_vs_direct" in r:
            note = (f"loss diff {r['loss_diff_vs_direct']:.1e}, max grad diff "
                    f"{r['max_grad_rel_diff_vs_direct']:.1e} (rel) vs direct")
        lines.append(" | ".join([str(r["global_batch"]), str(r["views"]), str(r["devices"]), r["form"],
                                 f"{r['mem_gib_per_device']:.3f}" if r.get("mem_gib_per_device") is not None else "n/a",
                                 f"{r['time_ms']:.0f}" if "time_ms" in r else "-", note]))
    return "\n".join(lines)


# --------------------------------------------------------------------------- remat x dtype

def remat_rows(a) -> list[dict]:
    """Step time and compiled memory for ``model.remat`` in (none, full, dots) x dtype."""
    names = [w for w in a.remat_workloads.split(",") if w]
    rows = []
    for name in names:
        w = WORKLOADS[name]
        batch = a.batch or w.default_batch
        for dtype in ("float32", "bfloat16"):
            for policy in ("none", "full", "dots"):
                config = w.build(batch, dtype)
                levers = cpu_levers(config, a.set)
                apply_overrides(config, a.set + [f"model.remat={policy}"])
                r = time_train_step(config, w.inputs, a.steps)
                r.update(workload=name, remat=policy, dtype=dtype, levers=",".join(levers) or "-")
                mem = f"{r['mem_gib']:.3f} GiB" if r.get("mem_gib") else "memory n/a"
                print(f"{name} remat={policy} {dtype}: {r['step_ms']:.0f} ms/step, {mem}", flush=True)
                rows.append(r)
    return rows


def format_remat_table(rows: list[dict]) -> str:
    lines = ["workload | batch | dtype | remat | step ms | items/s | mem GiB | vs none (time, mem)"]
    base = {}
    for r in rows:
        key = (r["workload"], r["dtype"])
        if r["remat"] == "none":
            base[key] = r
        b = base.get(key)
        rel = (f"{r['step_ms'] / b['step_ms']:.2f}x, {r['mem_gib'] / b['mem_gib']:.2f}x"
               if b and r.get("mem_gib") and b.get("mem_gib") else "-")
        lines.append(" | ".join([r["workload"], str(r["batch"]), r["dtype"], r["remat"],
                                 f"{r['step_ms']:.0f}", f"{r['items_per_s']:.1f} {r['unit']}/s",
                                 f"{r['mem_gib']:.3f}" if r.get("mem_gib") else "n/a", rel]))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

def main():
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
    p.add_argument("--peers", default=os.path.expanduser("~/.cache/jaxssl-peers"),
                   help="folder of the peer venvs (../shared/peers/setup.sh); '' to skip peers")
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
    p.add_argument("--_aug-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_ntxent-worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()

    if a._aug_worker:
        print(json.dumps(aug_worker()))
        return
    if a._ntxent_worker:
        print(json.dumps(ntxent_worker([int(x) for x in a.ntxent_batches.split(",")], 128,
                                       a.ntxent_block, a.ntxent_budget_gib)))
        return
    unknown = [w for w in a.workloads.split(",") if w and w not in WORKLOADS]
    if unknown:
        p.error(f"unknown workloads {unknown}; known: {sorted(WORKLOADS)}")
    if not (a.cpu_quick or a.workloads or a.aug or a.ntxent_table or a.remat_table):
        a.cpu_quick = True
    t0 = time.perf_counter()
    results, tables = {}, []
    if a.cpu_quick or a.workloads:
        results["train_steps"] = train_step_rows(a)
        tables.append(format_train_table(results["train_steps"]))
    if a.cpu_quick or a.aug:
        results["augmentation"] = aug_rows(a)
        tables.append(format_aug_table(results["augmentation"]))
    if a.remat_table:
        results["remat"] = remat_rows(a)
        tables.append(format_remat_table(results["remat"]))
    if a.ntxent_table:
        results["ntxent"] = ntxent_rows(a)
        tables.append(format_ntxent_table(results["ntxent"]))
    print("\n\n".join(tables))
    print(f"benchmark took {time.perf_counter() - t0:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
