"""Augmentation table: jaxssl's per-core augmentation rate vs lightly's ``SimCLRTransform``.

jaxssl's side runs in a child process pinned to one core (``python -m
jaxssl.benchmarks.augment`` prints its rows as JSON); the peer is
``peers/lightly_augment.py`` (one thread), on the same kind of inputs.
"""
from __future__ import annotations

import io
import json
import re
import statistics
import time

from jaxssl.benchmarks import peers as peers_lib
from jaxssl.benchmarks import worker

PEER = peers_lib.PeerStep("torch", "lightly_augment.py", lambda b, t, d: [],
                          label="lightly SimCLRTransform")
PEER_LINES = {  # our row -> the peer's line
    "aug_32": r"CIFAR 32x32 .*?: (\d+) images/s/core",
    "aug_224": r"decode \+ SimCLRTransform\(224, blur\), 2 views: (\d+) images/s/core",
    "aug_224_noblur": r"decode \+ SimCLRTransform\(224, no blur\), 2 views: (\d+) images/s/core",
}


def peer_like_jpegs(count: int = 16) -> list[bytes]:
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


def measure() -> list[dict]:
    """Per-core augmentation throughput of jaxssl (run pinned to one core, see :func:`aug_rows`).

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

    jpegs = peer_like_jpegs()
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


def worker_env() -> dict:
    """One CPU device whose Eigen kernels use one thread."""
    return worker.cpu_env(1, "--xla_cpu_multi_thread_eigen=false")


def aug_rows(peers_dir: str = "", default_peers_dir: str | None = None) -> list[dict]:
    """jaxssl's per-core augmentation rate (a child pinned to one core) vs the peer's."""
    rows = worker.run_module("jaxssl.benchmarks.augment", [], env=worker_env(), pin_one_core=True,
                             timeout_s=1800)
    peer = None
    if peers_dir:
        peer = peers_lib.run_peer(PEER, [], peers_dir, default_peers_dir,
                                  pattern=r"(\d+) images/s/core")
    for r in rows:
        if peer and peer.items_per_s:
            m = re.search(PEER_LINES[r["workload"]], peer.text)
            if m:
                r["peer_images_per_s_core"] = float(m.group(1))
                r["ratio"] = r["images_per_s_core"] / r["peer_images_per_s_core"]
        elif peer:
            r["peer_note"] = peer.note
        print(f"{r['workload']}: {r['images_per_s_core']:.0f} images/s/core ({r['what']})"
              + (f" vs lightly {r['peer_images_per_s_core']:.0f}: {r['ratio']:.2f}x"
                 if r.get("ratio") else ""), flush=True)
    return rows


def format_aug_table(rows: list[dict]) -> str:
    lines = ["augmentation | jaxssl images/s/core | lightly images/s/core | ratio | jaxssl path"]
    for r in rows:
        lines.append(" | ".join([
            r["workload"], f"{r['images_per_s_core']:.0f}",
            f"{r['peer_images_per_s_core']:.0f}" if r.get("peer_images_per_s_core")
            else r.get("peer_note", "-"),
            f"{r['ratio']:.2f}x" if r.get("ratio") else "-", r["what"]]))
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(measure()))
