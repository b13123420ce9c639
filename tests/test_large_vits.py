"""The papers' large ViTs: presets against their reference values, model shapes, timm export.

* Presets (``mae_vit_large_imagenet[:800ep]``, ``mae_vit_huge_imagenet``, their fine-tune
  presets, ``dino_imagenet:vit_b16``, ``mocov3_imagenet:vit_large``) hold the values of the
  reference commands, transcribed below with their sources (facebookresearch/mae PRETRAIN.md,
  FINETUNE.md, models_mae.py, main_finetune.py; the args.txt of DINO's released ViT-B/16;
  moco-v3 CONFIG.md), and validate on an 8-device mesh.
* Model shapes from the presets (abstract: ``jax.eval_shape``, nothing allocated): MAE ViT-L/16
  and ViT-H/14 parameter counts against counts written from models_mae.py's dimensions.
* Export: the timm state dict of ViT-L/16- and ViT-H/14-family encoders (reduced depth) runs
  to the jaxssl output in an independent numpy forward of timm's ``VisionTransformer`` (no
  torch needed), and in timm itself where torch and timm are installed; the full-size names
  and shapes are checked from shapes only, against the reference dimensions and (with torch)
  a timm model built on the ``meta`` device.
"""
from __future__ import annotations

import importlib.util
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from jaxssl.config import load_preset
from jaxssl.export import timm as timm_export
from jaxssl.methods import mae as mae_lib
from jaxssl.methods import validate_config
from jaxssl.methods.classifier import classifier_config
from jaxssl.models.registry import build_backbone
from jaxssl.models.vit import VisionTransformer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# MAE pretraining, main_pretrain.py + PRETRAIN.md (identical for B, L and H).
MAE_PRETRAIN = {
    "method": "mae", "data.name": "imagenet2012", "data.image_size": 224,
    "mae.mask_ratio": 0.75, "mae.norm_pix_loss": True, "mae.decoder_dim": 512,
    "mae.decoder_depth": 8, "mae.decoder_heads": 16, "mae.pool": "cls",
    "mae.encoder_hidden_dim": 0, "mae.encoder_depth": 0, "mae.encoder_heads": 0,
    "mae.pixel_mean": IMAGENET_MEAN, "mae.pixel_std": IMAGENET_STD,
    "augment.crop_scale": (0.2, 1.0), "augment.resize_method": "bicubic",
    "augment.flip_prob": 0.5, "augment.jitter_prob": 0.0,
    "optim.name": "adamw", "optim.base_lr": 1.5e-4, "optim.lr_scaling": "linear",
    "optim.b1": 0.9, "optim.b2": 0.95, "optim.weight_decay": 0.05, "optim.warmup_epochs": 40.0,
    "optim.schedule": "cosine", "optim.no_decay_names": (), "optim.decay_all_params": False,
    "optim.grad_clip_norm": 0.0, "train.batch_size": 4096, "model.dtype": "float32",
}
# MAE fine-tuning, main_finetune.py defaults + FINETUNE.md (shared by its ViT-L / ViT-H scripts).
MAE_FINETUNE = {
    "method": "finetune", "classifier.pretrain_method": "mae", "model.pool": "gap_fc_norm",
    "optim.name": "adamw", "optim.base_lr": 1e-3, "optim.lr_scaling": "linear",
    "optim.b1": 0.9, "optim.b2": 0.999, "optim.weight_decay": 0.05, "optim.warmup_epochs": 5.0,
    "optim.min_lr": 1e-6, "optim.schedule": "cosine", "classifier.layer_decay": 0.75,
    "classifier.label_smoothing": 0.1, "classifier.mixup_alpha": 0.8,
    "classifier.cutmix_alpha": 1.0, "classifier.mixup_switch_prob": 0.5,
    "classifier.randaugment": "rand-m9-mstd0.5-inc1", "classifier.random_erasing": 0.25,
    "classifier.head_init_std": 2e-5, "train.batch_size": 1024, "train.num_epochs": 50.0,
}

EXPECTED = {
    # models_mae.py mae_vit_large_patch16_dec512d8b; 1600 epochs: the paper's checkpoints
    ("mae_vit_large_imagenet", None): dict(MAE_PRETRAIN, **{
        "model.backbone": "vit_large", "model.patch_size": 16, "train.num_epochs": 1600.0}),
    # PRETRAIN.md: --model mae_vit_large_patch16 --epochs 800 (85.5 fine-tuned)
    ("mae_vit_large_imagenet", "800ep"): dict(MAE_PRETRAIN, **{
        "model.backbone": "vit_large", "model.patch_size": 16, "train.num_epochs": 800.0}),
    # models_mae.py mae_vit_huge_patch14_dec512d8b
    ("mae_vit_huge_imagenet", None): dict(MAE_PRETRAIN, **{
        "model.backbone": "vit_huge", "model.patch_size": 14, "train.num_epochs": 1600.0}),
    # FINETUNE.md "Script for ViT-Large": 4 nodes x 8 x 32, --drop_path 0.2
    ("mae_vit_large_imagenet_finetune", None): dict(MAE_FINETUNE, **{
        "model.backbone": "vit_large", "model.patch_size": 16,
        "classifier.drop_path_rate": 0.2}),
    # FINETUNE.md "Script for ViT-Huge": 8 nodes x 8 x 16, --drop_path 0.3
    ("mae_vit_huge_imagenet_finetune", None): dict(MAE_FINETUNE, **{
        "model.backbone": "vit_huge", "model.patch_size": 14,
        "classifier.drop_path_rate": 0.3}),
    # dino_vitbase16_pretrain/args.txt (the README's ViT-B/16 row: 78.2 linear, 76.1 k-NN)
    ("dino_imagenet", "vit_b16"): {
        "method": "dino", "model.backbone": "vit_base", "model.patch_size": 16,
        "model.posemb": "learned", "model.dtype": "float32", "model.pool": "cls",
        "train.batch_size": 1024, "train.num_epochs": 400.0,
        "optim.name": "adamw", "optim.base_lr": 0.00075, "optim.min_lr": 2e-6,
        "optim.warmup_epochs": 10.0, "optim.weight_decay": 0.04,
        "optim.weight_decay_end": 0.4, "optim.grad_clip_per_param": 0.3,
        "dino.out_dim": 65536, "dino.norm_last_layer": True, "dino.head_use_bn": False,
        "dino.warmup_teacher_temp": 0.04, "dino.teacher_temp": 0.07,
        "dino.warmup_teacher_temp_epochs": 50, "dino.freeze_last_layer_epochs": 3,
        "dino.local_crops_number": 10, "dino.local_crop_size": 96,
        "dino.local_crop_scale": (0.05, 0.25), "augment.crop_scale": (0.25, 1.0),
        "teacher.momentum": 0.996, "teacher.momentum_final": 1.0,
    },
    # moco-v3 CONFIG.md ViT command (-a vit_base ... ) with the paper's ViT-L/16
    ("mocov3_imagenet", "vit_large"): {
        "method": "moco_v3", "model.backbone": "vit_large", "model.patch_size": 16,
        "model.vit_num_heads": 0, "model.sincos_layout": "mocov3",
        "model.freeze_patch_embed": True, "optim.frozen_params": ("patch_embed",),
        "optim.name": "adamw", "optim.base_lr": 1.5e-4, "optim.weight_decay": 0.1,
        "optim.warmup_epochs": 40.0, "optim.decay_all_params": True,
        "loss.temperature": 0.2, "moco.momentum": 0.99, "moco.momentum_schedule": "cosine",
        "moco.projector_num_layers": 3, "moco.predictor_last_bn": True,
        "augment.crop_scale": (0.08, 1.0), "train.batch_size": 4096, "train.num_epochs": 300.0,
    },
}


def get_field(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return tuple(node) if isinstance(node, (list, tuple)) else node


@pytest.mark.parametrize("preset, arg", sorted(EXPECTED, key=str))
def test_preset_holds_the_reference_values_and_validates(preset, arg):
    config = load_preset(preset, arg)
    if "init_from" in config:  # protocol presets need one; 'random' is the explicit baseline
        config.init_from = "random"
    validate_config(config, num_devices=8, num_processes=1)
    for field, want in EXPECTED[(preset, arg)].items():
        got = get_field(config, field)
        if isinstance(want, float) and not isinstance(want, bool):
            assert math.isclose(got, want, rel_tol=1e-12), (preset, arg, field, got, want)
        else:
            assert got == want and type(got) is type(want), (preset, arg, field, got, want)


@pytest.mark.parametrize("finetune, pretrain", [
    ("mae_vit_large_imagenet_finetune", "mae_vit_large_imagenet"),
    ("mae_vit_huge_imagenet_finetune", "mae_vit_huge_imagenet")])
def test_finetune_builds_the_pretrained_encoder(finetune, pretrain):
    """The fine-tune preset's model section is the one the classifier derives from its
    pretraining preset (same sizes, patch and positions), apart from MAE's fine-tuning pool."""
    got = load_preset(finetune).model.to_dict()
    want = classifier_config(load_preset(pretrain), "finetune").model.to_dict()
    want["pool"] = "gap_fc_norm"
    assert got == want


def _block_params(width):
    """One pre-LN block (timm ``Block``, MLP ratio 4): norm1, qkv, proj, norm2, fc1, fc2."""
    return (2 * width + 3 * width * width + 3 * width + width * width + width
            + 2 * width + 4 * width * width + 4 * width + 4 * width * width + width)


def _vit_params(width, depth, patch, channels=3):
    """Parameters of a ViT with fixed positions (models_mae.py's encoder: its pos_embed has
    ``requires_grad=False``): patch projection, class token, blocks, final LayerNorm."""
    return patch * patch * channels * width + width + width + depth * _block_params(width) \
        + 2 * width


@pytest.mark.parametrize("preset, width, depth, heads, patch, grid", [
    ("mae_vit_large_imagenet", 1024, 24, 16, 16, 14),
    ("mae_vit_huge_imagenet", 1280, 32, 16, 14, 16)])
def test_mae_large_models_have_the_reference_shapes(preset, width, depth, heads, patch, grid):
    config = load_preset(preset)
    assert mae_lib.encoder_sizes(config.model, config.mae) == dict(
        hidden_dim=width, depth=depth, num_heads=heads)
    model = mae_lib.build_model(config, channels=3)
    n = grid * grid
    keep = n - round(0.75 * n)                     # 49 of 196 (L/16), 64 of 256 (H/14)
    ids = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (2, n))
    images = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, ids[:, :keep], ids),
                               images)
    params = variables["params"]
    pred = jax.eval_shape(lambda v, x: model.apply(v, x, ids[:, :keep], ids), variables, images)
    assert pred.shape == (2, n, patch * patch * 3)
    count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))
    assert count(params["encoder"]) == _vit_params(width, depth, patch)
    dec = 512
    # decoder_embed, mask_token, 8 decoder blocks, decoder_norm, decoder_pred
    decoder = (width * dec + dec) + dec + 8 * _block_params(dec) + 2 * dec \
        + (dec * patch * patch * 3 + patch * patch * 3)
    assert count(params["decoder"]) == decoder
    # the published sizes: ViT-L/16 303.3M, ViT-H/14 630.8M without the 1000-way head and
    # with learned positions (timm vit_large_patch16_224 / vit_huge_patch14_224, num_classes=0)
    published = {1024: 303_301_632, 1280: 630_764_800}[width]
    assert count(params["encoder"]) + (1 + n) * width == published


def _reference_patchify(imgs_nchw, p):
    """facebookresearch/mae models_mae.py ``patchify`` (NCHW -> [N, L, p*p*3]) in numpy."""
    n, c, hh, _ = imgs_nchw.shape
    h = w = hh // p
    x = imgs_nchw.reshape(n, c, h, p, w, p)
    x = np.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, h * w, p * p * c)


def test_mae_vit_h14_loss_on_the_reference_patch_layout():
    """Patch 14 end to end at 224 px (shrunk widths): 256 patches of 588 values in MAE's
    patchify order, the decoder predicting that many per patch, a finite loss over the 192
    removed patches."""
    from jaxssl import losses
    from jaxssl.augment import patch_masking
    config = load_preset("mae_vit_huge_imagenet", mae__encoder_hidden_dim=32,
                         mae__encoder_depth=1, mae__encoder_heads=2, mae__decoder_dim=16,
                         mae__decoder_depth=1, mae__decoder_heads=2)
    model = mae_lib.build_model(config, channels=3)
    images = np.random.default_rng(3).normal(size=(2, 224, 224, 3)).astype(np.float32)
    target = np.asarray(losses.patchify(jnp.asarray(images), 14))
    np.testing.assert_array_equal(target, _reference_patchify(images.transpose(0, 3, 1, 2), 14))
    pm = patch_masking.random_patch_mask(jax.random.key(1), 2, 256, 0.75)
    assert int(np.asarray(pm.mask).sum()) == 2 * 192
    shapes = jax.eval_shape(model.init, jax.random.key(0), images, pm.ids_keep, pm.ids_restore)
    rng = np.random.default_rng(4)
    params = jax.tree_util.tree_map(lambda x: rng.normal(0, 0.05, x.shape).astype(np.float32),
                                    shapes["params"])

    @jax.jit
    def loss_fn(params):
        pred = model.apply({"params": params}, images, pm.ids_keep, pm.ids_restore)
        return pred, losses.mae_loss(pred, jnp.asarray(target), pm.mask, norm_pix_loss=True)

    pred, loss = loss_fn(params)
    assert pred.shape == (2, 256, 588) and np.isfinite(float(loss))


def test_dino_vit_b16_learned_positions_serve_both_crop_sizes():
    """One position table, made for the 224 px globals, resized for the 96 px locals."""
    config = load_preset("dino_imagenet", "vit_b16", model__vit_depth=1, model__vit_hidden_dim=32,
                         model__vit_num_heads=2)
    backbone = build_backbone(config.model)
    shapes = jax.eval_shape(backbone.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    assert shapes["params"]["pos_embed"].shape == (1, 1 + 14 * 14, 32)
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(
        lambda x: rng.normal(0, 0.02, x.shape).astype(np.float32), shapes["params"])
    local = jax.jit(backbone.apply)({"params": params}, jnp.ones((2, 96, 96, 3)))
    assert local.shape == (2, 32) and bool(jnp.all(jnp.isfinite(local)))


# ----------------------------------------------------------------------------- timm export

def _random_params(model, seed, image):
    """Random params of ``model`` with the shapes its init gives: kernels N(0, 1/fan_in),
    LayerNorm scales U(0.5, 1.5), everything else N(0, 0.1), so every exported tensor matters."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(image))["params"]

    def draw(path, leaf):
        name = str(path[-1].key)
        if name == "kernel":
            return rng.normal(0, np.prod(leaf.shape[:-1]) ** -0.5, leaf.shape).astype(np.float32)
        if name == "scale":
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        return rng.normal(0, 0.1, leaf.shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def _layer_norm(x, w, b, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def timm_vit_forward(sd, x_nchw, num_heads, pool):
    """timm ``VisionTransformer.forward`` (class token, no_embed_class=False, pre-LN blocks,
    LayerNorm eps 1e-6, exact GELU, ``global_pool`` 'token' or 'avg' with fc_norm False or True,
    num_classes=0) in float64 numpy, reading a timm state dict: the reference for the export."""
    x = x_nchw.astype(np.float64)
    w = sd["patch_embed.proj.weight"].astype(np.float64)         # [D, C, p, p]
    dim, _, p, _ = w.shape
    batch, channels, height, width = x.shape
    gh, gw = height // p, width // p
    patches = x.reshape(batch, channels, gh, p, gw, p).transpose(0, 2, 4, 1, 3, 5)
    tokens = patches.reshape(batch, gh * gw, channels * p * p) @ w.reshape(dim, -1).T \
        + sd["patch_embed.proj.bias"]
    cls = np.broadcast_to(sd["cls_token"], (batch, 1, dim))
    x = np.concatenate([cls, tokens], axis=1) + sd["pos_embed"]
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    head_dim = dim // num_heads
    for i in range(depth):
        g = lambda name: sd[f"blocks.{i}.{name}"].astype(np.float64)  # noqa: E731
        h = _layer_norm(x, g("norm1.weight"), g("norm1.bias"))
        qkv = h @ g("attn.qkv.weight").T + g("attn.qkv.bias")          # [B, L, 3D]
        qkv = qkv.reshape(batch, -1, 3, num_heads, head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                               # [B, H, L, hd]
        logits = q @ k.transpose(0, 1, 3, 2) * head_dim ** -0.5
        attn = np.exp(logits - logits.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        out = (attn @ v).transpose(0, 2, 1, 3).reshape(batch, -1, dim)
        x = x + out @ g("attn.proj.weight").T + g("attn.proj.bias")
        h = _layer_norm(x, g("norm2.weight"), g("norm2.bias"))
        h = h @ g("mlp.fc1.weight").T + g("mlp.fc1.bias")
        h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
        x = x + h @ g("mlp.fc2.weight").T + g("mlp.fc2.bias")
    if pool == "gap_fc_norm":   # timm global_pool='avg', fc_norm=True: pool, then fc_norm
        return _layer_norm(x[:, 1:].mean(1), sd["fc_norm.weight"], sd["fc_norm.bias"])
    x = _layer_norm(x, sd["norm.weight"], sd["norm.bias"])
    return x[:, 0] if pool == "cls" else x[:, 1:].mean(1)


# ViT-L/16 and ViT-H/14 widths, heads and patches at reduced depth (2 blocks) and image size
# (2 x 2 patches): the same architecture family as the presets' encoders.
FAMILIES = {"vit_l16": dict(hidden_dim=1024, num_heads=16, patch_size=16, image=32),
            "vit_h14": dict(hidden_dim=1280, num_heads=16, patch_size=14, image=28)}


def _family_case(name, pool, posemb, layout="mae"):
    f = FAMILIES[name]
    model = VisionTransformer(hidden_dim=f["hidden_dim"], depth=2, num_heads=f["num_heads"],
                              patch_size=f["patch_size"], pool=pool, posemb=posemb,
                              sincos_layout=layout)
    size = f["image"]
    params = _random_params(model, 1, (1, size, size, 3))
    x = np.random.default_rng(2).normal(size=(2, size, size, 3)).astype(np.float32)
    expected = np.asarray(jax.jit(lambda p, x: model.apply({"params": p}, x))(params, x))
    return model, params, x, expected


@pytest.mark.parametrize("name, pool, posemb, layout", [
    ("vit_l16", "cls", "sincos2d", "mae"), ("vit_h14", "cls", "sincos2d", "mae"),
    ("vit_l16", "gap", "learned", "mocov3"), ("vit_l16", "gap_fc_norm", "sincos2d", "mae")])
def test_large_vit_export_runs_to_the_same_features_in_a_numpy_timm_forward(
        name, pool, posemb, layout):
    f = FAMILIES[name]
    model, params, x, expected = _family_case(name, pool, posemb, layout)
    sd = timm_export.vit_state_dict(params, image_size=f["image"], sincos_layout=layout)
    got = timm_vit_forward(sd, x.transpose(0, 3, 1, 2), f["num_heads"], pool)
    assert got.shape == expected.shape == (2, f["hidden_dim"])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _need_torch():
    missing = [m for m in ("torch", "timm") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (not installed); run with a PyTorch environment "
                    "(pip install torch timm)")


@pytest.mark.parametrize("name, pool", [("vit_l16", "cls"), ("vit_h14", "gap_fc_norm")])
def test_large_vit_export_matches_timm(name, pool):
    _need_torch()
    import torch

    f = FAMILIES[name]
    model, params, x, expected = _family_case(name, pool, "sincos2d")
    kwargs = timm_export.timm_kwargs(params, image_size=f["image"], num_heads=f["num_heads"],
                                     pool=pool)
    net = timm_export.build_timm_vit(**kwargs)
    sd = timm_export.vit_state_dict(params, image_size=f["image"])
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    net.eval()
    with torch.no_grad():
        got = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _full_size_export(preset):
    """The timm names and shapes the export writes for the preset's full-size encoder, from
    shapes only, and the timm load arguments."""
    from jaxssl.export import vit_heads_and_pool
    config = load_preset(preset)
    model = mae_lib.build_model(config, channels=3).encoder
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))["params"]
    heads, pool = vit_heads_and_pool(config)
    shapes = timm_export.vit_state_dict_shapes(params, image_size=224)
    return shapes, timm_export.timm_kwargs(params, image_size=224, num_heads=heads, pool=pool)


@pytest.mark.parametrize("preset, width, depth, heads, patch", [
    ("mae_vit_large_imagenet", 1024, 24, 16, 16), ("mae_vit_huge_imagenet", 1280, 32, 16, 14)])
def test_full_size_export_has_the_reference_names_and_shapes(preset, width, depth, heads, patch):
    """models_vit.py ``vit_large_patch16`` / ``vit_huge_patch14`` (timm names), written out."""
    shapes, kwargs = _full_size_export(preset)
    n = (224 // patch) ** 2
    want = {"cls_token": (1, 1, width), "pos_embed": (1, 1 + n, width),
            "patch_embed.proj.weight": (width, 3, patch, patch), "patch_embed.proj.bias": (width,),
            "norm.weight": (width,), "norm.bias": (width,)}
    for i in range(depth):
        for norm in ("norm1", "norm2"):
            want.update({f"blocks.{i}.{norm}.weight": (width,), f"blocks.{i}.{norm}.bias": (width,)})
        for layer, (out, inp) in {"attn.qkv": (3 * width, width), "attn.proj": (width, width),
                                  "mlp.fc1": (4 * width, width),
                                  "mlp.fc2": (width, 4 * width)}.items():
            want.update({f"blocks.{i}.{layer}.weight": (out, inp), f"blocks.{i}.{layer}.bias": (out,)})
    assert shapes == want
    assert kwargs == dict(img_size=224, patch_size=patch, in_chans=3, embed_dim=width,
                          depth=depth, num_heads=heads, mlp_ratio=4.0, qkv_bias=True,
                          class_token=True, no_embed_class=False, num_classes=0,
                          global_pool="token")


@pytest.mark.parametrize("preset", ["mae_vit_large_imagenet", "mae_vit_huge_imagenet"])
def test_full_size_export_loads_into_timm_by_shape(preset):
    """timm's own model of the export's load arguments, built on the meta device (no memory):
    its state dict has exactly the export's names and shapes."""
    _need_torch()
    import torch

    shapes, kwargs = _full_size_export(preset)
    with torch.device("meta"):
        net = timm_export.build_timm_vit(**kwargs)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == shapes


@pytest.mark.parametrize("pool, registers, layerscale, mlp_type, posemb", [
    ("cls", 4, 1e-5, "swiglu", "learned"), ("gap", 2, 0.1, "mlp", "sincos2d"),
    ("cls", 0, 0.1, "swiglu", "sincos2d")])
def test_dinov2_style_options_export_to_timm(pool, registers, layerscale, mlp_type, posemb):
    """LayerScale, register tokens and SwiGLU (the ViT options DINOv2's ViT-g uses) load into
    timm's own equivalents (init_values, reg_tokens, SwiGLUPacked) and give the same features."""
    _need_torch()
    import torch

    model = VisionTransformer(hidden_dim=64, depth=2, num_heads=4, patch_size=8, pool=pool,
                              posemb=posemb, num_registers=registers, layerscale_init=layerscale,
                              mlp_type=mlp_type)
    params = _random_params(model, 5, (1, 32, 32, 3))
    x = np.random.default_rng(6).normal(size=(2, 32, 32, 3)).astype(np.float32)
    expected = np.asarray(jax.jit(lambda p, x: model.apply({"params": p}, x))(params, x))
    kwargs = timm_export.timm_kwargs(params, image_size=32, num_heads=4, pool=pool)
    net = timm_export.build_timm_vit(**kwargs)
    sd = timm_export.vit_state_dict(params, image_size=32)
    assert sd.keys() == timm_export.vit_state_dict_shapes(params, image_size=32).keys()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    net.eval()
    with torch.no_grad():
        got = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
