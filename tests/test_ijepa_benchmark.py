"""The I-JEPA ViT-H/14 benchmark row: a valid config from the preset, and one tiny step on CPU."""
import importlib.util
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", os.path.join(ROOT, "scripts", "benchmark.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmark"] = module  # dataclasses resolve the module by name
    spec.loader.exec_module(module)
    return module


def test_ijepa_workload_builds_a_valid_config_from_the_preset():
    bench = load_benchmark()
    c = bench.WORKLOADS["ijepa_vith14"].build(4, "bfloat16")
    bench.apply_overrides(c, ["model.remat=full"])
    assert (c.data.name, c.model.backbone, c.model.patch_size, c.data.image_size,
            c.model.dtype, c.model.remat) == ("synthetic", "vit_huge", 14, 224, "bfloat16", "full")
    from jaxssl import methods
    methods.validate_config(c, num_devices=1, num_processes=1)


@pytest.mark.slow
def test_ijepa_workload_runs_one_tiny_step_on_cpu():
    import jax

    from jaxssl import train, train_state
    from jaxssl.benchmarks import steps
    bench = load_benchmark()
    workload = bench.WORKLOADS["ijepa_vith14"]
    c = workload.build(4, "float32")
    bench.apply_overrides(c, ["data.image_size=112", "model.vit_depth=1", "model.vit_hidden_dim=64",
                              "model.vit_num_heads=4", "ijepa.predictor_depth=1",
                              "ijepa.predictor_dim=32", "ijepa.min_keep=4", "mesh.num_devices=1",
                              "optim.warmup_epochs=0.0"])
    setup = train.Setup(c)
    batch = steps.fixed_batch(setup, workload.inputs)
    state = train_state.create(setup.init_fn, setup.tx, setup.mesh)
    step_fn = jax.jit(train.make_train_step(setup.method, setup.tx, setup.lr_fn))
    state, metrics = step_fn(state, batch)
    assert np.isfinite(float(metrics["loss"]))
