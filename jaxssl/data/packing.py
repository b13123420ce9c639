"""Pack tokenized documents into fixed-length BERT input rows (host-side numpy, deterministic).

Two layouts, both ``T = seq_len`` long and right-padded with [PAD]:

* single segment (RoBERTa's FULL-SENTENCES, Liu et al. 2019 sec. 4.2): the documents are
  concatenated into one token stream with a [SEP] between consecutive documents, the stream is
  cut into chunks of ``T - 2`` tokens and each chunk becomes ``[CLS] chunk [SEP] [PAD]...``.
  Only the last row has padding.
* sentence pairs (BERT's ``create_pretraining_data.py`` with fixed simplifications): each
  document separately is cut into consecutive windows of ``T - 3`` tokens; a window of
  ``L >= 2`` tokens is split at ``a = 1 + r`` with ``r`` uniform in ``[0, L - 2]`` into
  segment A = ``window[:a]`` and segment B = ``window[a:]`` (B always follows A in the
  document), giving ``[CLS] A [SEP] B [SEP] [PAD]...``; a window of one token gives
  ``[CLS] A [SEP]``. The split point ``r`` is drawn by
  ``np.random.default_rng((seed, document_index, window_index))``, so every row is a pure
  function of its document, its position and the seed.
  Simplifications versus BERT: no random "next sentence" (B is always the true continuation,
  NSP is not trained: RoBERTa showed it does not help), splits fall on token boundaries rather
  than sentence boundaries, and no ``short_seq_prob`` shortened sequences.

Row order is the documents' order; the training pipeline permutes rows per epoch.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# One packed row before padding: (token ids, segment ids, special flags).
_Row = tuple[list[int], list[int], list[bool]]


def _single_segment_rows(docs: Sequence[Sequence[int]], seq_len: int, cls_id: int,
                         sep_id: int) -> list[_Row]:
    stream: list[int] = []
    is_sep: list[bool] = []
    for doc in (d for d in docs if len(d)):
        if stream:
            stream.append(sep_id)
            is_sep.append(True)
        stream.extend(int(t) for t in doc)
        is_sep.extend([False] * len(doc))
    body = seq_len - 2
    rows = []
    for s in range(0, len(stream), body):
        chunk, chunk_sep = stream[s:s + body], is_sep[s:s + body]
        tokens = [cls_id] + chunk + [sep_id]
        special = [True] + chunk_sep + [True]
        rows.append((tokens, [0] * len(tokens), special))
    return rows


def _pair_rows(docs: Sequence[Sequence[int]], seq_len: int, cls_id: int, sep_id: int,
               seed: int) -> list[_Row]:
    body = seq_len - 3
    rows = []
    for d, doc in enumerate(docs):
        doc = [int(t) for t in doc]
        for w, s in enumerate(range(0, len(doc), body)):
            window = doc[s:s + body]
            if len(window) == 1:
                tokens = [cls_id, window[0], sep_id]
                rows.append((tokens, [0, 0, 0], [True, False, True]))
                continue
            a = 1 + int(np.random.default_rng((seed, d, w)).integers(0, len(window) - 1))
            seg_a, seg_b = window[:a], window[a:]
            tokens = [cls_id] + seg_a + [sep_id] + seg_b + [sep_id]
            segments = [0] * (len(seg_a) + 2) + [1] * (len(seg_b) + 1)
            special = [True] + [False] * len(seg_a) + [True] + [False] * len(seg_b) + [True]
            rows.append((tokens, segments, special))
    return rows


def pack_documents(docs_token_ids: Sequence[Sequence[int]], seq_len: int, cls_id: int, sep_id: int,
                   pad_id: int, *, sentence_pairs: bool = False, seed: int = 0,
                   continuation: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Pack tokenized documents into ``S`` rows of ``T = seq_len`` tokens (layouts: module docstring).

    Args:
      docs_token_ids: one list of token ids per document, without special tokens.
      seq_len: T, the row length including [CLS]/[SEP] (BERT: 128, then 512).
      cls_id, sep_id, pad_id: special-token ids (look them up by token, e.g. ``tok.cls_id``).
      sentence_pairs: False for single-segment rows, True for ``[CLS] A [SEP] B [SEP]``.
      seed: seeds the A/B split points in pair mode (unused in single-segment mode).
      continuation: optional bool ``[vocab_size]`` table, True for ``##`` pieces
        (``WordPieceTokenizer.continuation_table()``); without it every token starts a word.

    Returns:
      dict of numpy arrays, each ``[S, T]``:
        ids int32; segment_ids int32 (0 for [CLS], A and A's [SEP]; 1 for B and B's [SEP];
        0 at padding); attention_mask int32 (1 at real tokens, 0 at padding); special bool
        (True at [CLS], [SEP] and [PAD]); word_start bool (False exactly at a ``##`` piece
        that follows a non-special token, so a row or segment that begins inside a word
        starts a new word; True at special positions).
    """
    min_len = 5 if sentence_pairs else 3
    if seq_len < min_len:
        raise ValueError(f"seq_len={seq_len} is too short for the "
                         f"{'sentence-pair' if sentence_pairs else 'single-segment'} layout; "
                         f"use at least {min_len} (BERT: 128 or 512)")
    if sentence_pairs:
        rows = _pair_rows(docs_token_ids, seq_len, cls_id, sep_id, seed)
    else:
        rows = _single_segment_rows(docs_token_ids, seq_len, cls_id, sep_id)

    num = len(rows)
    ids = np.full((num, seq_len), pad_id, dtype=np.int32)
    segment_ids = np.zeros((num, seq_len), dtype=np.int32)
    attention_mask = np.zeros((num, seq_len), dtype=np.int32)
    special = np.ones((num, seq_len), dtype=bool)
    for r, (tokens, segments, spec) in enumerate(rows):
        n = len(tokens)
        ids[r, :n] = tokens
        segment_ids[r, :n] = segments
        attention_mask[r, :n] = 1
        special[r, :n] = spec

    word_start = np.ones((num, seq_len), dtype=bool)
    if continuation is not None:
        continuation = np.asarray(continuation, dtype=bool)
        if continuation.ndim != 1 or (num and ids.max() >= continuation.shape[0]):
            raise ValueError(f"continuation must be a bool [vocab_size] table covering every id; "
                             f"got shape {continuation.shape} for max id {ids.max() if num else None}")
        prev_special = np.concatenate([np.ones((num, 1), bool), special[:, :-1]], axis=1)
        word_start = ~continuation[ids] | special | prev_special
    return {"ids": ids, "segment_ids": segment_ids, "attention_mask": attention_mask,
            "special": special, "word_start": word_start}
