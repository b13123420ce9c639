"""``jaxssl.plan`` / ``scripts/plan.py``: a preset's real step compiled by the TPU compiler for
a small slice (libtpu, on this CPU), the slice names, the collective parser, and the one-line
errors (unknown slice, no libtpu, does not fit)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jaxssl import plan as plan_lib
from jaxssl.config import load_preset
from jaxssl.plan import topology as topo_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the digits SimCLR preset, one global batch of 64 (16 per v4 chip), a few steps
SMALL = dict(train__batch_size=64, train__num_steps=10, train__num_epochs=0.0,
             optim__warmup_epochs=0.0, eval__enabled=False)


def test_slice_names_map_to_libtpu_topologies():
    cases = {"v3-128": ("v3:8x8", 64, 128, 16), "v2-8": ("v2:2x2", 4, 8, 1),
             "v4-32": ("v4:2x2x4", 16, 16, 4), "v5p-128": ("v5:4x4x4", 64, 64, 16),
             "v5litepod-16": ("v5e:4x4", 16, 16, 2), "v6e-16": ("v6e:4x4", 16, 16, 4),
             "v4:2x2x1": ("v4:2x2x1", 4, 4, 1)}
    for name, (libtpu, chips, devices, hosts) in cases.items():
        t = topo_lib.resolve(name)
        assert (t.libtpu_name, t.num_chips, t.num_devices, t.num_hosts) == \
            (libtpu, chips, devices, hosts), name
    assert topo_lib.resolve("v4-32").topology_options()["chip_config_name"] == "megacore"
    assert "v5litepod-256" in topo_lib.cloud_names() and "v3-2048" not in topo_lib.cloud_names()


def test_collectives_are_counted_with_their_bytes():
    hlo = "\n".join([
        "  %all-reduce.1 = f32[1024]{0} all-reduce(f32[1024]{0} %p), replica_groups={}",
        "  %all-reduce.2 = (f32[10]{0}, bf16[4,4]{1,0}) all-reduce(%a, %b), to_apply=%add",
        "  %ag = (bf16[8]{0}, bf16[64]{0}) all-gather-start(bf16[8]{0} %x), dimensions={0}",
        "  %agd = bf16[64]{0} all-gather-done(%ag)",
        "  %rs = f32[2,8]{1,0} reduce-scatter(f32[16,8]{1,0} %g), dimensions={0}",
    ])
    got = plan_lib.collectives(hlo)
    assert got == {"all-reduce": {"count": 2, "bytes": 4096 + 40 + 32},
                   "all-gather": {"count": 1, "bytes": 128},
                   "reduce-scatter": {"count": 1, "bytes": 64}}


def _plan(**overrides):
    return plan_lib.plan(load_preset("simclr_digits", **dict(SMALL, **overrides)), "v4:2x2x1",
                         log=lambda s: None)


@pytest.mark.slow  # two TPU compiles (~30 s each on 2 cores)
def test_small_preset_compiles_for_a_v4_slice_and_fsdp_divides_the_state():
    rep = _plan()
    assert rep.topology.num_devices == 4 and rep.device_kind == "TPU v4"
    assert rep.flops > 0 and rep.bytes_accessed > 0 and rep.temp_bytes > 0
    assert rep.args["params"] > 0 and rep.args["batch"] >= 64 * 8 * 8 // 4
    assert rep.collectives.get("all-reduce", {}).get("count", 0) > 0  # gradients, BN statistics
    assert rep.fits and rep.step_seconds > 0
    lines = plan_lib.report_lines(rep)
    assert lines[-1].startswith("fits: ") and " GiB per device" in lines[-1]
    fsdp = _plan(mesh__param_sharding="fsdp")
    state = lambda p: p.args["params"] + p.args["optimizer state"]  # noqa: E731
    assert state(fsdp) <= state(rep) / 3  # 4 devices: about a quarter


def _script(*args, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "plan.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env=dict(os.environ, **(env or {})))


def test_unknown_topology_is_one_line_listing_the_names():
    r = _script("--config=configs/simclr_digits.py", "--topology=v4-33")
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "v4-33" in err[0] and "v3-128" in err[0] and "v4:2x2x4" in err[0]


def test_missing_libtpu_is_one_line_with_the_install_command(tmp_path):
    # a `libtpu` that cannot be found: a package shadowing it without a spec
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import importlib.util as u\n_f = u.find_spec\n"
                       "u.find_spec = lambda n, *a, **k: None if n == 'libtpu' else _f(n, *a, **k)\n")
    r = _script("--config=configs/simclr_digits.py", "--topology=v4-8",
                env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "pip install -e '.[tpu]'" in err[0]


@pytest.mark.slow  # a TPU compile
def test_a_plan_that_does_not_fit_exits_1_naming_the_levers():
    # 49152 CIFAR images on one v5e chip (16 GiB): the 98304-square similarity matrix alone is
    # 36 GiB; the TPU compiler refuses it and the plan says so
    r = _script("--config=configs/simclr_cifar10.py", "--topology=v5e:1x1",
                "--config.train.batch_size=49152", "--config.train.num_steps=1",
                "--config.eval.enabled=False", "--config.model.dtype=float32",
                "--config.model.backbone=small_cnn", "--config.optim.warmup_epochs=0")
    assert r.returncode == 1, r.stdout + r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("does not fit: ") and " of 16.00 GiB per device; try " in last
    assert "param_sharding=fsdp" in last and "remat=full" in last
    assert "smaller per-device batch" in last and "bfloat16" in last
