"""Every protocol preset family runs to its result: a 2-step pretraining run, then the preset for
2 steps from it, under ``tfds.testing.mock_data`` (ImageNet, its 1% subset, GLUE), ending with
``eval_results.json`` = ``{"pretrained": {metric: top-1}}`` and an evaluation at
``train.eval_every_steps``.

The presets are loaded as the command line loads them (``eval.enabled`` as the preset leaves
it) and shrunk only in size: image side, backbone width / depth, batch, steps, devices. The
pretraining run is shrunk the same way, so its backbone loads strictly into the classifier.
"""
from __future__ import annotations

import json
import os

import pytest

from jaxssl import train
from jaxssl.config import load_preset

RUN = dict(train__batch_size=8, train__num_steps=2, train__num_epochs=0.0,
           train__log_every_steps=1, train__checkpoint_every_steps=2, mesh__num_devices=2)
PRETRAIN = dict(RUN, optim__warmup_epochs=0.0, eval__enabled=False)
RESNET = dict(data__image_size=32, model__backbone="resnet18", model__head_hidden_dim=64)
VIT = dict(data__image_size=32, model__patch_size=8, model__vit_depth=1, model__vit_hidden_dim=32,
           model__vit_num_heads=2)
MAE = dict(mae__encoder_depth=1, mae__encoder_hidden_dim=32, mae__encoder_heads=2,
           mae__decoder_depth=1, mae__decoder_dim=32, mae__decoder_heads=2,
           data__image_size=32, model__patch_size=8)

# protocol preset, its argument, the pretraining preset and argument, overrides of the
# pretraining run, overrides of the protocol run (besides RUN), the result's metric
FAMILIES = {
    "linear_eval": ("simclr_imagenet_linear", "v1", "simclr_imagenet", "v1",
                    dict(RESNET, optim__warmup_fraction=0.0), RESNET, "linear_all"),
    "linear_eval_mae_probe": ("mae_vit_base_imagenet_linprobe", None, "mae_vit_base_imagenet",
                              None, MAE, VIT, "linear_all"),
    "finetune": ("mocov3_imagenet_finetune", "vit_small", "mocov3_imagenet", "vit_small",
                 dict(VIT, model__backbone="vit_small", moco__predictor_hidden_dim=32),
                 dict(VIT, model__backbone="vit_small"), "finetune_all"),
    "linear_eval_mocov2": ("mocov2_imagenet_linear", None, "mocov2_imagenet", None,
                           dict(RESNET, moco__queue_size=16, moco__shuffle_bn="groups",
                                moco__bn_groups=2), RESNET, "linear_all"),
    "linear_eval_mocov3": ("mocov3_imagenet_linear", "r50", "mocov3_imagenet", "r50",
                           dict(RESNET, moco__predictor_hidden_dim=32), RESNET, "linear_all"),
    "finetune_mae": ("mae_vit_base_imagenet_finetune", None, "mae_vit_base_imagenet", None, MAE,
                     VIT, "finetune_all"),
    "semi_supervised": ("simclr_imagenet_semisup", "1pct", "simclr_imagenet", "v2",
                        dict(RESNET, optim__warmup_fraction=0.0), RESNET, "finetune_all"),
}


def read_results(workdir: str) -> dict:
    with open(os.path.join(workdir, "eval_results.json")) as f:
        return json.load(f)


def eval_rows(workdir: str) -> list[dict]:
    """The metrics.jsonl rows that hold an evaluation."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if any(k.startswith("eval/") for k in r)]


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_image_protocol_preset_writes_eval_results(family, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    preset, arg, pre_preset, pre_arg, pre_shrink, shrink, metric = FAMILIES[family]
    pre_dir, run_dir = str(tmp_path / "pretrain"), str(tmp_path / "protocol")
    with tfds.testing.mock_data(num_examples=20):
        train.run(load_preset(pre_preset, pre_arg, **PRETRAIN, **pre_shrink), pre_dir)
        config = load_preset(preset, arg, init_from=pre_dir, train__eval_every_steps=1,
                             eval__batch_size=8, optim__warmup_epochs=0.0, **RUN, **shrink)
        assert config.eval.enabled
        results = train.run(config, run_dir)
    assert read_results(run_dir) == results
    assert set(results) == {"pretrained"} and set(results["pretrained"]) == {metric}
    assert 0.0 <= results["pretrained"][metric] <= 1.0
    # train.eval_every_steps=1: an evaluation after step 1 (and the final one, at step 2)
    assert [r["step"] for r in eval_rows(run_dir)] == [1, 2]


@pytest.mark.slow
def test_glue_preset_writes_eval_results_from_a_masked_language_run(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    text = dict(data__seq_len=32, optim__warmup_fraction=0.0, mesh__num_devices=1)
    pre_dir, run_dir = str(tmp_path / "mlm"), str(tmp_path / "glue")
    train.run(load_preset("bert_pydoc", **{**PRETRAIN, **text, "mlm__max_predictions": 5}),
              pre_dir)
    config = load_preset("bert_glue", "sst2", init_from=pre_dir, model__backbone="bert_tiny",
                         model__max_position=128, model__dtype="float32", eval__batch_size=8,
                         **{**RUN, **text})
    assert config.eval.enabled
    with tfds.testing.mock_data(num_examples=24):
        results = train.run(config, run_dir)
    assert read_results(run_dir) == results
    assert set(results) == {"pretrained"} and 0.0 <= results["pretrained"]["accuracy"] <= 1.0


@pytest.mark.slow
def test_protocol_preset_at_digits_scale_reports_pretrained_and_random_init(tmp_path):
    """The digits fine-tuning preset (no mock data needed): its result and its baseline, the
    baseline trained from ``init_from='random'``."""
    pre_dir, run_dir = str(tmp_path / "pretrain"), str(tmp_path / "finetune")
    train.run(load_preset("simclr_digits", **dict(PRETRAIN, train__batch_size=32)), pre_dir)
    config = load_preset("simclr_digits_finetune", init_from=pre_dir, **RUN)
    results = train.run(config, run_dir)
    assert read_results(run_dir) == results
    assert set(results) == {"pretrained", "random_init"}
    assert all(0.0 <= r["finetune_10"] <= 1.0 for r in results.values())
    with open(os.path.join(run_dir, "baselines", "random_init", "config.json")) as f:
        assert json.load(f)["train"]["init_from"] == "random"
