"""Protocol presets against their reference scripts: the GLUE fine-tuning schedule.

google-research/bert ``run_classifier.py``: ``num_train_steps = len(train) / 32 * 3``,
``num_warmup_steps = 0.1 * num_train_steps``; ``optimization.create_optimizer``: linear
warm-up to ``init_lr`` then linear decay to 0 at ``num_train_steps`` -- over the fine-tuning
run's own steps, whatever schedule the pretraining checkpoint was trained with.
"""
import math

import numpy as np
import pytest

from jaxssl import config as config_lib
from jaxssl import optim
from jaxssl.config import load_preset
from jaxssl.data import batching

# tfds glue/<task> train-split sizes (GLUE; tfds catalog)
GLUE_TRAIN = {"sst2": 67_349, "mnli": 392_702}


@pytest.mark.parametrize("task", sorted(GLUE_TRAIN))
def test_bert_glue_schedule_spans_its_own_run(task):
    c = load_preset("bert_glue", task)
    batch = int(c.train.batch_size)
    per_epoch = batching.steps_per_epoch(GLUE_TRAIN[task], batch)
    total = config_lib.total_steps(c.train, per_epoch)
    assert total == 3 * (GLUE_TRAIN[task] // 32)
    _, lr = optim.build_optimizer(c.optim, global_batch=batch, total_steps=total,
                                  steps_per_epoch=per_epoch)
    steps = np.arange(total)
    rates = np.asarray(lr(steps))
    warmup = int(round(0.1 * total))
    assert int(np.argmax(rates)) == warmup
    np.testing.assert_allclose(rates.max(), 2e-5, rtol=1e-6)
    np.testing.assert_allclose(rates[warmup // 2], 2e-5 * (warmup // 2) / warmup, rtol=1e-5)
    assert rates[0] == 0.0
    assert rates[-1] < 2e-5 * 2.0 / (total - warmup)                      # ~0 at the end
    mid = (warmup + total) // 2                                            # linear decay
    np.testing.assert_allclose(rates[mid], 2e-5 * (total - mid) / (total - warmup), rtol=1e-5)


# ------------------------------------------------ linear evaluation of BYOL, SimSiam, Barlow,
# VICReg and DINO: each preset's learning rate transcribed from its reference eval script

IMAGENET_TRAIN = 1_281_167


def schedule_of(preset, arg=None):
    c = load_preset(preset, arg)
    batch = int(c.train.batch_size)
    per_epoch = batching.steps_per_epoch(IMAGENET_TRAIN, batch)
    total = config_lib.total_steps(c.train, per_epoch)
    _, lr = optim.build_optimizer(c.optim, global_batch=batch, total_steps=total,
                                  steps_per_epoch=per_epoch)
    return lr, c, per_epoch, total


def byol_learning_schedule(step, batch_size, base_learning_rate, total_steps, warmup_steps):
    """deepmind-research byol/utils/schedules.py ``learning_schedule`` (numpy)."""
    scaled_lr = base_learning_rate * batch_size / 256.
    lr = step / warmup_steps * scaled_lr if warmup_steps > 0 else scaled_lr
    s = min(step - warmup_steps, total_steps - warmup_steps)
    cosine = scaled_lr * 0.5 * (1 + math.cos(math.pi * s / (total_steps - warmup_steps)))
    return lr if step < warmup_steps else cosine


def torch_cosine_annealing(init_lr, epoch, epochs):
    """``CosineAnnealingLR(optimizer, epochs, eta_min=0)`` stepped once per epoch (= simsiam
    ``adjust_learning_rate``): the lr during epoch ``epoch``."""
    return init_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


@pytest.mark.parametrize("arg", [None, "300ep"])
def test_byol_linear_is_eval_py(arg):
    lr, c, spe, total = schedule_of("byol_imagenet_linear", arg)
    # byol/configs/eval.py: max_steps = 80 * 1281167 // batch_size, Nesterov 0.9, lr 0.2, no warm-up
    assert total == pytest.approx(80 * IMAGENET_TRAIN // 4096, abs=80)
    for step in (0, 1, spe, total // 2, total - 1):
        ref = byol_learning_schedule(step, 4096, 0.2, total, 0)
        assert float(lr(step)) == pytest.approx(ref, rel=1e-5, abs=1e-6)
    o, k = c.optim, c.classifier
    assert (o.name, o.momentum, o.nesterov, o.weight_decay) == ("sgd", 0.9, True, 0.0)
    # hk.Linear default init: TruncatedNormal(stddev=1 / sqrt(fan_in)), zero bias
    assert (k.head_init, k.head_init_std) == ("trunc_normal", pytest.approx(2048 ** -0.5))
    assert c.data.resize_method == c.augment.resize_method == "bicubic"   # tf.image.resize BICUBIC
    assert c.eval_crop_fraction == pytest.approx(224 / 256)


def test_simsiam_linear_is_main_lincls_with_lars():
    lr, c, spe, total = schedule_of("simsiam_imagenet_linear")
    init_lr = 0.1 * 4096 / 256
    for epoch in (0, 1, 45, 89):
        for within in (0, spe - 1):
            assert float(lr(epoch * spe + within)) == pytest.approx(
                torch_cosine_annealing(init_lr, epoch, 90), rel=1e-5, abs=1e-7)
    o, k = c.optim, c.classifier
    # apex LARC(trust_coefficient=.001, clip=False) around SGD(momentum 0.9, wd 0)
    assert (o.name, o.trust_coefficient, o.lars_classic_momentum, o.weight_decay) == (
        "lars", 1e-3, False, 0.0)
    assert (o.lars_clip_lr, o.momentum) == (False, 0.9)
    assert (k.head_init, k.head_init_std, c.train.num_epochs) == ("normal", 0.01, 90.0)


@pytest.mark.parametrize("preset, head_lr", [("barlow_imagenet_linear", 0.3),
                                             ("vicreg_imagenet_linear", 0.02)])
def test_barlow_and_vicreg_linear_are_evaluate_py(preset, head_lr):
    lr, c, spe, total = schedule_of(preset)
    assert (c.train.batch_size, c.train.num_epochs) == (256, 100.0)
    for epoch in (0, 1, 50, 99):           # CosineAnnealingLR(epochs), lr not batch-scaled
        for within in (0, spe - 1):
            assert float(lr(epoch * spe + within)) == pytest.approx(
                torch_cosine_annealing(head_lr, epoch, 100), rel=1e-5, abs=1e-6 * head_lr)
    o, k = c.optim, c.classifier
    # optim.SGD(param_groups, momentum=0.9, weight_decay=1e-6): L2 on the head's weight AND bias
    assert (o.name, o.momentum, o.nesterov, o.weight_decay, o.decay_all_params) == (
        "sgd", 0.9, False, 1e-6, True)
    assert (k.head_init, k.head_init_std) == ("normal", 0.01)
    assert c.data.resize_method == "bilinear"


def test_barlow_linear_decays_the_bias_but_never_the_frozen_backbone():
    import jax.numpy as jnp
    c = load_preset("barlow_imagenet_linear")
    params = {"backbone": {"conv": {"kernel": jnp.ones((3, 3, 3, 8))}, "bn": {"scale": jnp.ones(8)}},
              "classifier": {"kernel": jnp.ones((8, 4)), "bias": jnp.ones(4)}}
    mask = optim.weight_decay_mask(params, decay_all=True,
                                   frozen_names=tuple(c.optim.frozen_params))
    assert mask["classifier"] == {"kernel": True, "bias": True}
    assert not any(np.asarray(list(mask["backbone"]["conv"].values()) +
                              list(mask["backbone"]["bn"].values())))


@pytest.mark.parametrize("preset, arg, blocks, avgpool, method", [
    ("dino_imagenet_linear", "vit_s16", 4, False, "dino"),
    ("dino_imagenet_linear", "vit_s16_300ep", 4, False, "dino"),
    ("dino_imagenet_linear", "vit_b16", 1, True, "dino"),   # eval_linear.py help: ViT-B 1 / True
    ("dino_imagenet_linear", "r50", 1, False, "dino"),
    ("ibot_imagenet_linear", "vit_s16", 4, False, "ibot"),  # run.sh LINEAR_N_LAST_BLOCKS / AVGPOOL
    ("ibot_imagenet_linear", "vit_b16", 1, True, "ibot")])
def test_dino_and_ibot_linear_are_eval_linear_py(preset, arg, blocks, avgpool, method):
    lr, c, spe, total = schedule_of(preset, arg)
    assert c.train.batch_size == (256 if method == "dino" else 1024)  # dino logs / ibot 8 x 128
    init_lr = 0.001 * c.train.batch_size / 256           # args.lr * B / 256
    for epoch in (0, 1, 50, 99):                          # CosineAnnealingLR(100, eta_min=0)
        for within in (0, spe - 1):
            assert float(lr(epoch * spe + within)) == pytest.approx(
                torch_cosine_annealing(init_lr, epoch, 100), rel=1e-5, abs=1e-6 * init_lr)
    o, k = c.optim, c.classifier
    assert (o.name, o.momentum, o.weight_decay, o.weight_decay_end, o.grad_clip_per_param) == (
        "sgd", 0.9, 0.0, -1.0, 0.0)
    assert (k.pretrain_method, k.head_init, k.head_init_std) == (method, "normal", 0.01)
    assert (k.n_last_blocks, k.avgpool_patchtokens) == (blocks, avgpool)
    assert c.data.resize_method == "bicubic" and c.eval_crop_fraction == pytest.approx(224 / 256)


def test_dinov2_linear_is_dinov2_eval_linear_py():
    lr, c, spe, total = schedule_of("dinov2_imagenet_linear")
    assert total == 10 * 1250 and c.train.batch_size == 1024     # epochs x epoch_length, 8 x 128
    init_lr = 0.001 * 1024 / 256                                  # scale_lr(lr, batch_size)
    for it in (0, 1, 1249, 6250, 12_499):                         # CosineAnnealingLR(max_iter)
        assert float(lr(it)) == pytest.approx(torch_cosine_annealing(init_lr, it, total),
                                              rel=1e-5, abs=1e-7 * init_lr)
    o, k = c.optim, c.classifier
    assert (o.name, o.momentum, o.weight_decay, o.weight_decay_end) == ("sgd", 0.9, 0.0, -1.0)
    assert (k.pretrain_method, k.head_init, k.head_init_std) == ("dinov2", "normal", 0.01)
    assert (k.n_last_blocks, k.avgpool_patchtokens) == (4, True)
    assert c.model.vit_layerscale_init == 1e-5                    # the pretraining's ViT


def test_dino_pretraining_preset_carries_eval_knn_settings():
    for arg in ("vit_s16", "vit_s16_300ep", "r50"):
        c = load_preset("dino_imagenet", arg)
        assert (c.eval.knn_k, c.eval.knn_temperature) == (20, 0.07)   # eval_knn.py, paper 20-NN


NEW_LINEAR = [("byol_imagenet_linear", None), ("byol_imagenet_linear", "300ep"),
              ("simsiam_imagenet_linear", None), ("barlow_imagenet_linear", None),
              ("vicreg_imagenet_linear", None), ("dino_imagenet_linear", "vit_s16"),
              ("dino_imagenet_linear", "vit_s16_300ep"), ("dino_imagenet_linear", "r50"),
              ("dino_imagenet_linear", "vit_b16"), ("ibot_imagenet_linear", "vit_s16"),
              ("ibot_imagenet_linear", "vit_b16"), ("dinov2_imagenet_linear", None)]


@pytest.mark.parametrize("name, arg", NEW_LINEAR)
def test_new_linear_presets_validate(name, arg):
    from jaxssl import methods
    c = load_preset(name, arg)
    c.init_from = "random"  # a protocol preset needs one; 'random' is the explicit baseline
    methods.validate_config(c, num_devices=8, num_processes=1)
    assert c.method == "linear_eval" and "backbone" in c.optim.frozen_params
    # epochs of ImageNet, or (DINOv2) iterations
    assert (c.train.num_steps == 0) == (c.train.num_epochs > 0) and c.train.num_steps >= 0
    assert c.data.name == "imagenet2012" and c.data.image_size == 224
    # the host crop and the view use the same geometry and resample
    assert tuple(c.data.crop_scale) == tuple(c.augment.crop_scale) == (0.08, 1.0)
    assert c.data.resize_method == c.augment.resize_method


# ------------------------------------------------ DINO's features: teacher, last blocks' [CLS]

def test_linear_features_vit_is_the_last_blocks_cls_and_the_pooled_patches():
    import jax
    import jax.numpy as jnp
    from jaxssl.methods.dino import linear_features_vit
    from jaxssl.models import vit as vit_lib
    base = vit_lib.VisionTransformer(patch_size=8, hidden_dim=32, depth=3, num_heads=2,
                                     mlp_dim=64, pool="cls")
    x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
    params = base.init(jax.random.key(0), x)["params"]
    wrapped = linear_features_vit(base, 2, True)
    assert (jax.tree.structure(wrapped.init(jax.random.key(0), x)["params"])
            == jax.tree.structure(params))                  # a pretrained ViT loads as is
    feats = wrapped.apply({"params": params}, x)
    assert feats.shape == (2, 3 * 32)
    # the last [CLS] slot is the plain ViT's output; the pooled slot its 'gap' output
    np.testing.assert_allclose(feats[:, 32:64], base.apply({"params": params}, x), rtol=1e-5,
                               atol=1e-6)
    gap = base.clone(pool="gap").apply({"params": params}, x)
    np.testing.assert_allclose(feats[:, 64:], gap, rtol=1e-5, atol=1e-6)
    # the second-to-last block's [CLS], normed: a 2-block ViT with the same first 2 blocks
    two = base.clone(depth=2)
    sub = {k: v for k, v in params.items() if k != "blocks_2"}
    np.testing.assert_allclose(feats[:, :32], two.apply({"params": sub}, x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(feats[:, :32], feats[:, 32:64])
    with pytest.raises(ValueError, match="n_last_blocks"):
        from jaxssl.models.resnet import resnet18
        linear_features_vit(resnet18(), 4, False)


# ------------------------------------------------ one step of each on mocked ImageNet (slow)

SHRINK_RESNET = dict(model__backbone="resnet18")
SHRINK_VIT = dict(model__backbone="vit_tiny", model__patch_size=8, model__vit_depth=4,
                  model__vit_hidden_dim=32, model__vit_num_heads=2)


@pytest.mark.slow
@pytest.mark.parametrize("name, arg, shrink", [
    ("byol_imagenet_linear", None, SHRINK_RESNET),
    ("simsiam_imagenet_linear", None, SHRINK_RESNET),
    ("barlow_imagenet_linear", None, SHRINK_RESNET),
    ("vicreg_imagenet_linear", None, SHRINK_RESNET),
    ("dino_imagenet_linear", "vit_s16", SHRINK_VIT),    # 4 blocks: the last-4 [CLS] features
    ("ibot_imagenet_linear", "vit_b16", SHRINK_VIT),    # [CLS] + pooled patch tokens
    ("dinov2_imagenet_linear", None, SHRINK_VIT)])      # LayerScale ViT, 4 blocks + pooled
def test_new_linear_presets_run_one_step_on_mocked_imagenet(name, arg, shrink, tmp_path):
    import json
    import os
    tfds = pytest.importorskip("tensorflow_datasets")
    from jaxssl import train
    config = load_preset(name, arg, data__image_size=32, train__batch_size=8,
                         train__num_steps=1, train__num_epochs=0.0, train__log_every_steps=1,
                         train__checkpoint_every_steps=1, eval__enabled=False,
                         mesh__num_devices=2, **shrink)
    config.init_from = "random"  # the step, not the loading (tests/test_classifier.py loads)
    with tfds.testing.mock_data(num_examples=16):
        setup = train.Setup(config)
        assert setup.data.host_cropped                      # the ImageNet host path
        results = train.run(config, str(tmp_path))
    assert results == {}
    rows = [json.loads(line) for line in open(os.path.join(tmp_path, "metrics.jsonl"))]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses and np.isfinite(losses).all(), rows


def test_dino_decays_the_learned_prototype_norms_as_dino_does():
    """DINO utils.get_params_groups: every parameter with ndim > 1 is regularised; torch's
    weight_norm ``weight_g`` is [K, 1], so it is decayed (0.04 -> 0.4) when it is trained
    (norm_last_layer=False): jaxssl's kernel_g is [K] and is named in optim.decay_names."""
    import jax
    import jax.numpy as jnp
    c = load_preset("dino_imagenet", "vit_s16_300ep")
    assert "kernel_g" in c.optim.decay_names and not c.dino.norm_last_layer
    params = {"head": {"last_layer": {"kernel_g": jnp.ones((8,)), "kernel_v": jnp.ones((4, 8))},
                       "mlp_0": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones((4,))}}}
    tx, _ = optim.build_optimizer(c.optim, global_batch=1024, total_steps=100, steps_per_epoch=10)
    zeros = jax.tree.map(jnp.zeros_like, params)
    state = tx.init(params)
    for _ in range(20):                      # past the warm-up's zero lr
        updates, state = tx.update(zeros, state, params)
    moved = jax.tree.map(lambda u: bool(jnp.any(u != 0)), updates)
    # zero gradient: only weight decay moves a leaf
    assert moved["head"]["last_layer"] == {"kernel_g": True, "kernel_v": True}
    assert moved["head"]["mlp_0"] == {"kernel": True, "bias": False}


@pytest.mark.parametrize("arg, epochs", [("vit_small", 300.0), ("vit_base", 150.0)])
def test_mocov3_finetune_is_deit_bicubic_with_the_readme_epochs(arg, epochs):
    """moco-v3 README: DeiT's default configs (300 epochs), ViT-B 150 epochs; DeiT
    datasets.build_transform: bicubic training crops and Resize(256, bicubic) evaluation --
    both the host crop (data.resize_method) and the view (augment.resize_method)."""
    c = load_preset("mocov3_imagenet_finetune", arg)
    assert c.train.num_epochs == epochs
    assert c.data.resize_method == c.augment.resize_method == "bicubic"
    assert tuple(c.data.crop_scale) == (0.08, 1.0) and c.eval_crop_fraction == 0.875


def test_simclr_imagenet_linear_decays_kernel_and_bias_as_the_readme_command():
    """google-research/simclr README ImageNet linear eval: --weight_decay=1e-6 with the
    momentum optimizer, model_util.add_weight_decay: L2 on every trainable variable but BN's
    (the classifier's kernel and bias)."""
    for arg in ("v1", "readme", "v2"):
        o = load_preset("simclr_imagenet_linear", arg).optim
        assert (o.weight_decay, o.decay_all_params, o.frozen_params) == (1e-6, True, ("backbone",))


# ------------------------------------------------ iBOT / DINOv2 linear evaluation reads the teacher

@pytest.mark.slow
@pytest.mark.parametrize("preset", ["ibot_digits", "dinov2_digits"])
def test_linear_eval_loads_the_teacher_backbone_of_ibot_and_dinov2(preset, tmp_path):
    """The linear presets' loading (eval_linear.py / dinov2 linear.py ``teacher`` key): the
    probe's frozen backbone is the EMA teacher's ViT, not the student's; the student ViT's
    mask token is not part of it."""
    import jax
    from jaxssl import train
    from jaxssl.checkpoint import load_tree
    from jaxssl.linear_protocols import vit_linear_protocol
    tiny = dict(model__vit_hidden_dim=32, model__vit_depth=2, model__vit_num_heads=2,
                dino__out_dim=32, dino__head_hidden_dim=32, dino__head_bottleneck_dim=16,
                dino__local_crops_number=2, ibot__patch_out_dim=32, mesh__num_devices=1,
                train__batch_size=16, train__num_epochs=0.0, eval__enabled=False)
    pre = load_preset(preset, **dict(tiny, train__num_steps=2, train__checkpoint_every_steps=2,
                                     optim__warmup_epochs=0.0))
    train.run(pre, str(tmp_path / "pre"))
    c = vit_linear_protocol(load_preset(preset, **tiny), n_last_blocks=2,
                            avgpool_patchtokens=True, batch_size=16, base_lr=0.001,
                            num_epochs=0.0, num_steps=1, schedule="cosine")
    c.init_from = str(tmp_path / "pre")
    c.eval.enabled = False
    train.run(c.lock(), str(tmp_path / "lin"))
    stored, _ = load_tree(str(tmp_path / "pre"))
    probe, _ = load_tree(str(tmp_path / "lin"))
    teacher = stored["model_state"]["teacher"]["params"]["backbone"]
    student = stored["params"]["backbone"]
    assert "mask_token" in student and "mask_token" not in probe["params"]["backbone"]
    teacher = {k: v for k, v in teacher.items() if k != "mask_token"}
    assert (jax.tree.structure(teacher) == jax.tree.structure(probe["params"]["backbone"]))
    student = {k: v for k, v in student.items() if k != "mask_token"}
    assert not all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in   # the teacher moved
                   zip(jax.tree.leaves(teacher), jax.tree.leaves(student)))   # off the student
    for a, b in zip(jax.tree.leaves(teacher), jax.tree.leaves(probe["params"]["backbone"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
