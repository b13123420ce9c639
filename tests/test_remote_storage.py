"""A run whose workdir is ``gs://...``: everything lands in the bucket, nothing on local disk.

The bucket is served by a local Google Cloud Storage emulator (the ``gcp-storage-emulator``
package, in-memory, in a child process on a free port) that every client of a run is pointed
at: gcsfs through ``STORAGE_EMULATOR_HOST`` (etils.epath with ``EPATH_USE_TF=false``: metrics,
JSON files, the probe, exports), google-cloud-storage through the same variable (orbax lists
steps with it) and tensorstore's ``gcs`` driver (the checkpoint arrays) through
``TENSORSTORE_GCS_HTTP_URL`` + ``GOOGLE_AUTH_TOKEN_FOR_TESTING``. No network is used.

What is checked: paths are resolved without touching the working directory; an unreachable
bucket fails in one line within the probe's time limit, before any device work; checkpoints
save, verify, restore, skip an unfinished step and quarantine a damaged one inside the
bucket; metrics.jsonl and TensorBoard events are appended to across a resume. The slow test
runs the command line end to end: pretrain, SIGKILL, resume bit for bit, evaluate, export.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

import drill_helpers

import importlib.util

if not all(importlib.util.find_spec(m) for m in ("gcp_storage_emulator", "gcsfs")):
    pytest.skip("needs the 'test' extra: gcp-storage-emulator, gcsfs", allow_module_level=True)

BUCKET = "jaxssl-test"

# The emulator, with what tensorstore's gcs driver relies on and the package leaves out:
# media reads carry the object's generation (x-goog-generation) and honour the
# ifGenerationMatch / ifGenerationNotMatch preconditions (412 / 304), and media uploads
# honour ifGenerationMatch (0: only if absent), as GCS does.
EMULATOR_MAIN = r"""
import sys
from http import HTTPStatus
from gcp_storage_emulator import __main__ as emulator
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

def _generation(storage, bucket, name):
    try:
        return str(storage.get_file_obj(bucket, name)["generation"])
    except NotFound:
        return "0"

def _failed(request, current):
    match = request.query.get("ifGenerationMatch")
    if match is not None and match[0] != current:
        return HTTPStatus.PRECONDITION_FAILED
    not_match = request.query.get("ifGenerationNotMatch")
    if not_match is not None and not_match[0] == current and request.method == "GET":
        return HTTPStatus.NOT_MODIFIED
    return None

def _wrap_read(read):
    def download(request, response, storage, *args, **kwargs):
        current = _generation(storage, request.params["bucket_name"], request.params["object_id"])
        status = _failed(request, current)
        if status is not None:
            response.status = status
            return None
        if current != "0":
            response["x-goog-generation"] = current
            response["x-goog-metageneration"] = "1"
        return read(request, response, storage, *args, **kwargs)
    return download

def _wrap_upload(upload):
    def media_upload(request, response, storage, *args, **kwargs):
        status = _failed(request, _generation(storage, request.params["bucket_name"],
                                              request.query["name"][0]))
        if status is not None:
            response.status = status
            return None
        return upload(request, response, storage, *args, **kwargs)
    return media_upload

objects.download = _wrap_read(objects.download)
objects._media_upload = _wrap_upload(objects._media_upload)
emulator.main(sys.argv[1:])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emulator_env(url: str) -> dict:
    """The variables that point every storage client of a run at ``url``."""
    # GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false: gcsfs's plain client (its default one asks a
    # gRPC control API for the bucket type, which the emulator does not serve).
    return {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator", "GOOGLE_CLOUD_PROJECT": "jaxssl-test",
            "EPATH_USE_TF": "false", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


def _clear_client_caches() -> None:
    """Clients cached by a previous configuration would keep talking to it."""
    import gcsfs
    from etils.epath import backend, gpath
    from orbax.checkpoint._src.path import gcs_utils

    gpath._is_tf_installed.cache_clear()  # noqa: SLF001 - reads EPATH_USE_TF once
    backend.fsspec_backend._get_filesystem.cache_clear()  # noqa: SLF001
    gcsfs.GCSFileSystem.clear_instance_cache()
    gcs_utils.get_bucket.cache_clear()


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """``(url, fs)``: a running emulator with bucket ``BUCKET`` and a gcsfs client for it; the
    variables of :func:`emulator_env` are set in this process for the module's tests."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("emulator") / "emulator.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", EMULATOR_MAIN, "start",
                             "--host", "127.0.0.1", "--port", str(port), "--in-memory",
                             "--default-bucket", BUCKET, "--quiet"],
                            stdout=log, stderr=subprocess.STDOUT)
    saved = {k: os.environ.get(k) for k in emulator_env(url)}
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b/{BUCKET}", timeout=2).read()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the storage emulator did not start on {url}")
                time.sleep(0.2)
        os.environ.update(emulator_env(url))
        import gcsfs  # after GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT is set (read on import)
        _clear_client_caches()
        # The emulator (from STORAGE_EMULATOR_HOST); no listing cache: jaxssl writes beside it.
        yield url, gcsfs.GCSFileSystem(skip_instance_cache=True, use_listings_cache=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _clear_client_caches()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()


def _tiny_state(value: float = 1.0):
    import jax.numpy as jnp
    return {"params": {"w": jnp.full((4, 3), value, jnp.float32)},
            "step": jnp.asarray(3, jnp.int32)}


# ----------------------------------------------------------------------------- paths
def test_resolve_keeps_urls_and_makes_local_paths_absolute(tmp_path, monkeypatch):
    from jaxssl import paths
    monkeypatch.chdir(tmp_path)
    assert str(paths.resolve("runs/x")) == os.path.join(str(tmp_path), "runs", "x")
    assert not paths.is_remote(paths.resolve("runs/x"))
    for url in ("gs://bucket/runs/x", "s3://bucket/x"):
        p = paths.resolve(url)
        assert str(p) == url and paths.is_remote(p) and paths.scheme(p) == url[:2]
        assert str(p / "checkpoints" / "4") == url + "/checkpoints/4"
    with pytest.raises(paths.StorageError, match=r"http://.*not supported"):
        paths.resolve("http://host/x")
    paths.makedirs(paths.resolve("gs://bucket/runs/x"))  # no folder on an object store
    assert os.listdir(tmp_path) == []


def test_checkpoints_refuse_schemes_orbax_cannot_write(tmp_path, monkeypatch):
    from jaxssl import checkpoint
    monkeypatch.chdir(tmp_path)
    with pytest.raises(checkpoint.CheckpointSaveError, match=r"s3://.*gs://BUCKET"):
        checkpoint.check_workdir("s3://bucket/x")
    assert os.listdir(tmp_path) == []


def test_unreachable_bucket_fails_in_one_line_before_any_device_work(tmp_path):
    """The command line on a gs:// workdir whose storage does not answer (a closed port):
    exit 1 within the probe's limit, one line naming the path, the scheme and what to check,
    no local folder named 'gs:', no device initialised."""
    dead = f"http://127.0.0.1:{_free_port()}"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = drill_helpers.child_env(1, None, **emulator_env(dead), JAXSSL_STORAGE_CHECK_TIMEOUT_S=4)
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "jaxssl.main", f"--config={drill_helpers.CONFIG}",
         "--workdir=gs://some-bucket/x", "--config.train.num_steps=3"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.time() - start
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    line = errors[0]
    assert "--workdir=gs://some-bucket/x (gs://)" in line and "credentials" in line, line
    assert "no answer within 4 s" in line or "cannot write a probe" in line, line
    assert "jaxssl" not in proc.stdout  # the run's first line (mesh, devices) never printed
    assert elapsed < 60, elapsed
    assert os.listdir(cwd) == []


# ----------------------------------------------------------------------------- on the emulator
def test_probe_checkpoints_quarantine_and_init_from_inside_the_bucket(gcs, tmp_path, monkeypatch):
    import jax

    from jaxssl import checkpoint, paths
    url, fs = gcs
    monkeypatch.chdir(tmp_path)
    workdir = f"gs://{BUCKET}/unit/ckpt"
    assert str(checkpoint.check_workdir(workdir)) == workdir
    assert not [p for p in fs.find(f"{BUCKET}/unit") if ".jaxssl-probe" in p]  # cleaned up

    ckpt = checkpoint.Checkpointer(workdir, max_to_keep=5, async_save=False)
    for step, value in ((2, 1.0), (4, 2.0)):
        ckpt.save(step, _tiny_state(value))
    ckpt.wait()
    assert ckpt.all_steps() == [2, 4]
    assert fs.exists(f"{BUCKET}/unit/ckpt/checkpoints/4/commit_success.txt")
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                           sharding=x.sharding), _tiny_state())
    restored = ckpt.restore(4, abstract)
    np.testing.assert_array_equal(np.asarray(restored["params"]["w"]), np.full((4, 3), 2.0))
    ckpt.close()

    # init_from resolution: a workdir URL, its checkpoints folder, a step folder.
    for given, expected in ((workdir, 4), (workdir + "/checkpoints", 4),
                            (workdir + "/checkpoints/2", 2)):
        directory, step = checkpoint.resolve(given)
        assert (str(directory), step) == (workdir + "/checkpoints", expected)
    tree, meta = checkpoint.load_tree(workdir + "/checkpoints/2")
    assert meta["step"] == 2 and float(np.asarray(tree["params"]["w"])[0, 0]) == 1.0

    # An unfinished step (no commit_success.txt, as a save killed midway leaves on GCS) is
    # removed on open and never listed; a damaged step moves to corrupt_checkpoints/.
    fs.pipe(f"{BUCKET}/unit/ckpt/checkpoints/6/state/junk", b"partial")
    for f in fs.find(f"{BUCKET}/unit/ckpt/checkpoints/4/state"):
        if "/d/" in f:
            fs.pipe(f, b"\0" * 8)
    ckpt = checkpoint.Checkpointer(workdir, max_to_keep=5, async_save=False)
    assert not fs.exists(f"{BUCKET}/unit/ckpt/checkpoints/6")
    assert ckpt.all_steps() == [2, 4]
    step, state = ckpt.restore_latest(abstract, fallback=True)
    ckpt.close()
    assert step == 2 and float(np.asarray(state["params"]["w"])[0, 0]) == 1.0
    moved = fs.ls(f"{BUCKET}/unit/ckpt/corrupt_checkpoints")
    assert len(moved) == 1 and os.path.basename(moved[0]).startswith("4-")
    assert fs.exists(moved[0] + "/commit_success.txt")
    assert not fs.exists(f"{BUCKET}/unit/ckpt/checkpoints/4")
    assert paths.resolve(workdir).exists() and os.listdir(tmp_path) == []


def _records(data: bytes) -> list[bytes]:
    """The payloads of a TFRecord file (TensorBoard's event format), framing checked."""
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        out.append(data[i + 12:i + 12 + n])
        i += 12 + n + 4
    assert i == len(data)
    return out


def test_metrics_and_run_info_are_appended_in_the_bucket_across_a_resume(gcs, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")  # the 'test' extra installs it
    from tensorboard.compat.proto import event_pb2

    from jaxssl import metrics, run_info
    url, fs = gcs
    monkeypatch.chdir(tmp_path)
    workdir = f"gs://{BUCKET}/unit/metrics"
    config = drill_helpers.load_config()
    for start, steps in enumerate(((1, 2), (2, 3))):  # a run, then its resume from step 2
        run_info.record_start(workdir, config)
        writer = metrics.MetricWriter(workdir, flush_every_s=3600.0)
        for s in steps:
            writer.write(s, {"loss": 1.0 / s})
        writer.flush()
        rows = [json.loads(ln) for ln in fs.cat(f"{BUCKET}/unit/metrics/metrics.jsonl").splitlines()]
        assert [r["step"] for r in rows] == [1, 2, 2, 3][:2 * (start + 1)]
        writer.close()
    assert json.loads(fs.cat(f"{BUCKET}/unit/metrics/config.json")) == \
        json.loads(run_info.config_json(config))
    assert len(json.loads(fs.cat(f"{BUCKET}/unit/metrics/run_info.json"))["starts"]) == 2
    events = fs.ls(f"{BUCKET}/unit/metrics/tensorboard")  # one file per start
    assert len(events) == 2
    parsed = [event_pb2.Event.FromString(r) for e in sorted(events) for r in _records(fs.cat(e))]
    assert [e.file_version for e in parsed if e.file_version] == ["brain.Event:2"] * 2
    assert [(e.step, e.summary.value[0].simple_value) for e in parsed if e.summary.value] == \
        [(1, 1.0), (2, 0.5), (2, 0.5), (3, pytest.approx(1 / 3))]
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- end to end
def _logged_up_to(fs, root: str) -> int:
    """The last step in ``root/metrics.jsonl`` in the bucket (0 before the first upload)."""
    if not fs.exists(f"{root}/metrics.jsonl"):
        return 0
    return max([json.loads(ln)["step"] for ln in fs.cat(f"{root}/metrics.jsonl").splitlines()],
               default=0)


RUN = {"model.backbone": "resnet18", "model.stem": "cifar", "data.image_size": 8,
       "train.batch_size": 16, "train.num_steps": 12, "train.checkpoint_every_steps": 4,
       "train.log_every_steps": 1, "optim.warmup_epochs": 0.0, "eval.batch_size": 64}


@pytest.mark.slow
def test_pretrain_kill_resume_evaluate_export_on_gcs(gcs, tmp_path):
    """The command line with --workdir=gs://...: SIGKILL after a checkpoint, rerun, final
    state bit-identical to an uninterrupted run; scripts/evaluate.py and scripts/export.py
    on the same URL; every file in the bucket and the working directory left empty."""
    url, fs = gcs
    cwd, logs = tmp_path / "cwd", tmp_path / "logs"
    cwd.mkdir()
    logs.mkdir()
    env = drill_helpers.child_env(2, str(tmp_path / "jax_cache"), **emulator_env(url),
                                  JAXSSL_REMOTE_FLUSH_S=1)
    ref, split = f"gs://{BUCKET}/e2e/ref", f"gs://{BUCKET}/e2e/split"

    def run(argv, name, timeout=300):
        with open(logs / f"{name}.log", "w") as log:
            p = subprocess.run(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                               timeout=timeout)
        text = (logs / f"{name}.log").read_text()
        assert p.returncode == 0, drill_helpers.tail(text, 40)
        return text

    run(drill_helpers.main_argv(ref, RUN), "ref")
    proc = subprocess.Popen(drill_helpers.main_argv(split, RUN), cwd=cwd, env=env,
                            stdout=open(logs / "killed.log", "w"), stderr=subprocess.STDOUT)
    try:
        # Killed once step 4 is checkpointed and its log row uploaded (rows wait at most
        # JAXSSL_REMOTE_FLUSH_S in memory: a kill -9 may lose that much of the log).
        deadline = time.time() + 300
        while not (fs.exists(f"{BUCKET}/e2e/split/checkpoints/4/commit_success.txt")
                   and _logged_up_to(fs, f"{BUCKET}/e2e/split") >= 4):
            assert proc.poll() is None and time.time() < deadline, (logs / "killed.log").read_text()
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
    killed_at = _logged_up_to(fs, f"{BUCKET}/e2e/split")
    resumed = run(drill_helpers.main_argv(split, RUN), "resumed")
    assert f"resuming from {split}/checkpoints/" in resumed, drill_helpers.tail(resumed)

    # Bit for bit: every leaf of the final state (params, BN statistics, optimizer, step).
    assert drill_helpers.state_hashes(split) == drill_helpers.state_hashes(ref)
    rows = [json.loads(ln) for ln in fs.cat(f"{BUCKET}/e2e/split/metrics.jsonl").splitlines()]
    assert rows[-1]["step"] == 12 and {r["step"] for r in rows} == set(range(1, 13)), killed_at
    starts = json.loads(fs.cat(f"{BUCKET}/e2e/split/run_info.json"))["starts"]
    assert len(starts) == 2 and json.loads(fs.cat(f"{BUCKET}/e2e/split/config.json"))

    over = [f"--config.{k}={v}" for k, v in dict(drill_helpers.TINY, **RUN).items()]
    config = f"--config={drill_helpers.CONFIG}"
    evaluated = run([sys.executable, os.path.join(drill_helpers.ROOT, "scripts", "evaluate.py"),
                     config, f"--workdir={split}", *over], "evaluate")
    results = json.loads(fs.cat(f"{BUCKET}/e2e/split/eval_results_step12.json"))
    assert 0.0 <= results["simclr"]["knn_all"] <= 1.0, evaluated[-2000:]

    out = f"{split}/export/resnet18.safetensors"
    run([sys.executable, os.path.join(drill_helpers.ROOT, "scripts", "export.py"), config,
         f"--workdir={split}", "--format=torchvision", f"--out={out}", *over], "export")
    summary = json.loads(fs.cat(f"{BUCKET}/e2e/split/export/resnet18.safetensors.json"))
    assert summary["step"] == 12 and summary["source_path"] == "params/backbone"
    from safetensors.numpy import load
    from jaxssl.export import restore_variables
    tensors = load(fs.cat(f"{BUCKET}/e2e/split/export/resnet18.safetensors"))
    _, params, _ = restore_variables(split)
    np.testing.assert_array_equal(tensors["conv1.weight"],
                                  np.transpose(params["backbone"]["conv1"]["kernel"], (3, 2, 0, 1)))
    assert os.listdir(cwd) == []


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_share_the_bucket_and_new_hosts_resume_from_it(gcs, tmp_path):
    """2 processes (jax.distributed, 1 device each) on one gs:// workdir: both write their
    checkpoint shards, process 0 alone writes the logs and JSON files. Killed after a
    checkpoint, the run is resumed by a fresh single process (another "host set"), which
    finds it from the bucket alone."""
    url, fs = gcs
    cwd, logs = tmp_path / "cwd", tmp_path / "logs"
    cwd.mkdir()
    logs.mkdir()
    workdir, root = f"gs://{BUCKET}/mp/run", f"{BUCKET}/mp/run"
    over = {"train.num_steps": 24, "optim.warmup_epochs": 0.0}  # margin after the kill
    port = drill_helpers.free_port()
    procs = []
    try:
        for i in range(2):
            env = drill_helpers.child_env(1, str(tmp_path / "jax_cache"), **emulator_env(url),
                                          JAXSSL_REMOTE_FLUSH_S=1,
                                          JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                                          JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=i)
            procs.append(subprocess.Popen(
                drill_helpers.main_argv(workdir, over, "--distributed"), cwd=cwd, env=env,
                stdout=open(logs / f"p{i}.log", "w"), stderr=subprocess.STDOUT))
        deadline = time.time() + 400
        while not (fs.exists(f"{root}/checkpoints/8/commit_success.txt")
                   and _logged_up_to(fs, root) >= 8):
            assert all(p.poll() is None for p in procs) and time.time() < deadline, \
                [drill_helpers.tail((logs / f"p{i}.log").read_text()) for i in range(2)]
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(30)
    state = [os.path.basename(p) for p in fs.ls(f"{root}/checkpoints/8/state")]
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= set(state), state  # both wrote shards
    meta = json.loads(fs.cat(f"{root}/checkpoints/8/meta/metadata"))
    assert meta["process_count"] == 2
    starts = json.loads(fs.cat(f"{root}/run_info.json"))["starts"]
    assert len(starts) == 1 and starts[0]["process_count"] == 2  # written once, by process 0
    steps = [json.loads(ln)["step"] for ln in fs.cat(f"{root}/metrics.jsonl").splitlines()]
    assert steps == sorted(set(steps)), steps  # one row per step: process 0 alone logs
    probes = [p for p in fs.find(root) if ".jaxssl-probe" in p]
    assert probes == []

    env = drill_helpers.child_env(2, str(tmp_path / "jax_cache"), **emulator_env(url))
    with open(logs / "resumed.log", "w") as log:
        rc = subprocess.run(drill_helpers.main_argv(workdir, over), cwd=cwd, env=env,
                            stdout=log, stderr=subprocess.STDOUT, timeout=400).returncode
    text = (logs / "resumed.log").read_text()
    assert rc == 0, drill_helpers.tail(text, 40)
    assert f"resuming from {workdir}/checkpoints/" in text
    assert 24 in [int(os.path.basename(p)) for p in fs.ls(f"{root}/checkpoints")
                  if os.path.basename(p).isdigit()]
    assert len(json.loads(fs.cat(f"{root}/run_info.json"))["starts"]) == 2
    assert os.listdir(cwd) == []
