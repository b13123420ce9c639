"""MAE's asymmetric encoder-decoder (He et al. 2022, facebookresearch/mae ``models_mae.py``).

* Encoder: a :class:`jaxssl.models.vit.VisionTransformer` run on the *visible* patches only:
  ``embed_patches`` (patch projection + fixed 2-D sin-cos positions of all ``N`` patches),
  keep the rows ``ids_keep`` (``K = N - round(ratio * N)``), then ``encode_tokens`` (class
  token prepended, pre-LN blocks, final LayerNorm): sequence length ``1 + K``.
* Decoder (:class:`MAEDecoder`): ``decoder_embed`` Dense to the decoder width, a learned
  ``mask_token`` appended for every removed patch, the sequence unshuffled into patch order
  with ``ids_restore``, fixed sin-cos decoder positions (zero for the class token), pre-LN
  transformer blocks, LayerNorm, ``decoder_pred`` Dense to ``p * p * C`` pixel values per
  patch; the class token's output is dropped. Output ``[B, N, p*p*C]`` in ``patchify`` order.

Flax paths follow the reference's names: ``encoder/...`` (timm names, see ``vit.py``),
``decoder/decoder_embed``, ``decoder/mask_token``, ``decoder/decoder_blocks_i``,
``decoder/decoder_norm``, ``decoder/decoder_pred``.

Initialisation as the reference's ``initialize_weights``: Dense kernels xavier-uniform with
zero bias -- including the fused ``qkv`` kernels of encoder and decoder blocks, xavier over
the whole [D, 3D] shape (``qkv_init='xavier'``) -- LayerNorm (1, 0), ``mask_token`` and the
encoder's ``cls_token`` N(0, 0.02^2) (the encoder is built with ``cls_init_std=0.02`` by
:class:`jaxssl.methods.mae.MAE`). One difference: the patch projection's bias starts at 0
(MAE leaves torch's Conv2d default bias init, U(+-1/sqrt(p*p*C)), in place).

``mask_token`` is ``[1, 1, D]`` as MAE's, so the optimizer's ``ndim > 1`` rule decays it, as
MAE's optimizer does: ``main_pretrain.py`` builds its param groups with timm 0.3.2's
``optim_factory.add_weight_decay(model, 0.05)`` and no skip list, which exempts only 1-D
parameters and ``.bias`` names -- ``cls_token [1, 1, 768]`` and ``mask_token [1, 1, 512]``
are decayed.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxssl.augment.patch_masking import gather_patches
from jaxssl.models.vit import (LN_EPSILON, EncoderBlock, VisionTransformer,
                               dense_kernel_init, sincos_2d_position_embedding)

__all__ = ["MAEDecoder", "MaskedAutoencoder", "decoder_position_embedding"]


def decoder_position_embedding(grid_h: int, grid_w: int, dim: int) -> jnp.ndarray:
    """``[1 + grid_h * grid_w, dim]`` float32: a zero row for the class token, then the fixed
    2-D sin-cos table (MAE's ``get_2d_sincos_pos_embed(..., cls_token=True)``)."""
    table = sincos_2d_position_embedding(grid_h, grid_w, dim)
    return jnp.concatenate([jnp.zeros((1, dim), jnp.float32), jnp.asarray(table)], axis=0)


class MAEDecoder(nn.Module):
    """Latent of the visible patches -> pixel predictions of every patch.

    Attributes:
      grid_hw: ``(H/p, W/p)`` patch grid (``N = H/p * W/p``).
      patch_dim: ``p * p * C`` values predicted per patch.
      hidden_dim, depth, num_heads: decoder width, blocks, heads (MAE ViT-B: 512, 8, 16).
      mlp_dim: block MLP width (None: 4 * hidden_dim, MAE's mlp_ratio 4).
      dtype: compute dtype; params float32.
    """

    grid_hw: tuple[int, int]
    patch_dim: int
    hidden_dim: int = 512
    depth: int = 8
    num_heads: int = 16
    mlp_dim: int | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, latent, ids_restore):
        """latent ``[B, 1 + K, D_enc]`` (class token first), ids_restore int ``[B, N]`` ->
        predictions ``[B, N, patch_dim]`` in patch order (float ``dtype``)."""
        grid_h, grid_w = self.grid_hw
        num_patches = grid_h * grid_w
        batch, length, _ = latent.shape
        if ids_restore.shape != (batch, num_patches):
            raise ValueError(f"MAEDecoder: ids_restore shape {tuple(ids_restore.shape)} must be "
                             f"[B, N] = [{batch}, {num_patches}]")
        num_visible = length - 1
        if not 0 < num_visible < num_patches:
            raise ValueError(f"MAEDecoder: latent has {num_visible} visible patch tokens; expected "
                             f"between 1 and N - 1 = {num_patches - 1} (plus the class token)")
        dense = lambda n, name: nn.Dense(n, kernel_init=dense_kernel_init, dtype=self.dtype,  # noqa: E731
                                         param_dtype=jnp.float32, name=name)
        x = dense(self.hidden_dim, "decoder_embed")(latent)                     # [B, 1+K, d]
        mask_token = self.param("mask_token", nn.initializers.normal(0.02),
                                (1, 1, self.hidden_dim), jnp.float32)
        fill = jnp.broadcast_to(mask_token.astype(x.dtype),
                                (batch, num_patches - num_visible, self.hidden_dim))
        shuffled = jnp.concatenate([x[:, 1:], fill], axis=1)                     # [B, N, d]
        unshuffled = gather_patches(shuffled, ids_restore)                       # patch order
        x = jnp.concatenate([x[:, :1], unshuffled], axis=1)                      # [B, 1+N, d]
        pos = decoder_position_embedding(grid_h, grid_w, self.hidden_dim)
        x = x + pos[None].astype(x.dtype)
        mlp_dim = self.mlp_dim or 4 * self.hidden_dim
        for i in range(self.depth):
            x = EncoderBlock(self.num_heads, mlp_dim, self.dtype, qkv_init="xavier",
                             name=f"decoder_blocks_{i}")(x)
        x = nn.LayerNorm(epsilon=LN_EPSILON, dtype=self.dtype, param_dtype=jnp.float32,
                         name="decoder_norm")(x)
        return dense(self.patch_dim, "decoder_pred")(x)[:, 1:]


class MaskedAutoencoder(nn.Module):
    """ViT encoder on visible patches + :class:`MAEDecoder`.

    ``__call__(images, ids_keep, ids_restore)``: images ``[B, H, W, C]`` float (already
    normalised), ids from :func:`jaxssl.augment.patch_masking.random_patch_mask` ->
    predictions ``[B, N, p*p*C]``. Initialise through ``__call__``.

    ``features(images)``: the encoder on ALL patches (no masking), pooled as the encoder's
    ``pool`` ('cls': class token after the final LayerNorm, MAE's linear-probe choice;
    'gap': mean of the patch tokens after it) -> ``[B, D_enc]``.
    """

    encoder: VisionTransformer
    decoder: MAEDecoder

    def __call__(self, images, ids_keep, ids_restore, train: bool = True):
        tokens = self.encoder.embed_patches(images)                  # [B, N, D], positions added
        visible = gather_patches(tokens, ids_keep)                   # [B, K, D]
        latent = self.encoder.encode_tokens(visible, train)          # [B, 1 + K, D]
        return self.decoder(latent, ids_restore)

    def features(self, images):
        return self.encoder(images, train=False)
