"""BERT encoder + MLM head -> Hugging Face ``BertForMaskedLM`` (PyTorch) in safetensors.

:mod:`jaxssl.models.bert` mirrors the tree of HF's ``FlaxBertForMaskedLM``, so the PyTorch
keys follow mechanically: ``/`` -> ``.``, Dense ``kernel [in, out]`` -> ``weight [out, in]``
(transposed), LayerNorm ``scale`` -> ``weight``, Embed ``embedding`` -> ``weight``.

Additions HF's layout needs:

* ``cls.predictions.decoder.weight`` = the word embeddings (jaxssl's decoder is tied to them)
  and ``cls.predictions.decoder.bias`` = ``cls.predictions.bias``. HF ties both pairs when it
  loads (``_tied_weights_keys``); writing them keeps the file loadable by transformers 4 and 5.
* no pooler and no next-sentence head (jaxssl pretrains MLM only); ``BertForMaskedLM`` has
  neither, so it loads strictly.

:func:`save_pretrained` writes HF's directory layout (``config.json`` + ``model.safetensors``)
so that ``transformers.BertForMaskedLM.from_pretrained(DIR)`` works. The safetensors file is
written from numpy (``safetensors.numpy``): exporting needs no torch. The vocabulary is not
part of the weights: the MLM run writes it to ``WORKDIR/vocab.txt`` (WordPiece, one token a
line, id = line number) -- copy it into DIR for ``BertTokenizer.from_pretrained(DIR)``, if the
tokenizer's special tokens and lower-casing match BERT's.
"""
from __future__ import annotations

import json
import re
from typing import Mapping

import numpy as np

SAFETENSORS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def bert_state_dict(params: Mapping) -> dict[str, np.ndarray]:
    """``BertForMaskedLM`` state dict of a jaxssl :class:`~jaxssl.models.bert.BertForMLM`'s
    ``params`` (``{'bert': ..., 'cls': ...}``): ``{HF key: float32 array}``."""
    if "bert" not in params or "cls" not in params:
        raise ValueError(f"not a BertForMLM params tree (needs 'bert' and 'cls'), got keys {sorted(params)}")
    out: dict[str, np.ndarray] = {}
    for name, value in _flatten(params).items():
        value = np.asarray(value, np.float32)
        if name.endswith(".kernel"):
            out[name[: -len("kernel")] + "weight"] = np.ascontiguousarray(value.T)
        elif name.endswith(".scale") or name.endswith(".embedding"):
            out[name.rsplit(".", 1)[0] + ".weight"] = value
        else:  # Dense / LayerNorm bias and the MLM output bias keep their names
            out[name] = value
    out["cls.predictions.decoder.weight"] = out["bert.embeddings.word_embeddings.weight"]
    out["cls.predictions.decoder.bias"] = out["cls.predictions.bias"]
    return out


def hf_config(params: Mapping, *, num_heads: int, layer_norm_eps: float = 1e-12,
              hidden_dropout: float = 0.1, attention_dropout: float = 0.1,
              initializer_range: float = 0.02) -> dict:
    """``config.json`` of ``transformers.BertConfig`` for these params.

    Sizes come from the weights; ``num_heads`` (not recoverable from them) and the remaining
    hyperparameters from the run's config. ``hidden_act='gelu'`` is HF's exact erf GELU,
    the one jaxssl uses.
    """
    emb = params["bert"]["embeddings"]
    layers = params["bert"]["encoder"]["layer"]
    indices = sorted(int(k) for k in layers if re.fullmatch(r"\d+", str(k)))
    vocab, hidden = np.asarray(emb["word_embeddings"]["embedding"]).shape
    if hidden % num_heads:
        raise ValueError(f"hidden size {hidden} is not divisible by num_heads={num_heads}")
    intermediate = np.asarray(layers[str(indices[0])]["intermediate"]["dense"]["kernel"]).shape[1]
    return {
        "architectures": ["BertForMaskedLM"],
        "model_type": "bert",
        "vocab_size": int(vocab),
        "hidden_size": int(hidden),
        "num_hidden_layers": len(indices),
        "num_attention_heads": int(num_heads),
        "intermediate_size": int(intermediate),
        "hidden_act": "gelu",
        "hidden_dropout_prob": float(hidden_dropout),
        "attention_probs_dropout_prob": float(attention_dropout),
        "max_position_embeddings": int(np.asarray(emb["position_embeddings"]["embedding"]).shape[0]),
        "type_vocab_size": int(np.asarray(emb["token_type_embeddings"]["embedding"]).shape[0]),
        "initializer_range": float(initializer_range),
        "layer_norm_eps": float(layer_norm_eps),
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
    }


def save_pretrained(params: Mapping, out_dir: str, config: dict) -> str:
    """Write ``out_dir/config.json`` and ``out_dir/model.safetensors`` (``out_dir`` local or a
    URL, :mod:`jaxssl.paths`); returns ``out_dir``."""
    from jaxssl import optional, paths

    optional.require("safetensors", "exporting to hf_bert (model.safetensors)")
    from safetensors.numpy import save
    directory = paths.resolve(out_dir)
    paths.makedirs(directory)
    paths.write_bytes(directory / SAFETENSORS_FILE,
                      save(bert_state_dict(params), metadata={"format": "pt"}))
    paths.write_text(directory / CONFIG_FILE, json.dumps(config, indent=2))
    return out_dir


__all__ = ["bert_state_dict", "hf_config", "save_pretrained"]
