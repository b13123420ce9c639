"""scripts/prepare_data.py image_folder: unreadable files skipped (or refused with --strict),
sharded ArrayRecord storage read by the host path, resumable, and bounded in memory."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxssl.config import load_preset
from jaxssl.data import image_folder, sources

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _prepare(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "scripts/prepare_data.py", "image_folder", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def _folder(root, per_class=20, size=12, broken=True):
    rng = np.random.default_rng(0)
    for c in ("ant", "bee", "cat"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(
                root / c / f"{i:03d}.png")
    if broken:  # a truncated JPEG, as a failed download leaves it
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "bee" / "b.jpg")
        data = (root / "bee" / "b.jpg").read_bytes()
        (root / "bee" / "broken.jpg").write_bytes(data[: len(data) // 3])
        (root / "bee" / "b.jpg").unlink()
    return root


@pytest.mark.parametrize("storage", ["arrays", "sharded"])
def test_an_unreadable_file_is_skipped_with_its_name_and_counted(tmp_path, storage):
    src = _folder(tmp_path / "photos")
    proc = _prepare(f"--src={src}", f"--data_dir={tmp_path / 'out'}", "--image_size=8",
                    f"--storage={storage}", "--shard_size=16")
    assert proc.returncode == 0, proc.stderr
    assert f"skipping {src / 'bee' / 'broken.jpg'}" in proc.stderr
    assert "skipped 1 unreadable" in proc.stdout + proc.stderr
    meta = json.loads((tmp_path / "out" / "image_folder.json").read_text())
    assert meta["skipped"] == ["bee/broken.jpg"] and meta["num_examples"] == 60
    assert "bee/broken.jpg" not in meta["files"]


def test_strict_refuses_an_unreadable_file_in_one_line(tmp_path):
    src = _folder(tmp_path / "photos")
    proc = _prepare(f"--src={src}", f"--data_dir={tmp_path / 'out'}", "--image_size=8", "--strict")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and "broken.jpg cannot be decoded" in lines[0], proc.stderr


def test_sharded_storage_holds_the_files_and_is_read_by_the_host_path(tmp_path):
    src = _folder(tmp_path / "photos", broken=False)
    out = tmp_path / "out"
    meta = image_folder.prepare_image_folder(str(src), str(out), image_size=8, storage="sharded",
                                             shard_size=16, log=lambda m: None)
    assert meta["storage"] == "sharded" and [s["count"] for s in meta["shards"]] == [16, 16, 16, 12]
    reader = image_folder.ShardedImages(str(out), meta["shards"], np.arange(60))
    for i in (0, 17, 59):  # the stored record is the file's bytes and its label
        record = reader[i]
        assert record["image"] == (src / meta["files"][i]).read_bytes()
        assert record["label"] == ("ant", "bee", "cat").index(meta["files"][i].split("/")[0])
    cfg = load_preset("simclr_digits")
    cfg.data.update(name="image_folder", data_dir=str(out), image_size=8)
    train = sources.load_image_source(cfg.data, "pretrain", num_views=2)
    test = sources.load_image_source(cfg.data, "test")
    assert not train.on_device and train.images is None and test.num_classes == 3
    assert train.num_examples + test.num_examples == 60
    batch = train.host_reader(np.arange(4), seed=0, step=0)
    assert batch["image"].shape == (4, 2, 8, 8, 3) and batch["label"].shape == (4,)
    centre = test.host_reader(np.arange(3), seed=0, step=0)
    assert centre["image"].shape == (3, 8, 8, 3)


def test_an_interrupted_sharded_preparation_resumes_at_the_unfinished_shard(tmp_path):
    src = _folder(tmp_path / "photos", broken=False)
    out = tmp_path / "out"
    image_folder.prepare_image_folder(str(src), str(out), image_size=8, storage="sharded",
                                      shard_size=16, log=lambda m: None)
    first = (out / "images-00000.array_record").stat().st_mtime_ns
    (out / "shard-00003.json").unlink()  # as if stopped while writing the last shard
    (out / "images-00003.array_record").unlink()
    logged = []
    meta = image_folder.prepare_image_folder(str(src), str(out), image_size=8, storage="sharded",
                                             shard_size=16, log=logged.append)
    assert (out / "images-00000.array_record").stat().st_mtime_ns == first
    assert logged == ["image_folder: shard 4/4 written (60/60 files, 0 skipped)"]
    assert meta["num_examples"] == 60


CAPPED = r"""
import json, os, resource, sys
from array_record.python import array_record_module  # noqa: F401 -- loaded before the cap
from PIL import Image, ImageOps  # noqa: F401
from jaxssl.data import image_folder
src, out, storage = sys.argv[1:4]
cap = int(sys.argv[4])
vm = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize")][0]
resource.setrlimit(resource.RLIMIT_AS, (vm + cap, vm + cap))
try:
    meta = image_folder.prepare_image_folder(src, out, image_size=512, storage=storage,
                                             shard_size=32, log=lambda m: None)
except MemoryError:
    print("MemoryError"); sys.exit(3)
print(json.dumps({"n": meta["num_examples"]}))
"""


@pytest.mark.slow
def test_a_folder_several_times_larger_than_the_memory_cap_is_prepared(tmp_path):
    src = tmp_path / "big"
    src.mkdir()
    yy, xx = np.mgrid[0:512, 0:512]
    for i in range(200):  # 200 x 512 x 512 x 3 = 150 MiB decoded; JPEG keeps the disk small
        image = np.stack([(xx + i) % 256, (yy * 2 + i) % 256, (xx + yy) % 256], -1).astype(np.uint8)
        Image.fromarray(image).save(src / f"{i:04d}.jpg", quality=80)
    cap = 40 << 20  # 40 MiB of address space beyond what the interpreter already holds
    env = dict(os.environ, MALLOC_ARENA_MAX="1", PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    run = lambda storage, out: subprocess.run(  # noqa: E731
        [sys.executable, "-c", CAPPED, str(src), str(tmp_path / out), storage, str(cap)],
        capture_output=True, text=True, env=env, timeout=600)
    sharded = run("sharded", "sharded")
    assert sharded.returncode == 0, sharded.stdout + sharded.stderr[-2000:]
    assert json.loads(sharded.stdout.strip().splitlines()[-1]) == {"n": 200}
    arrays = run("arrays", "arrays")  # the control: the in-memory format needs the 150 MiB
    assert arrays.returncode == 3 and "MemoryError" in arrays.stdout, arrays.stderr[-2000:]


@pytest.mark.slow
def test_training_runs_on_a_sharded_folder(tmp_path):
    src = _folder(tmp_path / "photos", size=16)
    out = tmp_path / "out"
    assert _prepare(f"--src={src}", f"--data_dir={out}", "--storage=sharded").returncode == 0
    proc = subprocess.run(
        [sys.executable, "-m", "jaxssl.main", "--config=configs/simclr_digits.py",
         f"--workdir={tmp_path / 'run'}", "--config.data.name=image_folder",
         f"--config.data.data_dir={out}", "--config.data.image_size=16",
         "--config.train.num_steps=2", "--config.train.num_epochs=0",
         "--config.train.batch_size=16", "--config.eval.enabled=False",
         "--config.optim.warmup_epochs=0"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.isdir(tmp_path / "run" / "checkpoints" / "2")
