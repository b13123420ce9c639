"""I-JEPA's narrow ViT predictor and the joint-embedding predictive model around it.

Assran et al. 2023, facebookresearch/ijepa ``src/models/vision_transformer.py``
(``VisionTransformerPredictor``, ``VisionTransformer.forward(x, masks)``).

* Context encoder: a :class:`jaxssl.models.vit.VisionTransformer` on the context patches only:
  ``embed_patches`` (patch projection + fixed 2-D sin-cos positions of all N patches), the
  context rows gathered, then ``encode_tokens`` (blocks + final LayerNorm).
* Predictor (:class:`IJEPAPredictor`): ``predictor_embed`` Dense D -> d, plus the fixed
  sin-cos positions (width d) of the context patches; for each target block, one learned
  ``mask_token`` per target patch plus that patch's position, appended to the context;
  pre-LN blocks, ``predictor_norm``, ``predictor_proj`` Dense d -> D on the target rows:
  ``[B, T, K_t, D]``.

Fixed-size sequences. The reference's context and target index lists change length from
step to step (one block size per batch, the context cut to the batch minimum). Here every
sequence has a static length -- the largest the masks can produce
(:func:`jaxssl.augment.patch_masking.multiblock_budgets`) -- and a validity mask: padded
rows are never attended to (key-padding mask in every attention of the context encoder and
the predictor) and never enter the loss, so the valid rows compute exactly what the
reference's shorter sequences compute, and the step compiles once.

The context encoder's attention gets the key-padding mask through
:func:`key_padding_attention`, a Flax method interceptor around
:class:`jaxssl.models.vit.SelfAttention` (the ViT's own attention has no mask argument);
``tests/test_ijepa.py`` checks that padded rows change nothing.

The class token. I-JEPA's ViT has none; jaxssl's ViT always prepends one. It stays in the
sequence as one extra learned token (as a register: attended to, its output unused): the
context encoder's and the target encoder's outputs are their patch rows only.

Initialisation of the predictor as the reference's: Dense kernels truncated N(0, 0.02^2)
(``trunc_normal_`` within +-2, absolute, as timm's), zero biases, LayerNorm (1, 0),
``mask_token`` truncated N(0, 0.02^2), and each block's ``attn/proj`` and ``mlp/fc2``
kernels divided by ``sqrt(2 * (i + 1))`` (``fix_init_weight``). LayerNorm eps 1e-6, MLP
ratio 4, qkv bias, exact GELU.
"""
from __future__ import annotations

import contextlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxssl.augment.patch_masking import gather_patches
from jaxssl.models.remat import remat_block
from jaxssl.models.vit import (LN_EPSILON, SelfAttention, VisionTransformer,
                               sincos_2d_position_embedding)

__all__ = ["IJEPAPredictor", "JointEmbeddingPredictive", "key_padding_attention",
           "masked_attention", "trunc_normal_init"]


def trunc_normal_init(std: float = 0.02, scale: float = 1.0):
    """torch ``trunc_normal_(w, std=std)`` (cut at +-2 absolute, i.e. +-2/std standard
    deviations), then multiplied by ``scale`` (``fix_init_weight``)."""
    def init(key, shape, dtype=jnp.float32):
        bound = 2.0 / std
        return (jax.random.truncated_normal(key, -bound, bound, shape, jnp.float32)
                * std * scale).astype(dtype)
    return init


def masked_attention(q, k, v, kv_valid):
    """``softmax(q k^T / sqrt(d)) v`` over the valid keys: q, k, v ``[B, L, heads, d]``,
    kv_valid bool ``[B, L]`` -> ``[B, L, heads, d]``."""
    mask = kv_valid[:, None, None, :]
    return jax.nn.dot_product_attention(q, k, v, mask=mask)


def _dense(x, params, dtype):
    """Flax ``nn.Dense`` on ``params`` (kernel [in, out], bias [out]) in ``dtype``."""
    kernel = params["kernel"].astype(dtype)
    y = jnp.einsum("...i,io->...o", x.astype(dtype), kernel)
    bias = params["bias"].astype(dtype)
    return y + bias.reshape((1,) * (y.ndim - 1) + bias.shape)


@contextlib.contextmanager
def key_padding_attention(kv_valid):
    """Inside this context every :class:`SelfAttention` call on a sequence ``[B, L, D]``
    ignores the keys where ``kv_valid [B, L]`` is False (the padded rows). Same parameters,
    same arithmetic as ``SelfAttention.__call__`` otherwise (qkv Dense, heads, proj Dense)."""
    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if not (isinstance(module, SelfAttention) and context.method_name == "__call__"):
            return next_fun(*args, **kwargs)
        if "qkv" not in module.variables.get("params", {}):   # initialisation: no params yet
            return next_fun(*args, **kwargs)
        (x,) = args
        batch, length, dim = x.shape
        if kv_valid.shape != (batch, length):
            raise ValueError(f"key_padding_attention: validity mask {tuple(kv_valid.shape)} "
                             f"does not match the sequence [B, L] = [{batch}, {length}]")
        params = module.variables["params"]
        qkv = _dense(x, params["qkv"], module.dtype)
        qkv = qkv.reshape(batch, length, 3, module.num_heads, dim // module.num_heads)
        out = masked_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], kv_valid)
        return _dense(out.reshape(batch, length, dim), params["proj"], module.dtype)

    with nn.intercept_methods(interceptor):
        yield


class PredictorAttention(nn.Module):
    """Self-attention with a key-padding mask (fused ``qkv`` with bias, ``proj``)."""
    num_heads: int
    proj_scale: float = 1.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, kv_valid):
        batch, length, dim = x.shape
        qkv = nn.Dense(3 * dim, kernel_init=trunc_normal_init(), dtype=self.dtype,
                       param_dtype=jnp.float32, name="qkv")(x)
        qkv = qkv.reshape(batch, length, 3, self.num_heads, dim // self.num_heads)
        out = masked_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], kv_valid)
        return nn.Dense(dim, kernel_init=trunc_normal_init(scale=self.proj_scale),
                        dtype=self.dtype, param_dtype=jnp.float32,
                        name="proj")(out.reshape(batch, length, dim))


class PredictorBlock(nn.Module):
    """Pre-LN block ``x + attn(norm1(x))``, ``x + mlp(norm2(x))`` with a key-padding mask;
    parameter names as :class:`jaxssl.models.vit.EncoderBlock` (and the reference's Block)."""
    num_heads: int
    mlp_dim: int
    layer_id: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, kv_valid):
        rescale = 1.0 / (2.0 * self.layer_id) ** 0.5
        norm = lambda name: nn.LayerNorm(epsilon=LN_EPSILON, dtype=self.dtype,  # noqa: E731
                                         param_dtype=jnp.float32, name=name)
        x = x + PredictorAttention(self.num_heads, rescale, self.dtype,
                                   name="attn")(norm("norm1")(x), kv_valid)
        y = norm("norm2")(x)
        dense = lambda n, s, name: nn.Dense(n, kernel_init=trunc_normal_init(scale=s),  # noqa: E731
                                            dtype=self.dtype, param_dtype=jnp.float32,
                                            name=name)
        h = nn.gelu(dense(self.mlp_dim, 1.0, "fc1")(y), approximate=False)
        return x + dense(x.shape[-1], rescale, "fc2")(h)


class IJEPAPredictor(nn.Module):
    """Context features + target positions -> predicted target features.

    Attributes:
      grid_hw: the patch grid ``(H, W)`` (positions of ``N = H W`` patches).
      embed_dim: D, the encoder's width (input and output).
      hidden_dim, depth, num_heads: the predictor's width d, blocks and heads (I-JEPA ViT-H/14:
        384, 12, 16 -- the encoder's head count).
      dtype: compute dtype; params float32.
      remat: rematerialisation of each block (``model.remat``: 'none' | 'full' | 'dots'), as
        the encoder's; the predictor runs on ``T x (K_c + K_t)`` rows per image, so at ViT-H
        scale its activations are a large part of the step's memory.
    """
    grid_hw: tuple[int, int]
    embed_dim: int
    hidden_dim: int = 384
    depth: int = 12
    num_heads: int = 16
    dtype: Any = jnp.float32
    remat: str = "none"

    @nn.compact
    def __call__(self, context, ctx_ids, ctx_valid, tgt_ids, tgt_valid):
        """context ``[B, K_c, D]`` (encoder outputs of the context rows), ctx_ids / ctx_valid
        ``[B, K_c]``, tgt_ids / tgt_valid ``[B, T, K_t]`` -> ``[B, T, K_t, D]``."""
        batch, k_c, _ = context.shape
        _, num_targets, k_t = tgt_ids.shape
        d = self.hidden_dim
        pos = jnp.asarray(sincos_2d_position_embedding(*self.grid_hw, d))        # [N, d]
        x = nn.Dense(d, kernel_init=trunc_normal_init(), dtype=self.dtype,
                     param_dtype=jnp.float32, name="predictor_embed")(context)
        x = x + jnp.take(pos, ctx_ids, axis=0).astype(x.dtype)                   # [B, K_c, d]
        mask_token = self.param("mask_token", trunc_normal_init(), (1, 1, d), jnp.float32)
        tgt = jnp.take(pos, tgt_ids, axis=0) + mask_token[None].astype(jnp.float32)  # [B,T,K_t,d]
        x = jnp.broadcast_to(x[:, None], (batch, num_targets, k_c, d))
        seq = jnp.concatenate([x, tgt.astype(x.dtype)], axis=2)
        seq = seq.reshape(batch * num_targets, k_c + k_t, d)
        valid = jnp.concatenate([jnp.broadcast_to(ctx_valid[:, None], (batch, num_targets, k_c)),
                                 tgt_valid], axis=2).reshape(batch * num_targets, k_c + k_t)
        block_cls = remat_block(PredictorBlock, self.remat)
        for i in range(self.depth):
            seq = block_cls(self.num_heads, 4 * d, i + 1, self.dtype,
                            name=f"predictor_blocks_{i}")(seq, valid)
        seq = nn.LayerNorm(epsilon=LN_EPSILON, dtype=self.dtype, param_dtype=jnp.float32,
                           name="predictor_norm")(seq)
        out = nn.Dense(self.embed_dim, kernel_init=trunc_normal_init(), dtype=self.dtype,
                       param_dtype=jnp.float32, name="predictor_proj")(seq[:, k_c:])
        return out.reshape(batch, num_targets, k_t, self.embed_dim)


class JointEmbeddingPredictive(nn.Module):
    """The context encoder (``encoder``) and the predictor (``predictor``).

    ``__call__(images, ctx_ids, ctx_valid, tgt_ids, tgt_valid, train)``: predictions
    ``[B, T, K_t, D]`` of the target patches' features. ``patch_features(images)``: the encoder
    on all patches, the patch rows after the final LayerNorm ``[B, N, D]`` (the target
    encoder's output when applied with the teacher's params). ``features(images)``: the
    encoder's pooled output ``[B, D]`` (``pool='gap'``: the mean of those patch rows).
    Initialise through ``__call__``.
    """
    encoder: VisionTransformer
    predictor: IJEPAPredictor

    def _prefix(self) -> int:
        return 1 + int(self.encoder.num_registers)

    def __call__(self, images, ctx_ids, ctx_valid, tgt_ids, tgt_valid, train: bool = True):
        tokens = self.encoder.embed_patches(images)                  # [B, N, D]
        context = gather_patches(tokens, ctx_ids)                    # [B, K_c, D]
        batch = context.shape[0]
        valid = jnp.concatenate([jnp.ones((batch, self._prefix()), bool), ctx_valid], axis=1)
        with key_padding_attention(valid):
            out = self.encoder.encode_tokens(context, train)         # [B, 1 + R + K_c, D]
        return self.predictor(out[:, self._prefix():], ctx_ids, ctx_valid, tgt_ids, tgt_valid)

    def patch_features(self, images):
        out = self.encoder.encode_tokens(self.encoder.embed_patches(images), False)
        return out[:, self._prefix():]

    def features(self, images):
        return self.encoder(images, train=False)
