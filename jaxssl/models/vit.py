"""Vision Transformer encoder (Dosovitskiy et al. 2021) for MoCo v3 and MAE.

Pre-LN blocks ``x + attn(norm1(x))``, ``x + mlp(norm2(x))`` (LayerNorm eps 1e-6, exact-erf
GELU), a final LayerNorm, a class token, patch embedding by a conv with kernel = stride =
patch size, and either fixed 2-D sine-cosine position embeddings (MoCo v3, MAE; the class
token's position is zero) or learned ones (timm; including the class token's position).

Parameter names map mechanically onto timm's ``VisionTransformer`` state dict (Dense kernels
are [in, out], torch weights [out, in]; conv kernels [kh, kw, in, out]):

===========================================  ==========================================
Flax path                                    timm key
===========================================  ==========================================
``patch_embed/{kernel,bias}``                ``patch_embed.proj.{weight,bias}``
``cls_token`` [1, 1, D]                      ``cls_token``
``pos_embed`` [1, 1 + N, D] (learned only)   ``pos_embed`` (sincos: regenerate it with
                                             ``sincos_2d_position_embedding`` + a zero row)
``blocks_i/norm1/{scale,bias}``              ``blocks.i.norm1.{weight,bias}``
``blocks_i/attn/qkv``, ``blocks_i/attn/proj``  ``blocks.i.attn.qkv``, ``blocks.i.attn.proj``
``blocks_i/mlp/fc1``, ``blocks_i/mlp/fc2``   ``blocks.i.mlp.fc1``, ``blocks.i.mlp.fc2``
``norm/{scale,bias}``                        ``norm.{weight,bias}``
===========================================  ==========================================

The fused ``qkv`` output is laid out as timm's: ``reshape(B, L, 3, heads, head_dim)``.

Initialisation (one option per point where MoCo v3 and MAE differ): Dense kernels
xavier-uniform, biases zero, patch projection xavier-uniform over its flattened [p*p*C, D]
kernel, learned positions truncated N(0, 0.02), and

* ``qkv_init='mocov3'`` (default): the fused [D, 3D] qkv kernel with the fans of one of Q, K,
  V, ``U(+-sqrt(6 / (D + D)))`` (moco-v3 ``vits.py`` "treat the weights of Q, K, V
  separately"); ``'xavier'``: xavier over the fused kernel, ``U(+-sqrt(6 / (D + 3D)))`` (MAE
  ``models_mae.py`` ``_init_weights`` on every ``nn.Linear``).
* ``cls_init_std``: class token N(0, std^2); 1e-6 in moco-v3 ``vits.py``, 0.02 in MAE.
* ``sincos_layout``: which half of the fixed 2-D sin-cos table encodes the row (see
  :func:`sincos_2d_position_embedding`): ``'mae'`` (column first, MAE ``util/pos_embed.py``)
  or ``'mocov3'`` (row first, moco-v3 ``vits.py``).

The named sizes: ``vit_small`` is DeiT's / timm's ViT-S (6 heads); moco-v3's ``vit_small`` is
the same model with 12 heads (head dim 32): the MoCo v3 preset sets ``model.vit_num_heads=12``.

DINOv2 options (defaults off, so the models above and their parameter trees are unchanged):
``layerscale_init > 0`` adds LayerScale (Touvron et al. 2021, CaiT; dinov2 ``layers/layer_scale.py``)
``x + gamma * branch(x)`` with ``blocks_i/ls1/gamma``, ``blocks_i/ls2/gamma`` [D] initialised to
``layerscale_init``; ``num_registers = R > 0`` adds R register tokens (Darcet et al. 2024,
``register_tokens`` [1, R, D], inserted after the class token once positions are added, so they
carry none); ``mlp_type='swiglu'`` is dinov2's ``SwiGLUFFNFused`` (``w12`` [D, 2H], ``w3`` [H, D],
``H = ceil8(int(2 mlp_dim / 3))``, ``silu(x W1) * (x W2) W3``); ``use_mask_token`` adds a learned
``mask_token`` [1, D] (zeros) that replaces masked patch tokens before positions are added (iBOT,
dinov2 ``prepare_tokens_with_masks``).

Learned position embeddings are created for the grid of the image the model is initialised with;
an input with another grid gets them resized by torch's bicubic interpolation (a = -0.75, border
clamp) with DINO's ``interpolate_pos_encoding`` offset (``pos_interp_offset``, 0.1): output grid
``(h, w)``, source coordinate ``(i + 0.5) / s - 0.5`` with ``s = (h + offset) / h0``.

No dropout. Drop path (stochastic depth, timm ``DropPath``) only if ``drop_path_rate > 0`` and
``train=True`` (fine-tuning; MoCo v3 and MAE pretrain without it). ``pool='gap_fc_norm'`` is
MAE's fine-tuning head (``models_vit.py``, ``global_pool=True``). Attention runs through
``jax.nn.dot_product_attention`` (logits and softmax in float32 for bfloat16 inputs).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.models.remat import remat_block

POOLS = ("cls", "gap", "gap_fc_norm")
POSEMBS = ("sincos2d", "learned")
SINCOS_LAYOUTS = ("mae", "mocov3")
QKV_INITS = ("mocov3", "xavier")
MLP_TYPES = ("mlp", "swiglu")
LN_EPSILON = 1e-6

dense_kernel_init = nn.initializers.xavier_uniform()
# torch xavier_uniform_ on the conv weight viewed as [D, C * p * p]: fan_in = p*p*C, fan_out = D.
patch_kernel_init = nn.initializers.xavier_uniform(in_axis=(0, 1, 2), out_axis=-1)


def qkv_kernel_init(key, shape, dtype=jnp.float32):
    """Xavier-uniform for a fused [D, 3D] qkv kernel with the fans of one [D, D] projection.

    MoCo v3 vits.py: ``val = sqrt(6 / (weight.shape[0] // 3 + weight.shape[1]))``.
    """
    fan_in, fan_out = shape[0], shape[1] // 3
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, dtype, -limit, limit)


def qkv_init_fn(name: str):
    """The fused-qkv kernel initialiser named ``name``: 'mocov3' (:func:`qkv_kernel_init`) or
    'xavier' (xavier-uniform over the whole [D, 3D] kernel, MAE's)."""
    if name == "mocov3":
        return qkv_kernel_init
    if name == "xavier":
        return dense_kernel_init
    raise ValueError(f"VisionTransformer qkv_init={name!r} is not one of {QKV_INITS} "
                     "(moco-v3: 'mocov3', MAE: 'xavier')")


def sincos_2d_position_embedding(grid_h: int, grid_w: int, dim: int,
                                 temperature: float = 10000.0,
                                 layout: str = "mae") -> np.ndarray:
    """Fixed 2-D sine-cosine position embedding, [grid_h * grid_w, dim] float32 (no cls row).

    Token ``t`` is the row-major patch ``t = row * grid_w + col``. With omega_k =
    temperature^(-k / (dim / 4)), k = 0 .. dim/4 - 1, and ``e(a) = [sin(a omega), cos(a omega)]``:

    * ``layout='mae'``: token t gets ``[e(col), e(row)]`` -- MAE ``util/pos_embed.py``
      ``get_2d_sincos_pos_embed`` (``np.meshgrid(grid_w, grid_h)``, 'xy' indexing, puts the
      column in its first half).
    * ``layout='mocov3'``: token t gets ``[e(t // grid_h), e(t % grid_h)]`` -- moco-v3
      ``vits.py`` ``build_2d_sincos_position_embedding`` (``torch.meshgrid(grid_w, grid_h)``,
      'ij' indexing, flattened). On a square grid that is ``[e(row), e(col)]``: the row
      first, the halves of MAE's table swapped.
    """
    if dim % 4:
        raise ValueError(
            f"sincos2d position embedding needs hidden_dim divisible by 4, got {dim}; "
            "change model.hidden_dim or use posemb='learned'")
    if layout not in SINCOS_LAYOUTS:
        raise ValueError(f"sincos layout={layout!r} is not one of {SINCOS_LAYOUTS} "
                         "(config field model.sincos_layout; MAE: 'mae', MoCo v3: 'mocov3')")
    omega = 1.0 / temperature ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))
    t = np.arange(grid_h * grid_w)
    if layout == "mae":
        first, second = t % grid_w, t // grid_w          # (col, row)
    else:
        first, second = t // grid_h, t % grid_h          # (row, col) on a square grid

    def encode(a):
        angle = a.astype(np.float64)[:, None] * omega[None, :]
        return [np.sin(angle), np.cos(angle)]

    table = np.concatenate(encode(first) + encode(second), axis=1)
    return table.astype(np.float32)


class SelfAttention(nn.Module):
    """Multi-head self-attention: [B, L, D] -> [B, L, D] (fused ``qkv``, output ``proj``)."""

    num_heads: int
    dtype: Any = jnp.float32
    qkv_init: str = "mocov3"

    @nn.compact
    def __call__(self, x):
        batch, length, dim = x.shape
        qkv = nn.Dense(3 * dim, kernel_init=qkv_init_fn(self.qkv_init), dtype=self.dtype,
                       param_dtype=jnp.float32, name="qkv")(x)
        qkv = qkv.reshape(batch, length, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, L, heads, head_dim]
        out = jax.nn.dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v
        return nn.Dense(dim, kernel_init=dense_kernel_init, dtype=self.dtype,
                        param_dtype=jnp.float32, name="proj")(out.reshape(batch, length, dim))


class MlpBlock(nn.Module):
    """fc1 -> GELU (exact erf, as torch nn.GELU) -> fc2: [B, L, D] -> [B, L, D]."""

    mlp_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        dense = lambda n, name: nn.Dense(n, kernel_init=dense_kernel_init, dtype=self.dtype,
                                         param_dtype=jnp.float32, name=name)
        y = nn.gelu(dense(self.mlp_dim, "fc1")(x), approximate=False)
        return dense(x.shape[-1], "fc2")(y)


def swiglu_hidden_dim(mlp_dim: int) -> int:
    """dinov2 ``SwiGLUFFNFused``: ``(int(mlp_dim * 2 / 3) + 7) // 8 * 8`` (ViT-g: 6144 -> 4096)."""
    return (int(mlp_dim * 2 / 3) + 7) // 8 * 8


class SwiGluBlock(nn.Module):
    """SwiGLU feed-forward (Shazeer 2020; dinov2 ``SwiGLUFFNFused``): [B, L, D] -> [B, L, D].

    ``x1, x2 = split(x W12 + b12)``; ``out = (silu(x1) * x2) W3 + b3``; hidden width
    :func:`swiglu_hidden_dim` of ``mlp_dim``.
    """

    mlp_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        hidden = swiglu_hidden_dim(self.mlp_dim)
        dense = lambda n, name: nn.Dense(n, kernel_init=dense_kernel_init, dtype=self.dtype,
                                         param_dtype=jnp.float32, name=name)
        x1, x2 = jnp.split(dense(2 * hidden, "w12")(x), 2, axis=-1)
        return dense(x.shape[-1], "w3")(nn.silu(x1) * x2)


class LayerScale(nn.Module):
    """``x * gamma`` with a learned per-channel ``gamma`` [D] initialised to ``init_value``."""

    init_value: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        gamma = self.param("gamma", nn.initializers.constant(self.init_value), (x.shape[-1],),
                           jnp.float32)
        return x * gamma.astype(self.dtype)[None, None, :]


def drop_path(x, rate: float, rng):
    """Stochastic depth per example (timm ``drop_path``): [B, ...] -> same.

    Each example's residual branch is zeroed with probability ``rate`` and the kept ones are
    scaled by ``1 / (1 - rate)``: ``x / keep * floor(keep + U[0, 1))``, one draw per example.
    """
    keep = 1.0 - rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = jnp.floor(keep + jax.random.uniform(rng, shape, jnp.float32))
    return x / jnp.asarray(keep, x.dtype) * mask.astype(x.dtype)


class EncoderBlock(nn.Module):
    """Pre-LN transformer block: x + attn(norm1(x)), then + mlp(norm2(x)). [B, L, D] -> same.

    ``drop_path`` > 0 drops each residual branch per example when called with ``train=True``
    (needs a 'dropout' rng), as timm's ``Block``: ``x + drop_path(attn(norm1(x)))``.
    """

    num_heads: int
    mlp_dim: int
    dtype: Any = jnp.float32
    qkv_init: str = "mocov3"
    drop_path: float = 0.0
    layerscale_init: float = 0.0
    mlp_type: str = "mlp"

    @nn.compact
    def __call__(self, x, train: bool = False):
        norm = lambda name: nn.LayerNorm(epsilon=LN_EPSILON, dtype=self.dtype,
                                         param_dtype=jnp.float32, name=name)
        scale = lambda y, name: (LayerScale(self.layerscale_init, self.dtype, name=name)(y)
                                 if self.layerscale_init > 0 else y)
        branch = lambda y: (drop_path(y, self.drop_path, self.make_rng("dropout"))
                            if train and self.drop_path > 0 else y)
        attn = SelfAttention(self.num_heads, self.dtype, self.qkv_init, name="attn")
        x = x + branch(scale(attn(norm("norm1")(x)), "ls1"))
        mlp = (SwiGluBlock(self.mlp_dim, self.dtype, name="mlp") if self.mlp_type == "swiglu"
               else MlpBlock(self.mlp_dim, self.dtype, name="mlp"))
        return x + branch(scale(mlp(norm("norm2")(x)), "ls2"))


class VisionTransformer(nn.Module):
    """ViT encoder: images [B, H, W, C] -> features [B, hidden_dim].

    Attributes:
      patch_size: side of the square patches (16 for 224 px, 4 for 32 px, 2 for digits).
      hidden_dim, depth, num_heads: width D, number of blocks, attention heads.
      mlp_dim: MLP hidden width (None: 4 * hidden_dim).
      pool: 'cls' (the class token's output), 'gap' (mean of the patch tokens' outputs
        after the final norm, as timm's ``global_pool='avg'``) or 'gap_fc_norm' (MAE
        fine-tuning, ``models_vit.py`` ``global_pool=True``: mean of the last block's patch
        tokens, class token excluded, then a new LayerNorm ``fc_norm`` (eps 1e-6); the final
        ``norm`` is not used and has no parameters).
      posemb: 'sincos2d' (fixed) or 'learned'.
      sincos_layout: 'mae' (column first) or 'mocov3' (row first); sincos2d only.
      qkv_init: 'mocov3' (fans of one of Q, K, V) or 'xavier' (fans of the fused kernel).
      cls_init_std: the class token's init N(0, std^2) (moco-v3 1e-6, MAE 0.02).
      freeze_patch_embed: MoCo v3's "stop-grad conv1": the patch projection's output goes
        through ``jax.lax.stop_gradient``, so its kernel and bias get exactly zero gradient.
        (The optimizer must also leave them out of weight decay, as torch's
        ``requires_grad=False`` does.)
      dtype: compute dtype; params stay float32.
      remat: rematerialisation of each block, 'none' | 'full' | 'dots' (models/remat.py).
      drop_path_rate: stochastic depth; block i drops its residual branches with probability
        ``drop_path_rate * i / (depth - 1)`` (timm ``torch.linspace(0, rate, depth)``), only
        with ``train=True`` and a 'dropout' rng. 0 (default): no drop path.
      layerscale_init: > 0 adds LayerScale to both branches of every block (DINOv2: 1e-5).
      num_registers: register tokens after the class token (DINOv2 with registers: 4).
      mlp_type: 'mlp' (fc1-GELU-fc2) or 'swiglu' (DINOv2 ViT-g).
      use_mask_token: a learned ``mask_token`` for ``embed_patches(x, mask)`` (iBOT, DINOv2).
      pos_interp_offset: DINO's offset when resizing learned positions to another grid.

    Entry points (MAE encodes only the visible patches):
      ``embed_patches(x, mask=None)``: [B, H, W, C] -> [B, N, D] patch tokens with positions
        added (masked ones replaced by the mask token first).
      ``encode_tokens(tokens, train)``: [B, L, D] -> [B, 1 + R + L, D] (class token first, then
        the R registers).
      ``forward_features(x, train, mask, n_last_blocks)``: the normalised tokens by kind.
      ``__call__(x, train)``: [B, H, W, C] -> [B, D] pooled.
    Initialise through ``__call__`` (learned position embeddings are created there).
    """

    patch_size: int = 16
    hidden_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int | None = None
    pool: str = "cls"
    posemb: str = "sincos2d"
    freeze_patch_embed: bool = False
    dtype: Any = jnp.float32
    remat: str = "none"
    drop_path_rate: float = 0.0
    sincos_layout: str = "mae"
    qkv_init: str = "mocov3"
    cls_init_std: float = 1e-6
    layerscale_init: float = 0.0
    num_registers: int = 0
    mlp_type: str = "mlp"
    use_mask_token: bool = False
    pos_interp_offset: float = 0.1

    @property
    def feature_dim(self) -> int:
        """D of the pooled output (= hidden_dim)."""
        return self.hidden_dim

    def setup(self):
        if self.pool not in POOLS:
            raise ValueError(f"VisionTransformer pool={self.pool!r} is not one of {POOLS} "
                             "(config field model.pool)")
        if self.posemb not in POSEMBS:
            raise ValueError(f"VisionTransformer posemb={self.posemb!r} is not one of "
                             f"{POSEMBS} (config field model.posemb)")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"VisionTransformer hidden_dim={self.hidden_dim} is not divisible "
                             f"by num_heads={self.num_heads}; change one of them")
        if self.sincos_layout not in SINCOS_LAYOUTS:
            raise ValueError(f"VisionTransformer sincos_layout={self.sincos_layout!r} is not one "
                             f"of {SINCOS_LAYOUTS} (config field model.sincos_layout)")
        if self.mlp_type not in MLP_TYPES:
            raise ValueError(f"config field model.vit_mlp_type={self.mlp_type!r} is invalid: use "
                             f"one of {list(MLP_TYPES)} (DINOv2 ViT-g: 'swiglu')")
        if self.num_registers < 0 or self.layerscale_init < 0:
            raise ValueError(f"config fields model.vit_num_registers={self.num_registers} and "
                             f"model.vit_layerscale_init={self.layerscale_init} must be >= 0 "
                             "(0: off; DINOv2: 4 registers, LayerScale 1e-5)")
        qkv_init_fn(self.qkv_init)  # names the field if unknown
        self.cls_token = self.param("cls_token", nn.initializers.normal(self.cls_init_std),
                                    (1, 1, self.hidden_dim), jnp.float32)
        if self.num_registers:
            self.register_tokens = self.param(
                "register_tokens", nn.initializers.truncated_normal(0.02),
                (1, self.num_registers, self.hidden_dim), jnp.float32)
        mlp_dim = self.mlp_dim or 4 * self.hidden_dim
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"VisionTransformer drop_path_rate={self.drop_path_rate} must be in "
                             "[0, 1) (MAE fine-tuning ViT-B: 0.1)")
        block_cls = remat_block(EncoderBlock, self.remat, static_argnums=(2,))
        self.blocks = [block_cls(self.num_heads, mlp_dim, self.dtype, qkv_init=self.qkv_init,
                                 drop_path=rate, layerscale_init=float(self.layerscale_init),
                                 mlp_type=self.mlp_type)
                       for rate in drop_path_rates(self.drop_path_rate, self.depth)]
        self.norm = nn.LayerNorm(epsilon=LN_EPSILON, dtype=self.dtype, param_dtype=jnp.float32)
        self.fc_norm = nn.LayerNorm(epsilon=LN_EPSILON, dtype=self.dtype,
                                    param_dtype=jnp.float32)

    @nn.compact
    def embed_patches(self, x, mask=None):
        """x: [B, H, W, C] -> patch tokens [B, (H/p)(W/p), D] in ``dtype``, positions added.

        Tokens are in row-major patch order; no class token. ``mask`` [B, N] bool (needs
        ``use_mask_token``): True rows are replaced by the mask token before positions are added.
        """
        _, height, width, _ = x.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"image size {height}x{width} is not divisible by "
                             f"patch_size={p} (config field model.patch_size)")
        grid_h, grid_w = height // p, width // p
        tokens = nn.Conv(self.hidden_dim, (p, p), strides=(p, p), padding="VALID",
                         kernel_init=patch_kernel_init, dtype=self.dtype,
                         param_dtype=jnp.float32, name="patch_embed")(jnp.asarray(x, self.dtype))
        if self.freeze_patch_embed:
            tokens = jax.lax.stop_gradient(tokens)
        tokens = tokens.reshape(tokens.shape[0], grid_h * grid_w, self.hidden_dim)
        if self.use_mask_token:
            mask_token = self.param("mask_token", nn.initializers.zeros, (1, self.hidden_dim),
                                    jnp.float32)
            if mask is not None:
                tokens = jnp.where(mask[:, :, None], mask_token[None].astype(self.dtype), tokens)
        elif mask is not None:
            raise ValueError("VisionTransformer.embed_patches got a mask but use_mask_token=False; "
                             "build the ViT with use_mask_token=True (iBOT / DINOv2 students)")
        if self.posemb == "sincos2d":
            pos = jnp.asarray(sincos_2d_position_embedding(grid_h, grid_w, self.hidden_dim,
                                                           layout=self.sincos_layout))
        else:
            if self.has_variable("params", "pos_embed"):  # made for the init image's grid
                table = self.get_variable("params", "pos_embed")
            else:
                table = self.param("pos_embed", nn.initializers.truncated_normal(0.02),
                                   (1, 1 + grid_h * grid_w, self.hidden_dim), jnp.float32)
            pos = resize_position_table(table[0, 1:], (grid_h, grid_w), self.pos_interp_offset)
        return tokens + pos[None].astype(self.dtype)

    def encode_tokens(self, tokens, train: bool = False):
        """tokens: [B, L, D] (any subset of ``embed_patches`` rows) -> [B, 1 + R + L, D].

        Prepends the class token (plus its learned position, if any) and the R register tokens,
        runs the blocks and the final LayerNorm. Output row 0 is the class token.
        """
        return self.norm(self.run_blocks(tokens, train))

    def run_blocks(self, tokens, train: bool = False, collect_last: int = 0):
        """tokens: [B, L, D] -> [B, 1 + R + L, D]: ``encode_tokens`` without the final LayerNorm.

        ``collect_last = n > 0`` returns ``(out, last)`` with ``last`` the outputs of the last n
        blocks (each [B, 1 + R + L, D], un-normalised, oldest first).
        """
        cls = self.cls_token
        if self.posemb == "learned":
            if not self.has_variable("params", "pos_embed"):
                raise ValueError("VisionTransformer with posemb='learned' must be initialised "
                                 "through __call__ (or embed_patches) before encode_tokens")
            cls = cls + self.get_variable("params", "pos_embed")[:, :1]
        batch = tokens.shape[0]
        parts = [jnp.broadcast_to(cls.astype(self.dtype), (batch, 1, self.hidden_dim))]
        if self.num_registers:
            parts.append(jnp.broadcast_to(self.register_tokens.astype(self.dtype),
                                          (batch, self.num_registers, self.hidden_dim)))
        x = jnp.concatenate(parts + [jnp.asarray(tokens, self.dtype)], axis=1)
        last = []
        for i, block in enumerate(self.blocks):
            x = block(x, train)
            if collect_last and i >= self.depth - collect_last:
                last.append(x)
        return (x, last) if collect_last else x

    def forward_features(self, x, train: bool = False, mask=None, n_last_blocks: int = 1):
        """x: [B, H, W, C] -> dict of final-normalised tokens (dinov2 ``forward_features``):

        ``'cls'`` [B, D], ``'registers'`` [B, R, D], ``'patches'`` [B, N, D] and
        ``'cls_last_blocks'`` [B, n, D]: the class token of each of the last ``n_last_blocks``
        blocks through the final norm (DINO ``get_intermediate_layers``, eval_linear.py).
        """
        if not 1 <= n_last_blocks <= self.depth:
            raise ValueError(f"n_last_blocks={n_last_blocks} must be in [1, depth={self.depth}] "
                             "(DINO's linear evaluation: 4 for ViT-S, 1 for ViT-B)")
        _, last = self.run_blocks(self.embed_patches(x, mask), train, collect_last=n_last_blocks)
        normed = self.norm(last[-1])
        start = 1 + self.num_registers
        return {"cls": normed[:, 0], "registers": normed[:, 1:start], "patches": normed[:, start:],
                "cls_last_blocks": jnp.stack([self.norm(y[:, 0]) for y in last], axis=1)}

    def __call__(self, x, train: bool = False):
        """x: [B, H, W, C] -> [B, hidden_dim] (class token, or mean of patch tokens)."""
        start = 1 + self.num_registers
        if self.pool == "gap_fc_norm":
            out = self.run_blocks(self.embed_patches(x), train)
            pooled = jnp.mean(out[:, start:], axis=1, dtype=jnp.float32).astype(self.dtype)
            return self.fc_norm(pooled)
        out = self.encode_tokens(self.embed_patches(x), train)
        if self.pool == "cls":
            return out[:, 0]
        return jnp.mean(out[:, start:], axis=1, dtype=jnp.float32).astype(self.dtype)


def _torch_bicubic_matrix(size_in: int, size_out: int, scale: float) -> np.ndarray:
    """[size_out, size_in] weights of torch's bicubic resize along one axis (align_corners=False,
    cubic convolution a = -0.75, indices clamped at the border) at scale factor ``scale``."""
    a = -0.75

    def cubic(t):
        t = abs(t)
        if t <= 1:
            return ((a + 2) * t - (a + 3)) * t * t + 1
        if t < 2:
            return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
        return 0.0

    weights = np.zeros((size_out, size_in), np.float64)
    for i in range(size_out):
        src = (i + 0.5) / scale - 0.5
        base = int(np.floor(src))
        frac = src - base
        for k in range(-1, 3):
            weights[i, min(max(base + k, 0), size_in - 1)] += cubic(k - frac)
    return weights


def resize_position_table(pos, grid, offset: float = 0.1):
    """Learned patch positions [N0, D] (a square grid) -> [grid_h * grid_w, D].

    Unchanged when the grid is the one they were made for; otherwise DINO's
    ``interpolate_pos_encoding``: torch bicubic with scale factor ``(g + offset) / g0`` per axis.
    """
    grid_h, grid_w = grid
    n0, dim = pos.shape
    g0 = int(round(np.sqrt(n0)))
    if g0 * g0 != n0:
        raise ValueError(f"learned position table of {n0} patches is not a square grid; "
                         "initialise the ViT at a square image size")
    if (grid_h, grid_w) == (g0, g0):
        return pos
    w_h = _torch_bicubic_matrix(g0, grid_h, (grid_h + offset) / g0)
    w_w = _torch_bicubic_matrix(g0, grid_w, (grid_w + offset) / g0)
    table = pos.reshape(g0, g0, dim)
    out = jnp.einsum("ih,jw,hwd->ijd", jnp.asarray(w_h, pos.dtype), jnp.asarray(w_w, pos.dtype),
                     table)
    return out.reshape(grid_h * grid_w, dim)


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Block i's drop-path probability, timm's ``torch.linspace(0, rate, depth)``: ``[depth]``."""
    return [float(r) for r in np.linspace(0.0, rate, depth)]


# Fields fixed by each standard size (Dosovitskiy et al. Table 1; Ti and S from DeiT).
VIT_SIZES = {
    "vit_tiny": dict(hidden_dim=192, depth=12, num_heads=3),
    "vit_small": dict(hidden_dim=384, depth=12, num_heads=6),
    "vit_base": dict(hidden_dim=768, depth=12, num_heads=12),
    "vit_large": dict(hidden_dim=1024, depth=24, num_heads=16),
    "vit_huge": dict(hidden_dim=1280, depth=32, num_heads=16),
    # DINOv2's ViT-g (dinov2 ``vit_giant2``); DINOv2 trains it with mlp_type='swiglu'.
    "vit_giant": dict(hidden_dim=1536, depth=40, num_heads=24),
}


def vit_tiny(**kwargs) -> VisionTransformer:
    """ViT-Ti: D 192, 12 blocks, 3 heads, MLP 768 (5.5M params at /16, 224 px)."""
    return VisionTransformer(**dict(VIT_SIZES["vit_tiny"], **kwargs))


def vit_small(**kwargs) -> VisionTransformer:
    """ViT-S: D 384, 12 blocks, 6 heads, MLP 1536 (21.7M params at /16, 224 px): DeiT's and
    timm's ``vit_small_patch16_224``. moco-v3's ``vit_small`` has ``num_heads=12`` (same
    parameters, head dim 32): ``vit_small(num_heads=12)`` or ``model.vit_num_heads=12``."""
    return VisionTransformer(**dict(VIT_SIZES["vit_small"], **kwargs))


def vit_base(**kwargs) -> VisionTransformer:
    """ViT-B: D 768, 12 blocks, 12 heads, MLP 3072 (85.8M params at /16, 224 px, learned pos)."""
    return VisionTransformer(**dict(VIT_SIZES["vit_base"], **kwargs))


def vit_large(**kwargs) -> VisionTransformer:
    """ViT-L: D 1024, 24 blocks, 16 heads, MLP 4096 (304M params at /16, 224 px)."""
    return VisionTransformer(**dict(VIT_SIZES["vit_large"], **kwargs))


def vit_huge(**kwargs) -> VisionTransformer:
    """ViT-H: D 1280, 32 blocks, 16 heads, MLP 5120 (632M params at /14, 224 px)."""
    return VisionTransformer(**dict(VIT_SIZES["vit_huge"], **kwargs))


__all__ = ["VisionTransformer", "EncoderBlock", "SelfAttention", "MlpBlock", "SwiGluBlock",
           "LayerScale", "swiglu_hidden_dim", "resize_position_table", "vit_large", "vit_huge",
           "MLP_TYPES",
           "sincos_2d_position_embedding", "vit_tiny", "vit_small", "vit_base", "VIT_SIZES",
           "qkv_kernel_init", "qkv_init_fn", "POOLS", "POSEMBS", "SINCOS_LAYOUTS", "QKV_INITS",
           "drop_path", "drop_path_rates"]
