"""Input normalisation has one home (jaxssl.data.normalize, data.normalize_*): every image method
normalises its views and its evaluation images with it; the older per-method names are
honoured; two disagreeing settings, or a ResNet that already normalises, are refused; the DINO
family's ImageNet ViT presets normalise as DINO's DataAugmentationDINO does."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxssl import train
from jaxssl.config import load_preset
from jaxssl.data.normalize import (IMAGENET_MEAN, IMAGENET_STD, input_normalization,
                                   normalize_images)


def test_normalize_images_is_torchvision_normalize():
    x = np.random.default_rng(0).uniform(size=(2, 4, 4, 3)).astype(np.float32)
    got = normalize_images(x, IMAGENET_MEAN, IMAGENET_STD)
    want = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert normalize_images(x, (), ()) is x


def test_older_names_are_honoured_and_disagreements_refused():
    mae = load_preset("mae_digits")
    assert input_normalization(mae) == ((0.305,), (0.376,), "mae.pixel_mean")
    c = load_preset("mae_digits", data__normalize_mean=(0.305,), data__normalize_std=(0.376,))
    assert input_normalization(c)[:2] == ((0.305,), (0.376,))       # the same values: fine
    c = load_preset("mae_digits", data__normalize_mean=(0.5,), data__normalize_std=(0.5,))
    with pytest.raises(ValueError, match=r"mae\.pixel_mean.*data.normalize_mean"):
        input_normalization(c)
    c = load_preset("simclr_digits", data__normalize_mean=(0.5, 0.5), data__normalize_std=(0.5,))
    with pytest.raises(ValueError, match=r"data\.normalize_mean"):
        input_normalization(c)
    c = load_preset("byol_imagenet", data__normalize_mean=IMAGENET_MEAN,
                    data__normalize_std=IMAGENET_STD)
    with pytest.raises(ValueError, match=r"model\.input_mean.*normalise it again"):
        input_normalization(c)


@pytest.mark.parametrize("name, arg", [("dino_imagenet", "vit_s16"), ("dino_imagenet", "vit_b16"),
                                       ("ibot_imagenet", "vit_s16"), ("dinov2_imagenet", None),
                                       ("dino_imagenet_linear", "vit_s16"),
                                       ("dinov2_imagenet_linear", None)])
def test_dino_family_vit_presets_normalise_with_imagenet_statistics(name, arg):
    mean, std, field = input_normalization(load_preset(name, arg))
    assert (mean, std, field) == (IMAGENET_MEAN, IMAGENET_STD, "data.normalize_mean")


def test_dino_r50_normalises_inside_the_resnet_only():
    c = load_preset("dino_imagenet", "r50")
    assert input_normalization(c) == ((), (), "")
    assert tuple(c.model.input_mean) == IMAGENET_MEAN


def test_classifier_keeps_the_pretraining_normalisation():
    from jaxssl.methods.classifier import classifier_config
    c = classifier_config(load_preset("mae_digits"), "finetune")
    assert "mae" not in c and input_normalization(c)[:2] == ((0.305,), (0.376,))
    c = classifier_config(load_preset("ijepa_imagenet"), "linear_eval")
    assert input_normalization(c)[:2] == (IMAGENET_MEAN, IMAGENET_STD)


def _feed(method, raw_views):
    """``method.make_views`` returns ``raw_views`` (``{group: [count, B, S, S, C]}`` in [0, 1])
    normalised as its own views are."""
    method.make_views = lambda batch, step: {g: method.normalize(v) for g, v in raw_views.items()}
    return method


@pytest.mark.parametrize("preset", ["dino_digits", "simclr_digits", "byol_digits"])
def test_views_and_eval_images_are_normalised(preset):
    """The loss on raw views equals the loss of the unnormalised method on ``(v - m) / s``, and
    so do the features, for methods that did not normalise before (DINO, SimCLR, BYOL)."""
    small = dict(train__batch_size=8, train__num_steps=2, train__num_epochs=0.0,
                 mesh__num_devices=1, optim__warmup_epochs=0.0, eval__enabled=False)
    if preset == "dino_digits":
        small.update(dino__out_dim=32, dino__head_hidden_dim=32, dino__head_bottleneck_dim=16,
                     model__vit_hidden_dim=32, model__vit_depth=1, model__vit_num_heads=2,
                     dino__local_crops_number=2)
    plain = train.Setup(load_preset(preset, **small)).method
    normed = train.Setup(load_preset(preset, **small, data__normalize_mean=(0.4,),
                                     data__normalize_std=(0.2,))).method
    assert normed.input_mean == (0.4,) and plain.input_mean == ()
    params, model_state = jax.jit(plain.init)(jax.random.key(0))
    rng = np.random.default_rng(1)
    raw = {g.name: rng.uniform(size=(g.count, 8, g.size, g.size, 1)).astype(np.float32)
           for g in plain.spec.groups}
    loss_n, _ = _feed(normed, raw).loss(params, model_state, {}, 0)
    loss_p, _ = _feed(plain, {g: (v - 0.4) / 0.2 for g, v in raw.items()}).loss(
        params, model_state, {}, 0)
    loss_raw, _ = _feed(plain, raw).loss(params, model_state, {}, 0)
    np.testing.assert_allclose(loss_n, loss_p, rtol=1e-5)
    assert abs(float(loss_n) - float(loss_raw)) > 1e-5
    images = rng.uniform(size=(8, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(normed.backbone_features(params, model_state, images),
                               plain.backbone_features(params, model_state, (images - 0.4) / 0.2),
                               rtol=1e-4, atol=1e-5)
    assert not np.allclose(normed.backbone_features(params, model_state, images),
                           plain.backbone_features(params, model_state, images), atol=1e-4)
