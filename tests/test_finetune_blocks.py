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


# --------------------------------------------------------------------------- mixup / cutmix

from jaxssl.augment.mixup import (draw_mix, mix_with_draws, mixup_cutmix,  # noqa: E402
                                  soft_target_cross_entropy)


class TimmMixupBatch:
    """timm 0.3.2 ``Mixup`` in 'batch' mode with numpy's RNG calls replaced by given draws
    (``rand``: the U[0, 1) calls in order, ``beta``: per alpha, ``randint``: cy, cx)."""

    def __init__(self, draws, mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5,
                 correct_lam=True, label_smoothing=0.1, num_classes=10):
        self.d = draws
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.mix_prob, self.switch_prob = prob, switch_prob
        self.correct_lam, self.label_smoothing = correct_lam, label_smoothing
        self.num_classes = num_classes

    def rand_bbox(self, img_shape, lam):
        ratio = np.sqrt(1 - lam)
        img_h, img_w = img_shape[-2:]
        cut_h, cut_w = int(img_h * ratio), int(img_w * ratio)
        cy, cx = int(self.d.cy), int(self.d.cx)   # np.random.randint(0, img_h) / (0, img_w)
        yl = np.clip(cy - cut_h // 2, 0, img_h)
        yh = np.clip(cy + cut_h // 2, 0, img_h)
        xl = np.clip(cx - cut_w // 2, 0, img_w)
        xh = np.clip(cx + cut_w // 2, 0, img_w)
        return yl, yh, xl, xh

    def cutmix_bbox_and_lam(self, img_shape, lam):
        yl, yu, xl, xu = self.rand_bbox(img_shape, lam)
        if self.correct_lam:
            bbox_area = (yu - yl) * (xu - xl)
            lam = 1. - bbox_area / float(img_shape[-2] * img_shape[-1])
        return (yl, yu, xl, xu), lam

    def _params_per_batch(self):
        lam = 1.
        use_cutmix = False
        if float(self.d.apply) < self.mix_prob:
            if self.mixup_alpha > 0. and self.cutmix_alpha > 0.:
                use_cutmix = float(self.d.use_cutmix) < self.switch_prob
                lam_mix = float(self.d.lam_cutmix) if use_cutmix else float(self.d.lam_mixup)
            elif self.mixup_alpha > 0.:
                lam_mix = float(self.d.lam_mixup)
            else:
                use_cutmix = True
                lam_mix = float(self.d.lam_cutmix)
            lam = float(lam_mix)
        return lam, use_cutmix

    def _mix_batch(self, x):
        lam, use_cutmix = self._params_per_batch()
        if lam == 1.:
            return 1.
        if use_cutmix:
            (yl, yh, xl, xh), lam = self.cutmix_bbox_and_lam(x.shape, lam)
            x[:, :, yl:yh, xl:xh] = x[::-1][:, :, yl:yh, xl:xh]
        else:
            x_flipped = x[::-1] * (1. - lam)
            x *= lam
            x += x_flipped
        return lam

    def __call__(self, x, target):   # x: [B, C, H, W] float32, modified in place as timm
        lam = self._mix_batch(x)
        off_value = self.label_smoothing / self.num_classes
        on_value = 1. - self.label_smoothing + off_value
        y1 = np.full((len(target), self.num_classes), off_value)
        y1[np.arange(len(target)), target] = on_value
        y2 = y1[::-1]
        return x, y1 * lam + y2 * (1. - lam), lam


def mix_batch(batch=6, size=(7, 9), channels=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(batch, *size, channels)).astype(np.float32)
    images += np.arange(batch, dtype=np.float32)[:, None, None, None]  # rows differ everywhere
    labels = rng.integers(0, 10, size=batch)
    return images, labels


@pytest.mark.parametrize("kw", [dict(), dict(mixup_alpha=0.0), dict(cutmix_alpha=0.0),
                                dict(prob=0.5, correct_lam=False, label_smoothing=0.0)])
def test_mixup_cutmix_matches_timm_mix_batch_with_the_same_draws(kw):
    images, labels = mix_batch()
    fn = jax.jit(lambda d: mix_with_draws(images, labels, d, num_classes=10, **kw))
    kinds = set()
    for seed in range(24):
        draws = draw_mix(jax.random.key(seed), 7, 9,
                         mixup_alpha=kw.get("mixup_alpha", 0.8),
                         cutmix_alpha=kw.get("cutmix_alpha", 1.0))
        out, targets, _ = fn(draws)
        ref = TimmMixupBatch(draws, num_classes=10, **kw)
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).copy()
        x_ref, t_ref, lam = ref(x, labels)
        np.testing.assert_allclose(out, x_ref.transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(targets, t_ref, rtol=1e-6, atol=1e-7)
        _, use_cutmix = ref._params_per_batch()
        kinds.add("none" if float(draws.apply) >= kw.get("prob", 1.0) else
                  "cut" if use_cutmix else "mix")
    expected = {"mixup_alpha": {"cut"}, "cutmix_alpha": {"mix"}}
    for name, allowed in expected.items():
        if kw.get(name) == 0.0:
            assert kinds == allowed
    if not kw:
        assert kinds == {"cut", "mix"}
    if kw.get("prob") == 0.5:
        assert "none" in kinds


def test_mixup_cutmix_label_weights_equal_mixed_pixel_areas():
    """Each target row is a * smooth(y) + (1 - a) * smooth(y[::-1]) where a is the share of
    the image that comes from itself (cutmix: pixels counted; mixup: the blend weight)."""
    images, labels = mix_batch(batch=4, size=(16, 12))
    flipped = images[::-1]
    smooth = np.full((4, 10), 0.01)
    smooth[np.arange(4), labels] = 0.91
    fn = jax.jit(lambda k: mixup_cutmix(k, images, labels, num_classes=10))
    seen = {"cut": 0, "mix": 0, "clipped": 0}
    for seed in range(40):
        out, targets = map(np.asarray, fn(jax.random.key(seed)))
        np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-6)
        from_flip = np.all(out == flipped, axis=-1)
        from_self = np.all(out == images, axis=-1)
        if np.all(from_flip | from_self):                          # cutmix
            seen["cut"] += 1
            share = from_self.mean(axis=(1, 2))                    # [B], equal for all rows
            assert np.all(share == share[0])
            box = np.argwhere(from_flip[0])
            if len(box):   # the flipped pixels form one rectangle
                (y0, x0), (y1, x1) = box.min(0), box.max(0)
                assert from_flip[0, y0:y1 + 1, x0:x1 + 1].all()
                assert (y1 - y0 + 1) * (x1 - x0 + 1) == from_flip[0].sum()
                seen["clipped"] += int(y0 == 0 or x0 == 0 or y1 == 15 or x1 == 11)
            a = share[0]
        else:                                                      # mixup
            seen["mix"] += 1
            weights = (out - flipped) / (images - flipped)
            a = weights.mean()
            np.testing.assert_allclose(weights, a, atol=2e-5)
        np.testing.assert_allclose(targets, a * smooth + (1 - a) * smooth[::-1], atol=2e-6)
    assert seen["cut"] >= 8 and seen["mix"] >= 8 and seen["clipped"] >= 1


def test_mixup_cutmix_draw_statistics():
    """switch_prob 0.5; lam ~ Beta(0.8, 0.8) (mean 0.5, var 1/(4 * 2.6)) for mixup."""
    draws = jax.vmap(lambda k: draw_mix(k, 224, 224, mixup_alpha=0.8, cutmix_alpha=1.0))(
        jax.random.split(jax.random.key(7), 20000))
    cut = np.asarray(draws.use_cutmix) < 0.5
    assert abs(cut.mean() - 0.5) < 0.02
    lam = np.asarray(draws.lam_mixup)
    assert abs(lam.mean() - 0.5) < 0.01 and abs(lam.var() - 1 / (4 * 2.6)) < 0.005
    lam_c = np.asarray(draws.lam_cutmix)   # Beta(1, 1) = U[0, 1]
    assert abs(lam_c.mean() - 0.5) < 0.01 and abs(lam_c.var() - 1 / 12) < 0.004
    cy = np.asarray(draws.cy)
    assert cy.min() == 0 and cy.max() == 223


def test_mixup_cutmix_rejects_odd_batches():
    images, labels = mix_batch(batch=5)
    with pytest.raises(ValueError, match="even batch"):
        mixup_cutmix(jax.random.key(0), images, labels, num_classes=10)


def test_soft_target_cross_entropy_is_timm_formula():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 7)).astype(np.float32)
    targets = rng.dirichlet(np.ones(7), size=5)
    z = logits.astype(np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    expected = np.mean(np.sum(-targets * logp, axis=-1))
    np.testing.assert_allclose(soft_target_cross_entropy(logits, targets), expected, rtol=1e-5)


# --------------------------------------------------------------------------- random erasing

from jaxssl.augment.erasing import (draw_erase, erase_with_draws, random_erase,  # noqa: E402
                                    random_erasing)


def timm_erase(img, d, probability=0.25, min_count=1, max_count=1):
    """timm 0.3.2 ``RandomErasing._erase`` on [C, H, W] with ``random.*`` replaced by ``d``."""
    chan, img_h, img_w = img.shape
    if float(d.apply) > probability:
        return img
    area = img_h * img_w
    count = min_count if min_count == max_count else int(d.count)
    for j in range(count):
        for attempt in range(10):
            target_area = float(d.area[j, attempt]) * area / count
            aspect_ratio = math.exp(float(d.log_aspect[j, attempt]))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < img_w and h < img_h:
                top = int(float(d.top[j]) * (img_h - h + 1))     # random.randint(0, img_h - h)
                left = int(float(d.left[j]) * (img_w - w + 1))
                img[:, top:top + h, left:left + w] = np.asarray(d.values[j]).transpose(
                    2, 0, 1)[:, top:top + h, left:left + w]
                break
    return img


@pytest.mark.parametrize("max_count", [1, 3])
def test_random_erase_matches_timm_erase_with_the_same_draws(max_count):
    image = np.random.default_rng(0).normal(size=(12, 10, 3)).astype(np.float32)
    fn = jax.jit(lambda d: erase_with_draws(image, d, probability=0.6)[0])
    erased = 0
    for seed in range(30):
        d = draw_erase(jax.random.key(seed), image.shape, max_count=max_count, min_area=0.1,
                       max_area=0.9)   # large areas: some tries fail, as at the max_area edge
        expected = timm_erase(image.transpose(2, 0, 1).copy(), d, probability=0.6,
                              max_count=max_count).transpose(1, 2, 0)
        np.testing.assert_array_equal(fn(d), expected)
        erased += int(not np.array_equal(expected, image))
    assert 8 <= erased <= 26


def test_random_erasing_area_aspect_probability_and_values():
    """MAE's RandomErasing(0.25, mode='pixel'): box area in [0.02, 1/3] of the image (up to
    the rounding of h and w), aspect log-uniform in [0.3, 1/0.3], values N(0, 1)."""
    n, size = 2000, 64
    images = jnp.full((n, size, size, 3), 7.0)
    out = np.asarray(jax.jit(random_erasing)(jax.random.key(3), images))
    erased = np.any(out != 7.0, axis=-1)                                     # [n, H, W]
    hit = erased.any(axis=(1, 2))
    assert abs(hit.mean() - 0.25) < 0.04                                     # binomial 4 sd
    fractions, log_aspects, values = [], [], []
    for mask, img in zip(erased[hit], out[hit]):
        ys, xs = np.nonzero(mask)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert mask.sum() == h * w                                           # one rectangle
        fractions.append(h * w / size ** 2)
        log_aspects.append(math.log(h / w))
        values.append(img[mask])
    fractions = np.asarray(fractions)
    # h, w are rounded: (sqrt(A r) +- 1/2)(sqrt(A / r) +- 1/2) around A in [0.02, 1/3]
    assert fractions.min() >= 0.02 * 0.75 and fractions.max() <= 1 / 3 * 1.1
    assert fractions.mean() == pytest.approx((0.02 + 1 / 3) / 2, abs=0.015)
    log_aspects = np.asarray(log_aspects)
    bound = math.log(1 / 0.3)
    assert np.all(np.abs(log_aspects) <= bound + 0.15)
    assert abs(log_aspects.mean()) < 0.12 and np.std(log_aspects) > 0.5
    values_per_image = values
    values = np.concatenate(values)
    assert abs(values.mean()) < 0.01 and abs(values.std() - 1) < 0.01
    # one key per image: the noise differs between images
    assert len({float(v[0, 0]) for v in values_per_image}) == hit.sum()


def test_random_erase_modes_and_errors():
    image = jnp.full((20, 20, 3), 5.0)
    rand = np.asarray(random_erase(jax.random.key(1), image, probability=1.0, mode="rand"))
    box = np.any(rand != 5.0, axis=-1)
    assert box.any() and np.all(rand[box] == rand[box][0])    # one colour per channel
    const = np.asarray(random_erase(jax.random.key(1), image, probability=1.0, mode="const"))
    assert np.all(const[np.any(const != 5.0, axis=-1)] == 0)
    assert np.array_equal(random_erase(jax.random.key(1), image, probability=0.0), image)
    with pytest.raises(ValueError, match="mode='noise'"):
        random_erase(jax.random.key(1), image, mode="noise")
