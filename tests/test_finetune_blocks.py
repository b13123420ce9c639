"""Fine-tuning building blocks against their references.

* ``layerwise_lr_scales``: a transcription of MAE ``util/lr_decay.py`` (``param_groups_lrd``,
  ``get_layer_id_for_vit``) run on the timm parameter names of the same ViT.
* drop path: timm ``drop_path`` / ``Block`` (``x + drop_path(attn(norm1(x)))``) in numpy.
* ``pool='gap_fc_norm'``: MAE ``models_vit.py`` ``forward_features`` with ``global_pool=True``.
* mixup / cutmix: timm 0.3.2 ``Mixup`` (``rand_bbox``, ``cutmix_bbox_and_lam``, ``_mix_batch``,
  ``mixup_target``) transcribed to numpy and fed the same draws; pixel-area label weights.
* random erasing: timm ``RandomErasing(mode='pixel')`` area / aspect bounds and pixel values.
"""
import math
import re
from math import erf

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxssl import optim
from jaxssl.models.vit import EncoderBlock, VisionTransformer, drop_path, drop_path_rates

KEY = jax.random.key(0, impl="rbg")


# --------------------------------------------------------------------------- layer-wise lr decay

def mae_get_layer_id_for_vit(name, num_layers):
    """MAE util/lr_decay.py, verbatim."""
    if name in ['cls_token', 'pos_embed']:
        return 0
    elif name.startswith('patch_embed'):
        return 0
    elif name.startswith('blocks'):
        return int(name.split('.')[1]) + 1
    else:
        return num_layers


def mae_param_groups_lrd(named_parameters, depth, weight_decay=0.05, no_weight_decay_list=(),
                         layer_decay=.75):
    """MAE util/lr_decay.py ``param_groups_lrd`` on (name, ndim) pairs -> {name: lr_scale}
    (``len(model.blocks)`` is ``depth``)."""
    param_group_names = {}
    num_layers = depth + 1
    layer_scales = list(layer_decay ** (num_layers - i) for i in range(num_layers + 1))
    for n, ndim in named_parameters:
        if ndim == 1 or n in no_weight_decay_list:
            g_decay = "no_decay"
        else:
            g_decay = "decay"
        layer_id = mae_get_layer_id_for_vit(n, num_layers)
        group_name = "layer_%d_%s" % (layer_id, g_decay)
        if group_name not in param_group_names:
            param_group_names[group_name] = {"lr_scale": layer_scales[layer_id], "params": []}
        param_group_names[group_name]["params"].append(n)
    return {n: g["lr_scale"] for g in param_group_names.values() for n in g["params"]}


def timm_name(path):
    """Flax path of the fine-tuning model below -> timm / MAE ``VisionTransformer`` name."""
    keys = [str(e.key) for e in path]
    if keys[0] == "backbone":
        keys = keys[1:]
    name = ".".join(keys)
    name = re.sub(r"^blocks_(\d+)", r"blocks.\1", name)
    name = name.replace("patch_embed.", "patch_embed.proj.")
    return re.sub(r"\.(kernel|scale)$", ".weight", name)


class FineTuneViT(nn.Module):
    depth: int

    @nn.compact
    def __call__(self, x):
        vit = VisionTransformer(patch_size=4, hidden_dim=16, depth=self.depth, num_heads=2,
                                posemb="learned", pool="gap_fc_norm", name="backbone")
        return nn.Dense(5, name="head")(vit(x))


@pytest.mark.parametrize("depth, decay", [(4, 0.65), (3, 0.75)])
def test_layerwise_lr_scales_follow_mae_param_groups_lrd(depth, decay):
    model = FineTuneViT(depth)
    params = jax.eval_shape(lambda: model.init(KEY, jnp.zeros((1, 8, 8, 3))))["params"]
    scales = optim.layerwise_lr_scales(params, decay, depth)
    assert jax.tree.structure(scales) == jax.tree.structure(params)
    named = [(timm_name(path), leaf.ndim)
             for path, leaf in jax.tree_util.tree_leaves_with_path(params)]
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight",
            "fc_norm.weight", "head.bias"} <= {n for n, _ in named}
    expected = mae_param_groups_lrd(named, depth, layer_decay=decay)
    got = {timm_name(path): s for path, s in jax.tree_util.tree_leaves_with_path(scales)}
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-12), name
    # The rule written out: embeddings decay^(L+1), block i decay^(L-i), head 1.
    assert got["cls_token"] == pytest.approx(decay ** (depth + 1))
    assert got[f"blocks.{depth - 1}.mlp.fc2.weight"] == pytest.approx(decay)
    assert got["head.weight"] == 1.0


def test_layerwise_lr_scales_errors_name_the_fix():
    params = jax.eval_shape(lambda: FineTuneViT(3).init(KEY, jnp.zeros((1, 8, 8, 3))))["params"]
    with pytest.raises(ValueError, match="num_layers=2"):
        optim.layerwise_lr_scales(params, 0.65, 2)
    with pytest.raises(ValueError, match="no 'blocks_<i>'"):
        optim.layerwise_lr_scales({"head": {"kernel": jnp.zeros((2, 2))}}, 0.65, 2)
    with pytest.raises(ValueError, match="decay=1.5"):
        optim.layerwise_lr_scales(params, 1.5, 3)


def test_scale_by_tree_gives_each_leaf_lr_times_its_scale():
    """SGD lr 0.1 then scale_by_tree: w <- w - 0.1 * scale * g (torch group lr * lr_scale)."""
    params = {"backbone": {"cls_token": jnp.ones((1, 1, 2)), "blocks_0": {"w": jnp.ones(3)},
                           "blocks_1": {"w": jnp.ones(3)}}, "head": {"kernel": jnp.ones((2, 2))}}
    grads = jax.tree.map(lambda p: jnp.full_like(p, 2.0), params)
    scales = optim.layerwise_lr_scales(params, 0.5, 2)
    tx = optax.chain(optax.sgd(0.1), optim.scale_by_tree(scales))
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    expect = {"cls_token": 0.125, "blocks_0": 0.25, "blocks_1": 0.5}
    for path, u in jax.tree_util.tree_leaves_with_path(updates):
        name = str(path[1].key) if str(path[0].key) == "backbone" else "head"
        np.testing.assert_allclose(u, -0.1 * 2.0 * expect.get(name, 1.0), rtol=1e-6)


# --------------------------------------------------------------------------- drop path

def test_drop_path_rates_are_timm_linspace():
    np.testing.assert_allclose(drop_path_rates(0.1, 12), [0.1 * i / 11 for i in range(12)],
                               rtol=1e-12)
    assert drop_path_rates(0.3, 1) == [0.0]
    model = VisionTransformer(patch_size=4, hidden_dim=16, depth=3, num_heads=2,
                              drop_path_rate=0.2)
    variables = model.init(KEY, jnp.zeros((1, 8, 8, 3)))
    assert [b.drop_path for b in model.bind(variables).blocks] == pytest.approx([0, 0.1, 0.2])


def test_drop_path_zeroes_whole_examples_and_rescales_the_rest():
    x = jnp.ones((4000, 3, 2))
    out = np.asarray(drop_path(x, 0.3, jax.random.key(1)))
    per_example = out.reshape(4000, -1)
    kept = per_example[:, 0] != 0
    assert np.all(per_example[kept] == np.float32(1 / 0.7))
    assert np.all(per_example[~kept] == 0)
    # Binomial(4000, 0.3): sd 29; 5 sd bounds
    assert abs((~kept).sum() - 1200) < 145


def np_layer_norm(h, p, eps=1e-6):
    return (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + eps) * \
        p["scale"] + p["bias"]


def timm_branches_numpy(p, x, num_heads):
    """timm Block's two residual branches in numpy: attn(norm1(.)) and mlp(norm2(.))."""
    def attn(x):
        B, N, C = x.shape
        hd = C // num_heads
        qkv = np_layer_norm(x, p["norm1"]) @ p["attn"]["qkv"]["kernel"] + p["attn"]["qkv"]["bias"]
        q, k, v = qkv.reshape(B, N, 3, num_heads, hd).transpose(2, 0, 3, 1, 4)
        a = q @ k.transpose(0, 1, 3, 2) * hd ** -0.5
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        h = (a @ v).transpose(0, 2, 1, 3).reshape(B, N, C)
        return h @ p["attn"]["proj"]["kernel"] + p["attn"]["proj"]["bias"]

    def mlp(x):
        h = np_layer_norm(x, p["norm2"]) @ p["mlp"]["fc1"]["kernel"] + p["mlp"]["fc1"]["bias"]
        h = 0.5 * h * (1 + np.vectorize(erf)(h / np.sqrt(2)))
        return h @ p["mlp"]["fc2"]["kernel"] + p["mlp"]["fc2"]["bias"]
    return attn, mlp


def test_encoder_block_drop_path_matches_timm_block():
    """Each example's output is x + m1 * attn(x), then + m2 * mlp(.), m in {0, 1 / keep}."""
    x = jax.random.normal(jax.random.key(2), (64, 5, 16))
    block = EncoderBlock(num_heads=2, mlp_dim=32, drop_path=0.5)
    variables = block.init(KEY, x)
    out = np.asarray(block.apply(variables, x, True, rngs={"dropout": jax.random.key(3)}),
                     np.float64)
    attn, mlp = timm_branches_numpy(jax.tree.map(lambda a: np.asarray(a, np.float64),
                                                 variables["params"]), np.asarray(x, np.float64), 2)
    xs = np.asarray(x, np.float64)
    masks = []
    for i in range(64):
        xi = xs[i:i + 1]
        found = None
        for m1 in (0.0, 2.0):
            for m2 in (0.0, 2.0):
                y = xi + m1 * attn(xi)
                y = y + m2 * mlp(y)
                if np.allclose(out[i:i + 1], y, rtol=1e-4, atol=1e-4):
                    found = (m1, m2)
        assert found is not None, i
        masks.append(found)
    masks = np.asarray(masks)
    # Both branches drop independently, about half of the time each.
    assert 10 < (masks[:, 0] == 0).sum() < 54 and 10 < (masks[:, 1] == 0).sum() < 54
    assert len({tuple(m) for m in masks}) == 4
    # train=False (or rate 0): the plain block, no rng needed
    plain = EncoderBlock(num_heads=2, mlp_dim=32)
    np.testing.assert_array_equal(block.apply(variables, x, False), plain.apply(variables, x))
    np.testing.assert_array_equal(plain.apply(variables, x, True), plain.apply(variables, x))


def test_vit_default_drop_path_is_bit_identical_and_train_needs_dropout_rng():
    x = jax.random.normal(jax.random.key(4), (2, 8, 8, 3))
    base = VisionTransformer(patch_size=4, hidden_dim=16, depth=3, num_heads=2, remat="full")
    dropped = base.clone(drop_path_rate=0.5)
    variables = base.init(KEY, x)
    ref = base.apply(variables, x)
    np.testing.assert_array_equal(base.apply(variables, x, train=True), ref)
    np.testing.assert_array_equal(dropped.apply(variables, x, train=False), ref)
    train_out = dropped.apply(variables, x, train=True, rngs={"dropout": jax.random.key(5)})
    assert train_out.shape == ref.shape and not np.array_equal(train_out, ref)
    with pytest.raises(Exception, match="dropout"):
        dropped.apply(variables, x, train=True)


# --------------------------------------------------------------------------- MAE global pool

def test_gap_fc_norm_is_mae_global_pool():
    """MAE forward_features(global_pool=True): x[:, 1:].mean(1) -> fc_norm; no final norm."""
    x = jax.random.normal(jax.random.key(6), (3, 8, 8, 3))
    model = VisionTransformer(patch_size=4, hidden_dim=16, depth=2, num_heads=2,
                              posemb="learned", pool="gap_fc_norm")
    variables = model.init(KEY, x)
    params = variables["params"]
    assert "norm" not in params and set(params["fc_norm"]) == {"scale", "bias"}
    variables = jax.tree.map(lambda a: a + 0.1 * jnp.sin(jnp.arange(a.size)).reshape(a.shape),
                             variables)
    tokens = model.apply(variables, x, method="embed_patches")
    blocks_out = np.asarray(model.apply(variables, tokens, method="run_blocks"), np.float64)
    fc_norm = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"]["fc_norm"])
    expected = np_layer_norm(blocks_out[:, 1:].mean(1), fc_norm)
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-5, atol=1e-5)
    # run_blocks is the final norm's input: encode_tokens = LayerNorm(run_blocks) (cls model)
    cls_model = model.clone(pool="cls")
    cls_vars = cls_model.init(KEY, x)
    encoded = cls_model.apply(cls_vars, tokens, method="encode_tokens")
    pre = np.asarray(cls_model.apply(cls_vars, tokens, method="run_blocks"), np.float64)
    norm = jax.tree.map(lambda a: np.asarray(a, np.float64), cls_vars["params"]["norm"])
    np.testing.assert_allclose(encoded, np_layer_norm(pre, norm), rtol=1e-5, atol=1e-5)
