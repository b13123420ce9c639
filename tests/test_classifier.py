"""Linear evaluation and fine-tuning on a pretrained backbone: the papers' protocols.

References: each protocol's learning-rate rule transcribed from its reference code (simclr
tf2 ``WarmUpAndCosineDecay``, moco ``main_lincls.adjust_learning_rate``, moco-v3
``main_lincls.adjust_learning_rate``, mae ``util/lr_sched.adjust_learning_rate``), MAE's
``BatchNorm1d(affine=False)`` probe head, and the frozen backbone's bit-identity.
"""
from __future__ import annotations

import json
import math
import os

import jax
import numpy as np
import pytest

from jaxssl import checkpoint, optim, train
from jaxssl.config import load_preset

TINY_PRETRAIN = dict(train__batch_size=64, train__num_steps=3, train__num_epochs=0.0,
                     train__checkpoint_every_steps=3, train__log_every_steps=3,
                     eval__enabled=False, optim__warmup_epochs=0.0, mesh__num_devices=1)


@pytest.fixture(scope="module")
def simclr_pretrained(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("simclr_pretrain"))
    train.run(load_preset("simclr_digits", **TINY_PRETRAIN), workdir)
    return workdir


def restore(workdir, config):
    setup = train.Setup(config)
    ckpt = checkpoint.Checkpointer(workdir, async_save=False)
    state = ckpt.restore(ckpt.latest_step(), setup.abstract_state)
    ckpt.close()
    return state


def finetune_config(init_from, method="finetune", **overrides):
    from jaxssl.methods.classifier import classifier_config
    c = classifier_config(load_preset("simclr_digits"), method)
    c.classifier.update(dict(from_head_layers=1, labels_per_class=10))
    c.train.update(dict(batch_size=32, num_steps=4, num_epochs=0.0, log_every_steps=2,
                        checkpoint_every_steps=2))
    c.optim.update(dict(name="lars", base_lr=0.1, lr_scaling="sqrt", weight_decay=0.0,
                        warmup_epochs=0.0, no_decay_names=("classifier",)))
    c.mesh.num_devices = 1
    c.init_from = init_from
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c.lock()


def test_linear_eval_leaves_the_backbone_bit_identical(simclr_pretrained, tmp_path):
    config = finetune_config(simclr_pretrained, "linear_eval", classifier__from_head_layers=0,
                             optim__frozen_params=("backbone",))
    results = train.run(config, str(tmp_path / "lin"))
    before = restore(simclr_pretrained, load_preset("simclr_digits", **TINY_PRETRAIN))
    after = restore(str(tmp_path / "lin"), config)
    assert int(after.step) == 4
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(after.params["backbone"]),
                 jax.device_get(before.params["backbone"]))
    jax.tree.map(np.testing.assert_array_equal,
                 jax.device_get(after.model_state["batch_stats"]["backbone"]),
                 jax.device_get(before.model_state["batch_stats"]["backbone"]))
    # ... while the classifier did train, and the results name the protocol.
    assert np.abs(np.asarray(after.params["classifier"]["kernel"])).sum() > 0
    assert set(results) == {"pretrained"} and 0.0 <= results["pretrained"]["linear_10"] <= 1.0


def test_finetune_loads_backbone_and_first_head_layer_then_trains_them(simclr_pretrained, tmp_path):
    config = finetune_config(simclr_pretrained)
    workdir = str(tmp_path / "ft")
    train.run(config, workdir)
    with open(f"{workdir}/eval_results.json") as f:
        results = json.load(f)
    assert set(results) == {"pretrained"} and "finetune_10" in results["pretrained"]
    assert not os.path.exists(f"{workdir}/eval_protocol.json")   # a protocol run, not the monitor
    before = restore(simclr_pretrained, load_preset("simclr_digits", **TINY_PRETRAIN))
    setup = train.Setup(config)
    state0 = train.state_lib.create(setup.init_fn, setup.tx, setup.mesh)
    loaded, _ = setup.method.init_from(simclr_pretrained, state0, setup.mesh)
    np.testing.assert_array_equal(np.asarray(loaded.params["head"]["dense_0"]["kernel"]),
                                  np.asarray(before.params["head"]["dense_0"]["kernel"]))
    after = restore(workdir, config)  # fine-tuning moved the backbone
    assert any(not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(jax.device_get(after.params["backbone"])),
        jax.tree.leaves(jax.device_get(before.params["backbone"]))))


def test_init_from_a_mismatched_backbone_names_the_path_and_the_leaf(simclr_pretrained, tmp_path):
    config = finetune_config(simclr_pretrained, model__backbone="resnet18", model__stem="cifar")
    with pytest.raises(checkpoint.CheckpointError, match=r"init_from=.*params/backbone/"):
        train.run(config, str(tmp_path / "bad"))


def test_mae_probe_batchnorm_has_no_affine_parameters():
    from jaxssl.methods.classifier import classifier_config
    c = classifier_config(load_preset("mae_digits"), "linear_eval")
    c.classifier.update(dict(head="bn_linear", head_init="trunc_normal"))
    c.mesh.num_devices = 1
    c.init_from = "random"
    setup = train.Setup(c.lock())
    params, model_state = setup.method.init(jax.random.key(0))
    assert "probe_bn" not in params
    assert set(model_state["batch_stats"]["probe_bn"]) == {"mean", "var"}
    assert set(params) == {"backbone", "classifier"}


# ---------------------------------------------------------------- schedules vs the references

def schedule_of(preset, arg=None, num_examples=1_281_167):
    c = load_preset(preset, arg)
    batch = int(c.train.batch_size)
    spe = num_examples // batch
    total = int(math.ceil(c.train.num_epochs * spe))
    return optim.build_schedule(c.optim, global_batch=batch, total_steps=total,
                                steps_per_epoch=spe), c, spe, total


def test_simclr_linear_schedule_is_the_tf2_warmup_and_cosine_decay():
    lr, c, spe, total = schedule_of("simclr_imagenet_linear", "v1")
    scaled = 0.1 * 4096 / 256                      # LearningRateScaling.LINEAR
    for step in (0, 1, spe, total // 2, total - 1):
        # tf2/model.py WarmUpAndCosineDecay, warmup_epochs=0: cosine_decay(step, total)
        ref = scaled * 0.5 * (1 + math.cos(math.pi * step / total))
        assert float(lr(step)) == pytest.approx(ref, rel=1e-5, abs=1e-6 * scaled)
    assert c.optim.nesterov and c.optim.name == "sgd" and c.classifier.head_init == "zeros"


def test_mocov2_linear_schedule_is_main_lincls_step_decay():
    lr, c, spe, total = schedule_of("mocov2_imagenet_linear")
    for epoch in (0, 59, 60, 79, 80, 99):
        ref = 30.0                                 # main_lincls.adjust_learning_rate
        for milestone in (60, 80):
            ref *= 0.1 if epoch >= milestone else 1.0
        assert float(lr(epoch * spe + spe // 2)) == pytest.approx(ref, rel=1e-5)
    assert c.classifier.head_init == "normal" and c.classifier.head_init_std == 0.01


@pytest.mark.parametrize("arg, base", [("r50", 0.1), ("vit_small", 3.0)])
def test_mocov3_linear_schedule_is_cosine_per_epoch(arg, base):
    lr, c, spe, total = schedule_of("mocov3_imagenet_linear", arg)
    init_lr = base * 1024 / 256                    # main_lincls: args.lr * B / 256
    for epoch in (0, 1, 45, 89):
        ref = init_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / 90))
        for within in (0, spe - 1):                # constant within an epoch
            assert float(lr(epoch * spe + within)) == pytest.approx(
                ref, rel=1e-5, abs=1e-6 * init_lr)


def test_mae_linprobe_schedule_is_lr_sched_per_iteration():
    lr, c, spe, total = schedule_of("mae_vit_base_imagenet_linprobe")
    peak = 0.1 * 16384 / 256                       # blr * eff_batch_size / 256
    warmup, epochs, min_lr = 10, 90, 0.0
    for step in (0, 7, 10 * spe - 1, 10 * spe, 50 * spe + 3, total - 1):
        epoch = step / spe                         # data_iter_step / len(loader) + epoch
        if epoch < warmup:
            ref = peak * epoch / warmup
        else:
            ref = min_lr + (peak - min_lr) * 0.5 * (
                1.0 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup)))
        assert float(lr(step)) == pytest.approx(ref, rel=1e-5, abs=1e-6 * peak)
    k = c.classifier
    assert (k.head, k.head_init, k.head_init_std) == ("bn_linear", "trunc_normal", 0.01)
    assert c.optim.name == "lars" and not c.optim.lars_classic_momentum


def test_simclr_semisup_schedule_and_subset():
    lr, c, spe, total = schedule_of("simclr_imagenet_semisup", "1pct", num_examples=12_811)
    peak = 0.005 * math.sqrt(1024)                 # LearningRateScaling.SQRT
    assert float(lr(0)) == pytest.approx(peak, rel=1e-6)
    assert float(lr(total // 2)) == pytest.approx(peak * 0.5, rel=1e-4)
    assert c.data.name == "imagenet2012_subset/1pct" and c.classifier.from_head_layers == 1
    assert c.train.num_epochs == 60.0
    assert load_preset("simclr_imagenet_semisup", "10pct").train.num_epochs == 30.0


@pytest.mark.slow
def test_finetune_resumes_bit_for_bit_after_sigkill_and_saves_on_sigterm(
        simclr_pretrained, tmp_path, monkeypatch):
    """The fault drill of pretraining, on the fine-tuning command line (2 fake devices)."""
    import os
    import drill_helpers
    monkeypatch.setattr(drill_helpers, "CONFIG",
                        os.path.join(drill_helpers.ROOT, "configs", "simclr_digits_finetune.py"))
    monkeypatch.setattr(drill_helpers, "TINY", dict(drill_helpers.TINY, init_from=simclr_pretrained,
                                                    **{"optim.warmup_epochs": 0.0}))
    cache = str(tmp_path / "cache")
    os.makedirs(cache)
    kill_row, term_row = drill_helpers.drill_kill_and_resume(str(tmp_path), cache, seed=3)
    assert kill_row.facts["final_rc"] == 0, drill_helpers.tail(kill_row.facts["final_log"])
    assert kill_row.facts["hashes_split"] == kill_row.facts["hashes_ref"]
    assert {"params", "model_state", "opt_state", "step"} <= set(kill_row.facts["hashes_ref"])
    assert term_row.facts["rc"] == train.EXIT_PREEMPTED, drill_helpers.tail(term_row.facts["log"])
    assert kill_row.passed and term_row.passed, (kill_row.figure, term_row.figure)


EVAL_PRESETS = [("simclr_imagenet_linear", a) for a in ("v1", "readme", "v2")] + [
    ("mocov2_imagenet_linear", None), ("mae_vit_base_imagenet_linprobe", None),
    ("mae_vit_base_imagenet_finetune", None), ("simclr_digits_finetune", None),
    ("mae_digits_finetune", None), ("simclr_imagenet_semisup", "1pct"),
    ("simclr_imagenet_semisup", "10pct"), ("bert_pydoc_classify", None)] + [
    ("mocov3_imagenet_linear", a) for a in ("r50", "r50_300ep", "r50_1000ep", "vit_small",
                                            "vit_base")] + [
    ("mocov3_imagenet_finetune", a) for a in ("vit_small", "vit_base")] + [
    ("bert_glue", t) for t in ("sst2", "mnli", "cola", "mrpc", "qqp", "qnli", "rte", "wnli")]


@pytest.mark.parametrize("name, arg", EVAL_PRESETS)
def test_evaluation_presets_validate_and_name_their_pretraining(name, arg):
    from jaxssl import methods
    config = load_preset(name, arg)
    assert config.eval.enabled  # every protocol preset ends by writing eval_results.json
    with pytest.raises(ValueError, match=r"config field init_from=None is invalid: .*"
                                         r"--config\.init_from=random"):
        methods.validate_config(config, num_devices=8, num_processes=1)
    config = load_preset(name, arg, init_from="random")
    methods.validate_config(config, num_devices=8, num_processes=1)
    assert config.classifier.pretrain_method in ("simclr", "moco_v2", "moco_v3", "mae", "mlm")
    assert config.train.num_steps == 0 and config.train.num_epochs > 0
