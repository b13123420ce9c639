"""Tests for jaxssl.augment (image views): every op against an independent reference.

References: Python's ``colorsys`` (hue, saturation), numpy formulas (luma, brightness,
contrast, solarize), ``scipy.ndimage.correlate1d`` (blur), torchvision's documented
``RandomResizedCrop`` fallback, SimCLR's ``center_crop`` box formula and, in the slow test,
``tf.image.resize`` itself.
"""
import colorsys
import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import ndimage

from jaxssl import rng, sharding
from jaxssl.augment import color, image as aug

# Compiled once per (cfg, shape) and shared by the tests below.
augment_batch = jax.jit(aug.augment_batch, static_argnames="cfg")
two_views = jax.jit(aug.two_views, static_argnames=("cfg_a", "cfg_b"))

CFG32 = aug.ViewConfig(32, **aug.ViewConfig.simclr_jitter(0.5))


def _images(batch, size=32, channels=3, seed=0):
    return np.random.RandomState(seed).rand(batch, size, size, channels).astype(np.float32)


def _keys(n, seed=0):
    return jax.random.split(jax.random.key(seed), n)


# ----------------------------------------------------------------------------- colour ops

def test_hue_matches_colorsys():
    r = np.random.RandomState(1)
    pixels = r.rand(300, 3).astype(np.float32)
    pixels[:20] = pixels[:20, :1]  # some gray pixels (no hue)
    pixels[20:40, 1] = pixels[20:40, 0]  # ties between the max channels
    deltas = r.uniform(-0.5, 0.5, 300).astype(np.float32)
    got = np.asarray(jax.vmap(color.adjust_hue)(jnp.asarray(pixels)[:, None, None, :],
                                                 jnp.asarray(deltas)))[:, 0, 0]
    want = []
    for p, d in zip(pixels.astype(np.float64), deltas.astype(np.float64)):
        h, s, v = colorsys.rgb_to_hsv(*p)
        want.append(colorsys.hsv_to_rgb((h + d) % 1.0, s, v))
    np.testing.assert_allclose(got, np.asarray(want), atol=1e-5)


def test_saturation_matches_gray_blend_and_keeps_colorsys_hue():
    r = np.random.RandomState(2)
    img = r.uniform(0.2, 0.8, (4, 4, 3)).astype(np.float32)
    luma = img @ np.array([0.299, 0.587, 0.114])
    for f in (0.0, 0.5, 1.3):
        got = np.asarray(color.adjust_saturation(jnp.asarray(img), f))
        want = np.clip(f * img + (1 - f) * luma[..., None], 0, 1)
        np.testing.assert_allclose(got, want, atol=1e-6)
        for p_in, p_out in zip(img.reshape(-1, 3), got.reshape(-1, 3)):
            h_in, s_in, _ = colorsys.rgb_to_hsv(*p_in)
            h_out, s_out, _ = colorsys.rgb_to_hsv(*p_out)
            if f == 0.0:
                assert s_out < 1e-6  # fully desaturated
            elif np.all((p_out > 0) & (p_out < 1)):  # no clipping: a blend keeps the hue
                assert min(abs(h_out - h_in), 1 - abs(h_out - h_in)) < 1e-5
                assert (s_out > s_in) == (f > 1)


def test_grayscale_brightness_contrast_solarize_match_numpy():
    img = np.random.RandomState(3).rand(5, 6, 3).astype(np.float32)
    luma = 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]
    gray = np.asarray(color.rgb_to_grayscale(jnp.asarray(img)))
    np.testing.assert_allclose(gray, np.repeat(luma[..., None], 3, -1), atol=1e-6)

    np.testing.assert_allclose(color.adjust_brightness(jnp.asarray(img), 1.4),
                               np.clip(img * 1.4, 0, 1), atol=1e-6)
    np.testing.assert_allclose(color.adjust_brightness(jnp.asarray(img), -0.3, "additive"),
                               np.clip(img - 0.3, 0, 1), atol=1e-6)
    for f in (0.3, 1.7):
        np.testing.assert_allclose(color.adjust_contrast(jnp.asarray(img), f),
                                   np.clip(f * img + (1 - f) * luma.mean(), 0, 1), atol=1e-6)
    np.testing.assert_array_equal(color.solarize(jnp.asarray(img), 0.4),
                                  np.where(img >= 0.4, 1 - img, img))
    with pytest.raises(ValueError, match="brightness_mode='gamma'"):
        color.adjust_brightness(jnp.asarray(img), 1.0, "gamma")


def test_single_channel_colour_ops():
    img = jnp.asarray(np.random.RandomState(4).rand(6, 6, 1).astype(np.float32))
    for op, arg in ((color.adjust_hue, 0.3), (color.adjust_saturation, 0.2)):
        np.testing.assert_array_equal(op(img, arg), img)
    np.testing.assert_array_equal(color.rgb_to_grayscale(img), img)
    np.testing.assert_allclose(color.adjust_contrast(img, 0.5),
                               np.clip(0.5 * img + 0.5 * np.mean(img), 0, 1), atol=1e-6)


@pytest.mark.parametrize("mode", ["multiplicative", "additive"])
def test_fused_jitter_equals_ops_applied_in_the_sampled_order(mode):
    """The fused (6 blends + 1 hue) jitter equals the four ops run one by one, clipped."""
    img = jnp.asarray(np.random.RandomState(5).rand(6, 6, 3).astype(np.float32))
    seen_orders = set()
    for i in range(12):
        p = color.sample_jitter_params(jax.random.key(i), 0.8, 0.8, 0.8, 0.2, mode)
        want = img
        for op in p.order():
            if op == color.BRIGHTNESS:
                want = color.adjust_brightness(want, p.brightness, mode)
            elif op == color.CONTRAST:
                want = color.adjust_contrast(want, p.contrast)
            elif op == color.SATURATION:
                want = color.adjust_saturation(want, p.saturation)
            else:
                want = jnp.clip(color.adjust_hue(want, p.hue), 0, 1)
        np.testing.assert_allclose(color.apply_color_jitter(img, p, mode), want, atol=1e-5)
        seen_orders.add(tuple(p.order()))
    assert len(seen_orders) > 4


def test_jitter_order_is_uniform_and_factors_in_range():
    n = 4800
    params = jax.jit(jax.vmap(lambda k: color.sample_jitter_params(k, 0.8, 0.4, 0.8, 0.1)))(
        _keys(n))
    codes = np.asarray(params.linear_order) @ np.array([16, 4, 1]) * 4 + np.asarray(
        params.hue_position)
    counts = np.bincount(np.unique(codes, return_inverse=True)[1])
    assert len(counts) == 24  # all 24 orders of the 4 ops occur
    assert np.all(np.abs(counts / n - 1 / 24) < 5 * math.sqrt(1 / 24 / n))
    for name, lo, hi in (("brightness", 0.2, 1.8), ("contrast", 0.6, 1.4),
                         ("saturation", 0.2, 1.8), ("hue", -0.1, 0.1)):
        v = np.asarray(getattr(params, name))
        assert lo <= v.min() < lo + 0.02 and hi - 0.02 < v.max() <= hi, name
    fixed = color.sample_jitter_params(jax.random.key(0), 0.8, 0.8, 0.8, 0.2, random_order=False)
    assert fixed.order() == [color.BRIGHTNESS, color.CONTRAST, color.SATURATION, color.HUE]


# ----------------------------------------------------------------------------------- blur

def test_gaussian_kernel():
    for side, size in ((224, 23), (96, 9), (32, 3), (8, 1)):
        assert aug.blur_kernel_size(side) == size
        assert size % 2 == 1 and abs(size - 0.1 * side) <= 1
    k = np.asarray(aug.gaussian_kernel_1d(1.5, 23))
    x = np.arange(-11, 12)
    np.testing.assert_allclose(k, np.exp(-x ** 2 / (2 * 1.5 ** 2)) / np.exp(
        -x ** 2 / (2 * 1.5 ** 2)).sum(), rtol=1e-5)
    assert abs(k.sum() - 1) < 1e-6 and np.array_equal(k, k[::-1]) and k.argmax() == 11
    with pytest.raises(ValueError, match="size=4"):
        aug.gaussian_kernel_1d(1.0, 4)


def test_gaussian_blur_matches_scipy_reflect_and_keeps_constants():
    img = np.random.RandomState(6).rand(12, 10, 3).astype(np.float32)
    sigma, size = 1.3, 7
    k = np.asarray(aug.gaussian_kernel_1d(sigma, size), np.float64)
    # numpy 'reflect' (a b c | b a) is scipy's 'mirror'.
    want = ndimage.correlate1d(ndimage.correlate1d(img.astype(np.float64), k, 0, mode="mirror"),
                               k, 1, mode="mirror")
    np.testing.assert_allclose(aug.gaussian_blur(jnp.asarray(img), sigma, size), want, atol=1e-5)
    const = jnp.full((12, 10, 3), 0.37, jnp.float32)
    np.testing.assert_allclose(aug.gaussian_blur(const, 2.0, 7), const, atol=1e-6)


# ----------------------------------------------------------------------------------- crop

def _sample_boxes(height, width, scale, ratio, n=2000):
    fn = jax.jit(jax.vmap(lambda k: aug.sample_crop_box(k, height, width, scale, ratio)))
    return [np.asarray(v) for v in fn(_keys(n))]


@pytest.mark.parametrize("height,width", [(224, 224), (120, 300)])
def test_crop_box_area_and_aspect_in_range(height, width):
    top, left, h, w = _sample_boxes(height, width, (0.08, 1.0), (3 / 4, 4 / 3))
    assert np.all((top >= 0) & (left >= 0) & (top + h <= height) & (left + w <= width))
    # Rounding w and h to ints moves the area / aspect by at most half a pixel per side.
    area = h * w / (height * width)
    slack_area = (h + w + 1) / (2 * height * width)
    assert np.all(area >= 0.08 - slack_area) and np.all(area <= 1.0)
    aspect = w / h
    assert np.all(aspect >= 3 / 4 * (1 - 0.5 / w) / (1 + 0.5 / h))
    assert np.all(aspect <= 4 / 3 * (1 + 0.5 / w) / (1 - 0.5 / h))
    # The whole range is used, up to the largest box of an allowed aspect that fits.
    best = max(a * min(height, width / a) ** 2 for a in np.linspace(3 / 4, 4 / 3, 101))
    assert area.min() < 0.1 and area.max() > 0.9 * best / (height * width)
    assert aspect.min() < 0.8 and aspect.max() > 1.25
    # Offsets are uniform: a box that can move does reach both sides.
    assert np.any(top == 0) and np.any(top + h == height)


def test_crop_box_fallback_is_torchvision_centre_crop():
    # Aspect >= 3 cannot fit a 0.9-area box into a square: fall back to w = W, h = round(W / 3).
    top, left, h, w = _sample_boxes(100, 100, (0.9, 1.0), (3.0, 4.0), n=50)
    assert np.all(w == 100) and np.all(h == 33) and np.all(top == 33) and np.all(left == 0)
    # Aspect <= 0.3: h = H, w = round(H * 0.3).
    top, left, h, w = _sample_boxes(100, 100, (0.9, 1.0), (0.25, 0.3), n=50)
    assert np.all(h == 100) and np.all(w == 30) and np.all(top == 0) and np.all(left == 35)
    # Image aspect inside the range but the area cannot fit: the whole image.
    top, left, h, w = _sample_boxes(60, 60, (1.0, 1.0), (0.5, 2.0), n=50)
    assert np.all((h == 60) & (w == 60) & (top == 0) & (left == 0))


def test_crop_resize_at_unit_scale_is_the_crop():
    img = jnp.asarray(_images(1, 20)[0])
    out = aug.crop_resize(img, 3, 5, 8, 8, 8, "bicubic")
    np.testing.assert_allclose(out, img[3:11, 5:13], atol=1e-6)


def test_center_crop_resize_box_is_simclrs():
    def simclr_box(h, w, p):  # google-research/simclr tf2 data_util._compute_crop_shape
        if 1.0 > w / h:
            ch, cw = int(np.rint(p * w)), int(np.rint(p * w))
        else:
            ch, cw = int(np.rint(p * h)), int(np.rint(p * h))
        return ((h - ch) + 1) // 2, ((w - cw) + 1) // 2, ch, cw

    from jaxssl.augment import crop
    for h, w in ((32, 32), (40, 30), (224, 300)):
        assert crop.center_crop_box(h, w, 0.875) == simclr_box(h, w, 0.875)
    imgs = _images(2, 32)
    out = aug.center_crop_resize(jnp.asarray(imgs), 28)
    np.testing.assert_allclose(out, imgs[:, 2:30, 2:30], atol=1e-6)  # 0.875 * 32 = 28
    out_u8 = aug.center_crop_resize(jnp.asarray((imgs * 255).astype(np.uint8)), 16)
    assert out_u8.shape == (2, 16, 16, 3) and out_u8.dtype == jnp.float32


@pytest.mark.slow
def test_resize_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")
    img = _images(1, 24)[0]
    # antialias=True is TF's ScaleAndTranslate (exact Keys cubic, a=-0.5): equal to float eps.
    # antialias=False is TF's legacy ResizeBicubic, which reads the same cubic from a
    # 1024-entry weight table: equal up to that table's quantisation (~1e-3).
    for antialias, atol in ((True, 1e-5), (False, 1e-3)):
        for size in (40, 15):  # up- and downscaling
            want = tf.image.resize(img, (size, size), method="bicubic", antialias=antialias)
            got = aug.crop_resize(jnp.asarray(img), 0, 0, 24, 24, size, "bicubic", antialias)
            np.testing.assert_allclose(got, want.numpy(), atol=atol)
        want = tf.image.resize(img, (40, 40), method="bilinear", antialias=antialias)
        got = aug.crop_resize(jnp.asarray(img), 0, 0, 24, 24, 40, "bilinear", antialias)
        np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    # A crop: equal to crop-then-resize away from the box border (see crop.py).
    want = tf.image.resize(img[4:16, 6:18], (36, 36), method="bicubic", antialias=True).numpy()
    got = np.asarray(aug.crop_resize(jnp.asarray(img), 4, 6, 12, 12, 36, "bicubic"))
    np.testing.assert_allclose(got[6:-6, 6:-6], want[6:-6, 6:-6], atol=1e-5)


# --------------------------------------------------------------------- view probabilities

_OFF = dict(crop=False, flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)


@pytest.mark.parametrize("field,prob,extra", [
    ("flip_prob", 0.5, {}),
    ("jitter_prob", 0.8, {}),
    ("grayscale_prob", 0.2, {}),
    ("blur_prob", 0.5, dict(blur_kernel_fraction=0.5)),  # kernel 5 on an 8-px image
    ("solarize_prob", 0.2, {}),
])
def test_application_frequency(field, prob, extra):
    n = 2000
    cfg = aug.ViewConfig(8, **{**_OFF, **extra, field: prob})
    img = np.random.RandomState(7).uniform(0.55, 1.0, (8, 8, 3)).astype(np.float32)
    batch = jnp.asarray(np.broadcast_to(img, (n, 8, 8, 3)))
    out = np.asarray(augment_batch(_keys(n, seed=8), batch, cfg=cfg))
    changed = np.any(np.abs(out - img) > 1e-6, axis=(1, 2, 3))
    if field == "flip_prob":
        assert np.all(np.abs(out[changed] - img[:, ::-1]) < 1e-6)
    if field == "grayscale_prob":
        assert np.all(np.ptp(out[changed], axis=-1) < 1e-6)
    if field == "solarize_prob":
        assert np.all(np.abs(out[changed] - (1 - img)) < 1e-6)  # every pixel >= 0.5
    assert abs(changed.mean() - prob) < 4 * math.sqrt(prob * (1 - prob) / n)


# ---------------------------------------------------------------------------- whole views

def test_views_shape_range_and_determinism():
    imgs = jnp.asarray(_images(8, 32))
    keys = _keys(8)
    out = augment_batch(keys, imgs, cfg=CFG32)
    assert out.shape == (8, 32, 32, 3) and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    np.testing.assert_array_equal(out, augment_batch(keys, imgs, cfg=CFG32))
    other = augment_batch(_keys(8, seed=1), imgs, cfg=CFG32)
    assert all(not np.allclose(out[i], other[i]) for i in range(8))
    # Each row depends on its own key only: permuting the batch permutes the output.
    perm = np.array([3, 0, 7, 1, 6, 2, 5, 4])
    np.testing.assert_allclose(augment_batch(keys[perm], imgs[perm], cfg=CFG32), out[perm],
                               atol=1e-6)


def test_uint8_is_scaled_to_unit_range():
    from jaxssl.augment import crop
    u8 = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    np.testing.assert_allclose(crop.to_float_image(jnp.asarray(u8)), u8 / 255.0, atol=1e-7)
    with pytest.raises(TypeError, match="int32"):
        crop.to_float_image(jnp.zeros((1, 2, 2, 3), jnp.int32))


def test_grayscale_images_and_resizing():
    cfg = aug.ViewConfig(12, blur_kernel_fraction=0.25, solarize_prob=0.5)
    imgs = jnp.asarray(_images(6, 8, channels=1))  # 8x8 digits, upscaled to 12
    out = augment_batch(_keys(6), imgs, cfg=cfg)
    assert out.shape == (6, 12, 12, 1)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    nocrop = aug.ViewConfig(8, **_OFF)
    np.testing.assert_array_equal(augment_batch(_keys(6), imgs, cfg=nocrop), imgs)


def test_two_views_keys_and_offset():
    # Crop + flip only: this test is about the keys, and a small graph compiles fast.
    cfg = aug.ViewConfig(16, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)
    imgs = _images(8, 16)
    u8 = jnp.asarray((imgs * 255).astype(np.uint8))  # uint8 input is converted inside
    imgs = jnp.asarray(u8, jnp.float32) / 255.0
    key = rng.step_key(0, "augment", 3)
    # These 8 images are rows 8..15 of a global batch of 16.
    a, b = two_views(key, u8, cfg_a=cfg, cfg_b=cfg, offset=8)
    assert all(not np.allclose(a[i], b[i]) for i in range(8))
    for view, got in enumerate((a, b)):
        keys = rng.example_keys(jax.random.fold_in(key, view), 16)[8:]
        np.testing.assert_allclose(got, augment_batch(keys, imgs, cfg=cfg), atol=1e-6)


def test_sharded_batch_equals_unsharded():
    """Same draws on 8 devices as on one; pixels equal up to float rounding.

    The random draws (crop boxes, jitter order and factors) are bit-identical. The pixel
    values can differ in the last bit: XLA compiles a different program for 1 example per
    device than for 8 (matmul blocking, FMA contraction in the fused blends).
    """
    mesh = sharding.make_mesh(8)
    spec = sharding.batch_sharding(mesh)
    imgs = jnp.asarray(_images(8, 32))
    keys = _keys(8)
    keys_sharded, imgs_sharded = jax.device_put(keys, spec), jax.device_put(imgs, spec)

    draws = jax.jit(jax.vmap(lambda k: (
        aug.sample_crop_box(k, 32, 32, CFG32.crop_scale, CFG32.crop_ratio),
        color.sample_jitter_params(k, 0.4, 0.4, 0.4, 0.1))))
    for want, got in zip(jax.tree.leaves(draws(keys)), jax.tree.leaves(draws(keys_sharded))):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    want = augment_batch(keys, imgs, cfg=CFG32)
    got = augment_batch(keys_sharded, imgs_sharded, cfg=CFG32)
    assert got.sharding.is_equivalent_to(spec, got.ndim)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=2e-6)


# ---------------------------------------------------------------------------------- config

def test_view_config_from_config_and_validation():
    cfg = ml_collections.ConfigDict(dict(crop_scale=[0.2, 1.0], resize_method="bilinear",
                                         **aug.ViewConfig.simclr_jitter(0.5)))
    view = aug.ViewConfig.from_config(cfg, 32)
    assert view.crop_scale == (0.2, 1.0) and view.output_size == 32
    assert (view.brightness, view.contrast, view.saturation, view.hue) == (0.4, 0.4, 0.4, 0.1)
    assert hash(view) == hash(aug.ViewConfig.from_config(cfg.to_dict(), 32))
    fields = {f.name for f in dataclasses.fields(aug.ViewConfig)} - {"output_size"}
    assert aug.ViewConfig.from_config({f: getattr(view, f) for f in fields}, 32) == view
    with pytest.raises(ValueError, match="blur_prop"):
        aug.ViewConfig.from_config({"blur_prop": 0.5}, 32)
    with pytest.raises(ValueError, match="crop_scale"):
        aug.ViewConfig(32, crop_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="jitter_prob=1.5"):
        aug.ViewConfig(32, jitter_prob=1.5)
    with pytest.raises(ValueError, match="resize_method='nearest'"):
        aug.ViewConfig(32, resize_method="nearest")
