"""MoCo v3, MAE and BERT presets against their reference code.

* Every preset / variant is loaded and checked against the tables of
  ``docs/recipes.md`` (parsed here, so the document and the presets cannot
  disagree), and validated.
* Model shapes and formulas against independent references: numpy transcriptions of moco-v3
  ``vits.py`` (sin-cos table, ViT-S heads), MAE ``util/pos_embed.py`` and
  ``models_mae.py`` (init, weight-decay set of timm 0.3.2), google-research/bert
  ``optimization.py`` (Adam without bias correction, the warm-up + linear-decay schedule) and
  ``create_pretraining_data.py`` (``num_to_predict``); moco-v3 ``builder.py`` for the
  predictor's last BN (its parameter tree).
"""
from __future__ import annotations

import ast
import importlib.util
import math
import os
import re
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
from view_helpers import use_given_views
import pytest

from jaxssl.data import pipeline
from jaxssl import config as config_lib
from jaxssl import optim, rng, sharding
from jaxssl.augment import masking
from jaxssl.models import heads
from jaxssl.models.vit import VisionTransformer, sincos_2d_position_embedding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "recipes.md")
PRESETS = {"mocov3_imagenet": ["r50", "r50_300ep", "r50_1000ep", "vit_small", "vit_base",
                               "vit_large"],
           "mae_vit_base_imagenet": [None], "mae_digits": [None],
           "mae_vit_large_imagenet": ["1600ep", "800ep"], "mae_vit_huge_imagenet": [None],
           "bert_base_mlm": ["phase1", "phase2", "phase2_rewarm"], "bert_pydoc": [None]}


def load_preset(name, arg=None):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


# ------------------------------------------------------------------ the document's tables

def parse_tables(path=DOC) -> dict:
    """``{(preset, arg): {field: value}}`` from the ``### preset[:arg, arg]`` tables whose
    field cell is a backquoted config path; the value cell is a backquoted Python literal."""
    rows: dict = {}
    targets: list = []
    for line in open(path, encoding="utf-8"):
        heading = re.match(r"^### (\w+)(?::\s*(.+))?\s*$", line)
        if heading:
            name, args = heading.group(1), heading.group(2)
            if name in PRESETS:
                targets = [(name, a.strip()) for a in args.split(",")] if args else [(name, None)]
            else:
                targets = []
            continue
        if line.startswith("## "):
            targets = []
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if targets and len(cells) == 4 and re.fullmatch(r"`[\w.]+`", cells[0]):
            field = cells[0].strip("`")
            value = ast.literal_eval(cells[1].strip("`"))
            for target in targets:
                assert field not in rows.setdefault(target, {}), f"{target}: {field} twice"
                rows[target][field] = value
    return rows


TABLES = parse_tables()


def config_value(config, field):
    node = config
    for key in field.split("."):
        node = node[key]
    return node


def same(a, b) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(same(x, y) for x, y in zip(a, b)))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (type(a) is type(b) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return a == b


def test_every_preset_variant_has_a_table():
    for name, args in PRESETS.items():
        for arg in args:
            assert TABLES.get((name, arg)), f"no table rows for {name}:{arg}"
    assert set(TABLES) == {(n, a) for n, args in PRESETS.items() for a in args}


@pytest.mark.parametrize("name,arg", [(n, a) for n, args in PRESETS.items() for a in args])
def test_preset_matches_its_table_and_validates(name, arg):
    config = load_preset(name, arg)
    mismatches = {f: (config_value(config, f), v) for f, v in TABLES[(name, arg)].items()
                  if not same(config_value(config, f), v)}
    assert not mismatches, f"{name}:{arg} (preset value, table value): {mismatches}"
    config_lib.validate(config, num_devices=8, num_processes=1)


def test_table_parser_sees_a_drift():
    """The comparison can fail: a changed value is caught."""
    config = load_preset("mocov3_imagenet", "r50_1000ep")
    with config.unlocked():
        config.moco.momentum = 0.99
    table = TABLES[("mocov3_imagenet", "r50_1000ep")]
    assert not same(config_value(config, "moco.momentum"), table["moco.momentum"])
    assert not same((0.2, 1.0), (0.08, 1.0)) and not same(True, 1) and same(1e-6, 1e-06)


# ------------------------------------------------------------------ MoCo v3: ViT-S, predictor

def test_mocov3_vit_small_has_twelve_heads():
    """moco-v3 vits.py:115-118: vit_small = embed_dim 384, depth 12, num_heads 12."""
    from jaxssl.export import vit_heads_and_pool
    from jaxssl.methods.moco import build_backbone
    config = load_preset("mocov3_imagenet", "vit_small")
    backbone = build_backbone(config.model)
    assert (backbone.hidden_dim, backbone.depth, backbone.num_heads) == (384, 12, 12)
    assert backbone.hidden_dim // backbone.num_heads == 32
    assert vit_heads_and_pool(config) == (12, "cls")          # what the timm export writes
    base = build_backbone(load_preset("mocov3_imagenet", "vit_base").model)
    assert (base.hidden_dim, base.depth, base.num_heads) == (768, 12, 12)
    # the attention really splits into 12 heads: a head-count change changes the output
    x = jax.random.uniform(jax.random.key(0), (1, 32, 32, 3))
    small = VisionTransformer(patch_size=16, hidden_dim=384, depth=1, num_heads=12)
    params = small.init(jax.random.key(1), x)
    six = VisionTransformer(patch_size=16, hidden_dim=384, depth=1, num_heads=6)
    assert not np.allclose(small.apply(params, x), six.apply(params, x), atol=1e-5)


def tiny_v3_config(preset_arg: str):
    """moco_digits:v3_vit shrunk, with the predictor / normalisation fields of the ImageNet
    preset variant ``preset_arg`` (the digits source avoids ImageNet)."""
    source = load_preset("mocov3_imagenet", preset_arg)
    c = load_preset("moco_digits", "v3_vit")
    with c.unlocked():
        c.data.image_size = 8
        c.model.update(dict(head_hidden_dim=32, head_output_dim=16, vit_depth=1,
                            vit_hidden_dim=16, vit_num_heads=2))
        c.moco.predictor_hidden_dim = 32
        c.moco.predictor_last_bn = source.moco.predictor_last_bn
        c.train.update(dict(batch_size=16, num_epochs=0.0, num_steps=4))
        c.eval.enabled = False
        c.augment.jitter_prob = 0.0
        c.mesh.num_devices = 1
    return c


def make_v3(config):
    from jaxssl.methods.moco import MoCoV3
    MoCoV3.validate_config(config)
    mesh = sharding.make_mesh(1)
    return MoCoV3(config, mesh, pipeline.build_train_data(config, mesh, MoCoV3), total_steps=1)


@pytest.mark.parametrize("preset_arg,last_bn", [("vit_small", True), ("r50", False)])
def test_mocov3_predictor_parameter_tree(preset_arg, last_bn):
    """moco-v3 builder.py:122 (ViT) ``_build_mlp(2, dim, mlp_dim, dim)`` ends in
    ``BatchNorm1d(dim, affine=False)``: running statistics but no scale / bias; builder.py:109
    (ResNet) has no last BN."""
    method = make_v3(tiny_v3_config(preset_arg))
    params, model_state = jax.eval_shape(method.init, jax.random.key(0))
    pred = params["predictor"]
    tree = {k: set(v) for k, v in pred.items()}
    assert tree == {"dense_0": {"kernel"}, "bn_0": {"scale", "bias"}, "dense_1": {"kernel"}}
    stats = set(model_state["batch_stats"]["predictor"])
    assert stats == ({"bn_0", "bn_1"} if last_bn else {"bn_0"})


def test_mocov3_predictor_last_bn_is_plain_standardisation():
    """The output is ``(y - mean) / sqrt(var + 1e-5)`` of the last Dense (biased batch var,
    torch BatchNorm1d(affine=False) in training mode)."""
    head = heads.mocov3_predictor(8, 4, last_bn=True)
    x = jax.random.normal(jax.random.key(0), (16, 6))
    variables = head.init(jax.random.key(1), x, train=True)
    out, _ = head.apply(variables, x, train=True, mutable=["batch_stats"])
    p = jax.tree.map(np.asarray, variables["params"])
    h = np.asarray(x) @ p["dense_0"]["kernel"]
    h = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5) * p["bn_0"]["scale"] + p["bn_0"]["bias"]
    y = np.maximum(h, 0) @ p["dense_1"]["kernel"]
    np.testing.assert_allclose(out, (y - y.mean(0)) / np.sqrt(y.var(0) + 1e-5), rtol=1e-4, atol=1e-5)


def test_mocov3_normalises_views_and_eval_images():
    """data.normalize_mean/std: the loss on raw views equals the loss of an unnormalised
    method on ``(v - mean) / std`` (torchvision Normalize), and so do the features."""
    plain = use_given_views(make_v3(tiny_v3_config("vit_small")))  # keeps its config object
    config = tiny_v3_config("vit_small")
    with config.unlocked():
        config.data.normalize_mean = (0.4,)
        config.data.normalize_std = (0.2,)
    normed = use_given_views(make_v3(config))
    params, model_state = jax.jit(plain.init)(jax.random.key(0))
    views = jax.random.uniform(jax.random.key(1), (16, 2, 8, 8, 1))
    loss_n, _ = normed.loss(params, model_state, {"views": views}, 0)
    loss_p, _ = plain.loss(params, model_state, {"views": (views - 0.4) / 0.2}, 0)
    loss_raw, _ = plain.loss(params, model_state, {"views": views}, 0)
    np.testing.assert_allclose(loss_n, loss_p, rtol=1e-5)
    assert abs(float(loss_n) - float(loss_raw)) > 1e-4
    images = views[:, 0]
    np.testing.assert_allclose(normed.backbone_features(params, model_state, images),
                               plain.backbone_features(params, model_state, (images - 0.4) / 0.2),
                               rtol=1e-5, atol=1e-6)
    with config.unlocked():
        config.data.normalize_std = (0.2, 0.2)
    with pytest.raises(ValueError, match="data.normalize_mean"):
        make_v3(config)


# ------------------------------------------------------------------ sin-cos layouts

def mocov3_build_2d_sincos(h, w, embed_dim, temperature=10000.0):
    """moco-v3 vits.py:53-64 ``build_2d_sincos_position_embedding`` in numpy (float32, as
    torch): torch.meshgrid's default 'ij' indexing; no cls row."""
    grid_w = np.arange(w, dtype=np.float32)
    grid_h = np.arange(h, dtype=np.float32)
    grid_w, grid_h = np.meshgrid(grid_w, grid_h, indexing="ij")
    pos_dim = embed_dim // 4
    omega = np.arange(pos_dim, dtype=np.float32) / pos_dim
    omega = 1.0 / (temperature ** omega)
    out_w = np.einsum("m,d->md", grid_w.flatten(), omega)
    out_h = np.einsum("m,d->md", grid_h.flatten(), omega)
    return np.concatenate([np.sin(out_w), np.cos(out_w), np.sin(out_h), np.cos(out_h)], axis=1)


def mae_get_2d_sincos_pos_embed(embed_dim, grid_size):
    """MAE util/pos_embed.py:20-67 ``get_2d_sincos_pos_embed`` (np.float -> np.float64)."""
    def from_grid_1d(dim, pos):
        omega = np.arange(dim // 2, dtype=np.float64)
        omega /= dim / 2.0
        omega = 1.0 / 10000 ** omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])
    return np.concatenate([from_grid_1d(embed_dim // 2, grid[0]),
                           from_grid_1d(embed_dim // 2, grid[1])], axis=1)


@pytest.mark.parametrize("grid,dim", [(4, 16), (14, 384), (14, 768)])
def test_sincos_layouts_match_their_references(grid, dim):
    mocov3 = sincos_2d_position_embedding(grid, grid, dim, layout="mocov3")
    mae = sincos_2d_position_embedding(grid, grid, dim, layout="mae")
    np.testing.assert_allclose(mocov3, mocov3_build_2d_sincos(grid, grid, dim), atol=2e-5)
    np.testing.assert_allclose(mae, mae_get_2d_sincos_pos_embed(dim, grid), atol=1e-6)
    assert not np.allclose(mocov3, mae, atol=1e-3)  # the layouts differ (row vs column first)


def test_sincos_layout_nonsquare_follows_the_reference_flattening():
    np.testing.assert_allclose(sincos_2d_position_embedding(2, 3, 8, layout="mocov3"),
                               mocov3_build_2d_sincos(2, 3, 8), atol=1e-6)


def test_vit_uses_its_layout_and_the_timm_export_writes_it():
    from jaxssl.export import timm as timm_export
    model = VisionTransformer(patch_size=4, hidden_dim=16, depth=1, num_heads=2,
                              sincos_layout="mocov3")
    x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3))
    variables = model.init(jax.random.key(1), x)
    zero = jax.tree.map(jnp.zeros_like, variables["params"]["patch_embed"])
    params = {**variables["params"], "patch_embed": zero}
    tokens = model.apply({"params": params}, x, method=VisionTransformer.embed_patches)
    np.testing.assert_allclose(tokens[0], mocov3_build_2d_sincos(4, 4, 16), atol=1e-5)
    exported = timm_export.vit_state_dict(variables["params"], image_size=16,
                                          sincos_layout="mocov3")["pos_embed"][0]
    np.testing.assert_array_equal(exported[0], 0.0)
    np.testing.assert_allclose(exported[1:], mocov3_build_2d_sincos(4, 4, 16), atol=1e-5)
    assert load_preset("mocov3_imagenet", "vit_base").model.sincos_layout == "mocov3"


# ------------------------------------------------------------------ MAE initialisation

def test_mae_encoder_and_decoder_init_as_models_mae():
    """models_mae.py:79-90: xavier_uniform_ on every nn.Linear (qkv: fused [3D, D], bound
    sqrt(6 / (D + 3D))), cls_token / mask_token normal(std=.02)."""
    from jaxssl.methods.mae import MAE
    c = load_preset("mae_digits")
    with c.unlocked():
        c.mesh.num_devices = 1
    MAE.validate_config(c)
    mesh = sharding.make_mesh(1)
    method = MAE(c, mesh, pipeline.build_train_data(c, mesh, MAE), total_steps=1)
    params, _ = jax.jit(method.init)(rng.root_key(0, "init"))
    enc, dec = params["encoder"], params["decoder"]
    for qkv, dim in [(enc["blocks_0"]["attn"]["qkv"]["kernel"], 128),
                     (dec["decoder_blocks_0"]["attn"]["qkv"]["kernel"], 64)]:
        bound = math.sqrt(6.0 / (dim + 3 * dim))
        assert qkv.shape == (dim, 3 * dim)
        assert float(jnp.max(jnp.abs(qkv))) <= bound
        assert float(jnp.max(jnp.abs(qkv))) > 0.97 * bound
        np.testing.assert_allclose(float(jnp.std(qkv)), bound / math.sqrt(3), rtol=0.05)
    assert enc["cls_token"].shape == (1, 1, 128) and dec["mask_token"].shape == (1, 1, 64)
    tokens = np.concatenate([np.ravel(enc["cls_token"]), np.ravel(dec["mask_token"])])
    assert 0.015 < tokens.std() < 0.025          # N(0, 0.02^2), 192 draws


def test_mocov3_vit_keeps_its_own_init():
    """moco-v3 vits.py:34-41: qkv bound sqrt(6 / (D + D)), cls_token normal(std=1e-6)."""
    model = VisionTransformer(patch_size=4, hidden_dim=64, depth=1, num_heads=2)
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
    qkv = params["blocks_0"]["attn"]["qkv"]["kernel"]
    bound = math.sqrt(6.0 / (64 + 64))
    assert bound * 0.97 < float(jnp.max(jnp.abs(qkv))) <= bound
    assert float(jnp.max(jnp.abs(params["cls_token"]))) < 1e-5


# ------------------------------------------------------------------ BERT optimizer / schedule

def bert_adam_weight_decay_step(params, grads, m, v, lr, *, wd, b1, b2, eps, decayed):
    """google-research/bert optimization.py:131-151 ``AdamWeightDecayOptimizer.apply_gradients``."""
    new_p, new_m, new_v = {}, {}, {}
    for name in params:
        g = grads[name]
        next_m = b1 * m[name] + (1.0 - b1) * g
        next_v = b2 * v[name] + (1.0 - b2) * np.square(g)
        update = next_m / (np.sqrt(next_v) + eps)
        if decayed[name]:
            update = update + wd * params[name]
        new_p[name] = params[name] - lr * update
        new_m[name], new_v[name] = next_m, next_v
    return new_p, new_m, new_v


def test_adam_without_bias_correction_matches_bert_transcription():
    cfg = optim.default_config()
    cfg.update(dict(name="adamw", base_lr=0.05, lr_scaling="none", weight_decay=0.01, b1=0.9,
                    b2=0.999, eps=1e-6, warmup_epochs=0.0, schedule="constant",
                    adam_bias_correction=False))
    tx, _ = optim.build_optimizer(cfg, global_batch=8, total_steps=10, steps_per_epoch=10)
    r = np.random.default_rng(0)
    params = {"kernel": r.normal(size=(3, 4)).astype(np.float32),
              "LayerNorm_scale": r.normal(size=(4,)).astype(np.float32)}
    decayed = {"kernel": True, "LayerNorm_scale": False}   # BERT's name rule == ndim rule here
    state = tx.init(params)
    ref_p = {k: v.astype(np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in ref_p.items()}
    v = {k: np.zeros_like(x) for k, x in ref_p.items()}
    p = params
    for step in range(5):
        grads = {k: r.normal(size=x.shape).astype(np.float32) for k, x in params.items()}
        updates, state = tx.update(grads, state, p)
        p = jax.tree.map(lambda a, u: a + u, p, updates)
        ref_p, m, v = bert_adam_weight_decay_step(ref_p, grads, m, v, 0.05, wd=0.01, b1=0.9,
                                                  b2=0.999, eps=1e-6, decayed=decayed)
        for k in params:
            np.testing.assert_allclose(p[k], ref_p[k], rtol=1e-5, atol=1e-6)
    # bias correction matters: optax.adamw's first step is ~3x smaller for b1 0.9, b2 0.999
    cfg.adam_bias_correction = True
    tx2, _ = optim.build_optimizer(cfg, global_batch=8, total_steps=10, steps_per_epoch=10)
    grads = {k: np.ones_like(x) for k, x in params.items()}
    u1, _ = tx.update(grads, tx.init(params), params)
    u2, _ = tx2.update(grads, tx2.init(params), params)
    ratio = np.asarray(u1["LayerNorm_scale"]) / np.asarray(u2["LayerNorm_scale"])
    np.testing.assert_allclose(ratio, 0.1 / math.sqrt(0.001), rtol=1e-3)


def bert_learning_rate(step, init_lr=1e-4, num_train_steps=1_000_000, num_warmup_steps=10_000):
    """optimization.py:29-54: polynomial_decay(init_lr, step, T, end 0, power 1) with the
    linear warm-up overriding it while step < W."""
    decayed = init_lr * (1.0 - min(step, num_train_steps) / num_train_steps)
    if step < num_warmup_steps:
        return init_lr * step / num_warmup_steps
    return decayed


def bert_schedule(arg):
    c = load_preset("bert_base_mlm", arg)
    return optim.build_schedule(c.optim, global_batch=256, total_steps=c.train.num_steps,
                                steps_per_epoch=1000), c.train.num_steps


def test_bert_phases_follow_one_schedule():
    """phase 1 = steps [0, 900k) and phase 2 = steps [900k, 1M) of ONE warm-up + linear decay
    over 1M steps (paper A.2). jaxssl's decay is the continuous form peak (T - t) / (T - W):
    equal during warm-up and within W / (T - W) ~ 1.01% of optimization.py after it."""
    p1, n1 = bert_schedule("phase1")
    p2, n2 = bert_schedule("phase2")
    assert n1 + n2 == 1_000_000
    for t in [0, 1, 5_000, 9_999]:
        assert math.isclose(float(p1(t)), bert_learning_rate(t), rel_tol=1e-5, abs_tol=1e-12)
    for t in [10_000, 100_000, 500_000, 899_999]:
        np.testing.assert_allclose(float(p1(t)), 1e-4 * (1e6 - t) / (1e6 - 1e4), rtol=1e-5)
        assert abs(float(p1(t)) / bert_learning_rate(t) - 1) <= 1e4 / (1e6 - 1e4) + 1e-5
    for s in [0, 1, 50_000, 99_999]:
        t = 900_000 + s
        np.testing.assert_allclose(float(p2(s)), 1e-4 * (1e6 - t) / (1e6 - 1e4), rtol=1e-4)
        assert abs(float(p2(s)) / bert_learning_rate(t) - 1) <= 1e4 / (1e6 - 1e4) + 1e-4
    assert float(p2(0)) < 1.02e-5                  # no re-warm: 1e-5 at the phase boundary
    rewarm, _ = bert_schedule("phase2_rewarm")      # the named fresh-schedule variant
    assert float(rewarm(0)) == 0.0
    np.testing.assert_allclose(float(rewarm(10_000)), 1e-4, rtol=1e-6)


def test_schedule_segment_errors_name_the_field():
    c = load_preset("bert_base_mlm", "phase2")
    with pytest.raises(ValueError, match="schedule_total_steps"):
        optim.build_schedule(c.optim, global_batch=256, total_steps=200_000, steps_per_epoch=1)
    with c.unlocked():
        c.optim.schedule_total_steps = 0
    with pytest.raises(ValueError, match="schedule_start_step"):
        optim.build_schedule(c.optim, global_batch=256, total_steps=100_000, steps_per_epoch=1)


# ------------------------------------------------------------------ BERT num_to_predict

def bert_num_to_predict(tokens, masked_lm_prob, max_predictions_per_seq):
    """create_pretraining_data.py:369-370 on the row's token list (with [CLS] / [SEP])."""
    return min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))


def test_num_to_predict_counts_cls_and_sep_as_bert():
    seq_len, cap = 512, 80
    lengths = [512, 500, 128, 40, 13, 6, 3]
    ids = np.full((len(lengths), seq_len), 7, np.int32)
    special = np.zeros((len(lengths), seq_len), bool)
    attention = np.zeros((len(lengths), seq_len), np.int32)
    expected = []
    for i, n in enumerate(lengths):
        a_len = (n - 3) // 2
        tokens = ["[CLS]"] + ["a"] * a_len + ["[SEP]"] + ["b"] * (n - 3 - a_len) + ["[SEP]"]
        assert len(tokens) == n
        special[i, n:] = True                                       # padding
        for j, tok in enumerate(tokens):
            special[i, j] = tok in ("[CLS]", "[SEP]")
        attention[i, :n] = 1
        expected.append(min(bert_num_to_predict(tokens, 0.15, cap), n - 3))
    _, weights = masking.mask_tokens(jax.random.key(0), jnp.asarray(ids), jnp.asarray(special),
                                     mask_id=3, vocab_size=100, rate=0.15, max_predictions=cap,
                                     length_mask=jnp.asarray(attention > 0))
    assert np.asarray(weights).sum(1).astype(int).tolist() == expected
    assert expected[0] == 77                                        # T=512: 77, not 76
    _, old = masking.mask_tokens(jax.random.key(0), jnp.asarray(ids), jnp.asarray(special),
                                 mask_id=3, vocab_size=100, rate=0.15, max_predictions=cap)
    assert int(np.asarray(old)[0].sum()) == 76                      # the selectable-count option


def test_mlm_method_passes_the_attention_mask_as_bert_length():
    from jaxssl.methods.mlm import MaskedLM
    seq_len = 512
    ids = jnp.full((1, seq_len), 7, jnp.int32)
    special = jnp.zeros((1, seq_len), bool).at[0, 0].set(True).at[0, seq_len - 1].set(True)
    batch = {"ids": ids, "special": special, "attention_mask": jnp.ones((1, seq_len), jnp.int32),
             "word_start": jnp.ones((1, seq_len), bool)}
    counts = {}
    for flag in (True, False):
        stub = SimpleNamespace(config=SimpleNamespace(mlm=dict(rate=0.15, whole_word=False,
                                                               count_special_tokens=flag)),
                               mask_id=3, vocab_size=100, max_predictions=80)
        stub.config.mlm = _AttrDict(stub.config.mlm)
        _, _, valid, _ = MaskedLM.mask(stub, jax.random.key(0), batch)
        counts[flag] = int(np.asarray(valid).sum())
    assert counts == {True: 77, False: 76}


class _AttrDict(dict):
    __getattr__ = dict.__getitem__
