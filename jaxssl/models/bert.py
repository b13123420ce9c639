"""BERT encoder and masked-language-model head (Flax Linen), Devlin et al. 2019.

Architecture (google-research/bert ``modeling.py``): word + learned position + token-type
embeddings -> LayerNorm -> dropout; ``L`` post-LN transformer layers::

    h = LayerNorm(x + Dropout(Dense(MultiHeadAttention(x, padding mask))))
    y = LayerNorm(h + Dropout(Dense(GELU(Dense(h)))))          # GELU is the exact erf form

and the MLM head ``logits = LayerNorm(GELU(Dense(h))) @ E^T + b`` whose decoder is the
word-embedding matrix ``E`` (tied), evaluated only at the masked positions.

Parameter names mirror Hugging Face's ``FlaxBertForMaskedLM`` tree exactly
(``bert/embeddings/word_embeddings/embedding``, ``bert/encoder/layer/<i>/attention/self/query``,
``.../attention/output/{dense,LayerNorm}``, ``.../intermediate/dense``,
``.../output/{dense,LayerNorm}``, ``cls/predictions/transform/{dense,LayerNorm}``,
``cls/predictions/bias``), so export to HF (Flax: as is; PyTorch ``BertForMaskedLM``:
transpose Dense kernels, ``kernel/scale/embedding -> weight``) is mechanical. There is no
pooler and no next-sentence head.

Precision: parameters are float32; ``config.dtype`` (e.g. bfloat16) sets activations and
matmul inputs. LayerNorm statistics are computed in float32 (Flax promotes them), attention
logits and softmax are float32 (``jax.nn.dot_product_attention``), and MLM logits are returned
in float32.

Deviation: BERT applies dropout to the attention probabilities (0.1). ``jax.nn.dot_product_attention``
has no dropout, so ``attention_dropout`` defaults to 0.0; a value > 0 switches (in training only)
to an explicit softmax path that applies it. Hidden dropout (0.1) is as in BERT.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxssl.models.remat import check_remat, remat_block

# name -> (num_layers, hidden_size, num_heads, intermediate_size); Turc et al. 2019 for tiny/small.
BERT_PRESETS = {
    "bert_tiny": (2, 128, 2, 512),
    "bert_small": (4, 512, 8, 2048),
    "bert_base": (12, 768, 12, 3072),
    "bert_large": (24, 1024, 16, 4096),
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Hyperparameters of a BERT MLM model (defaults: BERT-base, uncased vocabulary).

    ``dtype`` is the activation/matmul dtype (``'float32'`` or ``'bfloat16'``; params stay fp32).
    ``attention_implementation`` is passed to ``jax.nn.dot_product_attention``
    (None: JAX's choice, currently XLA; 'cudnn' for cuDNN fused attention on GPU).
    ``remat`` rematerialises each layer: 'none' | 'full' | 'dots' (models/remat.py).
    """
    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position: int = 512
    type_vocab_size: int = 2
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.0
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    dtype: Any = "float32"
    attention_implementation: str | None = None
    remat: str = "none"

    def __post_init__(self):
        object.__setattr__(self, "dtype", jnp.dtype(self.dtype))
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not divisible by num_heads="
                             f"{self.num_heads}; choose num_heads dividing it (BERT: 64 per head)")
        check_remat(self.remat)
        for field in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, field) < 1.0:
                raise ValueError(f"{field}={getattr(self, field)} must be in [0, 1)")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "BertConfig":
        """``bert_tiny`` (L2 H128 A2 I512), ``bert_small`` (L4 H512 A8 I2048), ``bert_base``
        (L12 H768 A12 I3072) or ``bert_large`` (L24 H1024 A16 I4096), with field overrides."""
        if name not in BERT_PRESETS:
            raise ValueError(f"BERT preset {name!r} is unknown; use one of {sorted(BERT_PRESETS)}")
        layers, hidden, heads, inter = BERT_PRESETS[name]
        fields = dict(num_layers=layers, hidden_size=hidden, num_heads=heads,
                      intermediate_size=inter)
        fields.update(overrides)
        return cls(**fields)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def _init(config: BertConfig):
    # TF BERT: truncated_normal_initializer(stddev=initializer_range), cut at 2 std.
    return nn.initializers.truncated_normal(config.initializer_range)


def _dense(config: BertConfig, features: int, name: str) -> nn.Dense:
    return nn.Dense(features, kernel_init=_init(config), dtype=config.dtype,
                    param_dtype=jnp.float32, name=name)


def _layer_norm(config: BertConfig, name: str = "LayerNorm") -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=config.dtype,
                        param_dtype=jnp.float32, name=name)


def _gelu(x):
    return nn.gelu(x, approximate=False)  # BERT's exact erf GELU


class BertEmbeddings(nn.Module):
    """``LayerNorm(E_word[ids] + E_pos[0..T-1] + E_type[segment_ids])`` then dropout -> ``[B, T, H]``."""
    config: BertConfig

    def setup(self):
        c = self.config
        embed = lambda n, name: nn.Embed(n, c.hidden_size, embedding_init=_init(c), dtype=c.dtype,
                                         param_dtype=jnp.float32, name=name)
        self.word_embeddings = embed(c.vocab_size, "word_embeddings")
        self.position_embeddings = embed(c.max_position, "position_embeddings")
        self.token_type_embeddings = embed(c.type_vocab_size, "token_type_embeddings")
        self.LayerNorm = _layer_norm(c)
        self.dropout = nn.Dropout(c.hidden_dropout)

    def __call__(self, ids, segment_ids, train: bool):
        seq_len = ids.shape[1]
        if seq_len > self.config.max_position:
            raise ValueError(f"sequence length {seq_len} exceeds BertConfig.max_position="
                             f"{self.config.max_position}; shorten the rows or raise max_position")
        x = (self.word_embeddings(ids) + self.position_embeddings(jnp.arange(seq_len))[None]
             + self.token_type_embeddings(segment_ids))
        return self.dropout(self.LayerNorm(x), deterministic=not train)


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention over the non-padding keys: ``[B, T, H] -> [B, T, H]``."""
    config: BertConfig

    def setup(self):
        c = self.config
        self.query = _dense(c, c.hidden_size, "query")
        self.key = _dense(c, c.hidden_size, "key")
        self.value = _dense(c, c.hidden_size, "value")
        self.dropout = nn.Dropout(c.attention_dropout)

    def __call__(self, x, key_mask, train: bool):
        c = self.config
        b, t, _ = x.shape
        heads = lambda y: y.reshape(b, t, c.num_heads, c.head_dim)            # [B, T, N, Dh]
        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        mask = key_mask[:, None, None, :]                                     # [B, 1, 1, S]
        if train and c.attention_dropout > 0.0:
            logits = jnp.einsum("btnh,bsnh->bnts", q, k, preferred_element_type=jnp.float32)
            logits = jnp.where(mask, logits / jnp.sqrt(c.head_dim), jnp.finfo(jnp.float32).min)
            probs = self.dropout(jax.nn.softmax(logits, axis=-1), deterministic=False)
            out = jnp.einsum("bnts,bsnh->btnh", probs.astype(v.dtype), v)
        else:
            out = jax.nn.dot_product_attention(q, k, v, mask=mask,
                                               implementation=c.attention_implementation)
        return out.reshape(b, t, c.hidden_size)


class BertSelfOutput(nn.Module):
    """``LayerNorm(residual + Dropout(Dense(x)))`` (BERT's attention output and FFN output)."""
    config: BertConfig

    def setup(self):
        self.dense = _dense(self.config, self.config.hidden_size, "dense")
        self.LayerNorm = _layer_norm(self.config)
        self.dropout = nn.Dropout(self.config.hidden_dropout)

    def __call__(self, x, residual, train: bool):
        return self.LayerNorm(residual + self.dropout(self.dense(x), deterministic=not train))


class BertAttention(nn.Module):
    config: BertConfig

    def setup(self):
        self.self = BertSelfAttention(self.config, name="self")
        self.output = BertSelfOutput(self.config, name="output")

    def __call__(self, x, key_mask, train: bool):
        return self.output(self.self(x, key_mask, train), x, train)


class BertIntermediate(nn.Module):
    config: BertConfig

    def setup(self):
        self.dense = _dense(self.config, self.config.intermediate_size, "dense")

    def __call__(self, x):
        return _gelu(self.dense(x))


class BertLayer(nn.Module):
    """One post-LN transformer layer: attention block then GELU MLP block, ``[B, T, H]``."""
    config: BertConfig

    def setup(self):
        self.attention = BertAttention(self.config, name="attention")
        self.intermediate = BertIntermediate(self.config, name="intermediate")
        self.output = BertSelfOutput(self.config, name="output")

    def __call__(self, x, key_mask, train: bool):
        h = self.attention(x, key_mask, train)
        return self.output(self.intermediate(h), h, train)


class BertLayerCollection(nn.Module):
    """The layers, named '0' .. 'L-1' (HF's ``encoder/layer/<i>``)."""
    config: BertConfig

    def setup(self):
        layer_cls = remat_block(BertLayer, self.config.remat, static_argnums=(3,))
        self.layers = [layer_cls(self.config, name=str(i)) for i in range(self.config.num_layers)]

    def __call__(self, x, key_mask, train: bool):
        for layer in self.layers:
            x = layer(x, key_mask, train)
        return x


class BertLayerStack(nn.Module):
    config: BertConfig

    def setup(self):
        self.layer = BertLayerCollection(self.config, name="layer")

    def __call__(self, x, key_mask, train: bool):
        return self.layer(x, key_mask, train)


class BertEncoder(nn.Module):
    """Embeddings + transformer layers (BERT without pooler): ``-> [B, T, H]`` in ``config.dtype``.

    Inputs: ids int32 ``[B, T]``, segment_ids int32 ``[B, T]``, attention_mask int/bool
    ``[B, T]`` (1 = real token; padding keys are excluded from every attention softmax).
    """
    config: BertConfig

    def setup(self):
        self.embeddings = BertEmbeddings(self.config, name="embeddings")
        self.encoder = BertLayerStack(self.config, name="encoder")

    def __call__(self, ids, segment_ids, attention_mask, train: bool = False):
        key_mask = jnp.asarray(attention_mask) > 0
        return self.encoder(self.embeddings(ids, segment_ids, train), key_mask, train)


class BertPredictionHeadTransform(nn.Module):
    config: BertConfig

    def setup(self):
        self.dense = _dense(self.config, self.config.hidden_size, "dense")
        self.LayerNorm = _layer_norm(self.config)

    def __call__(self, x):
        return self.LayerNorm(_gelu(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """``transform(h) @ E^T + bias`` with ``E`` the (tied) word-embedding module."""
    config: BertConfig

    def setup(self):
        self.transform = BertPredictionHeadTransform(self.config, name="transform")
        self.bias = self.param("bias", nn.initializers.zeros, (self.config.vocab_size,), jnp.float32)

    def __call__(self, h, word_embeddings: nn.Embed):
        logits = word_embeddings.attend(self.transform(h))
        return logits.astype(jnp.float32) + jnp.broadcast_to(self.bias, logits.shape)


class BertOnlyMLMHead(nn.Module):
    config: BertConfig

    def setup(self):
        self.predictions = BertLMPredictionHead(self.config, name="predictions")

    def __call__(self, h, word_embeddings: nn.Embed):
        return self.predictions(h, word_embeddings)


class BertForMLM(nn.Module):
    """BERT encoder + tied MLM head evaluated at the masked positions only."""
    config: BertConfig

    def setup(self):
        self.bert = BertEncoder(self.config, name="bert")
        self.cls = BertOnlyMLMHead(self.config, name="cls")

    def __call__(self, ids, segment_ids, attention_mask, masked_positions=None, train: bool = False):
        """MLM logits.

        Args:
          ids, segment_ids: int32 ``[B, T]``; attention_mask: int/bool ``[B, T]`` (1 = real).
          masked_positions: int32 ``[B, P]`` (from ``gather_masked``), or None for all T positions.
          train: enables dropout (needs ``rngs={'dropout': key}``).

        Returns:
          float32 logits ``[B, P, vocab_size]`` (``[B, T, vocab_size]`` when masked_positions is None).
        """
        hidden = self.bert(ids, segment_ids, attention_mask, train)          # [B, T, H]
        if masked_positions is not None:
            hidden = jnp.take_along_axis(hidden, masked_positions[..., None].astype(jnp.int32),
                                         axis=1)                              # [B, P, H]
        return self.cls(hidden, self.bert.embeddings.word_embeddings)


class BertPooler(nn.Module):
    """BERT's pooler: ``tanh(Dense(h[:, 0]))`` on the [CLS] position, ``[B, T, H] -> [B, H]``.

    google-research/bert ``modeling.py`` (``pooler/dense``, trunc-normal(0.02) kernel, zero bias).
    """
    config: BertConfig

    def setup(self):
        self.dense = _dense(self.config, self.config.hidden_size, "dense")

    def __call__(self, hidden):
        return jnp.tanh(self.dense(hidden[:, 0]))


class BertForSequenceClassification(nn.Module):
    """BERT fine-tuned for sequence (pair) classification, as ``run_classifier.py``::

        logits = W_c Dropout(tanh(W_p h_[CLS] + b_p)) + b_c        # [B, num_classes], float32

    ``h_[CLS]`` is the last layer's output at position 0 of :class:`BertEncoder`; dropout is
    ``config.hidden_dropout`` (BERT: 0.1, training only); ``W_c`` is trunc-normal(0.02) and
    ``b_c`` zero, like ``output_weights`` / ``output_bias``.

    Parameter tree: ``bert/...`` is exactly :class:`BertForMLM`'s ``bert`` subtree, so a masked-
    language checkpoint's ``params['bert']`` loads unchanged; ``pooler/dense`` and ``classifier``
    are new. The pooler sits beside ``bert`` (google-research/bert and Hugging Face both nest it
    as ``bert/pooler/dense``: move it there on export; TF BERT also stores the classifier
    kernel transposed, as ``output_weights [num_classes, H]``).

    Pooler initialisation: BERT pre-trains the pooler with next-sentence prediction; masked-
    language pretraining here has no NSP, so the pooler starts from its random initialisation
    (trunc-normal(0.02), zero bias), like the classifier. (RoBERTa, also without NSP, likewise
    fine-tunes a freshly initialised dense + tanh + linear head on its first token.)
    """
    config: BertConfig
    num_classes: int

    def setup(self):
        c = self.config
        if self.num_classes < 1:
            raise ValueError(f"num_classes={self.num_classes} must be >= 1 (e.g. 2 for SST-2, "
                             "3 for MNLI)")
        self.bert = BertEncoder(c, name="bert")
        self.pooler = BertPooler(c, name="pooler")
        self.dropout = nn.Dropout(c.hidden_dropout)
        self.classifier = nn.Dense(self.num_classes, kernel_init=_init(c),
                                   bias_init=nn.initializers.zeros, dtype=c.dtype,
                                   param_dtype=jnp.float32, name="classifier")

    def __call__(self, ids, segment_ids, attention_mask, train: bool = False):
        """Class logits.

        Args:
          ids, segment_ids: int32 ``[B, T]`` (``[CLS] A [SEP] (B [SEP])``, segment 1 on B);
          attention_mask: int/bool ``[B, T]`` (1 = real token).
          train: enables dropout (needs ``rngs={'dropout': key}``).

        Returns:
          float32 logits ``[B, num_classes]``.
        """
        hidden = self.bert(ids, segment_ids, attention_mask, train)          # [B, T, H]
        pooled = self.dropout(self.pooler(hidden), deterministic=not train)   # [B, H]
        return self.classifier(pooled).astype(jnp.float32)
