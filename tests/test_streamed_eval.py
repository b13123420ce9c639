"""Evaluation at paper scale: streamed feature extraction, every example once, every preset.

* ``data.in_memory=False`` reads each eval batch on the host through the source's reader
  (the ImageNet path) and must give exactly the kNN and L-BFGS numbers of ``True``.
* ``scripts/evaluate.py``'s path (``train.evaluate_checkpoint``) completes for
  every ImageNet and CIFAR preset under ``tfds.testing.mock_data``, counting each
  validation example once (slow: one short run per preset).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from jaxssl import checkpoint, train
from jaxssl.config import load_preset
from jaxssl.evaluators.representation import RepresentationEvaluator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(train__batch_size=64, train__num_steps=3, train__num_epochs=0.0,
            train__checkpoint_every_steps=3, train__log_every_steps=3, eval__enabled=False,
            optim__warmup_epochs=0.0, mesh__num_devices=8)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("digits"))
    train.run(load_preset("simclr_digits", **TINY), workdir)
    return workdir


def test_streamed_evaluation_equals_in_memory_and_counts_every_example_once(digits_run):
    results, counts = {}, {}
    for in_memory in (True, False):
        config = load_preset("simclr_digits", data__in_memory=in_memory, **TINY)
        step, results[in_memory] = train.evaluate_checkpoint(config, digits_run)
        setup = train.Setup(config)
        ckpt = checkpoint.Checkpointer(digits_run, async_save=False)
        state = ckpt.restore(step, setup.abstract_state)
        ckpt.close()
        evaluator = RepresentationEvaluator(config, setup.mesh, **setup.method.eval_functions())
        feats = evaluator.split_features(
            lambda s: evaluator.embed_fn(state.params, state.model_state, s.host_cropped))
        counts[in_memory] = {role: (f.shape[0], np.bincount(y).tolist())
                             for role, (f, y) in feats.items()}
        kind = {True: "DeviceReader", False: "HostReader"}[in_memory]
        assert all(type(s.reader).__name__ == kind for s in evaluator.splits)
    assert results[True] == results[False]
    train_src, test_src = (s.source for s in evaluator.splits)
    assert counts[True] == counts[False] == {
        "train": (train_src.num_examples, np.bincount(train_src.labels).tolist()),
        "test": (test_src.num_examples, np.bincount(test_src.labels).tolist())}
    assert test_src.num_examples % 512 and test_src.num_examples % 8  # padding was exercised


def test_in_memory_true_is_refused_for_a_host_read_source():
    from jaxssl.data import pipeline, sources
    src = sources.ImageSource(name="imagenet2012", split="validation", images=None, labels=None,
                              num_examples=10, num_classes=1000, image_shape=None,
                              on_device=False, host_reader=lambda *a, **k: {})
    cfg = load_preset("simclr_digits", data__in_memory=True).data
    with pytest.raises(ValueError, match=r"data\.in_memory=True is invalid"):
        pipeline.use_in_memory(cfg, src)


def test_evaluate_script_writes_results(digits_run):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "evaluate.py"),
         "--config", os.path.join(ROOT, "configs", "simclr_digits.py"), "--workdir", digits_run,
         "--config.data.in_memory=False", "--config.mesh.num_devices=1"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert os.path.exists(os.path.join(digits_run, "eval_results_step3.json"))


SHRINK_RESNET = dict(data__image_size=32, model__backbone="resnet18", model__head_hidden_dim=64,
                     train__batch_size=8, train__num_steps=1, train__num_epochs=0.0,
                     train__log_every_steps=1, train__checkpoint_every_steps=1,
                     optim__warmup_epochs=0.0, eval__enabled=False, mesh__num_devices=2,
                     eval__few_labels_per_class=1)
SHRINK_VIT = dict(SHRINK_RESNET, model__backbone="vit_tiny", model__patch_size=8,
                  model__vit_depth=1, model__vit_hidden_dim=32, model__vit_num_heads=2)


@pytest.mark.slow
@pytest.mark.parametrize("preset, arg, extra", [
    ("simclr_imagenet", "v1", dict(optim__warmup_fraction=0.0)),
    ("simclr_imagenet", "v2", dict(optim__warmup_fraction=0.0)),
    ("mocov2_imagenet", None, dict(moco__queue_size=16, moco__shuffle_bn="groups",
                                   moco__bn_groups=2)),
    ("mocov3_imagenet", "r50", dict(moco__predictor_hidden_dim=32)),
    ("mocov3_imagenet", "vit_small", dict(moco__predictor_hidden_dim=32, vit=True)),
    ("mocov3_imagenet", "vit_base", dict(moco__predictor_hidden_dim=32, vit=True)),
    ("mae_vit_base_imagenet", None, dict(vit=True, mae__encoder_depth=1,
                                         mae__encoder_hidden_dim=32, mae__encoder_heads=2,
                                         mae__decoder_depth=1, mae__decoder_dim=32,
                                         mae__decoder_heads=2)),
    ("simclr_cifar10", None, {}),
    ("mocov2_cifar10", None, dict(moco__queue_size=16)),
])
def test_every_preset_evaluates_under_mock_data(preset, arg, extra, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    extra = dict(extra)
    shrink = dict(SHRINK_VIT if extra.pop("vit", False) else SHRINK_RESNET, **extra)
    if preset == "mae_vit_base_imagenet":
        shrink = {k: v for k, v in shrink.items() if not k.startswith("model__vit")}
        shrink["model__backbone"] = "vit_base"
    if "cifar" in preset:
        shrink.pop("model__backbone")
    config = load_preset(preset, arg, **{k: v for k, v in shrink.items()
                                         if k.split("__")[0] != "moco" or "moco" in preset})
    workdir = str(tmp_path)
    with tfds.testing.mock_data(num_examples=20):
        train.run(config, workdir)
        step, results = train.evaluate_checkpoint(config, workdir)
        setup = train.Setup(config)
        evaluator = RepresentationEvaluator(config, setup.mesh, **setup.method.eval_functions())
        ckpt = checkpoint.Checkpointer(workdir, async_save=False)
        state = ckpt.restore(step, setup.abstract_state)
        ckpt.close()
        feats = evaluator.split_features(
            lambda s: evaluator.embed_fn(state.params, state.model_state, s.host_cropped))
    assert step == 1
    name = config.method
    assert set(results[name]) >= {"knn_all", "linear_all"}
    assert all(0.0 <= v <= 1.0 for v in results[name].values())
    assert feats["test"][0].shape[0] == 20 and feats["train"][0].shape[0] == 20
