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
                                  "mocov3_vitb16_pipeline", "mae_vitb16"])
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
