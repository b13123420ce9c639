"""MAE: masked autoencoders (He et al., 2022; facebookresearch/mae ``models_mae.py``).

One step, for each image of the global batch:

1. one view: random resized crop (+ flip on natural images), nothing else (the MAE recipe;
   ``ImageMethod.view_cfg`` from ``config.augment``), then per-channel normalisation
   ``x = (x - mean) / std`` (MAE's ``transforms.Normalize``; ``mae.pixel_mean/pixel_std``);
2. a random mask removing exactly ``round(mask_ratio * N)`` of the ``N`` patches, keyed by
   ``(seed, 'mask', step, global example index)`` (``jaxssl.augment.patch_masking``);
3. the ViT encoder on the visible patches only (sequence ``1 + K``), the light decoder on all
   ``1 + N`` positions (mask tokens), predictions ``[B, N, p*p*C]``
   (``jaxssl.models.mae.MaskedAutoencoder``);
4. the loss on the removed patches only (``jaxssl.losses.mae_loss``)::

       t_n = (x_n - mean(x_n)) / sqrt(var(x_n) + 1e-6)      (norm_pix_loss, per patch)
       L   = sum_{b,n} m_bn * mean_j (pred_bnj - t_bnj)^2 / sum_{b,n} m_bn

   with ``x_n = patchify(x)`` of the normalised view (the reference's ``imgs``).

Evaluation (``backbone_features``): the encoder on ALL patches of the normalised eval image,
no mask; ``mae.pool='cls'`` takes the class token after the encoder's final LayerNorm (MAE's
linear probe, ``main_linprobe.py`` without ``--global_pool``), ``'gap'`` the mean of the
patch tokens after it. Reported with ImageMethod's kNN and linear probes, next to the
random-init encoder and raw pixels.

Config section ``config.mae`` (:func:`default_config` gives every field with MAE ViT-B values):

  mask_ratio        fraction of patches removed, in (0, 1) (MAE 0.75)
  norm_pix_loss     per-patch normalised targets (MAE True)
  decoder_dim, decoder_depth, decoder_heads   decoder width / blocks / heads (ViT-B: 512, 8, 16)
  encoder_hidden_dim, encoder_depth, encoder_heads   0: the size named by ``model.backbone``;
                    > 0 overrides it (small CPU models)
  pool              'cls' | 'gap': the evaluation feature
  pixel_mean, pixel_std   per-channel input normalisation (1 or C values; ImageNet's by default)

Weight decay as MAE's (``main_pretrain.py:179``, timm 0.3.2 ``add_weight_decay`` without a
skip list: every parameter but the 1-D ones and ``.bias``): the optimizer's default
``ndim > 1`` rule, so biases and LayerNorm parameters are spared and ``cls_token`` /
``mask_token`` (``[1, 1, D]``) are decayed. Position embeddings are fixed, not parameters.

Model initialisation as MAE's ``models_mae.py``: xavier over the fused qkv kernel
(``qkv_init='xavier'``), class token N(0, 0.02^2), MAE's sin-cos layout (column first).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxssl import losses, rng
from jaxssl.augment import image as aug
from jaxssl.augment import patch_masking
from jaxssl.methods.image import ImageMethod
from jaxssl.models import registry
from jaxssl.models.mae import MAEDecoder, MaskedAutoencoder
from jaxssl.models.vit import POOLS, VIT_SIZES, VisionTransformer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: MAE's encoder initialisation (models_mae.py ``initialize_weights``): fused-qkv xavier,
#: class token N(0, 0.02^2), sin-cos table with the column first (util/pos_embed.py).
ENCODER_INIT = dict(qkv_init="xavier", cls_init_std=0.02, sincos_layout="mae")


def section_defaults() -> ml_collections.ConfigDict:
    """The ``mae`` config section with the MAE paper's ViT-B values (models_mae.py
    ``mae_vit_base_patch16_dec512d8b``, main_pretrain.py defaults); a preset attaches it as
    ``c.mae = mae.section_defaults()``."""
    return ml_collections.ConfigDict(dict(
        mask_ratio=0.75,
        norm_pix_loss=True,
        decoder_dim=512,
        decoder_depth=8,
        decoder_heads=16,
        encoder_hidden_dim=0,
        encoder_depth=0,
        encoder_heads=0,
        pool="cls",
        pixel_mean=IMAGENET_MEAN,
        pixel_std=IMAGENET_STD,
    ))


#: The former name of :func:`section_defaults`.
default_config = section_defaults


def encoder_sizes(model_cfg, mae_cfg) -> dict:
    """``hidden_dim``, ``depth``, ``num_heads`` of the encoder: the named ViT size, with each
    ``mae.encoder_*`` field that is > 0 replacing its value."""
    sizes = dict(VIT_SIZES[model_cfg.backbone])
    for field, key in (("encoder_hidden_dim", "hidden_dim"), ("encoder_depth", "depth"),
                       ("encoder_heads", "num_heads")):
        if int(mae_cfg[field]) > 0:
            sizes[key] = int(mae_cfg[field])
    return sizes


def build_model(config, channels: int) -> MaskedAutoencoder:
    """The :class:`MaskedAutoencoder` of ``config`` (``model``: backbone size, ``patch_size``,
    ``dtype``, ``remat``; ``mae``: encoder overrides, pool, decoder) for ``channels``-channel
    images of side ``data.image_size``: MAE ViT-B/16, ViT-L/16 (``vit_large``) and ViT-H/14
    (``vit_huge`` with ``model.patch_size=14``: 256 patches, 588 pixel values each)."""
    c, m = config, config.mae
    dtype = registry.compute_dtype(c.model)
    patch = int(c.model.patch_size)
    grid = int(c.data.image_size) // patch
    encoder = VisionTransformer(**encoder_sizes(c.model, m), patch_size=patch,
                                pool=m.pool, posemb=c.model.posemb, dtype=dtype,
                                remat=str(c.model.remat), **ENCODER_INIT)
    decoder = MAEDecoder(grid_hw=(grid, grid), patch_dim=patch * patch * channels,
                         hidden_dim=int(m.decoder_dim), depth=int(m.decoder_depth),
                         num_heads=int(m.decoder_heads), dtype=dtype)
    return MaskedAutoencoder(encoder=encoder, decoder=decoder)


class MAE(ImageMethod):

    @classmethod
    def validate_config(cls, config) -> None:
        super().validate_config(config)
        from jaxssl.config import fail
        if not config.model.backbone.startswith("vit"):
            fail("model.backbone", config.model.backbone,
                 f"MAE encodes the visible patches with a ViT; use one of {sorted(VIT_SIZES)}")
        if "mae" not in config:
            raise ValueError("config has no 'mae' section; add "
                             "c.mae = jaxssl.methods.mae.section_defaults() (see configs/mae_digits.py)")
        m = config.mae
        missing = sorted(set(section_defaults()) - set(m))
        if missing:
            raise ValueError(f"config section mae lacks {missing}; start it from "
                             "jaxssl.methods.mae.section_defaults()")
        if not 0.0 < float(m.mask_ratio) < 1.0:
            fail("mae.mask_ratio", m.mask_ratio, "the fraction of patches removed must be in "
                 "(0, 1); MAE uses 0.75")
        size, p = int(config.data.image_size), int(config.model.patch_size)
        if p <= 0 or size % p:
            fail("model.patch_size", config.model.patch_size,
                 f"must be a positive divisor of data.image_size={size}")
        num_patches = (size // p) ** 2
        patch_masking.num_masked_patches(num_patches, float(m.mask_ratio))
        for name in ("decoder_dim", "decoder_depth", "decoder_heads"):
            if int(m[name]) <= 0:
                fail(f"mae.{name}", m[name], "must be a positive integer")
        for name in ("encoder_hidden_dim", "encoder_depth", "encoder_heads"):
            if int(m[name]) < 0:
                fail(f"mae.{name}", m[name], "use 0 for the model.backbone size or a positive value")
        if m.decoder_dim % m.decoder_heads or m.decoder_dim % 4:
            fail("mae.decoder_dim", m.decoder_dim, f"must be divisible by 4 (sin-cos positions) and "
                 f"by mae.decoder_heads={m.decoder_heads}")
        enc = encoder_sizes(config.model, m)
        if enc["hidden_dim"] % enc["num_heads"] or enc["hidden_dim"] % 4:
            fail("mae.encoder_hidden_dim", enc["hidden_dim"], "the encoder width must be divisible "
                 f"by 4 (sin-cos positions) and by its {enc['num_heads']} heads (mae.encoder_heads)")
        if m.pool not in POOLS:
            fail("mae.pool", m.pool, f"use one of {POOLS} ('cls' is MAE's linear-probe feature)")
        mean, std = tuple(m.pixel_mean), tuple(m.pixel_std)
        if len(mean) != len(std) or len(mean) not in (1, 3):
            fail("mae.pixel_mean", mean, f"pixel_mean and pixel_std (= {std}) need the same length, "
                 "1 (grayscale) or 3 (RGB)")
        if min(std) <= 0:
            fail("mae.pixel_std", std, "every standard deviation must be > 0")

    num_views = 1  # one random crop per image on host-read sources

    def __init__(self, config, mesh, data, total_steps: int):
        super().__init__(config, mesh, data, total_steps)
        c, m = config, config.mae
        self.patch_size = int(c.model.patch_size)
        grid = self.image_size // self.patch_size
        self.num_patches = grid * grid
        self.mask_ratio = float(m.mask_ratio)
        self.num_masked = patch_masking.num_masked_patches(self.num_patches, self.mask_ratio)
        self.model = build_model(c, self.channels)

    # ----- data -------------------------------------------------------------------------
    def view(self, batch, step):
        """The step's single augmented view ``[B, S, S, C]`` float32 in [0, 1] (stream
        'augment', view 0, per global example index). Host-cropped ``[B, V, S, S, C]``
        batches use their first view."""
        images = batch["image"]
        if images.ndim == 5:
            images = images[:, 0]
        key = jax.random.fold_in(rng.step_key(self.config.seed, "augment", step), 0)
        return aug.augment_batch(rng.example_keys(key, images.shape[0]), images, self.view_cfg)

    def masks(self, batch_size: int, step) -> patch_masking.PatchMask:
        """The step's masks for the ``batch_size`` images of the global batch."""
        return patch_masking.patch_mask_for_step(self.config.seed, step, batch_size,
                                                 self.num_patches, self.mask_ratio)

    # ----- model ------------------------------------------------------------------------
    def init(self, key):
        pm = self.masks(2, 0)
        variables = self.model.init(key, self.normalize(self.dummy_input(2)), pm.ids_keep,
                                    pm.ids_restore, train=True)
        return variables["params"], {k: v for k, v in variables.items() if k != "params"}

    def reconstruct(self, params, images, patch_mask: patch_masking.PatchMask):
        """``(pred, target)``, both ``[B, N, p*p*C]``: decoder predictions for normalised
        images ``[B, S, S, C]`` under ``patch_mask``, and ``patchify(images)``."""
        pred = self.model.apply({"params": params}, images, patch_mask.ids_keep,
                                patch_mask.ids_restore, train=True)
        return pred, losses.patchify(images, self.patch_size)

    def loss(self, params, model_state, batch, step):
        x = self.normalize(self.view(batch, step))
        patch_mask = self.masks(x.shape[0], step)
        pred, target = self.reconstruct(params, x, patch_mask)
        loss = losses.mae_loss(pred, target, patch_mask.mask,
                               norm_pix_loss=bool(self.config.mae.norm_pix_loss))
        return loss, (model_state, {})

    # ----- evaluation -------------------------------------------------------------------
    def backbone_features(self, params, model_state, images):
        """Encoder on all patches of ``images`` ``[B, S, S, C]`` in [0, 1] -> ``[B, D]``."""
        return self.model.apply({"params": params}, self.normalize(images),
                                method=MaskedAutoencoder.features).astype(jnp.float32)

    def flops_per_step(self) -> float | None:
        """Matmul FLOPs of one step (forward + backward = 3x forward), attention included."""
        m, c = self.config.mae, self.config
        enc = encoder_sizes(c.model, m)
        batch = int(c.train.batch_size)
        p2c = self.patch_size ** 2 * self.channels

        def blocks(length, dim, depth):  # qkv + proj + mlp (4x), and the two attention matmuls
            return depth * (2 * length * 12 * dim * dim + 4 * length * length * dim)

        keep = self.num_patches - self.num_masked
        fwd = (2 * self.num_patches * p2c * enc["hidden_dim"]              # patch embedding
               + blocks(1 + keep, enc["hidden_dim"], enc["depth"])
               + 2 * (1 + keep) * enc["hidden_dim"] * m.decoder_dim           # decoder_embed
               + blocks(1 + self.num_patches, m.decoder_dim, m.decoder_depth)
               + 2 * (1 + self.num_patches) * m.decoder_dim * p2c)            # decoder_pred
        return float(3 * batch * fwd)


__all__ = ["MAE", "build_model", "default_config", "encoder_sizes", "IMAGENET_MEAN", "IMAGENET_STD",
           "ENCODER_INIT"]
