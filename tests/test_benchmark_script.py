"""Plumbing of scripts/benchmark.py (its figures are printed by the script, never asserted)."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", os.path.join(ROOT, "scripts", "benchmark.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmark"] = module  # dataclasses resolve the module by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["simclr_r18_cifar", "simclr_r50_224", "mocov2_r50_224",
                                  "mocov3_vitb16_pipeline", "mae_vitb16", "byol_r50_224",
                                  "dino_vits16_multicrop"])
def test_image_workloads_build_valid_configs_from_the_presets(name):
    bench = load_benchmark()
    c = bench.WORKLOADS[name].build(4, "bfloat16")
    bench.apply_overrides(c, ["model.remat=full", "train.log_every_steps=7"])
    assert (c.data.name, c.model.dtype, c.model.remat, c.train.batch_size,
            c.train.log_every_steps) == ("synthetic", "bfloat16", "full", 4, 7)
    from jaxssl import methods
    methods.validate_config(c, num_devices=1, num_processes=1)


def test_ntxent_table_blockwise_equals_direct_on_8_devices(tmp_path):
    out = tmp_path / "ntxent.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "benchmark.py"), "--ntxent-table",
                        "--ntxent-batches", "64,128", "--ntxent-block", "48", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(out.read_text())["ntxent"]
    assert [(x["global_batch"], x["form"], x["devices"]) for x in rows] == [
        (64, "direct", 8), (64, "blockwise", 8), (128, "direct", 8), (128, "blockwise", 8)]
    for x in rows[1::2]:
        assert x["loss_diff_vs_direct"] < 1e-5 and x["max_grad_rel_diff_vs_direct"] < 1e-4, x
    assert all(x["mem_gib_per_device"] > 0 and x["time_ms"] > 0 for x in rows)
    assert "global batch | views | devices | form" in r.stdout


def test_premade_views_wrapper_returns_the_batch_views_and_keeps_the_method():
    from jaxssl import train
    from jaxssl.benchmarks import steps
    bench = load_benchmark()
    setup = train.Setup(bench.WORKLOADS["simclr_r18_cifar"].build(8, "float32"))
    original = type(setup.method)
    steps.use_premade_views(setup)
    assert isinstance(setup.method, original) and isinstance(setup.method, steps.PremadeViews)
    import numpy as np
    views = np.arange(8 * 2 * 32 * 32 * 3, dtype=np.float32).reshape(8, 2, 32, 32, 3)
    a, b = setup.method.two_views({"views": views}, step=0)
    assert (a == views[:, 0]).all() and (b == views[:, 1]).all()


def test_missing_peer_says_how_to_install_it(tmp_path):
    from jaxssl.benchmarks import peers, workloads
    peer = workloads.SIMCLR_PEERS[0]
    res = peers.run_peer(peer, peer.args(8, 1, "float32"), str(tmp_path))
    assert res.items_per_s is None
    assert res.note == f"peer not installed: run PEERS_DIR={tmp_path} bash scripts/setup_peers.sh torch"
    default = peers.run_peer(peer, [], str(tmp_path), default_dir=str(tmp_path))
    assert default.note == "peer not installed: run bash scripts/setup_peers.sh torch"


def test_benchmark_code_names_no_path_outside_the_repository():
    files = [os.path.join(ROOT, "scripts", "benchmark.py"), os.path.join(ROOT, "scripts", "setup_peers.sh")]
    for folder, _, names in os.walk(os.path.join(ROOT, "jaxssl", "benchmarks")):
        files += [os.path.join(folder, n) for n in names if n.endswith(".py")]
    for path in files:
        text = open(path).read()
        assert "../shared" not in text and "shared/peers" not in text, path
    from jaxssl.benchmarks import peers, workloads
    scripts = {p.script for w in workloads.WORKLOADS.values() for p in w.peers}
    assert scripts == {"torch_simclr_step.py", "torch_mlm_step.py", "flax_mlm_step.py"}
    assert all(os.path.isfile(os.path.join(peers.SCRIPTS_DIR, s)) for s in scripts | {"lightly_augment.py"})


@pytest.mark.slow
def test_cpu_quick_runs_every_table_and_names_the_missing_peers(tmp_path):
    """--cpu-quick at a tiny batch, one timed step, with an empty peers folder, on one CPU
    device as a user runs it (not the tests' 8 fake devices)."""
    out, no_peers = tmp_path / "quick.json", tmp_path / "no_peers"
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                     if not f.startswith("--xla_force_host_platform_device_count"))
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="1", XLA_FLAGS=flags)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "benchmark.py"), "--cpu-quick",
                        "--batch", "4", "--steps", "1", "--peers", str(no_peers), "--json", str(out)],
                       capture_output=True, text=True, timeout=1200, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [x["workload"] for x in rows["train_steps"]] == [
        "simclr_r18_cifar vs torch_simclr_step.py", "simclr_r18_cifar_pipeline",
        "bert_base_mlm_t128 vs torch_mlm_step.py", "bert_base_mlm_t128 vs flax_mlm_step.py"]
    assert all(x["items_per_s"] > 0 and x["batch"] == 4 for x in rows["train_steps"])
    assert rows["train_steps"][0]["peer_note"] == (
        f"peer not installed: run PEERS_DIR={no_peers} bash scripts/setup_peers.sh torch")
    assert [x["workload"] for x in rows["augmentation"]] == ["aug_32", "aug_224", "aug_224_noblur"]
    assert "peer not installed: run" in r.stdout and "augmentation | jaxssl images/s/core" in r.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name,tiny", [
    ("byol_r50_224", ["data.image_size=32", "byol.projector_hidden_dim=64",
                      "byol.predictor_hidden_dim=64"]),
    ("dino_vits16_multicrop", ["data.image_size=32", "dino.local_crop_size=16",
                               "model.vit_depth=1", "model.patch_size=8", "dino.out_dim=64"])])
def test_new_method_workloads_run_one_tiny_step_on_cpu(name, tiny):
    """The accelerator rows shrunk to CPU size: one jitted train step of the real method
    (BYOL on pre-made views through the benchmark's wrapper; DINO's multi-crop in the step)."""
    import jax
    import numpy as np

    from jaxssl import train, train_state
    from jaxssl.benchmarks import steps
    bench = load_benchmark()
    workload = bench.WORKLOADS[name]
    c = workload.build(4, "float32")
    bench.apply_overrides(c, tiny + ["mesh.num_devices=1", "optim.warmup_epochs=0.0"])
    setup = train.Setup(c)
    if workload.inputs == "views":
        steps.use_premade_views(setup)
    batch = steps.fixed_batch(setup, workload.inputs)
    state = train_state.create(setup.init_fn, setup.tx, setup.mesh)
    step_fn = jax.jit(train.make_train_step(setup.method, setup.tx, setup.lr_fn))
    state, metrics = step_fn(state, batch)
    assert np.isfinite(float(metrics["loss"]))
