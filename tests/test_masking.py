"""BERT MLM masking (jaxssl.augment.masking) against create_pretraining_data.py's documented rules."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxssl import sharding
from jaxssl.augment.masking import gather_masked, mask_tokens, num_to_predict

MASK_ID, VOCAB = 4, 30522


def bert_num_to_predict(num_tokens, masked_lm_prob, max_predictions_per_seq):
    """google-research/bert create_pretraining_data.py, verbatim (Python's round)."""
    return min(max_predictions_per_seq, max(1, int(round(num_tokens * masked_lm_prob))))


def make_batch(rng, batch, seq_len, num_real=None):
    """ids in [5, 1000) (never MASK_ID); special at random positions or after num_real[i] tokens."""
    ids = rng.integers(5, 1000, size=(batch, seq_len)).astype(np.int32)
    if num_real is None:
        special = rng.random((batch, seq_len)) < 0.2
    else:
        special = np.arange(seq_len)[None, :] >= np.asarray(num_real)[:, None]
    return ids, special


def test_num_to_predict_is_bert_formula_with_python_round():
    assert num_to_predict(10, 0.15) == 2      # 1.5 -> 2
    assert num_to_predict(30, 0.15) == 4      # 4.5 -> 4 (round half to even)
    assert num_to_predict(50, 0.15) == 8      # 7.5 -> 8
    assert num_to_predict(0, 0.15) == 0 and num_to_predict(1, 0.15) == 1
    assert num_to_predict(512, 0.15, max_predictions=80) == 77
    assert num_to_predict(600, 0.15, max_predictions=80) == 80
    for rate in (0.15, 0.2, 0.4):
        for m in range(1, 513):
            assert num_to_predict(m, rate, 20) == bert_num_to_predict(m, rate, 20)


@pytest.mark.parametrize("max_predictions", [None, 3])
def test_each_row_selects_exactly_n_non_special_tokens(max_predictions):
    m = np.array([0, 1, 2, 3, 7, 10, 13, 30, 40, 40])
    ids, special = make_batch(np.random.default_rng(0), len(m), 40, num_real=m)
    special[:, 0] = True            # a [CLS] at position 0 is never selectable
    m_eff = (~special).sum(1)
    inputs, weights = mask_tokens(jax.random.key(0), jnp.asarray(ids), jnp.asarray(special),
                                  mask_id=MASK_ID, vocab_size=VOCAB,
                                  max_predictions=max_predictions)
    weights, inputs = np.asarray(weights), np.asarray(inputs)
    cap = max_predictions or 10 ** 9
    expected = [0 if k == 0 else bert_num_to_predict(k, 0.15, cap) for k in m_eff]
    np.testing.assert_array_equal(weights.sum(1), expected)
    assert weights.dtype == np.float32 and set(np.unique(weights)) <= {0.0, 1.0}
    assert inputs.dtype == np.int32
    assert (weights[special] == 0).all()
    np.testing.assert_array_equal(inputs[weights == 0], ids[weights == 0])   # only selections change


def test_special_positions_never_selected_and_selection_uniform():
    ids, special = make_batch(np.random.default_rng(1), 4096, 16)
    _, weights = mask_tokens(jax.random.key(1), jnp.asarray(ids), jnp.asarray(special),
                             mask_id=MASK_ID, vocab_size=VOCAB, rate=0.25)
    weights = np.asarray(weights)
    assert (weights[special] == 0).all()
    # Given a row's n and m, every non-special position is selected with probability n / m.
    m = (~special).sum(1, keepdims=True)
    n = np.array([[num_to_predict(int(k), 0.25)] for k in m[:, 0]])
    expected = np.where(special, 0.0, n / np.maximum(m, 1))
    per_position = weights.mean(0)
    np.testing.assert_allclose(per_position, expected.mean(0), atol=0.03)


def test_80_10_10_split_within_one_point():
    ids, special = make_batch(np.random.default_rng(2), 1024, 64, num_real=np.full(1024, 64))
    inputs, weights = mask_tokens(jax.random.key(2), jnp.asarray(ids), jnp.asarray(special),
                                  mask_id=MASK_ID, vocab_size=VOCAB, rate=0.5)
    inputs, sel = np.asarray(inputs), np.asarray(weights) > 0
    assert sel.sum() == 1024 * 32
    orig, new = ids[sel], inputs[sel]
    to_mask = np.mean(new == MASK_ID)
    kept = np.mean(new == orig)
    replaced = np.mean((new != MASK_ID) & (new != orig))
    # A random draw equals the original with probability 1/VOCAB: negligible at 1 point.
    assert abs(to_mask - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 and abs(replaced - 0.1) < 0.01
    random_tokens = new[(new != MASK_ID) & (new != orig)]
    assert random_tokens.min() >= 0 and random_tokens.max() < VOCAB
    # Drawn from [0, vocab_size), not from the ids present in the batch ([5, 1000)).
    assert np.mean(random_tokens >= 1000) > 0.9
    assert abs(random_tokens.mean() / VOCAB - 0.5) < 0.03


def test_same_key_same_result_different_key_different():
    ids, special = make_batch(np.random.default_rng(3), 8, 32)
    f = functools.partial(mask_tokens, ids=jnp.asarray(ids), special=jnp.asarray(special),
                          mask_id=MASK_ID, vocab_size=VOCAB)
    a, b, c = f(jax.random.key(5)), f(jax.random.key(5)), f(jax.random.key(6))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_row_offset_slice_matches_full_batch():
    ids, special = make_batch(np.random.default_rng(4), 8, 24)
    word_start = np.random.default_rng(5).random((8, 24)) < 0.6
    key = jax.random.key(7)
    kw = dict(mask_id=MASK_ID, vocab_size=VOCAB)
    full = mask_tokens(key, jnp.asarray(ids), jnp.asarray(special), **kw)
    part = mask_tokens(key, jnp.asarray(ids[4:8]), jnp.asarray(special[4:8]),
                       row_offset=jnp.int32(4), **kw)
    np.testing.assert_array_equal(part[0], full[0][4:8])
    np.testing.assert_array_equal(part[1], full[1][4:8])
    no_offset = mask_tokens(key, jnp.asarray(ids[4:8]), jnp.asarray(special[4:8]), **kw)
    assert not np.array_equal(no_offset[1], part[1])        # the offset matters
    full_w = mask_tokens(key, jnp.asarray(ids), jnp.asarray(special), word_start=jnp.asarray(word_start), **kw)
    part_w = mask_tokens(key, jnp.asarray(ids[4:8]), jnp.asarray(special[4:8]),
                         word_start=jnp.asarray(word_start[4:8]), row_offset=4, **kw)
    np.testing.assert_array_equal(part_w[1], full_w[1][4:8])


@pytest.mark.parametrize("whole_word", [False, True])
def test_sharded_over_8_devices_equals_1_device(whole_word):
    rng = np.random.default_rng(6)
    ids, special = make_batch(rng, 16, 32)
    word_start = rng.random((16, 32)) < 0.5
    key = jax.random.key(11)

    def run(num_devices):
        mesh = sharding.make_mesh(num_devices)
        put = lambda x: jax.device_put(jnp.asarray(x), sharding.batch_sharding(mesh))
        f = jax.jit(functools.partial(mask_tokens, mask_id=MASK_ID, vocab_size=VOCAB,
                                      max_predictions=5),
                    out_shardings=NamedSharding(mesh, P(sharding.DATA_AXIS)))
        out = f(key, put(ids), put(special), word_start=put(word_start) if whole_word else None)
        assert len(out[0].sharding.device_set) == num_devices
        return jax.device_get(out)

    one, eight = run(1), run(8)
    np.testing.assert_array_equal(one[0], eight[0])
    np.testing.assert_array_equal(one[1], eight[1])


def _words(word_start_row, special_row):
    """Reference word segmentation: [start, end) spans, specials alone, a word starts after a special."""
    spans, start = [], None
    for j, (ws, sp) in enumerate(zip(word_start_row, special_row)):
        if sp or ws or (j > 0 and special_row[j - 1]) or start is None:
            if start is not None:
                spans.append((start, j))
            start = j
    spans.append((start, len(word_start_row)))
    return [(a, b) for a, b in spans if not special_row[a]]


def test_whole_word_masking_selects_whole_words_within_budget():
    rng = np.random.default_rng(8)
    ids, special = make_batch(rng, 256, 32)
    word_start = rng.random((256, 32)) < 0.45
    _, weights = mask_tokens(jax.random.key(9), jnp.asarray(ids), jnp.asarray(special),
                             mask_id=MASK_ID, vocab_size=VOCAB, rate=0.3,
                             word_start=jnp.asarray(word_start))
    weights = np.asarray(weights)
    assert (weights[special] == 0).all()
    multi_token_selected = 0
    for r in range(256):
        n = num_to_predict(int((~special[r]).sum()), 0.3)
        assert weights[r].sum() <= n
        for a, b in _words(word_start[r], special[r]):
            assert len(set(weights[r, a:b])) == 1, (r, a, b)   # no word is partly selected
            multi_token_selected += (b - a > 1) and weights[r, a] > 0
    assert multi_token_selected > 50


def test_whole_word_with_single_token_words_selects_exactly_n():
    m = np.array([0, 1, 5, 10, 30, 32])
    ids, special = make_batch(np.random.default_rng(10), len(m), 32, num_real=m)
    _, weights = mask_tokens(jax.random.key(3), jnp.asarray(ids), jnp.asarray(special),
                             mask_id=MASK_ID, vocab_size=VOCAB,
                             word_start=jnp.ones(ids.shape, bool))
    np.testing.assert_array_equal(np.asarray(weights).sum(1), [num_to_predict(k, 0.15) for k in m])


def test_whole_word_skips_a_word_that_would_exceed_the_budget_and_continues():
    # Words of 2, 2 and 1 tokens (m = 5), rate 0.6 -> n = 3. BERT's loop skips (does not stop at)
    # a word that would overflow, so every order ends with one 2-token word plus the 1-token word.
    rows = 400
    ids = np.tile(np.arange(10, 16, dtype=np.int32), (rows, 1))
    special = np.tile([True, False, False, False, False, False], (rows, 1))
    word_start = np.tile([True, True, False, True, False, True], (rows, 1))
    _, weights = mask_tokens(jax.random.key(4), jnp.asarray(ids), jnp.asarray(special),
                             mask_id=MASK_ID, vocab_size=VOCAB, rate=0.6,
                             word_start=jnp.asarray(word_start))
    w = np.asarray(weights)
    assert (w.sum(1) == 3).all()
    assert (w[:, 5] == 1).all()                                  # the 1-token word, always
    assert ((w[:, 1] == w[:, 2]) & (w[:, 3] == w[:, 4]) & (w[:, 1] != w[:, 3])).all()
    assert 0.4 < w[:, 1].mean() < 0.6                            # first 2-token word half the time


def test_gather_masked_positions_in_order_padded():
    rng = np.random.default_rng(12)
    weights = (rng.random((6, 20)) < 0.2).astype(np.float32)
    weights[0] = 0.0
    weights[1, :] = 0.0
    weights[1, [3, 19]] = 1.0
    for p in (8, 25):
        positions, valid = gather_masked(jnp.asarray(weights), p)
        assert positions.shape == (6, p) and positions.dtype == jnp.int32 and valid.dtype == jnp.float32
        for r in range(6):
            ref = np.flatnonzero(weights[r])[:p]
            k = len(ref)
            np.testing.assert_array_equal(positions[r, :k], ref)
            np.testing.assert_array_equal(positions[r, k:], 0)
            np.testing.assert_array_equal(valid[r], [1.0] * k + [0.0] * (p - k))


def test_mask_then_gather_gives_bert_masked_lm_features():
    ids, special = make_batch(np.random.default_rng(13), 4, 40, num_real=[40, 30, 12, 3])
    inputs, weights = mask_tokens(jax.random.key(0), jnp.asarray(ids), jnp.asarray(special),
                                  mask_id=MASK_ID, vocab_size=VOCAB, max_predictions=5)
    positions, valid = gather_masked(weights, 5)
    targets = np.take_along_axis(ids, np.asarray(positions), axis=1)
    np.testing.assert_array_equal(np.asarray(valid).sum(1), np.asarray(weights).sum(1))
    np.testing.assert_array_equal(np.asarray(valid).sum(1), [5, 4, 2, 1])
    for r in range(4):
        k = int(np.asarray(valid)[r].sum())
        np.testing.assert_array_equal(targets[r, :k], ids[r, np.flatnonzero(np.asarray(weights)[r])])


def test_invalid_arguments_name_the_field():
    ids = jnp.zeros((2, 8), jnp.int32)
    special = jnp.zeros((2, 8), bool)
    with pytest.raises(ValueError, match="rate=0"):
        mask_tokens(jax.random.key(0), ids, special, mask_id=4, vocab_size=10, rate=0.0)
    with pytest.raises(ValueError, match="special"):
        mask_tokens(jax.random.key(0), ids, special[:, :4], mask_id=4, vocab_size=10)
    with pytest.raises(ValueError, match="max_predictions=0"):
        mask_tokens(jax.random.key(0), ids, special, mask_id=4, vocab_size=10, max_predictions=0)
