"""MAE: random patch masking, the visible-only encoder, the decoder's unshuffle, the loss, configs.

References are independent of the code under test: MAE's ``random_masking`` re-written in
numpy (double argsort of the noise), explicit patch slicing for ``patchify``, and the
decoder's documented computation re-done in numpy from its parameters.
"""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxssl import methods
from jaxssl import losses, rng, train
from jaxssl import sharding as sharding_lib
from jaxssl import train_state as state_lib
from jaxssl.config import load_preset
from jaxssl.augment import patch_masking
from jaxssl.models.mae import MAEDecoder, MaskedAutoencoder, decoder_position_embedding
from jaxssl.models.vit import EncoderBlock, VisionTransformer, sincos_2d_position_embedding


def tiny_digits_config(num_devices: int = 1, batch: int = 16) -> ml_collections.ConfigDict:
    c = load_preset("mae_digits")
    c.mae.update(dict(encoder_hidden_dim=32, encoder_depth=1, encoder_heads=2,
                      decoder_dim=16, decoder_depth=1, decoder_heads=2))
    c.train.update(dict(batch_size=batch, num_epochs=0.0, num_steps=4, log_every_steps=1))
    c.mesh.num_devices = num_devices
    return c


def make_method(config):
    from jaxssl.data import pipeline
    from jaxssl.methods.mae import MAE
    MAE.validate_config(config)
    mesh = sharding_lib.make_mesh(config.mesh.num_devices or None)
    return MAE(config, mesh, pipeline.build_train_data(config, mesh, MAE), total_steps=1)


# ----------------------------------------------------------------------------- masking

def reference_random_masking(noise: np.ndarray, len_keep: int):
    """facebookresearch/mae models_mae.py ``random_masking``, in numpy, given the noise."""
    ids_shuffle = np.argsort(noise, axis=1, kind="stable")
    ids_restore = np.argsort(ids_shuffle, axis=1, kind="stable")
    ids_keep = ids_shuffle[:, :len_keep]
    mask = np.ones(noise.shape, np.float32)
    mask[:, :len_keep] = 0
    mask = np.take_along_axis(mask, ids_restore, axis=1)
    return mask, ids_shuffle, ids_restore, ids_keep


@pytest.mark.parametrize("num_patches,num_masked", [(16, 12), (64, 48), (196, 147)])
def test_exactly_75_percent_of_patches_masked_per_image(num_patches, num_masked):
    key = rng.step_key(0, "mask", 3)
    pm = patch_masking.random_patch_mask(key, 32, num_patches, 0.75)
    mask = np.asarray(pm.mask)
    assert mask.shape == (32, num_patches) and mask.dtype == np.float32
    assert set(np.unique(mask)) == {0.0, 1.0}
    np.testing.assert_array_equal(mask.sum(axis=1), np.full(32, num_masked))
    assert pm.ids_keep.shape == (32, num_patches - num_masked)
    # The kept patches are exactly the unmasked ones.
    np.testing.assert_array_equal(np.take_along_axis(mask, np.asarray(pm.ids_keep), axis=1), 0.0)
    # Different images get different masks.
    assert len({row.tobytes() for row in mask}) > 16


def test_masking_matches_mae_random_masking_given_the_noise():
    key = rng.step_key(7, "mask", 11)
    pm = patch_masking.random_patch_mask(key, 8, 49, 0.75, offset=5)
    keys = rng.example_keys(key, 8, 5)
    noise = np.asarray(jax.vmap(lambda k: jax.random.bits(k, (49,), jnp.uint32))(keys))
    mask, ids_shuffle, ids_restore, ids_keep = reference_random_masking(noise, 49 - 37)
    np.testing.assert_array_equal(pm.mask, mask)
    np.testing.assert_array_equal(pm.ids_shuffle, ids_shuffle)
    np.testing.assert_array_equal(pm.ids_restore, ids_restore)
    np.testing.assert_array_equal(pm.ids_keep, ids_keep)


def test_ids_restore_inverts_the_shuffle():
    pm = patch_masking.random_patch_mask(rng.step_key(0, "mask", 0), 16, 64, 0.75)
    shuffle, restore = np.asarray(pm.ids_shuffle), np.asarray(pm.ids_restore)
    for row in shuffle:
        np.testing.assert_array_equal(np.sort(row), np.arange(64))  # a permutation
    np.testing.assert_array_equal(np.take_along_axis(shuffle, restore, axis=1),
                                  np.broadcast_to(np.arange(64), (16, 64)))
    np.testing.assert_array_equal(np.take_along_axis(restore, shuffle, axis=1),
                                  np.broadcast_to(np.arange(64), (16, 64)))
    # Shuffling tokens and gathering them back with ids_restore returns the original order.
    tokens = jax.random.normal(jax.random.key(1), (16, 64, 5))
    shuffled = patch_masking.gather_patches(tokens, pm.ids_shuffle)
    np.testing.assert_array_equal(patch_masking.gather_patches(shuffled, pm.ids_restore), tokens)


def test_num_masked_patches_rounds_and_rejects_degenerate_ratios():
    assert patch_masking.num_masked_patches(196, 0.75) == 147
    assert patch_masking.num_masked_patches(10, 0.25) == 2  # round half to even: 2.5 -> 2
    assert patch_masking.num_masked_patches(10, 0.35) == 4
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"mae\.mask_ratio=.*\(0, 1\)"):
            patch_masking.num_masked_patches(16, bad)
    with pytest.raises(ValueError, match=r"mae\.mask_ratio=0\.9 .*4 patches.*no visible patch"):
        patch_masking.num_masked_patches(4, 0.9)
    with pytest.raises(ValueError, match=r"no patch to predict"):
        patch_masking.num_masked_patches(4, 0.1)


def test_masking_on_8_sharded_devices_equals_1_device_and_slices_agree():
    def masks(mesh):
        out = sharding_lib.batch_sharding(mesh)
        fn = jax.jit(lambda step: patch_masking.patch_mask_for_step(3, step, 32, 64, 0.75),
                     out_shardings=patch_masking.PatchMask(out, out, out, out))
        return fn(jnp.int32(9))

    on8 = masks(sharding_lib.make_mesh(8))
    on1 = masks(sharding_lib.make_mesh(1))
    assert len(on8.mask.sharding.device_set) == 8
    for a, b in zip(on8, on1):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # A process holding rows 8..15 computes the same masks for them with offset=8.
    part = patch_masking.patch_mask_for_step(3, 9, 8, 64, 0.75, offset=8)
    for a, b in zip(part, on1):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[8:16])
    other_step = patch_masking.patch_mask_for_step(3, 10, 32, 64, 0.75)
    assert not np.array_equal(other_step.mask, on1.mask)


# ----------------------------------------------------------------------------- patchify

def test_patchify_matches_explicit_slicing_and_unpatchify_inverts_it():
    x = np.asarray(jax.random.uniform(jax.random.key(0), (2, 12, 8, 3)))
    p = 4
    patches = np.asarray(losses.patchify(jnp.asarray(x), p))
    assert patches.shape == (2, 6, p * p * 3)
    for b in range(2):
        for n in range(6):
            i, j = divmod(n, 2)  # row-major over the 3 x 2 patch grid
            np.testing.assert_array_equal(patches[b, n], x[b, i * p:(i + 1) * p, j * p:(j + 1) * p].reshape(-1))
    np.testing.assert_array_equal(losses.unpatchify(jnp.asarray(patches), p, grid_hw=(3, 2)), x)
    square = jax.random.normal(jax.random.key(1), (3, 16, 16, 1))
    np.testing.assert_array_equal(losses.unpatchify(losses.patchify(square, 2), 2), square)


# ----------------------------------------------------------------------------- model

def tiny_model(grid=4, patch=4, channels=1, decoder_depth=1):
    encoder = VisionTransformer(patch_size=patch, hidden_dim=32, depth=2, num_heads=2, pool="cls")
    decoder = MAEDecoder(grid_hw=(grid, grid), patch_dim=patch * patch * channels, hidden_dim=16,
                         depth=decoder_depth, num_heads=2)
    return MaskedAutoencoder(encoder=encoder, decoder=decoder)


def test_encoder_sees_only_the_visible_patches():
    model = tiny_model(grid=8, patch=2)  # 16x16 images, N = 64, K = 16
    images = jax.random.uniform(jax.random.key(0), (3, 16, 16, 1))
    pm = patch_masking.random_patch_mask(jax.random.key(1), 3, 64, 0.75)
    params = model.init(jax.random.key(2), images, pm.ids_keep, pm.ids_restore)["params"]
    pred, state = model.apply({"params": params}, images, pm.ids_keep, pm.ids_restore,
                              capture_intermediates=lambda mdl, _: isinstance(mdl, EncoderBlock),
                              mutable=["intermediates"])
    inter = state["intermediates"]
    encoder_blocks = [k for k in inter["encoder"] if k.startswith("blocks_")]
    assert len(encoder_blocks) == 2
    for name in encoder_blocks:
        (out,) = inter["encoder"][name]["__call__"]
        assert out.shape == (3, 1 + 16, 32)  # class token + 25% of the 64 patches
    (dec_out,) = inter["decoder"]["decoder_blocks_0"]["__call__"]
    assert dec_out.shape == (3, 1 + 64, 16)  # the decoder sees every position
    assert pred.shape == (3, 64, 2 * 2 * 1)


def test_decoder_puts_mask_tokens_at_removed_patches_and_latents_at_their_own():
    """With no decoder block, each output row depends on its own input row only, so the
    prediction of patch n is decoder_pred(norm(embed(latent of n) + pos_n)) if n is visible
    and decoder_pred(norm(mask_token + pos_n)) if n is removed (MAE's unshuffle)."""
    grid, n, dim = 4, 16, 8
    decoder = MAEDecoder(grid_hw=(grid, grid), patch_dim=3, hidden_dim=16, depth=0, num_heads=2)
    pm = patch_masking.random_patch_mask(jax.random.key(0), 2, n, 0.75)
    latent = jax.random.normal(jax.random.key(1), (2, 1 + 4, dim))
    params = decoder.init(jax.random.key(2), latent, pm.ids_restore)["params"]
    params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(3), x.shape), params)
    pred = np.asarray(decoder.apply({"params": params}, latent, pm.ids_restore))
    p = jax.tree.map(np.asarray, params)
    pos = np.asarray(sincos_2d_position_embedding(grid, grid, 16))

    def head(h):
        mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        h = (h - mu) / np.sqrt(var + 1e-6) * p["decoder_norm"]["scale"] + p["decoder_norm"]["bias"]
        return h @ p["decoder_pred"]["kernel"] + p["decoder_pred"]["bias"]

    embed = np.asarray(latent) @ p["decoder_embed"]["kernel"] + p["decoder_embed"]["bias"]
    keep = np.asarray(pm.ids_keep)
    for b in range(2):
        for patch in range(n):
            if pm.mask[b, patch] == 1:
                want = head(p["mask_token"][0, 0] + pos[patch])
            else:
                k = int(np.flatnonzero(keep[b] == patch)[0])
                want = head(embed[b, 1 + k] + pos[patch])
            np.testing.assert_allclose(pred[b, patch], want, rtol=1e-4, atol=1e-5)
    table = np.asarray(decoder_position_embedding(grid, grid, 16))
    np.testing.assert_array_equal(table[0], 0.0)
    np.testing.assert_array_equal(table[1:], pos)


def timm_032_add_weight_decay_decays(name: str, shape) -> bool:
    """timm 0.3.2 ``optim_factory.add_weight_decay(model, wd, skip_list=())`` as MAE's
    main_pretrain.py:179 calls it: ``no_decay`` iff ``len(param.shape) == 1 or
    name.endswith(".bias") or name in skip_list`` (frozen params are skipped: none here)."""
    return not (len(shape) == 1 or name.endswith(".bias"))


def torch_name(path) -> str:
    """A Flax param path as the torch module name MAE would give it (kernel/scale -> weight)."""
    keys = [str(getattr(k, "key", k)) for k in path]
    keys[-1] = {"kernel": "weight", "scale": "weight"}.get(keys[-1], keys[-1])
    return ".".join(keys)


def test_mask_token_has_mae_shape_and_init():
    model = tiny_model()
    images = jnp.zeros((1, 16, 16, 1))
    pm = patch_masking.random_patch_mask(jax.random.key(0), 1, 16, 0.75)
    params = model.init(jax.random.key(0), images, pm.ids_keep, pm.ids_restore)["params"]
    assert params["decoder"]["mask_token"].shape == (1, 1, 16)   # models_mae.py: [1, 1, D]


def test_preset_optimizer_decays_exactly_what_mae_decays():
    """AdamW with zero gradients moves a leaf iff it is weight-decayed (w -= lr * wd * w); the
    decayed set must be timm 0.3.2's add_weight_decay set: cls_token and mask_token included."""
    from jaxssl import optim
    c = tiny_digits_config()
    c.optim.warmup_epochs = 0.0
    params, _ = make_method(c).init(rng.root_key(0, "init"))
    tx, _ = optim.build_optimizer(c.optim, global_batch=16, total_steps=10, steps_per_epoch=1)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    moved = jax.tree_util.tree_map_with_path(
        lambda path, u: (torch_name(path), bool(jnp.any(u != 0))), updates)
    shapes = jax.tree_util.tree_map_with_path(lambda path, x: (torch_name(path), x.shape), params)
    for (name, was_moved), (_, shape) in zip(jax.tree.leaves(moved, is_leaf=lambda x: isinstance(x, tuple)),
                                             jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(x, tuple))):
        assert was_moved == timm_032_add_weight_decay_decays(name, shape), name
    moved = jax.tree.map(lambda u: bool(jnp.any(u != 0)), updates)
    enc, dec = moved["encoder"], moved["decoder"]
    assert enc["cls_token"] and dec["mask_token"]
    assert not enc["norm"]["scale"] and not enc["blocks_0"]["attn"]["qkv"]["bias"]
    assert not dec["decoder_norm"]["bias"] and not dec["decoder_pred"]["bias"]
    assert enc["patch_embed"]["kernel"] and enc["blocks_0"]["mlp"]["fc1"]["kernel"]
    assert dec["decoder_embed"]["kernel"] and dec["decoder_pred"]["kernel"]


# ----------------------------------------------------------------------------- method + loss

def test_loss_ignores_the_targets_of_visible_patches():
    method = make_method(tiny_digits_config())
    params, _ = method.init(rng.root_key(0, "init"))
    batch = method.data.feeder(0)
    x = method.normalize(method.view(batch, 0))
    pm = method.masks(x.shape[0], 0)
    pred, target = method.reconstruct(params, x, pm)
    assert pred.shape == target.shape == (16, 16, 16)

    def loss_of(t):
        return losses.mae_loss(pred, t, pm.mask, norm_pix_loss=True)

    base = loss_of(target)
    noise = 5.0 * jax.random.normal(jax.random.key(9), target.shape)
    visible = (pm.mask == 0)[:, :, None]
    assert float(loss_of(jnp.where(visible, target + noise, target))) == float(base)
    assert float(loss_of(jnp.where(visible, target, target + noise))) != pytest.approx(float(base))
    grad = jax.grad(loss_of)(target)
    np.testing.assert_array_equal(np.asarray(grad)[np.asarray(pm.mask) == 0], 0.0)
    assert np.abs(np.asarray(grad)[np.asarray(pm.mask) == 1]).sum() > 0
    # The method's loss is this loss on its own view and masks.
    loss, (state, _) = method.loss(params, {}, batch, jnp.int32(0))
    assert state == {}
    np.testing.assert_allclose(float(loss), float(base), rtol=1e-6)


def test_method_loss_on_8_devices_equals_1_device():
    method1 = make_method(tiny_digits_config(num_devices=1))
    method8 = make_method(tiny_digits_config(num_devices=8))
    params, _ = method1.init(rng.root_key(0, "init"))

    def loss_and_grads(method):
        batch = method.data.feeder(2)
        fn = jax.jit(jax.value_and_grad(lambda p: method.loss(p, {}, batch, jnp.int32(2))[0]))
        return fn(params)

    (l1, g1), (l8, g8) = loss_and_grads(method1), loss_and_grads(method8)
    np.testing.assert_allclose(float(l8), float(l1), rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g8, g1)


def test_features_are_the_encoder_on_all_patches():
    c = tiny_digits_config()
    c.mae.pool = "cls"
    method = make_method(c)
    params, state = method.init(rng.root_key(0, "init"))
    images = jax.random.uniform(jax.random.key(0), (5, 16, 16, 1))
    feats = method.backbone_features(params, state, images)
    assert feats.shape == (5, 32) and feats.dtype == jnp.float32
    tokens = method.model.apply({"params": params}, method.normalize(images),
                                method=lambda m, x: m.encoder.encode_tokens(m.encoder.embed_patches(x)))
    assert tokens.shape == (5, 1 + 16, 32)  # all 16 patches, no mask
    np.testing.assert_allclose(feats, tokens[:, 0], rtol=1e-6)


def test_validate_config_names_field_value_and_fix():
    from jaxssl.methods.mae import MAE
    c = tiny_digits_config()
    c.mae.mask_ratio = 1.0
    with pytest.raises(ValueError, match=r"mae\.mask_ratio=1\.0 is invalid"):
        methods.validate_config(c)
    with pytest.raises(ValueError, match=r"mae\.mask_ratio=1\.0 .*\(0, 1\)"):
        MAE.validate_config(c)
    c = tiny_digits_config()
    c.model.backbone = "resnet18"
    with pytest.raises(ValueError, match=r"model\.backbone='resnet18' .*ViT"):
        methods.validate_config(c)
    c = tiny_digits_config()
    c.model.patch_size = 3
    with pytest.raises(ValueError, match=r"model\.patch_size=3 .*divisor of data\.image_size=16"):
        methods.validate_config(c)
    c = tiny_digits_config()
    c.mae.decoder_heads = 3
    with pytest.raises(ValueError, match=r"mae\.decoder_dim=16 .*decoder_heads=3"):
        methods.validate_config(c)
    c = tiny_digits_config()
    c.mae.pixel_std = (0.0,)
    with pytest.raises(ValueError, match=r"mae\.pixel_std"):
        methods.validate_config(c)
    c = tiny_digits_config()
    with c.unlocked():
        del c["mae"]
    with pytest.raises(ValueError, match=r"no 'mae' section"):
        methods.validate_config(c)


# ----------------------------------------------------------------------------- training

@pytest.mark.slow
def test_digits_reconstruction_loss_falls():
    c = tiny_digits_config(batch=64)
    c.mae.update(dict(encoder_hidden_dim=64, encoder_depth=2, encoder_heads=4,
                      decoder_dim=32, decoder_depth=1, decoder_heads=4))
    c.train.num_steps = 40
    c.optim.warmup_epochs = 1.0
    setup = train.Setup(c)
    state = state_lib.create(setup.init_fn, setup.tx, setup.mesh)
    step_fn = jax.jit(train.make_train_step(setup.method, setup.tx, setup.lr_fn))
    losses_seen = []
    for step in range(40):
        state, metrics = step_fn(state, setup.feeder(step))
        losses_seen.append(float(metrics["loss"]))
    start, end = np.mean(losses_seen[:3]), np.mean(losses_seen[-5:])
    assert np.isfinite(losses_seen).all()
    assert end < 0.85 * start, (start, end, losses_seen)


@pytest.mark.slow
def test_digits_run_writes_eval_results_like_the_simclr_quickstart(tmp_path):
    c = tiny_digits_config(batch=64)
    c.train.num_steps = 2
    c.optim.warmup_epochs = 0.0
    c.eval.update(dict(few_labels_per_class=2))
    results = train.run(c, str(tmp_path))
    with open(tmp_path / "eval_results.json") as f:
        written = json.load(f)
    assert written == results
    assert set(written) == {"mae", "random_init", "raw_pixels"}
    for row in written.values():
        assert set(row) == {"knn_2", "knn_all", "linear_2", "linear_all"}
        assert all(0.0 <= v <= 1.0 for v in row.values())


@pytest.mark.slow
def test_imagenet_preset_matches_the_paper_and_runs_one_shrunk_step(tmp_path):
    import tensorflow_datasets as tfds
    from jaxssl.methods.mae import encoder_sizes
    c = load_preset("mae_vit_base_imagenet")
    assert (c.model.backbone, c.model.patch_size, c.data.image_size) == ("vit_base", 16, 224)
    assert (c.train.batch_size, c.train.num_epochs) == (4096, 1600.0)
    assert (c.mae.mask_ratio, c.mae.decoder_dim, c.mae.decoder_depth, c.mae.decoder_heads) == (0.75, 512, 8, 16)
    assert c.mae.norm_pix_loss and c.data.crop_scale == (0.2, 1.0) and c.augment.flip_prob == 0.5
    o = c.optim
    assert (o.name, o.base_lr, o.lr_scaling, o.weight_decay, o.b1, o.b2, o.warmup_epochs, o.schedule) == (
        "adamw", 1.5e-4, "linear", 0.05, 0.9, 0.95, 40.0, "cosine")
    assert encoder_sizes(c.model, c.mae) == dict(hidden_dim=768, depth=12, num_heads=12)

    # Full-size parameter count, abstractly: MAE ViT-B/16 + dec512d8b.
    from jaxssl.data.pipeline import TrainData
    from jaxssl.methods.mae import MAE
    # The model only: an ImageNet-shaped (host-cropped, RGB) data description, no data read.
    method = MAE(c, sharding_lib.make_mesh(1), TrainData(feeder=None, host_cropped=True, channels=3),
                 total_steps=1)
    params, _ = jax.eval_shape(method.init, rng.root_key(0, "init"))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    encoder_count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params["encoder"]))
    # timm vit_base_patch16_224 (86,567,656) less its head (769,000) and pos_embed (151,296).
    assert encoder_count == 85_647_360
    # facebookresearch/mae mae_vit_base_patch16_dec512d8b: 111,907,840 parameters, of which the
    # fixed position tables pos_embed (197 x 768) and decoder_pos_embed (197 x 512) are buffers
    # here, not parameters.
    assert count == 111_907_840 - 197 * 768 - 197 * 512

    # One real step, shrunk.
    c.data.image_size = 32
    c.model.patch_size = 4
    c.mae.update(dict(encoder_depth=1, decoder_depth=1))
    c.train.update(dict(batch_size=8, num_steps=1, num_epochs=0.0, log_every_steps=1))
    c.optim.warmup_epochs = 0.0  # 40 epochs of the 16 mock images exceed the one step
    c.eval.enabled = False
    c.mesh.num_devices = 8
    with tfds.testing.mock_data(num_examples=16):
        results = train.run(c, str(tmp_path))
    assert results == {}
    with open(tmp_path / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert rows[-1]["step"] == 1 and np.isfinite(rows[-1]["loss"])
