"""DINOv2-style ViT options (LayerScale, registers, SwiGLU, mask token, position resizing)
against a numpy transcription of dinov2's ``vision_transformer.py`` / ``layers/`` forward."""
from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.config import base_config
from jaxssl.models import registry
from jaxssl.models.vit import (VIT_SIZES, VisionTransformer, resize_position_table,
                               swiglu_hidden_dim)

D, HEADS, DEPTH, P = 16, 2, 3, 4


def _ln(x, p, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _dense(x, p):
    return x @ p["kernel"] + p["bias"]


def _gelu(x):
    from scipy.special import erf
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _attn(x, p):
    b, n, d = x.shape
    qkv = _dense(x, p["qkv"]).reshape(b, n, 3, HEADS, d // HEADS).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv
    a = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // HEADS)
    a = np.exp(a - a.max(-1, keepdims=True))
    a = a / a.sum(-1, keepdims=True)
    return _dense((a @ v).transpose(0, 2, 1, 3).reshape(b, n, d), p["proj"])


def _mlp(x, p, swiglu):
    if swiglu:  # dinov2 SwiGLUFFN: x1, x2 = w12(x).chunk(2); w3(silu(x1) * x2)
        x1, x2 = np.split(_dense(x, p["w12"]), 2, axis=-1)
        return _dense(x1 / (1 + np.exp(-x1)) * x2, p["w3"])
    return _dense(_gelu(_dense(x, p["fc1"])), p["fc2"])


def _numpy_forward(params, images, mask, num_reg, swiglu, layerscale):
    """dinov2 DinoVisionTransformer.forward_features with learned positions at the init grid."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), flax.core.unfreeze(params))
    b, h, w, c = images.shape
    patches = images.reshape(b, h // P, P, w // P, P, c).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(b, (h // P) * (w // P), P * P * c)
    x = patches @ p["patch_embed"]["kernel"].reshape(P * P * c, D) + p["patch_embed"]["bias"]
    if mask is not None:  # torch.where(masks.unsqueeze(-1), mask_token, x)
        x = np.where(mask[..., None], p["mask_token"][None], x)
    x = np.concatenate([np.broadcast_to(p["cls_token"], (b, 1, D)), x], 1) + p["pos_embed"]
    if num_reg:
        x = np.concatenate([x[:, :1], np.broadcast_to(p["register_tokens"], (b, num_reg, D)),
                            x[:, 1:]], 1)
    for i in range(DEPTH):
        blk = p[f"blocks_{i}"]
        ls1 = blk["ls1"]["gamma"] if layerscale else 1.0
        ls2 = blk["ls2"]["gamma"] if layerscale else 1.0
        x = x + ls1 * _attn(_ln(x, blk["norm1"]), blk["attn"])
        x = x + ls2 * _mlp(_ln(x, blk["norm2"]), blk["mlp"], swiglu)
    x = _ln(x, p["norm"])
    return {"cls": x[:, 0], "registers": x[:, 1:1 + num_reg], "patches": x[:, 1 + num_reg:]}


@pytest.mark.parametrize("num_reg,swiglu,layerscale,masked", [
    (0, False, 0.0, False), (4, False, 1e-5, True), (2, True, 0.5, True)])
def test_forward_features_matches_numpy_dinov2(num_reg, swiglu, layerscale, masked):
    vit = VisionTransformer(patch_size=P, hidden_dim=D, depth=DEPTH, num_heads=HEADS,
                            posemb="learned", layerscale_init=layerscale, num_registers=num_reg,
                            mlp_type="swiglu" if swiglu else "mlp", use_mask_token=masked)
    images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    params = vit.init(jax.random.key(1), images)["params"]
    # Non-trivial LayerScale and mask token, so both are exercised.
    params = flax.core.unfreeze(params)
    if masked:
        params["mask_token"] = jax.random.normal(jax.random.key(2), (1, D))
    if layerscale:
        params["blocks_1"]["ls2"]["gamma"] = jnp.linspace(-1.0, 1.0, D)
    mask = (np.arange(16)[None, :] % 3 == np.array([[0], [1]])) if masked else None
    got = vit.apply({"params": params}, images, mask=None if mask is None else jnp.asarray(mask),
                    n_last_blocks=2, method=VisionTransformer.forward_features)
    want = _numpy_forward(params, np.asarray(images, np.float64), mask, num_reg, swiglu,
                          layerscale)
    for key in ("cls", "registers", "patches"):
        np.testing.assert_allclose(np.asarray(got[key]), want[key], rtol=2e-4, atol=2e-5)
    assert got["cls_last_blocks"].shape == (2, 2, D)
    np.testing.assert_allclose(got["cls_last_blocks"][:, -1], got["cls"], rtol=1e-6)
    if swiglu:
        assert params["blocks_0"]["mlp"]["w12"]["kernel"].shape == (D, 2 * swiglu_hidden_dim(4 * D))


def test_defaults_keep_the_parameter_tree():
    vit = VisionTransformer(patch_size=P, hidden_dim=D, depth=1, num_heads=HEADS)
    params = vit.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
    assert sorted(params) == ["blocks_0", "cls_token", "norm", "patch_embed"]
    assert sorted(params["blocks_0"]) == ["attn", "mlp", "norm1", "norm2"]


def test_swiglu_hidden_width_is_dinov2s():
    assert swiglu_hidden_dim(4 * 1536) == 4096  # ViT-g
    assert swiglu_hidden_dim(4 * 1024) == 2736


def _torch_bicubic_reference(table, out_h, out_w, scale_h, scale_w):
    """Per-pixel transcription of ATen's upsample_bicubic2d (align_corners=False, a=-0.75)."""
    a = -0.75

    def w(t):
        t = abs(t)
        return (((a + 2) * t - (a + 3)) * t * t + 1 if t <= 1
                else ((a * t - 5 * a) * t + 8 * a) * t - 4 * a if t < 2 else 0.0)

    in_h, in_w, d = table.shape
    out = np.zeros((out_h, out_w, d))
    for i in range(out_h):
        sy = (i + 0.5) / scale_h - 0.5
        y0 = int(np.floor(sy))
        for j in range(out_w):
            sx = (j + 0.5) / scale_w - 0.5
            x0 = int(np.floor(sx))
            for m in range(-1, 3):
                for n in range(-1, 3):
                    yy = min(max(y0 + m, 0), in_h - 1)
                    xx = min(max(x0 + n, 0), in_w - 1)
                    out[i, j] += w(sy - (y0 + m)) * w(sx - (x0 + n)) * table[yy, xx]
    return out


@pytest.mark.parametrize("grid", [(6, 6), (3, 5), (14, 14)])
def test_learned_positions_resize_like_dinos_interpolate_pos_encoding(grid):
    g0, d = 4, 3
    pos = np.random.default_rng(0).normal(size=(g0 * g0, d)).astype(np.float32)
    got = np.asarray(resize_position_table(jnp.asarray(pos), grid, 0.1))
    want = _torch_bicubic_reference(pos.reshape(g0, g0, d).astype(np.float64), grid[0], grid[1],
                                    (grid[0] + 0.1) / g0, (grid[1] + 0.1) / g0)
    np.testing.assert_allclose(got, want.reshape(-1, d), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(resize_position_table(jnp.asarray(pos), (g0, g0))),
                                  pos)
    try:
        import torch
    except ImportError:
        return
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(pos.reshape(1, g0, g0, d)).permute(0, 3, 1, 2),
        scale_factor=((grid[0] + 0.1) / g0, (grid[1] + 0.1) / g0), mode="bicubic")
    np.testing.assert_allclose(got, ref.permute(0, 2, 3, 1).reshape(-1, d).numpy(), atol=1e-5)


def test_multicrop_with_learned_positions_runs_on_a_smaller_crop():
    vit = VisionTransformer(patch_size=P, hidden_dim=D, depth=1, num_heads=HEADS,
                            posemb="learned")
    params = vit.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    assert vit.apply(params, jnp.ones((2, 8, 8, 3))).shape == (2, D)


def test_large_sizes_and_config_fields_reach_the_model():
    assert VIT_SIZES["vit_large"] == dict(hidden_dim=1024, depth=24, num_heads=16)
    assert VIT_SIZES["vit_huge"] == dict(hidden_dim=1280, depth=32, num_heads=16)
    m = base_config().model
    m.backbone, m.patch_size = "vit_large", 14
    m.vit_layerscale_init, m.vit_num_registers, m.vit_mlp_type = 1e-5, 4, "swiglu"
    vit = registry.build_backbone(m)
    assert (vit.hidden_dim, vit.depth, vit.patch_size) == (1024, 24, 14)
    assert (vit.layerscale_init, vit.num_registers, vit.mlp_type) == (1e-5, 4, "swiglu")
    m.vit_mlp_type = "glu"
    with pytest.raises(ValueError, match="model.vit_mlp_type"):
        registry.build_backbone(m).init(jax.random.key(0), jnp.zeros((1, 14, 14, 3)))


def test_mask_without_mask_token_is_refused():
    vit = VisionTransformer(patch_size=P, hidden_dim=D, depth=1, num_heads=HEADS)
    params = vit.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="use_mask_token"):
        vit.apply(params, jnp.zeros((1, 8, 8, 3)), mask=jnp.zeros((1, 4), bool),
                  method=VisionTransformer.forward_features)
