"""jaxssl's host input path per core at 224 px: ``python -m jaxssl.plan.host``.

Times :class:`jaxssl.data.tfds_images.HostCropReader` (the ImageNet path: JPEG decode with
PIL, then ``views`` random-resized crops resized to 224) with one thread on the benchmark's
ImageNet-like JPEGs (500x375, quality 90, :func:`jaxssl.benchmarks.augment.peer_like_jpegs`),
in images per CPU-second of the process, so a machine shared with other work still measures
one core's rate. The plan's :data:`jaxssl.plan.HOST_DECODE_CROP_PER_CORE` holds what this
printed (docs/performance.md).
"""
from __future__ import annotations

import statistics
import time


def measure(views: int, images: int = 64, repeats: int = 3) -> float:
    """Median images per CPU-second of decode + ``views`` crops at 224 px, one thread."""
    import numpy as np

    from jaxssl.benchmarks.augment import peer_like_jpegs
    from jaxssl.data.tfds_images import HostCropReader
    jpegs = peer_like_jpegs()
    reader = HostCropReader([{"image": j, "label": 0} for j in jpegs], image_size=224,
                            mode="random", num_views=views, num_threads=1)
    try:
        reader(np.arange(4) % len(jpegs), seed=0, step=0)  # warm up the pool
        rates = []
        for rep in range(repeats):
            cpu = time.process_time()
            reader(np.arange(images) % len(jpegs), seed=0, step=rep + 1)
            rates.append(images / (time.process_time() - cpu))
    finally:
        reader.close()
    return statistics.median(rates)


if __name__ == "__main__":
    for v in (1, 2):
        print(f"decode + {v} random-resized crop(s) at 224 px: {measure(v):.0f} img/s per core",
              flush=True)
