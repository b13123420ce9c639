"""Data preparation (image folders, ImageNet's manual files), launch scripts, run pictures,
and the self-describing workdir.

The slow tests share one tiny run (module fixture): SimCLR pretrained for 3 steps on an image
folder made here and prepared with scripts/prepare_data.py, evaluated on its held-out split.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from jaxssl.config import load_preset
from jaxssl.data import image_folder, sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("ant", "bee", "cat")
PER_CLASS = 12
COLOURS = {"ant": (220, 30, 30), "bee": (30, 200, 40), "cat": (40, 60, 230)}


def _script(name: str, *args: str, env: dict | None = None, timeout: int = 600):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env=env if env is not None else dict(os.environ))


def make_folder(root, seed: int = 0):
    """3 classes x 12 PNGs of varying sizes: the class colour plus noise on a random patch."""
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        os.makedirs(root / name, exist_ok=True)
        for i in range(PER_CLASS):
            h, w = 16 + i, 20 + 2 * i
            image = np.empty((h, w, 3), np.uint8)
            image[:] = COLOURS[name]
            top, left = rng.integers(0, h - 6), rng.integers(0, w - 6)
            image[top:top + 6, left:left + 6] = rng.integers(0, 256, (6, 6, 3))
            Image.fromarray(image).save(root / name / f"img_{i:02d}.png")
    (root / "ant" / "notes.txt").write_text("not an image")
    return root


def digits_config(overrides: dict):
    """configs/simclr_digits.py with ``{'section.field': value}`` overrides."""
    return load_preset("simclr_digits", **{k.replace(".", "__"): v for k, v in overrides.items()})


# ----------------------------------------------------------------------------- image folder

def test_prepare_image_folder_layout_split_and_pixels(tmp_path):
    src = make_folder(tmp_path / "images")
    # A 24x16 image needs no resize at S=16; its centre crop is columns (24-16)//2 = 4 .. 19.
    stripes = np.zeros((16, 24, 3), np.uint8)
    stripes[:, :, 0] = np.arange(24, dtype=np.uint8)[None, :] * 10
    Image.fromarray(stripes).save(src / "cat" / "zz_stripes.png")
    out = tmp_path / "prepared"
    proc = _script("prepare_data.py", "image_folder", f"--src={src}", f"--data_dir={out}",
                   "--image_size=16")
    assert proc.returncode == 0, proc.stderr
    assert f"--config.data.data_dir={out}" in proc.stdout

    meta = json.load(open(out / "image_folder.json"))
    images, labels = np.load(out / "images.npy"), np.load(out / "labels.npy")
    n = 3 * PER_CLASS + 1
    assert images.shape == (n, 16, 16, 3) and images.dtype == np.uint8
    assert meta["classes"] == list(CLASSES)  # sorted sub-folder names; notes.txt ignored
    np.testing.assert_array_equal(np.bincount(labels), [12, 12, 13])
    # files in (class, name) order; the stripes image is the last of class 'cat'
    assert meta["files"][-1] == "cat/zz_stripes.png"
    np.testing.assert_array_equal(images[-1], stripes[:, 4:20])
    # plain-colour regions stay the class colour after resizing (corner pixel far from noise
    # is not guaranteed, so compare the per-image median colour)
    for k, name in enumerate(CLASSES):
        med = np.median(images[labels == k][:PER_CLASS].reshape(-1, 3), axis=0)
        np.testing.assert_allclose(med, COLOURS[name], atol=2)
    # Split rule: ceil(0.2 * 37) = 8 test images; quotas 2.4, 2.4, 2.6 -> floors 2, 2, 2;
    # the 2 left over go to the largest remainders: 'cat' (0.6), then 'ant' (0.4, lower class).
    train, test = np.asarray(meta["splits"]["train"]), np.asarray(meta["splits"]["test"])
    np.testing.assert_array_equal(np.bincount(labels[test], minlength=3), [3, 2, 3])
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(n))

    cfg = digits_config({"data.name": "image_folder", "data.data_dir": str(out)}).data
    src_train = sources.load_image_source(cfg, "pretrain")
    src_test = sources.load_image_source(cfg, "test")
    assert (src_train.num_examples, src_test.num_examples) == (n - 8, 8)
    assert src_train.on_device and src_test.num_classes == 3
    np.testing.assert_array_equal(src_test.images, images[test])
    np.testing.assert_array_equal(src_test.labels, labels[test])


def test_unlabelled_flat_folder_has_only_a_train_split(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(5):
        Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(flat / f"{i}.jpg")
    meta = image_folder.prepare_image_folder(str(flat), str(tmp_path / "out"), image_size=8)
    assert not meta["labelled"] and meta["splits"] == {"train": [0, 1, 2, 3, 4]}
    cfg = digits_config({"data.name": "image_folder", "data.data_dir": str(tmp_path / "out")}).data
    src = sources.load_image_source(cfg, "pretrain")
    assert src.labels is None and src.images.shape == (5, 8, 8, 3)
    np.testing.assert_array_equal(src.get(np.array([1, 3]), seed=0, step=0)["label"], [-1, -1])
    with pytest.raises(ValueError, match="eval.enabled=False"):
        sources.load_image_source(cfg, "test")


def test_image_folder_errors_name_the_fix(tmp_path):
    mixed = make_folder(tmp_path / "mixed")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(mixed / "stray.png")
    with pytest.raises(ValueError, match="--unlabelled"):
        image_folder.list_images(str(mixed))
    files, labels, classes = image_folder.list_images(str(mixed), unlabelled=True)
    assert len(files) == 3 * PER_CLASS + 1 and classes == [] and (labels == -1).all()
    cfg = digits_config({"data.name": "image_folder", "data.data_dir": str(tmp_path)}).data
    with pytest.raises(image_folder.ImageFolderNotPreparedError, match="prepare_data.py image_folder"):
        sources.load_image_source(cfg, "pretrain")
    cfg = digits_config({"data.name": "image_folder"}).data
    with pytest.raises(image_folder.ImageFolderNotPreparedError, match="data.data_dir=None"):
        sources.load_image_source(cfg, "pretrain")


def test_prepare_imagenet_says_where_the_manual_files_go(tmp_path):
    proc = _script("prepare_data.py", "imagenet2012", f"--data_dir={tmp_path}")
    assert proc.returncode == 2
    manual = os.path.join(str(tmp_path), "downloads", "manual")
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
        assert os.path.join(manual, name) in proc.stderr


# ----------------------------------------------------------------------------- a tiny run

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """SimCLR, small CNN, batch 16, 3 steps on a prepared 3-class image folder, eval on
    (a 1-device mesh: compiling for 8 fake devices costs more than the steps)."""
    root = tmp_path_factory.mktemp("eco")
    src = make_folder(root / "images")
    proc = _script("prepare_data.py", "image_folder", f"--src={src}",
                   f"--data_dir={root / 'prepared'}", "--image_size=16")
    assert proc.returncode == 0, proc.stderr
    config = digits_config({
        "data.name": "image_folder", "data.data_dir": str(root / "prepared"),
        "train.batch_size": 16, "train.num_epochs": 0.0, "train.num_steps": 3,
        "train.log_every_steps": 1, "optim.warmup_epochs": 0.0, "mesh.num_devices": 1,
        "eval.few_labels_per_class": 2, "eval.baselines": (), "eval.embedding_map": False})
    from jaxssl import train
    results = train.run(config, str(root / "run"))
    return root / "run", config, results


@pytest.mark.slow
def test_pretrain_on_prepared_image_folder(tiny_run):
    workdir, _, results = tiny_run
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    # NT-Xent of 2 x 16 views is near ln(2N - 1) = ln 31 at the start, and finite throughout
    assert all(np.isfinite(losses)) and abs(losses[0] - np.log(31)) < 1.0
    saved = json.load(open(workdir / "eval_results.json"))
    assert set(saved["simclr"]) == {"knn_2", "knn_all", "linear_2", "linear_all"}
    assert saved == json.loads(json.dumps(results))


@pytest.mark.slow
def test_run_workdir_is_self_describing(tiny_run):
    workdir, config, _ = tiny_run
    from jaxssl import run_info

    assert json.load(open(workdir / "config.json")) == json.loads(run_info.config_json(config))
    assert json.load(open(workdir / "config.json"))["data"]["name"] == "image_folder"
    start = json.load(open(workdir / "run_info.json"))["starts"][-1]
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown", start["jaxssl_git_revision"])
    import flax
    import optax
    assert start["packages"]["jax"] == jax.__version__
    assert start["packages"]["flax"] == flax.__version__
    assert start["packages"]["optax"] == optax.__version__
    assert start["packages"]["python"] == sys.version.split()[0]
    assert start["device_kind"] == jax.devices()[0].device_kind
    assert start["device_count"] == jax.device_count() == 8  # tests/conftest.py
    assert start["process_count"] == 1
    assert os.path.isdir(workdir / "checkpoints")


@pytest.mark.slow
def test_plot_run_writes_the_curves_png(tiny_run, tmp_path):
    pytest.importorskip("matplotlib", reason="plot_run needs matplotlib (pip install -e '.[plots]')")
    workdir, _, _ = tiny_run
    proc = _script("plot_run.py", str(workdir))
    assert proc.returncode == 0, proc.stderr
    with Image.open(workdir / "curves.png") as img:
        assert img.format == "PNG" and img.size == (1100, 750)
        grey = np.asarray(img.convert("L"))
    assert grey.std() > 10  # something is drawn, not a blank canvas
    out = tmp_path / "elsewhere" / "c.png"
    assert _script("plot_run.py", str(workdir), f"--out={out}").returncode == 0
    assert out.exists()


def test_plot_run_reports_a_missing_run(tmp_path):
    proc = _script("plot_run.py", str(tmp_path))
    assert proc.returncode == 1 and "metrics.jsonl" in proc.stderr


def test_metrics_reader_keeps_the_last_value_of_a_resumed_step(tmp_path):
    from jaxssl import plots

    rows = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}, {"step": 2, "loss": 2.4},
            {"step": 3, "loss": float("nan")}, {"step": 3, "eval/simclr/knn_all": 0.5}]
    (tmp_path / "metrics.jsonl").write_text(
        "\n".join(json.dumps(r) for r in rows) + '\n{"step": 4, "lo')  # truncated last line
    read = plots.read_metrics(str(tmp_path / "metrics.jsonl"))
    assert len(read) == 5
    steps, values = plots.series(read, "loss")
    np.testing.assert_array_equal(steps, [1, 2])
    np.testing.assert_array_equal(values, [3.0, 2.4])


def test_save_embedding_map_writes_side_by_side_panels(tmp_path):
    pytest.importorskip("matplotlib", reason="save_embedding_map needs matplotlib")
    from jaxssl import plots
    from jaxssl.data.digits import load_digits_source

    test = load_digits_source("test")
    x = test.images[:120].reshape(120, -1).astype(np.float32) / 255.0
    y = test.labels[:120]
    random = x @ np.random.default_rng(0).normal(size=(64, 16))
    path = plots.save_embedding_map({"pixels": (x, y), "random projection": (random, y)},
                                    str(tmp_path / "map.png"))
    with Image.open(path) as img:
        assert img.format == "PNG"
        width, height = img.size
    assert width > 1.8 * height  # two panels side by side
    with pytest.raises(ValueError, match="2 labels"):
        plots.save_embedding_map({"bad": (x[:5], y[:2])}, str(tmp_path / "bad.png"))


# ----------------------------------------------------------------------------- launchers

def test_launch_tpu_pod_runs_the_same_command_on_every_worker():
    proc = subprocess.run(
        ["bash", os.path.join(REPO, "scripts", "launch_tpu_pod.sh"), "my-v4-32",
         "--zone=us-central2-b", "--dry_run", "--", "--config=configs/simclr_imagenet.py",
         "--workdir=gs://bucket/runs/r50"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        'gcloud compute tpus tpu-vm ssh my-v4-32 --zone=us-central2-b --worker=all '
        '--command="cd jaxssl && python3 -m jaxssl.main --distributed '
        '--config=configs/simclr_imagenet.py --workdir=gs://bucket/runs/r50"')


def test_launch_multigpu_derives_ids_from_slurm(tmp_path):
    fake = tmp_path / "fake_python"
    fake.write_text('#!/bin/sh\necho "$JAX_COORDINATOR_ADDRESS $JAX_NUM_PROCESSES $JAX_PROCESS_ID $*"\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COORD", "JAX_NUM_P",
                                                                    "JAX_PROC", "SLURM_"))}
    env.update(PYTHON=str(fake), SLURM_PROCID="3", SLURM_NTASKS="8",
               SLURM_NODELIST="gpu[07-10],login1", PATH="/usr/bin:/bin")
    script = os.path.join(REPO, "scripts", "launch_multigpu.sh")
    proc = subprocess.run(["bash", script, "--config=c.py", "--workdir=w"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == \
        "gpu07:12355 8 3 -m jaxssl.main --distributed --config=c.py --workdir=w"
    del env["SLURM_PROCID"]
    proc = subprocess.run(["bash", script, "--config=c.py"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 2 and "JAX_PROCESS_ID is not set" in proc.stderr


@pytest.mark.parametrize("where", ["VIRTUAL_ENV", ".venv", "lacking"])
def test_launch_multigpu_runs_the_python_jaxssl_is_installed_in(tmp_path, where):
    """Without $PYTHON: the active environment's python, else the checkout's .venv (a fresh
    clone's test.sh / quickstart.sh create it and do not activate it); a python without
    jaxssl's dependencies stops the launcher with one line."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(os.path.join(REPO, "scripts", "launch_multigpu.sh"), checkout / "scripts")
    env_dir = tmp_path / "env" if where == "VIRTUAL_ENV" else checkout / ".venv"
    (env_dir / "bin").mkdir(parents=True)
    fake = env_dir / "bin" / "python"
    probe = "exit 1" if where == "lacking" else "exit 0"  # the launcher's dependency probe
    fake.write_text(f'#!/bin/sh\nif [ "$1" = -c ]; then {probe}; fi\necho "{where} $*"\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHON", "VIRTUAL_ENV", "CONDA_PREFIX") and not k.startswith("SLURM_")}
    env.update(JAX_COORDINATOR_ADDRESS="h:1", JAX_NUM_PROCESSES="1", JAX_PROCESS_ID="0",
               PATH="/usr/bin:/bin")
    if where == "VIRTUAL_ENV":
        env["VIRTUAL_ENV"] = str(env_dir)
    proc = subprocess.run(["bash", str(checkout / "scripts" / "launch_multigpu.sh"), "--config=c.py"],
                          capture_output=True, text=True, env=env, timeout=60)
    if where == "lacking":
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and f"error: {fake} lacks jaxssl's dependencies" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == f"{where} -m jaxssl.main --distributed --config=c.py"


@pytest.mark.slow
@pytest.mark.multiprocess
def test_launch_multigpu_local_two_cpu_processes(tmp_path):
    """2 processes x 1 CPU device, localhost coordinator, 3 SimCLR steps on digits."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "JAX_PLATFORMS")}
    workdir = tmp_path / "mp"
    proc = subprocess.run(
        ["bash", os.path.join(REPO, "scripts", "launch_multigpu.sh"), "--local", "2", "--cpu",
         "--config=configs/simclr_digits.py", f"--workdir={workdir}",
         "--config.train.num_steps=3", "--config.train.num_epochs=0",
         "--config.train.batch_size=16", "--config.train.log_every_steps=1",
         "--config.optim.warmup_epochs=0", "--config.eval.enabled=False"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "[p0] jaxssl simclr: mesh {'data': 2} of 2 cpu devices, 2 process(es), global batch 16 " \
           "(8 per process)" in out, out[-3000:]
    assert "[p0] step 3/3" in out
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3]  # written by process 0 only
    info = json.load(open(workdir / "run_info.json"))["starts"][-1]
    assert (info["process_count"], info["device_count"], info["local_device_count"]) == (2, 2, 1)
