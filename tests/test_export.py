"""Exports load into the PyTorch models and compute the same outputs as jaxssl.

References (independent of jaxssl): ``torchvision.models.resnet18/50``, timm's
``VisionTransformer``, transformers' ``BertForMaskedLM``. Each test builds a jaxssl module
with random variables of the shapes its ``init`` gives (every tensor random, BatchNorm running
statistics included, so that every mapped tensor matters), exports it, loads the export *strictly* into the PyTorch model
and compares the outputs on the same input.

Tolerance: 1e-4 absolute + 1e-4 relative, float32 on CPU (observed differences are ~1e-6:
summation order inside convolutions, matmuls and softmax).

The tests that need torch / torchvision / timm / transformers / safetensors skip with the
missing package named (CI installs none of them). To run them, use an environment with
PyTorch, e.g. a venv with ``pip install -e . torch torchvision timm safetensors transformers``
and ``python -m pytest tests/test_export.py -q`` in it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.export import find_subtree, hf_bert, timm as timm_export, torchvision as tv_export
from jaxssl.models.bert import BertConfig, BertForMLM
from jaxssl.models.resnet import resnet18, resnet50
from jaxssl.models.vit import VisionTransformer

ATOL = RTOL = 1e-4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _need(*modules):
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (not installed); run with a PyTorch environment, "
                    "e.g. ~/.cache/jaxssl-peers/vt/bin/python -m pytest tests/test_export.py")


def _random_variables(module, seed, *args, **kwargs):
    """Random variables of ``module`` with the shapes ``module.init(*args)`` would give (found
    by ``jax.eval_shape``: nothing is compiled): kernels and embeddings ~ N(0, 1 / fan_in),
    biases and LayerNorm/BN shifts ~ N(0, 0.1), scales ~ U(0.5, 1.5), BN running means
    ~ N(0, 0.1) and variances ~ U(0.5, 2). Every exported tensor then matters (no zero-init
    gammas, no zero biases)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))

    def draw(path, leaf):
        name, shape = str(path[-1].key), leaf.shape
        if name in ("kernel", "embedding"):
            fan_in = int(np.prod(shape[:-1])) if name == "kernel" else shape[-1]
            return rng.normal(0, fan_in ** -0.5, shape).astype(np.float32)
        if name in ("scale", "var"):
            return rng.uniform(0.5, 1.5 if name == "scale" else 2.0, shape).astype(np.float32)
        return rng.normal(0, 0.1, shape).astype(np.float32)  # bias, mean, cls_token, pos_embed

    return jax.tree_util.tree_map_with_path(draw, shapes)


# ----------------------------------------------------------------------------- no torch needed

def test_find_subtree_locates_nested_backbones():
    # MoCo v3 nests the backbone under params/encoder; SimCLR has it at params/backbone.
    moco_v3 = {"encoder": {"backbone": {"conv1": {}, "layer1_0": {}}, "projector": {"dense_0": {}}},
               "predictor": {"dense_0": {}}}
    path, _ = find_subtree(moco_v3, lambda n: "conv1" in n and "layer1_0" in n)
    assert path == ("encoder", "backbone")
    with pytest.raises(ValueError):
        find_subtree({"head": {"dense": {}}}, lambda n: "conv1" in n)


def test_resnet_keys_and_layouts_follow_torchvision_naming():
    v = _random_variables(resnet18(stem="cifar"), 0, jnp.zeros((1, 8, 8, 3)), train=False)
    sd = tv_export.resnet_state_dict(v["params"], v["batch_stats"], num_batches_tracked=7)
    # torchvision: 3x3 stem of 64 channels [out, in, kh, kw]; projection shortcut of stage 2.
    assert sd["conv1.weight"].shape == (64, 3, 3, 3)
    np.testing.assert_array_equal(sd["conv1.weight"][5, 2, 0, 1],
                                  np.asarray(v["params"]["conv1"]["kernel"])[0, 1, 2, 5])
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert sd["layer2.0.downsample.1.running_var"].shape == (128,)
    assert int(sd["layer4.1.bn2.num_batches_tracked"]) == 7
    assert not any(k.startswith("fc.") for k in sd)
    # 1 stem conv + 16 block convs + 3 downsample convs = 20 convs, each followed by a BN of
    # 5 tensors: 20 + 20 * 5 = 120 = len(torchvision resnet18 state dict) - 2 (fc).
    assert len(sd) == 120


def test_exports_refuse_what_torchvision_lacks():
    with pytest.raises(ValueError, match="model.backbone='small_cnn'"):
        tv_export.check_exportable("small_cnn")
    with pytest.raises(ValueError, match="model.width_multiplier=2"):
        tv_export.check_exportable("resnet50", 2)


# ----------------------------------------------------------------------------- torchvision

@pytest.mark.parametrize("arch,stem", [("resnet18", "imagenet"), ("resnet18", "cifar"),
                                       ("resnet50", "imagenet")])
def test_resnet_export_matches_torchvision(arch, stem):
    _need("torch", "torchvision")
    import torch

    model = {"resnet18": resnet18, "resnet50": resnet50}[arch](stem=stem)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
    v = _random_variables(model, 2, x, train=False)
    params, stats = v["params"], v["batch_stats"]
    expected = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(v, x))

    sd = tv_export.resnet_state_dict(params, stats)
    net = tv_export.build_torch_resnet(arch, stem)
    net.load_state_dict({k: torch.from_numpy(np.array(a)) for k, a in sd.items()}, strict=True)
    net.eval()
    with torch.no_grad():
        got = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    assert got.shape == expected.shape == (2, model.feature_dim)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)


# ----------------------------------------------------------------------------- timm

@pytest.mark.parametrize("pool,posemb", [("cls", "sincos2d"), ("gap", "learned")])
def test_vit_export_matches_timm(pool, posemb):
    _need("torch", "timm")
    import torch

    model = VisionTransformer(patch_size=8, hidden_dim=64, depth=2, num_heads=4, pool=pool,
                              posemb=posemb)
    x = np.random.default_rng(3).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    params = _random_variables(model, 4, x)["params"]
    expected = np.asarray(jax.jit(lambda p, x: model.apply({"params": p}, x))(params, x))

    kwargs = timm_export.timm_kwargs(params, image_size=32, num_heads=4, pool=pool)
    net = timm_export.build_timm_vit(**kwargs)
    sd = timm_export.vit_state_dict(params, image_size=32)
    net.load_state_dict({k: torch.from_numpy(np.array(a)) for k, a in sd.items()}, strict=True)
    net.eval()
    with torch.no_grad():
        got = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    assert got.shape == expected.shape == (2, 64)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)


# ----------------------------------------------------------------------------- Hugging Face

def test_bert_export_matches_hf_bert_for_masked_lm(tmp_path):
    _need("torch", "transformers", "safetensors")
    import torch
    import transformers

    cfg = BertConfig(vocab_size=97, hidden_size=32, num_layers=2, num_heads=4,
                     intermediate_size=64, max_position=16, hidden_dropout=0.0)
    model = BertForMLM(cfg)
    rng = np.random.default_rng(6)
    ids = rng.integers(0, cfg.vocab_size, (2, 12)).astype(np.int32)
    segments = (np.arange(12)[None] >= 6).astype(np.int32).repeat(2, 0)
    mask = np.ones((2, 12), np.int32)
    mask[1, 9:] = 0  # padding keys must be ignored by both
    params = _random_variables(model, 7, ids, segments, mask)["params"]
    expected = np.asarray(jax.jit(lambda p: model.apply({"params": p}, ids, segments, mask))(
        params))  # [2, 12, 97]

    out = hf_bert.save_pretrained(params, str(tmp_path / "hf"),
                                  hf_bert.hf_config(params, num_heads=4,
                                                    layer_norm_eps=cfg.layer_norm_eps))
    net = transformers.BertForMaskedLM.from_pretrained(out)
    net.eval()
    with torch.no_grad():
        got = net(input_ids=torch.from_numpy(ids).long(), token_type_ids=torch.from_numpy(segments).long(),
                  attention_mask=torch.from_numpy(mask).long()).logits.numpy()
    assert got.shape == expected.shape == (2, 12, 97)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)
    # every HF parameter came from the file: compare the loaded state with the export
    import safetensors.numpy
    stored = safetensors.numpy.load_file(os.path.join(out, hf_bert.SAFETENSORS_FILE))
    for k, a in net.state_dict().items():
        if k in stored:
            np.testing.assert_array_equal(a.numpy(), stored[k], err_msg=k)
    assert set(net.state_dict()) <= set(stored), set(net.state_dict()) - set(stored)


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_export_script_on_a_trained_run(tmp_path):
    """Pretrain ResNet-18 (CIFAR stem) for 1 step on 1 device, export with scripts/export.py, load the
    .pt into torchvision and compare with the restored checkpoint's features."""
    _need("torch", "torchvision")
    import torch

    from jaxssl import train
    from jaxssl.export import restore_variables
    from jaxssl.models.resnet import resnet18 as jax_resnet18

    workdir = str(tmp_path / "run")
    overrides = {"model.backbone": "resnet18", "model.stem": "cifar", "data.image_size": 8,
                 "train.batch_size": 8, "train.num_epochs": 0.0, "train.num_steps": 1,
                 "mesh.num_devices": 1,
                 "optim.warmup_epochs": 0.0, "eval.enabled": False}
    config = _digits_config(overrides)
    train.run(config, workdir)
    out = str(tmp_path / "resnet18.pt")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "export.py"),
                           "--config=" + os.path.join(REPO, "configs", "simclr_digits.py"),
                           *[f"--config.{k}={v}" for k, v in overrides.items()],
                           f"--workdir={workdir}", "--format=torchvision",
                           f"--out={out}"], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.load(open(out + ".json"))
    assert summary["step"] == 1 and summary["source_path"] == "params/backbone"
    assert summary["load"] == {"arch": "resnet18", "stem": "cifar", "in_chans": 1}

    step, params, model_state = restore_variables(workdir)
    x = np.random.default_rng(9).uniform(size=(3, 8, 8, 1)).astype(np.float32)
    expected = np.asarray(jax_resnet18(stem="cifar").apply(
        {"params": params["backbone"], "batch_stats": model_state["batch_stats"]["backbone"]},
        x, train=False))
    net = tv_export.build_torch_resnet("resnet18", "cifar", in_chans=1)
    net.load_state_dict(torch.load(out), strict=True)
    net.eval()
    with torch.no_grad():
        got = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)


def _digits_config(overrides: dict):
    """configs/simclr_digits.py with ``{'section.field': value}`` overrides."""
    spec = importlib.util.spec_from_file_location(
        "simclr_digits", os.path.join(REPO, "configs", "simclr_digits.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for key, value in overrides.items():
        section, field = key.split(".")
        config[section][field] = value
    return config
