"""Text pipeline for masked-language pretraining: corpus -> WordPiece ids -> packed BERT rows.

The pieces live in their own modules and are re-exported here:

* :mod:`jaxssl.data.tokenizer`: :func:`train_wordpiece`, :class:`WordPieceTokenizer`.
* :mod:`jaxssl.data.corpus`: :func:`load_pydoc_corpus` (embedded), :func:`load_tfds_text`.
* :mod:`jaxssl.data.packing`: :func:`pack_documents`.

Masking happens later, on device (:func:`jaxssl.augment.masking.mask_tokens`), keyed by step
and example, so the packed rows here are fixed and re-masked differently every epoch (RoBERTa's
dynamic masking) rather than BERT's static, 10x duplicated masks.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxssl.data.corpus import load_pydoc_corpus, load_tfds_text, pydoc_documents
from jaxssl.data.packing import pack_documents
from jaxssl.data.tokenizer import WordPieceTokenizer, train_wordpiece

__all__ = ["WordPieceTokenizer", "train_wordpiece", "load_pydoc_corpus", "load_tfds_text",
           "pydoc_documents", "pack_documents", "tokenize_and_pack"]


def tokenize_and_pack(tokenizer: WordPieceTokenizer, documents: Sequence[str], seq_len: int, *,
                      sentence_pairs: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """Encode ``documents`` with ``tokenizer`` and pack them (see :func:`pack_documents`).

    Returns the ``[S, seq_len]`` arrays of :func:`pack_documents`, with ``word_start`` taken
    from the tokenizer's ``##`` pieces (for whole-word masking).
    """
    return pack_documents(tokenizer.encode_batch(documents), seq_len, tokenizer.cls_id,
                          tokenizer.sep_id, tokenizer.pad_id, sentence_pairs=sentence_pairs,
                          seed=seed, continuation=tokenizer.continuation_table())
