"""BERT masked-language-model token masking, on device, with stateless per-row randomness.

Reference: Devlin et al. 2019 sec. 3.1 and google-research/bert ``create_pretraining_data.py``
(``create_masked_lm_predictions``):

* per row, ``n = min(max_predictions, max(1, round(rate * m)))`` positions are selected
  uniformly among the row's non-special tokens (``n = 0`` when none is selectable). ``round``
  is Python's (round half to even: 1.5 -> 2, 4.5 -> 4), evaluated on the host in float64 for
  every possible ``m`` so the device result equals the reference formula exactly. ``m`` is
  BERT's ``len(tokens)`` -- every token of the row but padding, [CLS] and [SEP] included
  (``create_pretraining_data.py`` ``create_masked_lm_predictions``) -- when ``length_mask``
  (True at the row's tokens, e.g. the attention mask) is given; without it ``m`` counts the
  selectable (non-special) tokens only. At T = 128 both give 19 (round(0.15 * 128) = 19,
  round(0.15 * 125) = 19); at T = 512, 77 against 76.
* each selected position independently becomes [MASK] with probability 0.8, a token drawn
  uniformly from ``[0, vocab_size)`` with probability 0.1, and keeps its token with
  probability 0.1. The prediction targets are the original ids at the selected positions.
  (The random token is a 32-bit draw modulo ``vocab_size``: relative bias below
  ``vocab_size / 2**32``, 7e-6 for BERT's 30522; the 0.8/0.1 decision uses 24-bit uniforms.)

Cost: token selection is a sort per row; whole-word selection adds BERT's greedy pass over
the row's words as a length-``T`` ``lax.scan`` (vectorised over rows, sequential in ``T``).

Randomness: row ``i`` of the batch uses ``fold_in(key, row_offset + i)`` only, so a row's mask
depends on (key, its global row index, its tokens) and not on the batch size, the device count
or the sharding; a slice of the batch passed with its ``row_offset`` reproduces those rows.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl import rng

MASK_PROB = 0.8      # selected token -> [MASK]
RANDOM_PROB = 0.1    # selected token -> uniform random token (the remaining 0.1 keep theirs)


def num_to_predict(num_tokens: int, rate: float, max_predictions: int | None = None) -> int:
    """BERT's ``min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))``.

    Returns 0 for ``num_tokens == 0`` (nothing can be selected).
    """
    if num_tokens == 0:
        return 0
    n = max(1, int(round(num_tokens * rate)))
    return n if max_predictions is None else min(max_predictions, n)


@functools.lru_cache(maxsize=64)
def _num_to_predict_table(seq_len: int, rate: float, max_predictions: int | None) -> np.ndarray:
    """int32 ``[seq_len + 1]``: entry ``m`` is :func:`num_to_predict` ``(m, rate, max_predictions)``."""
    return np.asarray([num_to_predict(m, rate, max_predictions) for m in range(seq_len + 1)],
                      dtype=np.int32)


def _order(last, bits):
    """Permutation sorting positions by (last, bits): the ``last`` ones after the others, each
    group in the random order of their 32-bit draws (ties, p ~ 2^-32, by position)."""
    iota = jnp.arange(bits.shape[0], dtype=jnp.int32)
    return jax.lax.sort((last.astype(jnp.uint32), bits, iota), num_keys=2)[2]


def _select_tokens(bits, special, n):
    """bool ``[T]``: ``n`` positions uniformly among the non-special ones (the n first in a
    random order of the non-special positions)."""
    t = special.shape[0]
    rank = jnp.zeros((t,), jnp.int32).at[_order(special, bits)].set(jnp.arange(t, dtype=jnp.int32))
    return (rank < n) & ~special


def _select_whole_words(bits, special, word_start, n):
    """bool ``[T]``: whole words chosen as BERT's ``do_whole_word_mask`` (see :func:`mask_tokens`)."""
    t = special.shape[0]
    prev_special = jnp.concatenate([jnp.ones((1,), bool), special[:-1]])
    word_id = jnp.cumsum(word_start | special | prev_special) - 1            # [T] in [0, T)
    length = jax.ops.segment_sum(jnp.ones((t,), jnp.int32), word_id, num_segments=t)
    has_special = jax.ops.segment_max(special.astype(jnp.int32), word_id, num_segments=t) > 0
    candidate = (length > 0) & ~has_special                                   # [T] word slots
    order = _order(~candidate, bits)                                          # random word order

    def add_word(count, w):
        # BERT: skip a word whose tokens would exceed the budget; stop adding once it is full.
        take = candidate[w] & (count + length[w] <= n)
        return count + jnp.where(take, length[w], 0), take

    _, taken_in_order = jax.lax.scan(add_word, jnp.zeros((), jnp.int32), order)
    word_taken = jnp.zeros((t,), bool).at[order].set(taken_in_order)
    return word_taken[word_id] & ~special


def mask_tokens(key: jax.Array, ids: jax.Array, special: jax.Array, *, mask_id: int,
                vocab_size: int, rate: float = 0.15, max_predictions: int | None = None,
                word_start: jax.Array | None = None, row_offset=0,
                length_mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Select and corrupt tokens for masked-language modelling (BERT's 15% with 80/10/10).

    Args:
      key: PRNG key of this step's masking (e.g. ``rng.step_key(seed, 'mask', step)``).
      ids: int32 ``[B, T]`` token ids.
      special: bool ``[B, T]``, True at [CLS], [SEP], [PAD] and any token never to select.
      mask_id: id of [MASK] (look it up by token).
      vocab_size: random replacements are drawn uniformly from ``[0, vocab_size)``.
      rate: masked_lm_prob, the fraction of a row's non-special tokens to select.
      max_predictions: cap on selections per row (BERT's max_predictions_per_seq; 20 at
        T=128, 80 at T=512). Pass the same value to :func:`gather_masked`.
      word_start: optional bool ``[B, T]`` for whole-word masking, True where a token starts a
        word (not a ``##`` piece). A word is a word-start token plus the continuation tokens
        after it; a special token always forms its own word, and the token after a special
        token always starts a word. Rule (BERT's ``do_whole_word_mask``): the row's candidate
        words are visited in uniformly random order and a word is selected iff the number of
        tokens selected so far plus its length is ``<= n``; so no word is partly selected, at
        most ``n`` tokens are selected, and exactly ``n`` when every word is one token. The
        80/10/10 decision is then made per token, as in BERT.
      row_offset: global index of row 0 of ``ids`` (int or traced int32), so the rows of a
        slice of the batch match the same rows of the whole batch.
      length_mask: optional bool ``[B, T]``, True at the tokens that count in ``m`` (BERT's
        ``len(tokens)``: every non-padding token, [CLS] and [SEP] included). None: ``m`` is
        the number of non-special tokens.

    Returns:
      inputs: int32 ``[B, T]``, the corrupted ids fed to the model.
      weights: float32 ``[B, T]``, 1.0 at the selected positions (the loss positions; the
        targets are ``ids`` there) and 0.0 elsewhere.
    """
    if ids.ndim != 2 or special.shape != ids.shape:
        raise ValueError(f"ids and special must both be [B, T]; got ids {ids.shape}, "
                         f"special {special.shape}")
    if word_start is not None and word_start.shape != ids.shape:
        raise ValueError(f"word_start must have the shape of ids {ids.shape}; got {word_start.shape}")
    if length_mask is not None and length_mask.shape != ids.shape:
        raise ValueError(f"length_mask must have the shape of ids {ids.shape}; got {length_mask.shape}")
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"mask rate={rate} must be in (0, 1]; BERT uses 0.15")
    if max_predictions is not None and max_predictions < 1:
        raise ValueError(f"max_predictions={max_predictions} must be >= 1 or None (no cap)")
    if vocab_size < 1:
        raise ValueError(f"vocab_size={vocab_size} must be >= 1")
    return _mask_tokens(key, jnp.asarray(ids), jnp.asarray(special, bool),
                        None if word_start is None else jnp.asarray(word_start, bool),
                        jnp.asarray(row_offset, jnp.uint32),
                        None if length_mask is None else jnp.asarray(length_mask, bool),
                        mask_id=int(mask_id), vocab_size=int(vocab_size), rate=float(rate),
                        max_predictions=max_predictions)


@functools.partial(jax.jit, static_argnames=("mask_id", "vocab_size", "rate", "max_predictions"))
def _mask_tokens(key, ids, special, word_start, row_offset, length_mask, *, mask_id, vocab_size,
                 rate, max_predictions):
    batch, seq_len = ids.shape
    table = jnp.asarray(_num_to_predict_table(seq_len, rate, max_predictions))
    counted = ~special if length_mask is None else length_mask
    n = table[jnp.sum(counted, axis=1)]                                      # [B]
    row_keys = rng.example_keys(key, batch, row_offset)
    ws = jnp.ones_like(special) if word_start is None else word_start

    def one_row(row_key, ids_r, special_r, ws_r, n_r):
        # One draw of 3 x T random words per row (one threefry call: cheap to compile).
        select_bits, action_bits, token_bits = jax.random.bits(row_key, (3, seq_len), jnp.uint32)
        if word_start is None:
            selected = _select_tokens(select_bits, special_r, n_r)
        else:
            selected = _select_whole_words(select_bits, special_r, ws_r, n_r)
        u = (action_bits >> 8).astype(jnp.float32) * (2.0 ** -24)           # uniform [0, 1)
        random_token = (token_bits % jnp.uint32(vocab_size)).astype(ids_r.dtype)
        corrupted = jnp.where(u < MASK_PROB, jnp.asarray(mask_id, ids_r.dtype),
                              jnp.where(u < MASK_PROB + RANDOM_PROB, random_token, ids_r))
        return jnp.where(selected, corrupted, ids_r), selected.astype(jnp.float32)

    return jax.vmap(one_row)(row_keys, ids, special, ws, n)


def gather_masked(weights: jax.Array, max_predictions: int) -> tuple[jax.Array, jax.Array]:
    """Positions of the selected tokens, padded to a static length (BERT's masked_lm_positions).

    Args:
      weights: float ``[B, T]`` from :func:`mask_tokens` (selected where > 0).
      max_predictions: P, the static number of prediction slots per row. Use the cap given to
        :func:`mask_tokens`; selections beyond the first P positions of a row are dropped.

    Returns:
      positions: int32 ``[B, P]``, the selected positions in increasing order, then 0s.
      valid: float32 ``[B, P]``, 1.0 for a real position, 0.0 for a padding slot
        (BERT's masked_lm_weights).
    """
    if max_predictions < 1:
        raise ValueError(f"max_predictions={max_predictions} must be >= 1")
    batch, seq_len = weights.shape
    selected = weights > 0
    pos = jnp.arange(seq_len, dtype=jnp.int32)
    # Selected positions sort first, each group in position order.
    sort_key = jnp.where(selected, pos, seq_len + pos)
    k = min(max_predictions, seq_len)
    _, order = jax.lax.top_k(-sort_key, k)                                   # [B, k] ascending key
    valid = jnp.take_along_axis(selected, order, axis=1)
    positions = jnp.where(valid, order, 0).astype(jnp.int32)
    if k < max_predictions:
        pad = ((0, 0), (0, max_predictions - k))
        positions, valid = jnp.pad(positions, pad), jnp.pad(valid, pad)
    return positions, valid.astype(jnp.float32)
