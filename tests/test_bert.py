"""BERT encoder + MLM head (jaxssl.models.bert)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxssl.models.bert import BertConfig, BertEncoder, BertForMLM

V, T = 97, 12


def tiny(**kw):
    fields = dict(vocab_size=V, max_position=16, hidden_dropout=0.0, num_layers=1)  # 1: fast compile
    fields.update(kw)
    return BertConfig.from_preset("bert_tiny", **fields)


def inputs(batch=2, seed=0, num_real=(12, 7)):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, V, size=(batch, T)).astype(np.int32)
    attention_mask = (np.arange(T)[None] < np.asarray(num_real)[:, None]).astype(np.int32)
    ids[attention_mask == 0] = 0
    segment_ids = (np.arange(T)[None] >= 5).astype(np.int32) * attention_mask
    return jnp.asarray(ids), jnp.asarray(segment_ids), jnp.asarray(attention_mask)


@functools.lru_cache(maxsize=None)
def init(config):
    """Parameters of ``BertForMLM(config)`` (cached: tests never mutate them in place)."""
    ids, seg, att = inputs()
    pos = jnp.zeros((2, 3), jnp.int32)
    return jax.jit(BertForMLM(config).init)(jax.random.key(0), ids, seg, att, pos)


def jit_apply(config):
    """``BertForMLM(config).apply`` compiled once (eager Flax applies are slow on CPU)."""
    return jax.jit(BertForMLM(config).apply, static_argnames="train")


def count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def reference_param_count(vocab, hidden, layers, intermediate, max_position=512, types=2):
    """BERT's parameters from its architecture (tied decoder, no pooler, no NSP head)."""
    dense = lambda i, o: i * o + o
    layer_norm = 2 * hidden
    embeddings = (vocab + max_position + types) * hidden + layer_norm
    layer = (4 * dense(hidden, hidden) + layer_norm                   # q, k, v, attention output
             + dense(hidden, intermediate) + dense(intermediate, hidden) + layer_norm)
    mlm_head = dense(hidden, hidden) + layer_norm + vocab              # transform + decoder bias
    return embeddings + layers * layer + mlm_head


@pytest.mark.parametrize("preset,shape", [("bert_base", (768, 12, 3072)),
                                          ("bert_large", (1024, 24, 4096)),
                                          ("bert_tiny", (128, 2, 512))])
def test_param_count_matches_architecture(preset, shape):
    config = BertConfig.from_preset(preset, vocab_size=30522)
    ids, seg, att = inputs()
    params = jax.eval_shape(BertForMLM(config).init, jax.random.key(0), ids, seg, att)["params"]
    assert count(params) == reference_param_count(30522, *shape)
    if preset == "bert_base":
        # = HF BertForMaskedLM('bert-base-uncased'): BertModel 109,482,240 - pooler 590,592
        #   + MLM transform/LayerNorm/bias 622,650.
        assert count(params) == 109_514_298
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


def test_parameter_names_follow_hf_bert_layout():
    ids, seg, att = inputs()
    params = jax.eval_shape(BertForMLM(tiny(num_layers=2)).init, jax.random.key(0), ids, seg, att)["params"]
    flat = {"/".join(str(getattr(k, "key", k)) for k in path)
            for path, _ in jax.tree_util.tree_leaves_with_path(params)}
    for name in ["bert/embeddings/word_embeddings/embedding",
                 "bert/embeddings/position_embeddings/embedding",
                 "bert/embeddings/token_type_embeddings/embedding",
                 "bert/embeddings/LayerNorm/scale",
                 "bert/encoder/layer/1/attention/self/query/kernel",
                 "bert/encoder/layer/1/attention/self/key/bias",
                 "bert/encoder/layer/0/attention/self/value/kernel",
                 "bert/encoder/layer/0/attention/output/dense/kernel",
                 "bert/encoder/layer/0/attention/output/LayerNorm/bias",
                 "bert/encoder/layer/0/intermediate/dense/kernel",
                 "bert/encoder/layer/0/output/dense/kernel",
                 "bert/encoder/layer/0/output/LayerNorm/scale",
                 "cls/predictions/transform/dense/kernel",
                 "cls/predictions/transform/LayerNorm/scale",
                 "cls/predictions/bias"]:
        assert name in flat, name
    assert not any("pooler" in n or "decoder" in n for n in flat)   # decoder is tied to the embedding


def test_decoder_is_tied_to_word_embeddings():
    config = tiny()
    params = init(config)
    ids, seg, att = inputs()
    apply = jit_apply(config)
    column = 3                                            # not an input token (inputs are >= 5 or 0)

    def loss(p):
        return apply(p, ids, seg, att)[..., column].sum()

    grad = np.asarray(jax.jit(jax.grad(loss))(params)["params"]["bert"]["embeddings"]["word_embeddings"]["embedding"])
    input_tokens = np.unique(np.asarray(ids))
    assert np.abs(grad[column]).sum() > 0                 # decoder end: only its output row
    assert all(np.abs(grad[t]).sum() > 0 for t in input_tokens)  # input end: the looked-up rows
    untouched = np.setdiff1d(np.arange(V), np.append(input_tokens, column))
    np.testing.assert_array_equal(grad[untouched], 0.0)
    # And the decoder output is exactly transform(h) @ E^T + bias.
    emb = params["params"]["bert"]["embeddings"]["word_embeddings"]["embedding"]
    bumped = jax.tree.map(lambda x: x, params)
    bumped["params"]["bert"]["embeddings"]["word_embeddings"]["embedding"] = emb.at[column].add(1.0)
    before, after = apply(params, ids, seg, att), apply(bumped, ids, seg, att)
    changed = np.abs(np.asarray(after - before)).max(axis=(0, 1)) > 0
    np.testing.assert_array_equal(np.flatnonzero(changed), [column])


def test_padding_does_not_change_real_positions():
    config = tiny()
    params = init(config)
    model = jit_apply(config)
    ids, seg, att = inputs()
    real = np.asarray(att) > 0
    out = np.asarray(model(params, ids, seg, att))
    noisy_ids = jnp.where(att > 0, ids, jnp.asarray(np.random.default_rng(1).integers(5, V, ids.shape)))
    noisy_seg = jnp.where(att > 0, seg, 1)
    out_noisy = np.asarray(model(params, noisy_ids, noisy_seg, att))
    np.testing.assert_allclose(out_noisy[real], out[real], atol=1e-5)
    # Control: the same change with the padding attended to does change the real positions.
    out_unmasked = np.asarray(model(params, noisy_ids, noisy_seg, jnp.ones_like(att)))
    out_clean_unmasked = np.asarray(model(params, ids, seg, jnp.ones_like(att)))
    assert np.abs(out_unmasked[1, :7] - out_clean_unmasked[1, :7]).max() > 1e-3


def test_gathered_logits_equal_all_positions():
    config = tiny()
    params = init(config)
    model = jit_apply(config)
    ids, seg, att = inputs()
    positions = jnp.asarray([[0, 4, 11], [6, 2, 0]], jnp.int32)
    gathered = model(params, ids, seg, att, positions)
    everything = model(params, ids, seg, att)
    assert gathered.shape == (2, 3, V) and gathered.dtype == jnp.float32
    np.testing.assert_allclose(gathered, np.take_along_axis(np.asarray(everything),
                                                            np.asarray(positions)[..., None], axis=1),
                               rtol=1e-5, atol=1e-5)


def test_bf16_activations_fp32_params():
    config32 = tiny()
    config16 = tiny(dtype="bfloat16")
    ids, seg, att = inputs()
    abstract16 = jax.eval_shape(BertForMLM(config16).init, jax.random.key(0), ids, seg, att)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(abstract16))
    params = init(config32)            # same tree, shapes and dtypes as abstract16
    assert jax.tree.map(lambda x: (x.shape, x.dtype), params) == jax.tree.map(
        lambda x: (x.shape, x.dtype), abstract16)
    hidden = jax.jit(BertEncoder(config16).apply)({"params": params["params"]["bert"]}, ids, seg, att)
    assert hidden.dtype == jnp.bfloat16
    logits16 = jit_apply(config16)(params, ids, seg, att)
    logits32 = jit_apply(config32)(params, ids, seg, att)
    assert logits16.dtype == jnp.float32
    scale = np.abs(np.asarray(logits32)).max()
    assert np.abs(np.asarray(logits16) - np.asarray(logits32)).max() < 0.05 * scale


def test_attention_dropout_path_matches_fused_path_and_drops():
    ids, seg, att = inputs()
    base = tiny()
    params = init(base)
    ref = jit_apply(base)(params, ids, seg, att)
    # Explicit softmax path (train + attention_dropout > 0) with a negligible rate = fused path.
    nearly_zero = jit_apply(tiny(attention_dropout=1e-9))(
        params, ids, seg, att, train=True, rngs={"dropout": jax.random.key(1)})
    np.testing.assert_allclose(nearly_zero, ref, rtol=1e-4, atol=1e-4)
    dropped = jit_apply(tiny(attention_dropout=0.5))(
        params, ids, seg, att, train=True, rngs={"dropout": jax.random.key(1)})
    assert np.abs(np.asarray(dropped - ref)).max() > 1e-3      # (logits are ~0.3 at init)
    evaluated = jit_apply(tiny(attention_dropout=0.5, hidden_dropout=0.1))(params, ids, seg, att)
    np.testing.assert_allclose(evaluated, ref, rtol=1e-5, atol=1e-5)   # no dropout at eval


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="hidden_size=100"):
        BertConfig(hidden_size=100, num_heads=12)
    with pytest.raises(ValueError, match="bert_huge"):
        BertConfig.from_preset("bert_huge")
    config = tiny(max_position=8)
    with pytest.raises(ValueError, match="max_position=8"):
        init(config)


def test_tiny_model_overfits_a_tiny_batch():
    config = tiny()
    model = BertForMLM(config)
    ids, seg, att = inputs(batch=4, seed=3, num_real=(12, 12, 9, 6))
    positions = jnp.asarray([[1, 3, 5, 7], [0, 2, 4, 6], [1, 4, 7, 8], [1, 2, 3, 5]], jnp.int32)
    targets = jnp.take_along_axis(ids, positions, axis=1)
    masked_ids = ids.at[jnp.arange(4)[:, None], positions].set(4)       # 4 = a [MASK] id
    params = jax.jit(model.init)(jax.random.key(0), masked_ids, seg, att, positions)
    tx = optax.adam(3e-3)
    opt_state = tx.init(params)

    def loss_fn(p):
        logits = model.apply(p, masked_ids, seg, att, positions)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(loss_fn)(p)
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    losses = []
    for _ in range(50):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    assert losses[0] > 0.8 * np.log(V)                    # starts near chance
    assert losses[-1] < 0.1 * losses[0], losses[::10]


@pytest.mark.parametrize("policy", ["full", "dots"])
def test_remat_keeps_parameter_names_loss_and_gradients(policy):
    """``remat`` (models/remat.py) changes what is stored for the backward pass, not the math:
    same parameter tree, same train-mode loss with dropout and the same gradients."""
    base, remat = tiny(num_layers=2, hidden_dropout=0.1), tiny(num_layers=2, hidden_dropout=0.1,
                                                               remat=policy)
    params = init(base)
    assert jax.tree.structure(params) == jax.tree.structure(init(remat))
    ids, seg, att = inputs()
    positions = jnp.asarray([[0, 4, 11], [6, 2, 0]], jnp.int32)

    def loss(p, config):
        logits = BertForMLM(config).apply(p, ids, seg, att, positions, train=True,
                                          rngs={"dropout": jax.random.key(3)})
        return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[..., 7])

    l0, g0 = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, base)
    l1, g1 = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, remat)
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g1, g0)


def test_unknown_remat_policy_names_the_field():
    with pytest.raises(ValueError, match=r"model\.remat='everything'"):
        tiny(remat="everything")
