"""Peer augmentation throughput per core: lightly's SimCLRTransform (torchvision ops), one
process, one thread, two views per image.

    python lightly_augment.py [--small 2000] [--large 200]

Prints one ``<label>: N images/s/core`` line each for 32 px without blur, and for JPEG decode
+ 224 px with and without blur (on the same ImageNet-like 500x375 JPEGs that
``jaxssl.benchmarks.augment`` feeds jaxssl). Exits 3 when torch or lightly is missing (run
``bash scripts/setup_peers.sh torch``). Imports no jaxssl code.
"""
import argparse
import io
import sys
import time

NOT_INSTALLED_EXIT = 3


def peer_like_jpegs(np, Image, count: int = 16) -> list:
    """A smooth 500x375 gradient plus noise, JPEG q90 (the same as jaxssl's side uses)."""
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--small", type=int, default=2000, help="32 px images timed")
    p.add_argument("--large", type=int, default=200, help="224 px images timed (each variant)")
    a = p.parse_args()
    try:
        import numpy as np
        import torch
        from lightly.transforms import SimCLRTransform
        from PIL import Image
    except ImportError as e:
        print(f"peer not installed: {e}")
        sys.exit(NOT_INSTALLED_EXIT)

    torch.set_num_threads(1)

    def bench(transform, images, n, label, decode=False):
        t = time.perf_counter()
        for i in range(n):
            im = images[i % len(images)]
            if decode:
                im = Image.open(io.BytesIO(im)).convert("RGB")
            transform(im)  # [view0, view1]
        dt = time.perf_counter() - t
        print(f"{label}: {n / dt:.0f} images/s/core ({2 * n / dt:.0f} views/s/core)", flush=True)

    rng = np.random.default_rng(0)
    small = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(64)]
    bench(SimCLRTransform(input_size=32, gaussian_blur=0.0), small, a.small,
          "CIFAR 32x32 SimCLRTransform(no blur), 2 views")
    jpegs = peer_like_jpegs(np, Image)
    bench(SimCLRTransform(input_size=224), jpegs, a.large,
          "ImageNet-like 500x375 JPEG decode + SimCLRTransform(224, blur), 2 views", decode=True)
    bench(SimCLRTransform(input_size=224, gaussian_blur=0.0), jpegs, a.large,
          "ImageNet-like 500x375 JPEG decode + SimCLRTransform(224, no blur), 2 views", decode=True)


if __name__ == "__main__":
    main()
